//! The events of SPEC §5: what workers and the API publish on a session's
//! Redis channel and what WebSocket clients receive.
//!
//! Ordering: a stream event gets its `seq` from `sessions.last_seq` inside the
//! transaction that makes it true, and is published before that transaction
//! commits. The session row stays locked until then, so publish order equals
//! `seq` order whichever process produced it. Deltas are the exception: they
//! take numbers from a block the worker reserved when the turn started, and
//! are never stored (the completed message carries the whole text).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::SessionStatus;
use crate::ids::{SessionId, TurnId};

/// One server event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Per-session increasing position in the stream.
    pub seq: i64,
    /// The session.
    pub session_id: SessionId,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Token counts of one LLM call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    /// Tokens sent.
    pub prompt_tokens: i32,
    /// Tokens received.
    pub completion_tokens: i32,
    /// The provider reported none: these are our estimate (characters / 4).
    /// Left out of the JSON when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated: bool,
}

/// The event types, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum EventKind {
    /// Sent to one socket when it connects: where the session stands. Its
    /// `seq` is the position the client resumes from; it does not advance the stream.
    #[serde(rename = "session.state")]
    SessionState {
        /// The session's status.
        status: SessionStatus,
        /// The newest stored event's `seq`.
        last_seq: i64,
    },
    /// An answer was stored and enqueued.
    #[serde(rename = "turn.queued")]
    TurnQueued {
        /// The turn.
        turn_id: TurnId,
        /// Its number (0 is the opening turn).
        number: i32,
    },
    /// A worker started the interviewer's reply.
    #[serde(rename = "turn.started")]
    TurnStarted {
        /// The turn.
        turn_id: TurnId,
        /// Its number.
        number: i32,
    },
    /// A fragment of the interviewer's reply.
    #[serde(rename = "turn.delta")]
    TurnDelta {
        /// The turn.
        turn_id: TurnId,
        /// The fragment.
        text: String,
    },
    /// The reply restarts (a provider or worker failed mid-stream): drop the partial text.
    #[serde(rename = "turn.reset")]
    TurnReset {
        /// The turn.
        turn_id: TurnId,
        /// Why.
        reason: String,
    },
    /// The interviewer's whole reply.
    #[serde(rename = "turn.completed")]
    TurnCompleted {
        /// The turn.
        turn_id: TurnId,
        /// Its number.
        number: i32,
        /// The full message.
        message: String,
        /// Tokens used.
        usage: Usage,
    },
    /// The turn could not be answered.
    #[serde(rename = "turn.failed")]
    TurnFailed {
        /// The turn.
        turn_id: TurnId,
        /// Its number.
        number: i32,
        /// Why, for a person.
        reason: String,
        /// Whether sending the answer again may succeed.
        retryable: bool,
    },
    /// The session ended; its evaluation is on the way.
    #[serde(rename = "session.completed")]
    SessionCompleted {
        /// `completed` or `expired`.
        status: SessionStatus,
        /// Why it ended: `ended`, `max_turns`, `expired`.
        reason: String,
    },
    /// The scorecard is ready.
    #[serde(rename = "evaluation.completed")]
    EvaluationCompleted {
        /// Criterion → 1..5: exactly the interview's criteria.
        scores: BTreeMap<String, i32>,
        /// The weighted mean of the scores, when the rubric has weights.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        overall_score: Option<f64>,
        /// A few sentences.
        summary: String,
        /// `strong_hire`, `hire`, `no_hire` or `strong_no_hire`.
        recommendation: String,
    },
    /// Sent to the socket that sent an `answer` frame: the turn it created, or
    /// the earlier turn its `client_msg_id` already created.
    #[serde(rename = "answer.accepted")]
    AnswerAccepted {
        /// The turn.
        turn_id: TurnId,
        /// Its number.
        number: i32,
        /// The client's id for the answer.
        client_msg_id: Option<String>,
        /// True when nothing new was created.
        duplicate: bool,
    },
    /// The answer to a client `ping`.
    #[serde(rename = "pong")]
    Pong,
    /// A client frame was not understood; the connection stays open.
    #[serde(rename = "error")]
    Error {
        /// Machine-readable.
        code: String,
        /// For a person.
        message: String,
    },
}

impl EventKind {
    /// Whether the event is stored for resume (everything but deltas and per-socket events).
    pub fn is_stored(&self) -> bool {
        !matches!(
            self,
            EventKind::TurnDelta { .. }
                | EventKind::SessionState { .. }
                | EventKind::AnswerAccepted { .. }
                | EventKind::Pong
                | EventKind::Error { .. }
        )
    }
}

/// The Redis channel a session's events go to.
pub fn session_channel(key_prefix: &str, session: SessionId) -> String {
    format!("{key_prefix}:events:{session}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_have_the_spec_field_names() {
        let event = Event {
            seq: 7,
            session_id: SessionId::new(),
            kind: EventKind::TurnCompleted {
                turn_id: TurnId::new(),
                number: 1,
                message: "Next question".into(),
                usage: Usage { prompt_tokens: 3, completion_tokens: 4, estimated: false },
            },
        };
        let json = serde_json::to_value(&event).expect("serialize");
        assert_eq!(json["type"], "turn.completed");
        assert_eq!(json["seq"], 7);
        assert_eq!(json["message"], "Next question");
        assert_eq!(json["usage"]["completion_tokens"], 4);
        let back: Event = serde_json::from_value(json).expect("deserialize");
        assert_eq!(back, event);
    }
}
