//! The worker's side: turns streamed to a share of the sessions each second
//! through `EventBus::publish`, the worker's own publish path, on a Redis
//! connection made as the worker makes it.

use std::sync::Arc;
use std::time::Duration;

use shared::config::Component;
use shared::events::{Event, EventKind, Usage};
use shared::ids::{SessionId, TurnId};
use shared::stream::EventBus;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::clients::Deliveries;
use crate::fleet::Fleet;

/// Deltas in a turn, between its `turn.started` and `turn.completed`.
const DELTAS: usize = 3;
/// Events in a turn.
pub const EVENTS_PER_TURN: i64 = DELTAS as i64 + 2;
/// The pause between a turn's events (a fast provider's streaming pace).
const EVENT_GAP: Duration = Duration::from_millis(50);

/// Streams, each second for `seconds`, one turn to each of `percent` % of
/// the sessions (taken in turn, so no session streams two at once), their
/// starts spread over the second. Calls `each_second` once a second.
pub async fn stream(
    fleet: &Fleet,
    deliveries: &Arc<Deliveries>,
    percent: usize,
    seconds: usize,
    mut each_second: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let config = fleet.env.config(Component::Worker)?;
    let bus = EventBus::new(shared::redis_conn::manager(&config.redis)?, config.redis.key_prefix.clone());
    let sessions: Vec<Uuid> = fleet.sessions.iter().map(|(id, _)| *id).collect();
    let per_second = (sessions.len() * percent).div_ceil(100).max(1);
    // The next seq of each session, by position: nothing is stored, so the
    // sockets' replay sends nothing and seq 1 is the first they accept.
    let mut next_seq = vec![1_i64; sessions.len()];
    let mut turns = JoinSet::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut cursor = 0;
    for _ in 0..seconds {
        ticker.tick().await;
        for i in 0..per_second {
            let at = cursor % sessions.len();
            cursor += 1;
            let delay = Duration::from_secs(1) * i as u32 / per_second as u32;
            let first_seq = next_seq[at];
            next_seq[at] += EVENTS_PER_TURN;
            turns.spawn(turn(bus.clone(), Arc::clone(deliveries), sessions[at], first_seq, delay));
        }
        each_second()?;
    }
    while turns.join_next().await.is_some() {}
    Ok(())
}

/// One turn on `session` from `first_seq`, after `delay`.
async fn turn(bus: EventBus, deliveries: Arc<Deliveries>, session: Uuid, first_seq: i64, delay: Duration) {
    tokio::time::sleep(delay).await;
    let turn_id = TurnId::new();
    let text = "Tell me how you would shard the queue.";
    let deltas = text.as_bytes().chunks(text.len().div_ceil(DELTAS)).map(|d| String::from_utf8_lossy(d).into_owned());
    let kinds = std::iter::once(EventKind::TurnStarted { turn_id, number: 1 })
        .chain(deltas.map(|text| EventKind::TurnDelta { turn_id, text }))
        .chain(std::iter::once(EventKind::TurnCompleted {
            turn_id,
            number: 1,
            message: text.to_owned(),
            usage: Usage { prompt_tokens: 120, completion_tokens: 10, estimated: false },
        }));
    for (seq, kind) in (first_seq..).zip(kinds) {
        if seq > first_seq {
            tokio::time::sleep(EVENT_GAP).await;
        }
        let event = Event { seq, session_id: SessionId(session), kind };
        deliveries.publishing(session, seq);
        bus.publish(&event).await;
    }
}
