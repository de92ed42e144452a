//! Relays session events from Redis pub/sub to the WebSockets connected to
//! this instance. Each session's channel is subscribed while at least one
//! local socket follows it. After a lost Redis connection every socket is
//! told to resync from PostgreSQL, so nothing stored is missed. Ended
//! logins are announced on one more channel ([`Relay::revocations`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{PushInfo, PushKind, Value};
use shared::config::RedisConfig;
use shared::events::session_channel;
use shared::ids::SessionId;
use tokio::sync::{Mutex, broadcast, mpsc};

use crate::auth::revoke::Revocation;

/// Events a session's sockets may fall behind by before they resync from
/// PostgreSQL (losing deltas, not stored events). A socket's task forwards
/// each event as it comes, so a turn's burst of deltas fits; the ring is
/// allocated whole for every followed session (56 bytes a slot), and most
/// sessions have one socket: 1,024 slots were most of a socket's memory.
const SESSION_BACKLOG: usize = 64;

/// The channel ended logins are announced on.
pub fn revocation_channel(key_prefix: &str) -> String {
    format!("{key_prefix}:auth:revoked")
}

/// What a socket receives from the relay.
#[derive(Debug, Clone)]
pub enum Relayed {
    /// An event as published: its `seq` and JSON text.
    Event {
        /// The event's `seq`.
        seq: i64,
        /// The JSON sent to the client as is.
        json: Arc<str>,
    },
    /// Events may have been missed: reload from PostgreSQL.
    Resync,
}

/// Handle on the relay; cheap to clone.
#[derive(Clone)]
pub struct Relay {
    conn: ConnectionManager,
    key_prefix: Arc<str>,
    // Joins and leaves, and the SUBSCRIBE / UNSUBSCRIBE they cause, happen one at a time.
    membership: Arc<Mutex<HashMap<SessionId, usize>>>,
    // Read on every message.
    senders: Arc<RwLock<HashMap<SessionId, broadcast::Sender<Relayed>>>>,
    revocations: broadcast::Sender<Arc<Revocation>>,
}

/// A socket's place in the relay; leaving is dropping it.
pub struct Follow {
    /// Events for the session.
    pub receiver: broadcast::Receiver<Relayed>,
    relay: Relay,
    session: SessionId,
}

impl Drop for Follow {
    fn drop(&mut self) {
        let relay = self.relay.clone();
        let session = self.session;
        tokio::spawn(async move { relay.leave(session).await });
    }
}

impl Relay {
    /// Connects the subscriber and starts dispatching.
    pub fn start(config: &RedisConfig) -> redis::RedisResult<Relay> {
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let conn = shared::redis_conn::subscriber(config, push_tx)?;
        let relay = Relay {
            conn,
            key_prefix: config.key_prefix.as_str().into(),
            membership: Arc::default(),
            senders: Arc::default(),
            revocations: broadcast::channel(256).0,
        };
        tokio::spawn(relay.clone().dispatch(push_rx));
        tokio::spawn(relay.clone().subscribe_revocations());
        Ok(relay)
    }

    /// Ended logins, as announced by any replica. A socket that lags, or
    /// sees [`Relayed::Resync`], checks its login in PostgreSQL instead.
    pub fn revocations(&self) -> broadcast::Receiver<Arc<Revocation>> {
        self.revocations.subscribe()
    }

    /// Follows a session's events; subscribed (confirmed by Redis) on return.
    pub async fn follow(&self, session: SessionId) -> redis::RedisResult<Follow> {
        let mut membership = self.membership.lock().await;
        let count = membership.entry(session).or_insert(0);
        if *count == 0 {
            let mut conn = self.conn.clone();
            conn.subscribe(session_channel(&self.key_prefix, session)).await?;
            let (sender, _) = broadcast::channel(SESSION_BACKLOG);
            self.write_senders().insert(session, sender);
        }
        *count += 1;
        let receiver = self
            .read_senders()
            .get(&session)
            .map(broadcast::Sender::subscribe)
            .unwrap_or_else(|| broadcast::channel(1).1);
        Ok(Follow { receiver, relay: self.clone(), session })
    }

