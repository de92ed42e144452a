//! What a socket missed: where the session stands when it connects, the
//! stored events after the client's position, and a resync after events
//! were dropped on the way (a lost Redis connection, a socket too slow).

use axum::extract::ws::close_code;
use shared::db;
use shared::events::{Event, EventKind};
use shared::ids::SessionId;

use super::tickets::login_ended;
use super::{Flow, REVOKED, Socket};
use crate::state::AppState;

const REPLAY_PAGE: i64 = 500;

impl Socket {
    /// After missed events: the login checked again (revocations may have
    /// been missed too), then the stored events replayed.
    pub(super) async fn resync(&mut self) -> Result<(), ()> {
        match login_ended(&self.state, self.user).await {
            Some(reason) => {
                self.close(REVOKED, &format!("access revoked: {reason}")).await;
                Err(())
            }
            None => self.replay().await,
        }
    }

    /// Tells the client where the session stands (`session.state`).
    pub(super) async fn send_state(&mut self) -> Result<(), ()> {
        let (status, last_seq) = match db::sessions::find(&self.state.db, self.session_id).await {
            Ok(Some(s)) => (s.status, s.last_seq),
            _ => return Err(()),
        };
        // A client cannot have seen more than was handed out.
        self.last_sent = self.last_sent.min(last_seq);
        match self.send_local(EventKind::SessionState { status, last_seq }).await {
            Flow::Continue => Ok(()),
            Flow::Close => Err(()),
        }
    }

    /// Sends stored events after `last_sent`. The session row is share-locked
    /// first, so an event published before this socket followed the channel
    /// has been committed (or is seen live) by the time we read.
    pub(super) async fn replay(&mut self) -> Result<(), ()> {
        loop {
            let events = match stored_after(&self.state, self.session_id, self.last_sent).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "replay failed");
                    self.close(close_code::AGAIN, "could not load missed events, reconnect").await;
                    return Err(());
                }
            };
            let page_full = events.len() as i64 == REPLAY_PAGE;
            for event in events {
                let json = serde_json::to_string(&event).map_err(|_| ())?;
                self.forward(event.seq, &json).await?;
            }
            if !page_full {
                return Ok(());
            }
        }
    }
}

async fn stored_after(state: &AppState, session: SessionId, after: i64) -> Result<Vec<Event>, db::DbError> {
    let mut tx = state.db.begin().await?;
    db::sessions::settled_seq(&mut *tx, session).await?;
    let events = db::events::after(&mut *tx, session, after, REPLAY_PAGE).await?;
    tx.commit().await?;
    Ok(events)
}
