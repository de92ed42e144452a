//! The events that the single-statement writes of migration 0007 build in
//! SQL (`turn.queued`, `turn.reset`, `turn.started`, `session.completed`)
//! are the events of SPEC §5: each stored one reads back into
//! `shared::events::Event`, the type the API and the worker serialize, and
//! arrives on the socket with the same fields.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use shared::events::{Event, EventKind};
use tests::{TestEnv, is};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_the_statements_store_is_an_event_of_the_spec() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let tests::OpenedSession { session, mut ws, .. } = api.opened_session(1).await?;
    ws.send(json!({ "type": "answer", "text": "I would shard it.", "client_msg_id": "a1" })).await?;
    let completed = ws.until(WAIT, |e| is(e, "session.completed")).await?;
    assert_eq!((completed["status"].as_str(), completed["reason"].as_str()), (Some("completed"), Some("max_turns")));
    // The stream's last event: nothing is stored after it.
    ws.until(WAIT, |e| is(e, "evaluation.completed")).await?;

    let db = env.db().await?;
    let stored: Vec<Value> =
        sqlx::query_scalar("SELECT event FROM session_events WHERE session_id::text = $1 ORDER BY seq")
            .bind(&session)
            .fetch_all(&db)
            .await?;
    let events = stored.iter().map(|e| serde_json::from_value::<Event>(e.clone())).collect::<Result<Vec<_>, _>>()?;
    let kinds: Vec<&str> = stored.iter().map(|e| e["type"].as_str().unwrap_or("?")).collect();
    assert_eq!(
        kinds,
        [
            "turn.queued",
            "turn.started",
            "turn.completed",
            "turn.queued",
            "turn.started",
            "turn.completed",
            "session.completed",
            "evaluation.completed"
        ]
    );
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq), "seq rises: {stored:?}");
    assert!(events.iter().all(|e| e.session_id.to_string() == session));
    assert!(matches!(&events[3].kind, EventKind::TurnQueued { number: 1, .. }), "{:?}", events[3]);
    assert!(matches!(&events[4].kind, EventKind::TurnStarted { number: 1, .. }), "{:?}", events[4]);
    // The socket got each stored event as stored.
    for event in &stored {
        let seen = ws.seen.iter().find(|e| e["seq"] == event["seq"]).context(format!("on the socket: {event}"))?;
        assert_eq!(seen, event);
    }

    // A restarted attempt's turn.reset comes before its turn.started, whose
    // seq leaves the delta block free.
    let turn = match &events[4].kind {
        EventKind::TurnStarted { turn_id, .. } => *turn_id,
        other => anyhow::bail!("not turn.started: {other:?}"),
    };
    let restarted: Vec<String> = sqlx::query_scalar("SELECT start_turn_events($1::uuid, $2, 1, true, 10)")
        .bind(&session)
        .bind(turn)
        .fetch_one(&db)
        .await?;
    let restarted = restarted.iter().map(|e| serde_json::from_str::<Event>(e)).collect::<Result<Vec<_>, _>>()?;
    assert!(matches!(&restarted[0].kind, EventKind::TurnReset { turn_id, .. } if *turn_id == turn));
    assert!(matches!(&restarted[1].kind, EventKind::TurnStarted { turn_id, number: 1 } if *turn_id == turn));
    assert_eq!(restarted[1].seq, restarted[0].seq + 1);
    let last_seq: i64 =
        sqlx::query_scalar("SELECT last_seq FROM sessions WHERE id::text = $1").bind(&session).fetch_one(&db).await?;
    assert_eq!(last_seq, restarted[1].seq + 10, "the delta block is reserved");
    Ok(())
}
