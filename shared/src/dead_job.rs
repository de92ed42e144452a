//! A dead job's detail for operators: its payload with secrets redacted,
//! apalis's record of it (runs, why it died), and the work it carried
//! (its turn, evaluation or batch run) as PostgreSQL has it, with each
//! failed attempt and its error.

use redis::aio::ConnectionManager;
use serde::{Deserialize as _, Serialize};
use serde_json::Value;

use crate::db::attempts::{self, AttemptError, AttemptLog};
use crate::db::{Db, DbError};
use crate::jobs::{BatchJob, QueueName, TurnJob};
use crate::queue_admin::{self, DeadJob};

/// What replaces a secret.
pub const REDACTED: &str = "***";

/// Words that make a field a secret wherever they stand in its name
/// (`api_key`, `apiKey`, `X-Api-Key`, `refresh_token`, `db_password`).
const SECRET_WORDS: [&str; 17] = [
    "key",
    "token",
    "password",
    "passwd",
    "pwd",
    "passphrase",
    "secret",
    "authorization",
    "auth",
    "credential",
    "credentials",
    "cookie",
    "signature",
    "bearer",
    "jwt",
    "totp",
    "dsn",
];

/// Names that are secrets even run together (`apikey`, `clientsecret`).
const SECRET_PARTS: [&str; 5] = ["password", "passwd", "secret", "apikey", "credential"];

/// Whether a field named `name` holds a secret: one of its words (split at
/// anything not a letter or digit and where lower case turns upper) is in
/// [`SECRET_WORDS`], or it contains one of [`SECRET_PARTS`]. Errs on the
/// safe side: `idempotency_key` counts, `prompt_tokens` does not.
pub fn is_secret(name: &str) -> bool {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut lower_before = false;
    for c in name.chars() {
        if !c.is_alphanumeric() || (c.is_uppercase() && lower_before) {
            words.push(std::mem::take(&mut word));
        }
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        }
        lower_before = c.is_lowercase() || c.is_ascii_digit();
    }
    words.push(word);
    let joined: String = words.concat();
    words.iter().any(|w| SECRET_WORDS.contains(&w.as_str())) || SECRET_PARTS.iter().any(|p| joined.contains(p))
}

/// `value` with the value of every secret field (at any depth) replaced by
/// [`REDACTED`] (nulls stay null), and `Bearer` credentials cut wherever
/// they appear as a string.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| {
                    let v = if is_secret(k) && !v.is_null() { Value::String(REDACTED.into()) } else { redact(v) };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::String(s) if s.trim_start().to_ascii_lowercase().starts_with("bearer ") => {
            Value::String(format!("Bearer {REDACTED}"))
        }
        other => other.clone(),
    }
}

/// The work a dead job carried, as PostgreSQL has it now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Work {
    /// `turn`, `evaluation` or `batch_run`.
    pub kind: &'static str,
    /// The turn's or batch run's id, the evaluation's session id.
    pub id: String,
    /// Its status.
    pub status: String,
    /// Attempts started (each a job of its own for turns and evaluations,
    /// which schedule their retries themselves).
    pub attempts: i32,
    /// The last error.
    pub error: Option<String>,
    /// Every failed attempt, oldest first.
    pub attempt_errors: Vec<AttemptError>,
}

/// A dead job in full.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detail {
    /// Its queue.
    pub queue: QueueName,
    /// Id, push time, payload (redacted), apalis's runs and error.
    #[serde(flatten)]
    pub job: DeadJob,
    /// Its work; `null` when the payload names none (it did not decode) or
    /// the row is gone.
    pub work: Option<Work>,
}

/// Why a detail could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DetailError {
    /// Redis.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// PostgreSQL.
    #[error("database: {0}")]
    Db(#[from] DbError),
}

/// Dead job `id` of `queue` in full; `None` when it is not dead.
pub async fn detail(
    db: &Db,
    conn: &mut ConnectionManager,
    prefix: &str,
    queue: QueueName,
    id: &str,
) -> Result<Option<Detail>, DetailError> {
    let Some(mut job) = queue_admin::dead_job(conn, prefix, queue, id).await? else {
        return Ok(None);
    };
    let work = work_of(db, queue, &job.payload).await?;
    job.payload = redact(&job.payload);
    Ok(Some(Detail { queue, job, work }))
}

async fn work_of(db: &Db, queue: QueueName, payload: &Value) -> Result<Option<Work>, DbError> {
    let found = match queue {
        QueueName::Turns => match TurnJob::deserialize(payload) {
            Ok(job) => attempts::of_turn(db, job.turn_id).await?.map(|log| ("turn", job.turn_id.to_string(), log)),
            Err(_) => None,
        },
        QueueName::Batch => match BatchJob::deserialize(payload) {
            Ok(BatchJob::Evaluation { session_id, .. }) => {
                attempts::of_evaluation(db, session_id).await?.map(|log| ("evaluation", session_id.to_string(), log))
            }
            Ok(BatchJob::Run { run_id, .. }) => {
                attempts::of_batch_run(db, run_id).await?.map(|log| ("batch_run", run_id.to_string(), log))
            }
            Err(_) => None,
        },
    };
    Ok(found.map(|(kind, id, log): (_, _, AttemptLog)| Work {
        kind,
        id,
        status: log.status,
        attempts: log.attempts,
        error: log.error,
        attempt_errors: log.attempt_errors.0,
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn secret_names_in_every_spelling() {
        for name in [
            "api_key",
            "apiKey",
            "X-Api-Key",
            "apikey",
            "token",
            "access_token",
            "refreshToken",
            "password",
            "DB_PASSWORD",
            "client_secret",
            "clientSecret",
            "Authorization",
            "auth",
            "private_key",
            "session_cookie",
            "totp",
            "credentials",
            "idempotency_key",
        ] {
            assert!(is_secret(name), "{name}");
        }
        for name in [
            "turn_id",
            "session_id",
            "request_id",
            "kind",
            "prompt_tokens",
            "keyboard",
            "monkey",
            "author",
            "run_id",
            "",
        ] {
            assert!(!is_secret(name), "{name}");
        }
    }

    #[test]
    fn redaction_reaches_every_depth_and_keeps_the_rest() {
        let payload = json!({
            "kind": "evaluation",
            "session_id": "0190",
            "api_key": "sk-live-123",
            "options": { "password": "hunter2", "retries": 3, "token": null },
            "headers": [{ "Authorization": "Bearer abc" }, { "x": "Bearer def" }],
            "credentials": { "user": "u", "pass": "p" },
            "note": "not a secret",
        });
        assert_eq!(
            redact(&payload),
            json!({
                "kind": "evaluation",
                "session_id": "0190",
                "api_key": "***",
                "options": { "password": "***", "retries": 3, "token": null },
                "headers": [{ "Authorization": "***" }, { "x": "Bearer ***" }],
                "credentials": "***",
                "note": "not a secret",
            })
        );
        assert_eq!(redact(&json!("plain text")), json!("plain text"));
    }
}