    async fn leave(&self, session: SessionId) {
        let mut membership = self.membership.lock().await;
        let Some(count) = membership.get_mut(&session) else {
            return;
        };
        *count -= 1;
        if *count > 0 {
            return;
        }
        membership.remove(&session);
        self.write_senders().remove(&session);
        let mut conn = self.conn.clone();
        if let Err(e) = conn.unsubscribe(session_channel(&self.key_prefix, session)).await {
            tracing::debug!(error = %e, "unsubscribe failed (the connection will be replaced)");
        }
    }

    fn read_senders(&self) -> std::sync::RwLockReadGuard<'_, HashMap<SessionId, broadcast::Sender<Relayed>>> {
        self.senders.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write_senders(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<SessionId, broadcast::Sender<Relayed>>> {
        self.senders.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn dispatch(self, mut pushes: mpsc::UnboundedReceiver<PushInfo>) {
        let prefix = format!("{}:events:", self.key_prefix);
        let revoked = revocation_channel(&self.key_prefix);
        while let Some(push) = pushes.recv().await {
            match push.kind {
                PushKind::Message if is_channel(&push.data, &revoked) => {
                    let revocation = push.data.into_iter().nth(1).and_then(value_text);
                    match revocation.as_deref().map(serde_json::from_str::<Revocation>) {
                        Some(Ok(revocation)) => {
                            let _ = self.revocations.send(Arc::new(revocation));
                        }
                        _ => tracing::warn!("unreadable revocation message ignored"),
                    }
                }
                PushKind::Message => {
                    if let Some((session, seq, json)) = parse_message(&prefix, push.data)
                        && let Some(sender) = self.read_senders().get(&session)
                    {
                        let _ = sender.send(Relayed::Event { seq, json });
                    }
                }
                PushKind::Disconnection => {
                    tracing::warn!("Redis subscriber connection lost; resubscribing");
                    tokio::spawn(self.clone().resubscribe());
                }
                _ => {}
            }
        }
    }

    /// Subscribes the revocation channel, retrying until Redis answers (a
    /// lost connection later is [`resubscribe`](Self::resubscribe)'s).
    async fn subscribe_revocations(self) {
        let mut delay = Duration::from_millis(50);
        let mut conn = self.conn.clone();
        while conn.subscribe(revocation_channel(&self.key_prefix)).await.is_err() {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// Re-establishes every subscription, then tells every socket to resync.
    async fn resubscribe(self) {
        let membership = self.membership.lock().await;
        let mut delay = Duration::from_millis(50);
        loop {
            let mut conn = self.conn.clone();
            let mut ok = conn.subscribe(revocation_channel(&self.key_prefix)).await.is_ok();
            for session in membership.keys().take_while(|_| ok) {
                if conn.subscribe(session_channel(&self.key_prefix, *session)).await.is_err() {
                    ok = false;
                    break;
                }
            }
            if ok && redis::cmd("PING").query_async::<Value>(&mut conn).await.is_ok() {
                break;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        for sender in self.read_senders().values() {
            let _ = sender.send(Relayed::Resync);
        }
        tracing::info!(sessions = membership.len(), "Redis subscriptions restored");
    }
}

fn is_channel(data: &[Value], channel: &str) -> bool {
    match data.first() {
        Some(Value::BulkString(bytes)) => bytes == channel.as_bytes(),
        Some(Value::SimpleString(s)) => s == channel,
        _ => false,
    }
}

fn parse_message(prefix: &str, data: Vec<Value>) -> Option<(SessionId, i64, Arc<str>)> {
    let mut data = data.into_iter();
    let channel = value_text(data.next()?)?;
    let payload = value_text(data.next()?)?;
    let session = channel.strip_prefix(prefix)?.parse().ok()?;
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: i64,
    }
    let seq = serde_json::from_str::<Seq>(&payload).ok()?.seq;
    Some((session, seq, payload.into()))
}

fn value_text(value: Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}
