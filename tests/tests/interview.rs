//! A whole interview through the public API and a real WebSocket client.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};
use tests::{TestEnv, is};

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_interview_end_to_end() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let anon = api.client();
    let recruiter = anon.user("recruiter@example.com", "recruiter").await?;
    let candidate = anon.user("candidate@example.com", "candidate").await?;
    let interview = recruiter.interview("en", 5).await?;
    let session = candidate.start_session(&interview).await?;

    let mut ws = candidate.ws(&session, None).await?;
    // Started once the socket is open, so that it sees every delta.
    let worker = env.start_worker().await?;
    let state = ws.next(WAIT).await?.expect("session.state");
    assert!(is(&state, "session.state"), "{state}");
    // The opening turn streams: deltas, then the whole message.
    let opening = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(opening["number"], 0);
    assert!(opening["message"].as_str().is_some_and(|m| m.starts_with("Hello") && m.contains("Rust")), "{opening}");
    let deltas: String = ws
        .seen
        .iter()
        .filter(|e| is(e, "turn.delta") && e["turn_id"] == opening["turn_id"])
        .map(|e| e["text"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(deltas, opening["message"].as_str().unwrap_or_default(), "deltas add up to the message");

    // Three answers over the WebSocket.
    for i in 1..=3 {
        ws.send(json!({ "type": "answer", "text": format!("Answer {i}: I used Rust and PostgreSQL a lot."), "client_msg_id": format!("m{i}") }))
            .await?;
        let accepted = ws.until(WAIT, |e| is(e, "answer.accepted")).await?;
        assert_eq!(accepted["number"], i);
        let done = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
        assert_eq!(done["number"], i);
        assert_eq!(done["turn_id"], accepted["turn_id"]);
    }
    // One over HTTP.
    let r = candidate
        .send(
            "POST",
            &format!("/sessions/{session}/turns"),
            Some(json!({ "text": "Answer 4 over HTTP." })),
            &[("Idempotency-Key", "http-4")],
        )
        .await?;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.body["number"], 4);
    let done = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(done["turn_id"], r.body["turn_id"]);

    // End: session.completed, then the evaluation.
    let r = candidate.post(&format!("/sessions/{session}/end"), json!({})).await?;
    assert_eq!(r.status, 202, "{r:?}");
    ws.until(WAIT, |e| is(e, "session.completed")).await?;
    let evaluated = ws.until(WAIT, |e| is(e, "evaluation.completed")).await?;
    assert!(evaluated["scores"]["communication"].is_i64(), "{evaluated}");

    // evaluation.completed is published just before its transaction commits.
    let r = tests::eventually(WAIT, || async {
        let r = recruiter.get(&format!("/sessions/{session}/evaluation")).await?;
        Ok((r.body["status"] == "completed").then_some(r))
    })
    .await?;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["session_id"], session.as_str());
    for criterion in ["communication", "technical_depth", "problem_solving", "engagement"] {
        let score = r.body["scores"][criterion].as_i64().unwrap_or(0);
        assert!((1..=5).contains(&score), "{criterion}: {score}");
    }
    assert!(r.body["recommendation"].is_string() && r.body["summary"].is_string());

    // Stream events: seq strictly increasing; each turn completed once.
    let stream: Vec<&Value> = ws.seen.iter().filter(|e| !is(e, "session.state") && !is(e, "answer.accepted")).collect();
    for pair in stream.windows(2) {
        assert!(pair[1]["seq"].as_i64() > pair[0]["seq"].as_i64(), "seq not increasing: {} then {}", pair[0], pair[1]);
    }
    let completed: Vec<i64> =
        ws.seen.iter().filter(|e| is(e, "turn.completed")).filter_map(|e| e["number"].as_i64()).collect();
    assert_eq!(completed, vec![0, 1, 2, 3, 4]);
    assert_eq!(completed.iter().collect::<HashSet<_>>().len(), completed.len());

    let r = candidate.get(&format!("/sessions/{session}")).await?;
    assert_eq!(r.body["status"], "completed");
    let turns = r.body["turns"].as_array().cloned().unwrap_or_default();
    assert_eq!(turns.len(), 5);
    assert!(turns.iter().all(|t| t["status"] == "completed"
        && t["provider"] == "scripted"
        && t["usage"]["completion_tokens"].as_i64() > Some(0)));

    ws.close().await;
    worker.stop().await?;
    api.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_japanese_interview_completes_itself_after_max_turns() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let worker = env.start_worker().await?;
    let anon = api.client();
    let recruiter = anon.user("r@example.com", "recruiter").await?;
    let candidate = anon.user("c@example.com", "candidate").await?;
    let interview = recruiter.interview("ja", 1).await?;
    let session = candidate.start_session(&interview).await?;
    let mut ws = candidate.ws(&session, None).await?;
    let opening = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert!(opening["message"].as_str().is_some_and(|m| m.starts_with("こんにちは")), "{opening}");
    ws.send(json!({ "type": "answer", "text": "Rustで分散システムを作りました。" })).await?;
    let last = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert!(last["message"].as_str().is_some_and(|m| m.contains("面接を終了")), "{last}");
    let completed = ws.until(WAIT, |e| is(e, "session.completed")).await?;
    assert_eq!(completed["reason"], "max_turns");
    ws.until(WAIT, |e| is(e, "evaluation.completed")).await?;
    worker.stop().await?;
    api.stop().await?;
    Ok(())
}
