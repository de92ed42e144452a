//! Job payloads and queue names: the contract between api, worker and scheduler.

use serde::{Deserialize, Serialize};

use crate::ids::{BatchRunId, SessionId, TurnId};

/// The two queues. Separate worker pools serve them, so batch work never
/// starves interview turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueName {
    /// Interactive: interview turns.
    Turns,
    /// Evaluations and cron batches.
    Batch,
}

impl QueueName {
    /// Both queues.
    pub const ALL: [QueueName; 2] = [QueueName::Turns, QueueName::Batch];

    /// The short name (`turns`, `batch`).
    pub fn as_str(self) -> &'static str {
        match self {
            QueueName::Turns => "turns",
            QueueName::Batch => "batch",
        }
    }

    /// The apalis queue name under `prefix`. No ':' in it: apalis-redis splits
    /// its notification channels on ':'.
    pub fn key(self, prefix: &str) -> String {
        format!("{prefix}-{}", self.as_str())
    }

    /// The channel producers publish on after each push, so idle workers
    /// fetch at once (apalis-redis itself only polls).
    pub fn notify_channel(self, prefix: &str) -> String {
        format!("{}:notify", self.key(prefix))
    }
}

impl std::str::FromStr for QueueName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "turns" => Ok(QueueName::Turns),
            "batch" => Ok(QueueName::Batch),
            other => Err(format!("unknown queue {other:?}; expected turns or batch")),
        }
    }
}

/// Produce the interviewer's reply to a turn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TurnJob {
    /// The turn (already stored `queued`).
    pub turn_id: TurnId,
    /// Its session.
    pub session_id: SessionId,
    /// The HTTP request that created it, for following logs.
    pub request_id: String,
    /// The W3C `traceparent` of the span that enqueued it, when tracing is
    /// on: the worker's turn span continues that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Work on the `batch` queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BatchJob {
    /// Write the scorecard of a completed session.
    Evaluation {
        /// The session.
        session_id: SessionId,
        /// The request that ended it.
        request_id: String,
    },
    /// Run a recorded batch run (`batch_runs`).
    Run {
        /// The run.
        run_id: BatchRunId,
        /// The request (or scheduler tick) that asked for it.
        request_id: String,
    },
}
