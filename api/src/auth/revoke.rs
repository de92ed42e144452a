//! Ending logins at once: the refresh families are revoked in PostgreSQL
//! (which every request checks), and the API replicas are told through
//! Redis so that WebSockets of an ended login close
//! ([`crate::relay::Relay::revocations`]).

use serde::{Deserialize, Serialize};
use shared::ids::{TokenFamilyId, UserId};

use crate::state::AppState;

/// Why logins were ended; the WebSocket's close reason says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The user logged out (that login only).
    LoggedOut,
    /// The user changed the password (every other login).
    PasswordChanged,
    /// An admin disabled the account (every login).
    AccountDisabled,
}

impl Reason {
    /// The close reason of a WebSocket.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::LoggedOut => "logged out",
            Reason::PasswordChanged => "password changed",
            Reason::AccountDisabled => "account disabled",
        }
    }
}

/// Logins of `user` that were ended: `only` that one, or all but `except`
/// (all when both are none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// Whose.
    pub user_id: UserId,
    /// Only this login.
    pub only: Option<TokenFamilyId>,
    /// Every login but this one.
    pub except: Option<TokenFamilyId>,
    /// Why.
    pub reason: Reason,
}

impl Revocation {
    /// Whether a socket of `user` in login `session` is among those ended.
    pub fn ends(&self, user: UserId, session: TokenFamilyId) -> bool {
        self.user_id == user && self.only.is_none_or(|s| s == session) && self.except != Some(session)
    }
}

/// Tells every API replica (after the revocation was committed). A lost
/// message is covered: sockets check PostgreSQL again whenever the relay
/// reconnects to Redis.
pub async fn announce(state: &AppState, revocation: &Revocation) {
    let Ok(payload) = serde_json::to_string(revocation) else { return };
    let mut conn = state.redis.clone();
    let channel = crate::relay::revocation_channel(&state.config.redis.key_prefix);
    if let Err(e) = redis::cmd("PUBLISH").arg(channel).arg(payload).query_async::<i64>(&mut conn).await {
        tracing::warn!(error = %e, user_id = %revocation.user_id, "revocation not announced; sockets close when Redis is back");
    }
}
