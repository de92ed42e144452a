//! Resume after a disconnect, and delivery across API instances.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use tests::{TestEnv, is};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reconnect_with_after_seq_gets_what_it_missed_once() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let anon = api.client();
    let recruiter = anon.user("r@example.com", "recruiter").await?;
    let candidate = anon.user("c@example.com", "candidate").await?;
    let interview = recruiter.interview("en", 10).await?;
    let session = candidate.start_session(&interview).await?;

    let mut ws = candidate.ws(&session, None).await?;
    let opening = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    let last_seen = opening["seq"].as_i64().unwrap_or(0);
    ws.close().await;

    // While disconnected, an answer over HTTP completes.
    let r = candidate.post(&format!("/sessions/{session}/turns"), json!({ "text": "answered while offline" })).await?;
    assert_eq!(r.status, 202, "{r:?}");
    let turn_id = r.body["turn_id"].clone();
    let db = env.db().await?;
    tests::eventually(WAIT, || {
        let db = db.clone();
        async move {
            let status: String = sqlx::query_scalar("SELECT status FROM turns WHERE number = 1").fetch_one(&db).await?;
            Ok((status == "completed").then_some(()))
        }
    })
    .await?;

    let mut ws = candidate.ws(&session, Some(last_seen)).await?;
    let state = ws.next(WAIT).await?.unwrap_or_default();
    assert!(is(&state, "session.state"), "{state}");
    let completed = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(completed["turn_id"], turn_id);
    assert_eq!(completed["message"].as_str().map(str::is_empty), Some(false));
    // Nothing at or before `last_seen` again, nothing twice, and the missed
    // turn.queued and turn.started came first.
    ws.send(json!({ "type": "ping" })).await?;
    ws.until(WAIT, |e| is(e, "pong")).await?;
    let stream: Vec<i64> = ws
        .seen
        .iter()
        .filter(|e| !is(e, "session.state") && !is(e, "pong"))
        .filter_map(|e| e["seq"].as_i64())
        .collect();
    assert!(stream.iter().all(|s| *s > last_seen), "{stream:?} after {last_seen}");
    assert_eq!(stream.iter().collect::<HashSet<_>>().len(), stream.len(), "duplicates in {stream:?}");
    let kinds: Vec<&str> = ws.seen.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(&kinds[..4], ["session.state", "turn.queued", "turn.started", "turn.completed"], "{kinds:?}");

    // A live turn after the resume still arrives, once.
    ws.send(json!({ "type": "answer", "text": "and one more", "client_msg_id": "after-resume" })).await?;
    let next = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(next["number"], 2);
    let completions = ws.seen.iter().filter(|e| is(e, "turn.completed")).count();
    assert_eq!(completions, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_socket_on_one_api_gets_the_turns_submitted_through_another() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let (api1, api2) = (env.start_api().await?, env.start_api().await?);
    // Two worker processes on the same Redis.
    let _workers = (env.spawn_process("worker", &[])?, env.spawn_process("worker", &[])?);
    let recruiter = api1.client().user("r@example.com", "recruiter").await?;
    let candidate = api1.client().user("c@example.com", "candidate").await?;
    let interview = recruiter.interview("en", 10).await?;
    let session = candidate.start_session(&interview).await?;
    let mut on_api1 = candidate.ws(&session, None).await?;
    on_api1.until(WAIT, |e| is(e, "turn.completed")).await?;

    let via_api2 = api2.client().with_token(candidate.token.as_deref().unwrap_or_default());
    for i in 1..=3 {
        let r = via_api2.post(&format!("/sessions/{session}/turns"), json!({ "text": format!("answer {i}") })).await?;
        assert_eq!(r.status, 202, "{r:?}");
        let completed = on_api1.until(WAIT, |e| is(e, "turn.completed") && e["number"] == i).await?;
        assert_eq!(completed["turn_id"], r.body["turn_id"]);
    }
    let seqs: Vec<i64> = on_api1.seen.iter().filter_map(|e| e["seq"].as_i64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seq strictly increasing: {seqs:?}");
    // Every turn's stream arrived through API #1: deltas before its completion.
    for i in 1..=3 {
        let completed = on_api1.seen.iter().position(|e| is(e, "turn.completed") && e["number"] == i);
        let started = on_api1.seen.iter().position(|e| is(e, "turn.started") && e["number"] == i);
        assert!(started < completed && started.is_some(), "turn {i}: {:?}", on_api1.seen);
    }
    Ok(())
}
