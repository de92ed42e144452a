//! The interview flow of SPEC §3 as operations on PostgreSQL, the event
//! stream and the queues: start a session, accept an answer, end a session.
//! The API calls them for HTTP and WebSocket alike; the worker calls
//! [`Core::finish_session_in`] when `max_turns` is reached.
//!
//! Every operation writes PostgreSQL first and pushes its job after the
//! commit; a push that fails leaves a `queued` row the reconciler re-enqueues.

use chrono::Utc;

use crate::db::{self, Db, DbError, Tx};
use crate::domain::{Role, SessionStatus, TurnStatus};
use crate::events::EventKind;
use crate::ids::{SessionId, TurnId, UserId};
use crate::jobs::{BatchJob, TurnJob};
use crate::queue::{Queues, new_job_id};
use crate::stream::EventBus;

/// What an operation refuses, in the client's terms.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// No such session or interview.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller may not do this to the session.
    #[error("not allowed on this session")]
    Forbidden,
    /// The session no longer takes answers.
    #[error("the session is {0}")]
    NotActive(SessionStatus),
    /// The session's time is up.
    #[error("the session's time is over")]
    Expired,
    /// The interviewer is still answering the previous turn.
    #[error("the interviewer is still answering turn {0}; wait for turn.completed")]
    TurnInProgress(i32),
    /// The idempotency key was used before for a different answer.
    #[error("this Idempotency-Key was already used for a different answer")]
    KeyReused,
    /// Storage failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// An accepted answer.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The turn.
    pub turn_id: TurnId,
    /// Its number.
    pub number: i32,
    /// Its status.
    pub status: TurnStatus,
    /// False when the idempotency key returned an earlier turn.
    pub created: bool,
}

/// How an end request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The session completed now.
    Now,
    /// A turn is in flight: the session completes when it finishes.
    AfterTurn,
    /// It had already ended.
    Already(SessionStatus),
}

/// The database, the event stream and the queues: what every operation needs.
#[derive(Clone)]
pub struct Core {
    /// PostgreSQL.
    pub db: Db,
    /// Session events.
    pub bus: EventBus,
    /// Job queues.
    pub queues: Queues,
    /// This process's Prometheus series ([`crate::metrics`]).
    pub registry: crate::metrics::Registry,
}

impl Core {
    /// The database, events and queues on `db` and `redis`, under the
    /// `REDIS_KEY_PREFIX` `prefix`.
    pub fn new(db: Db, redis: redis::aio::ConnectionManager, prefix: &str) -> Self {
        let registry = crate::metrics::Registry::new();
        Self {
            db,
            bus: EventBus::new(redis.clone(), prefix.to_owned()),
            queues: Queues::new(redis, prefix, crate::metrics::JobMetrics::new()),
            registry,
        }
    }

    /// Connects to what `config` names, applying migrations when
    /// `RUN_MIGRATIONS` is on; also returns the Redis connection for what
    /// has no wrapper here (health, provider state, alerts).
    pub async fn connect(config: &crate::config::Config) -> anyhow::Result<(Self, redis::aio::ConnectionManager)> {
        use anyhow::Context as _;
        let db = Db::connect_lazy(&config.database).context("DATABASE_URL")?;
        // A server that refuses us stops start-up here; one not up yet is waited for.
        if let crate::startup::Reach::NotYet(why) = crate::startup::database(&db, &config.database).await? {
            tracing::warn!(error = %why, "PostgreSQL not reachable yet; carrying on, readiness reports it");
        }
        if let crate::startup::Reach::NotYet(why) = crate::startup::redis(&config.redis).await? {
            tracing::warn!(error = %why, "Redis not reachable yet; carrying on, readiness reports it");
        }
        if config.redis.tls_insecure {
            tracing::warn!("REDIS_TLS_INSECURE: the Redis server's certificate is not verified (development only)");
        }
        if config.database.run_migrations {
            db.migrate().await.context("applying migrations")?;
        }
        let redis = crate::redis_conn::manager(&config.redis).context("REDIS_URL")?;
        Ok((Self::new(db, redis.clone(), &config.redis.key_prefix), redis))
    }

