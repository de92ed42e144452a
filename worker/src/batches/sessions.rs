//! `expired_sessions_cleanup`: sessions idle longer than
//! `SESSION_TIMEOUT_MINUTES` (or past their duration) become `expired`, the
//! client gets `session.completed`, and their evaluation is enqueued.

use serde_json::{Value, json};
use shared::db;
use shared::db::DbError;
use shared::domain::SessionStatus;

use super::{BatchError, Context};

const PAGE: i64 = 500;

/// Expires every idle session; counts them and the evaluations enqueued.
pub async fn expire_idle(ctx: &Context) -> Result<Value, BatchError> {
    let core = &ctx.core;
    let request_id = shared::new_request_id();
    let (mut expired, mut evaluations) = (0, 0);
    loop {
        let idle = db::sessions::idle(&core.db, ctx.config.api.session_timeout, PAGE).await?;
        if idle.is_empty() {
            break;
        }
        let mut progressed = false;
        for session in idle {
            let mut tx = core.db.begin().await.map_err(DbError::from)?;
            // Locked, then finished only if still active (a late answer may have ended it).
            db::sessions::lock(&mut *tx, session).await?;
            let job = core.finish_session_in(&mut tx, session, SessionStatus::Expired, "expired", &request_id).await?;
            tx.commit().await.map_err(DbError::from)?;
            if let Some((job_id, job)) = job {
                expired += 1;
                evaluations += 1;
                progressed = true;
                core.push_batch(&job_id, job).await;
            }
        }
        if !progressed {
            break;
        }
    }
    Ok(json!({ "expired": expired, "evaluations_enqueued": evaluations }))
}
