//! The one place events are published (see `events` for the ordering rule).

use redis::aio::ConnectionManager;

use crate::db::{self, DbError, Tx};
use crate::events::{Event, EventKind, session_channel};
use crate::ids::SessionId;

/// Publishes session events on Redis and stores the ones resume needs.
#[derive(Clone)]
pub struct EventBus {
    conn: ConnectionManager,
    key_prefix: String,
}

impl EventBus {
    /// A bus on `conn` for channels under `key_prefix`.
    pub fn new(conn: ConnectionManager, key_prefix: impl Into<String>) -> Self {
        Self { conn, key_prefix: key_prefix.into() }
    }

    /// Gives the event the session's next `seq`, stores it, and publishes it,
    /// all before the caller commits `tx`. The session row stays locked until
    /// then, so no other producer can publish a later `seq` first.
    ///
    /// A publish that fails is logged, not returned: the event is stored, and
    /// sockets catch up from PostgreSQL when Redis comes back.
    pub async fn emit(&self, tx: &mut Tx<'_>, session: SessionId, kind: EventKind) -> Result<Event, DbError> {
        self.emit_reserving(tx, session, kind, 0).await
    }

    /// Like [`emit`](Self::emit), and also reserves the `block` numbers after
    /// the event's `seq` for the deltas that follow it.
    pub async fn emit_reserving(
        &self,
        tx: &mut Tx<'_>,
        session: SessionId,
        kind: EventKind,
        block: i64,
    ) -> Result<Event, DbError> {
        let mut event = Event { seq: 0, session_id: session, kind };
        event.seq = if event.kind.is_stored() {
            db::events::append_next(&mut **tx, &event, 1 + block).await?
        } else {
            db::sessions::reserve_seqs(&mut **tx, session, 1 + block).await?
        };
        self.publish(&event).await;
        Ok(event)
    }

    /// Publishes an event that already has its `seq` (a delta, or a stored
    /// event published again). Failures are logged.
    pub async fn publish(&self, event: &Event) {
        match serde_json::to_string(event) {
            Ok(json) => self.publish_json(event.session_id, &json).await,
            Err(e) => tracing::error!(error = %e, "event not serializable"),
        }
    }

    /// Publishes an event as PostgreSQL stored it (the JSON of an
    /// [`Event`], built by the statements of migration 0007). Failures are
    /// logged: the event is stored, and sockets catch up from PostgreSQL.
    pub async fn publish_json(&self, session: SessionId, json: &str) {
        let channel = session_channel(&self.key_prefix, session);
        let mut conn = self.conn.clone();
        if let Err(e) = redis::cmd("PUBLISH").arg(&channel).arg(json).query_async::<i64>(&mut conn).await {
            tracing::warn!(error = %e, session_id = %session, "event publish failed");
        }
    }
}