    /// Starts a session for `candidate` and enqueues its opening turn.
    pub async fn start_session(
        &self,
        interview: &db::interviews::Interview,
        candidate: UserId,
        request_id: &str,
    ) -> Result<(db::sessions::Session, db::turns::Turn), FlowError> {
        let id = SessionId::new();
        let expires_at = Utc::now() + chrono::Duration::minutes(i64::from(interview.duration_minutes));
        let job_id = new_job_id();
        let mut tx = self.db.begin().await.map_err(DbError::from)?;
        db::sessions::insert(&mut *tx, id, interview.id, candidate, expires_at).await?;
        let turn = db::turns::insert(&mut *tx, id, 0, None, None, request_id, &job_id).await?;
        self.bus.emit(&mut tx, id, EventKind::TurnQueued { turn_id: turn.id, number: 0 }).await?;
        let session = db::sessions::find(&mut *tx, id).await?.ok_or(FlowError::NotFound("session"))?;
        tx.commit().await.map_err(DbError::from)?;
        self.push_turn(&job_id, turn.id, id, request_id).await;
        Ok((session, turn))
    }

    /// Stores the candidate's answer as a queued turn and enqueues it. The
    /// same `key` again returns the first turn and creates nothing.
    pub async fn submit_answer(
        &self,
        session_id: SessionId,
        candidate: UserId,
        text: &str,
        key: Option<&str>,
        request_id: &str,
    ) -> Result<Accepted, FlowError> {
        let (turn_id, job_id) = (TurnId::new(), new_job_id());
        let mut tx = self.db.begin().await.map_err(DbError::from)?;
        let submitted =
            db::turns::submit(&mut *tx, session_id, candidate, text, key, request_id, &job_id, turn_id).await?;
        let accepted = |created| -> Result<Accepted, FlowError> {
            Ok(Accepted {
                turn_id: submitted.turn_id.ok_or(FlowError::NotFound("turn"))?,
                number: submitted.turn_number.unwrap_or_default(),
                status: submitted.turn_status.unwrap_or(TurnStatus::Queued),
                created,
            })
        };
        // Anything but a new turn rolls back (the session's touch with it).
        match submitted.outcome.as_str() {
            "created" => {}
            "replayed" => return accepted(false),
            "not_found" => return Err(FlowError::NotFound("session")),
            "forbidden" => return Err(FlowError::Forbidden),
            "key_reused" => return Err(FlowError::KeyReused),
            "not_active" => {
                return Err(FlowError::NotActive(submitted.session_status.unwrap_or(SessionStatus::Completed)));
            }
            "end_requested" => return Err(FlowError::NotActive(SessionStatus::Completed)),
            "expired" => return Err(FlowError::Expired),
            "in_progress" => return Err(FlowError::TurnInProgress(submitted.turn_number.unwrap_or_default())),
            other => {
                let why = format!("submit_answer returned the unknown outcome {other:?}");
                return Err(DbError::Sqlx(sqlx::Error::Protocol(why)).into());
            }
        }
        if let Some(event) = &submitted.event {
            self.bus.publish_json(session_id, event).await;
        }
        tx.commit().await.map_err(DbError::from)?;
        self.push_turn(&job_id, turn_id, session_id, request_id).await;
        accepted(true)
    }

    /// Ends the session (candidate, interview owner or admin). With a turn in
    /// flight it ends when that turn finishes, so the evaluation sees it.
    pub async fn end_session(
        &self,
        session_id: SessionId,
        user: UserId,
        role: Role,
        request_id: &str,
    ) -> Result<Ended, FlowError> {
        let mut tx = self.db.begin().await.map_err(DbError::from)?;
        let session = db::sessions::lock(&mut *tx, session_id).await?.ok_or(FlowError::NotFound("session"))?;
        if !(role == Role::Admin || session.candidate_id == user || session.owner_id == user) {
            return Err(FlowError::Forbidden);
        }
        if session.status != SessionStatus::Active {
            return Ok(Ended::Already(session.status));
        }
        let in_flight = db::turns::last(&mut *tx, session_id)
            .await?
            .is_some_and(|t| matches!(t.status, TurnStatus::Queued | TurnStatus::Running));
        if in_flight {
            db::sessions::request_end(&mut *tx, session_id).await?;
            tx.commit().await.map_err(DbError::from)?;
            return Ok(Ended::AfterTurn);
        }
        let job = self.finish_session_in(&mut tx, session_id, SessionStatus::Completed, "ended", request_id).await?;
        tx.commit().await.map_err(DbError::from)?;
        if let Some((job_id, job)) = job {
            self.push_batch(&job_id, job).await;
        }
        Ok(Ended::Now)
    }

    /// Inside `tx` (the session locked): ends the session, publishes
    /// `session.completed` and creates its pending evaluation. Returns the
    /// evaluation job to push after the commit (`None` if it had ended).
    pub async fn finish_session_in(
        &self,
        tx: &mut Tx<'_>,
        session_id: SessionId,
        status: SessionStatus,
        reason: &str,
        request_id: &str,
    ) -> Result<Option<(String, BatchJob)>, FlowError> {
        let job_id = new_job_id();
        let Some(event) = db::sessions::finish(&mut **tx, session_id, status, reason, request_id, &job_id).await?
        else {
            return Ok(None);
        };
        self.bus.publish_json(session_id, &event).await;
        Ok(Some((job_id, BatchJob::Evaluation { session_id, request_id: request_id.to_owned() })))
    }

    /// Pushes a stored turn's job; a failure is left to the reconciler.
    pub async fn push_turn(&self, job_id: &str, turn_id: TurnId, session_id: SessionId, request_id: &str) {
        let job = TurnJob {
            turn_id,
            session_id,
            request_id: request_id.to_owned(),
            traceparent: crate::telemetry::traces::current_traceparent(),
        };
        if let Err(e) = self.queues.push_turn(job_id, job, None).await {
            tracing::warn!(error = %e, %turn_id, "turn stored but not enqueued; the reconciler will retry");
        }
    }

    /// Records a run of `batch` by hand and enqueues it; returns its id.
    pub async fn enqueue_batch_run(
        &self,
        batch: crate::domain::Batch,
        params: &crate::schedule::BatchParams,
        request_id: &str,
    ) -> Result<crate::ids::BatchRunId, DbError> {
        let job_id = new_job_id();
        let run_id = db::batch_runs::insert_manual(&self.db, batch, &params.to_json(), Some(&job_id)).await?;
        self.push_batch(&job_id, BatchJob::Run { run_id, request_id: request_id.to_owned() }).await;
        Ok(run_id)
    }

    /// Records the run of `batch` for the cron tick `tick` and enqueues it,
    /// unless that tick has its run already (another replica, or an earlier
    /// start); returns the new run's id.
    pub async fn enqueue_tick(
        &self,
        batch: crate::domain::Batch,
        tick: chrono::DateTime<Utc>,
        trigger: crate::domain::BatchTrigger,
    ) -> Result<Option<crate::ids::BatchRunId>, DbError> {
        let job_id = new_job_id();
        let Some(run_id) = db::batch_runs::insert_tick(&self.db, batch, tick, trigger, &job_id).await? else {
            return Ok(None);
        };
        let request_id = format!("tick-{batch}-{}", tick.timestamp());
        self.push_batch(&job_id, BatchJob::Run { run_id, request_id }).await;
        Ok(Some(run_id))
    }

    /// Pushes batch work; a failure is left to the reconciler.
    pub async fn push_batch(&self, job_id: &str, job: BatchJob) {
        if let Err(e) = self.queues.push_batch(job_id, job, None).await {
            tracing::warn!(error = %e, "batch job stored but not enqueued; the reconciler will retry");
        }
    }
}
