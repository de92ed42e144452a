//! Idempotency, authorization and bad input through the public API.

use std::time::Duration;

use base64::Engine;
use serde_json::json;
use tests::{ADMIN_EMAIL, ADMIN_PASSWORD, Client, TestEnv, is};

const WAIT: Duration = Duration::from_secs(15);

async fn opened(env: &TestEnv, candidate: &Client, recruiter: &Client) -> anyhow::Result<String> {
    let _ = env;
    let interview = recruiter.interview("en", 10).await?;
    let session = candidate.start_session(&interview).await?;
    let mut ws = candidate.ws(&session, None).await?;
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    ws.close().await;
    Ok(session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_idempotency_key_creates_one_turn() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let anon = api.client();
    let recruiter = anon.user("r@example.com", "recruiter").await?;
    let candidate = anon.user("c@example.com", "candidate").await?;
    let session = opened(&env, &candidate, &recruiter).await?;

    let path = format!("/sessions/{session}/turns");
    let body = json!({ "text": "My answer" });
    let first = candidate.send("POST", &path, Some(body.clone()), &[("Idempotency-Key", "k-1")]).await?;
    let second = candidate.send("POST", &path, Some(body.clone()), &[("Idempotency-Key", "k-1")]).await?;
    assert_eq!(first.status, 202, "{first:?}");
    assert_eq!(second.status, 202, "{second:?}");
    assert_eq!(first.body["turn_id"], second.body["turn_id"]);
    let other_text =
        candidate.send("POST", &path, Some(json!({ "text": "different" })), &[("Idempotency-Key", "k-1")]).await?;
    assert_eq!(other_text.status, 422, "{other_text:?}");
    assert_eq!(other_text.body["error"]["code"], "idempotency_key_reused");

    // Over the WebSocket: the same client_msg_id answers with the same turn.
    let mut ws = candidate.ws(&session, None).await?;
    ws.until(WAIT, |e| is(e, "turn.completed") && e["number"] == 1).await?;
    ws.send(json!({ "type": "answer", "text": "second answer", "client_msg_id": "c-2" })).await?;
    let a = ws.until(WAIT, |e| is(e, "answer.accepted")).await?;
    ws.send(json!({ "type": "answer", "text": "second answer", "client_msg_id": "c-2" })).await?;
    let b = ws.until(WAIT, |e| is(e, "answer.accepted")).await?;
    assert_eq!(a["turn_id"], b["turn_id"]);
    assert_eq!(a["duplicate"], false);
    assert_eq!(b["duplicate"], true);
    ws.until(WAIT, |e| is(e, "turn.completed") && e["number"] == 2).await?;

    let db = env.db().await?;
    let turns: i64 = sqlx::query_scalar("SELECT count(*) FROM turns").fetch_one(&db).await?;
    assert_eq!(turns, 3, "opening + one per key");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_the_right_people_reach_a_session() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let anon = api.client();
    let recruiter = anon.user("r@example.com", "recruiter").await?;
    let candidate = anon.user("c@example.com", "candidate").await?;
    let intruder = anon.user("x@example.com", "candidate").await?;
    let other_recruiter = anon.user("r2@example.com", "recruiter").await?;
    let session = opened(&env, &candidate, &recruiter).await?;
    candidate.post(&format!("/sessions/{session}/end"), json!({})).await?;

    for who in [&intruder, &other_recruiter] {
        for path in [format!("/sessions/{session}"), format!("/sessions/{session}/evaluation")] {
            let r = who.get(&path).await?;
            assert!(r.status == 403 || r.status == 404, "{path}: {r:?}");
            assert!(r.body.get("turns").is_none() && r.body.get("scores").is_none(), "no data leaks: {r:?}");
        }
        let r = who.post(&format!("/sessions/{session}/turns"), json!({ "text": "hi" })).await?;
        assert!(r.status == 403 || r.status == 404, "{r:?}");
        assert!(who.ws(&session, None).await.is_err(), "WebSocket refused");
    }
    // The candidate may not read the recruiter's evaluation.
    assert_eq!(candidate.get(&format!("/sessions/{session}/evaluation")).await?.status, 403);
    // No token, and bad tokens: 401.
    assert_eq!(anon.get(&format!("/sessions/{session}")).await?.status, 401);
    assert!(anon.ws(&session, None).await.is_err());
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let token = candidate.token.clone().unwrap_or_default();
    let payload = token.split('.').nth(1).unwrap_or_default();
    let alg_none = format!("{}.{payload}.", b64.encode(r#"{"alg":"none","typ":"JWT"}"#));
    let expired_claims =
        json!({ "sub": uuid::Uuid::new_v4(), "role": "candidate", "iat": 1, "exp": 2, "typ": "access" });
    let wrong_key = {
        let mut other = TestEnv::new().await?;
        other.set("JWT_SECRET_KEY", "another-secret-another-secret-another!");
        let other_api = other.start_api().await?;
        let c = other_api.client().user("z@example.com", "candidate").await?;
        c.token.unwrap_or_default()
    };
    let unsigned_expired =
        format!("{}.{}.sig", b64.encode(r#"{"alg":"HS256","typ":"JWT"}"#), b64.encode(expired_claims.to_string()));
    for bad in [alg_none.as_str(), wrong_key.as_str(), unsigned_expired.as_str(), "garbage"] {
        let r = anon.with_token(bad).get(&format!("/sessions/{session}")).await?;
        assert_eq!(r.status, 401, "{bad}: {r:?}");
        assert_eq!(r.body["error"]["code"], "unauthorized");
    }
    // A candidate cannot create interviews or register recruiters.
    let r = candidate
        .post("/interviews", json!({ "title": "t", "position": "p", "language": "en", "topics": ["a"], "max_turns": 3, "duration_minutes": 30 }))
        .await?;
    assert_eq!(r.status, 403, "{r:?}");
    let r = anon
        .post(
            "/auth/register",
            json!({ "email": "evil@example.com", "password": tests::USER_PASSWORD, "role": "admin" }),
        )
        .await?;
    assert_eq!(r.status, 403, "{r:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_tokens_are_refused() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    env.set("JWT_ACCESS_TOKEN_EXPIRE_MINUTES", "1");
    let api = env.start_api().await?;
    let anon = api.client();
    let candidate = anon.user("c@example.com", "candidate").await?;
    // Forge nothing: take a real token and check the API refuses it once past `exp`
    // by verifying with the same key at a later time through the library.
    let config = env.config(shared::config::Component::Api)?;
    let jwt = api::auth::jwt::Jwt::new(&config.api.jwt)?;
    let token = candidate.token.clone().unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    assert!(jwt.verify(&token, now).is_ok());
    assert_eq!(jwt.verify(&token, now + 61), Err(api::auth::jwt::TokenError::Expired));
    // And a token issued in the past is refused by the running API.
    let old = jwt.issue(
        shared::ids::UserId::new(),
        shared::domain::Role::Candidate,
        shared::ids::TokenFamilyId::new(),
        now - 3600,
    );
    let r = anon.with_token(&old).get("/interviews").await?;
    assert_eq!(r.status, 401);
    assert!(r.body["error"]["message"].as_str().is_some_and(|m| m.contains("expired")), "{r:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_rotates_and_reuse_revokes_the_family() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let anon = api.client();
    anon.user("c@example.com", "candidate").await?;
    let pair = anon.login("c@example.com", tests::USER_PASSWORD).await?;
    assert_eq!(pair["token_type"], "Bearer");
    assert_eq!(pair["expires_in"], 1800);
    let first = pair["refresh_token"].as_str().unwrap_or_default().to_owned();

    let rotated = anon.post("/auth/refresh", json!({ "refresh_token": first })).await?;
    assert_eq!(rotated.status, 200, "{rotated:?}");
    let second = rotated.body["refresh_token"].as_str().unwrap_or_default().to_owned();
    assert_ne!(first, second);
    assert!(rotated.body["access_token"].is_string());

    // Reusing the rotated-away token: refused, and the whole family with it.
    let reuse = anon.post("/auth/refresh", json!({ "refresh_token": first })).await?;
    assert_eq!(reuse.status, 401, "{reuse:?}");
    let after = anon.post("/auth/refresh", json!({ "refresh_token": second })).await?;
    assert_eq!(after.status, 401, "the family is revoked: {after:?}");

    // Logout revokes a fresh family.
    let pair = anon.login("c@example.com", tests::USER_PASSWORD).await?;
    let token = pair["refresh_token"].as_str().unwrap_or_default();
    let user = anon.with_token(pair["access_token"].as_str().unwrap_or_default());
    assert_eq!(user.post("/auth/logout", json!({ "refresh_token": token })).await?.status, 204);
    assert_eq!(anon.post("/auth/refresh", json!({ "refresh_token": token })).await?.status, 401);

    // Wrong password and unknown user look the same.
    let wrong = anon.post("/auth/login", json!({ "email": "c@example.com", "password": "nope-nope" })).await?;
    let unknown = anon.post("/auth/login", json!({ "email": "who@example.com", "password": "nope-nope" })).await?;
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert_eq!(wrong.body, unknown.body);
    let _ = anon.login(ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_a_clear_error_and_loses_nothing() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let anon = api.client();
    let recruiter = anon.user("r@example.com", "recruiter").await?;
    let candidate = anon.user("c@example.com", "candidate").await?;
    let session = opened(&env, &candidate, &recruiter).await?;
    let turns = format!("/sessions/{session}/turns");

    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{not json".to_vec(), 400, "malformed JSON"),
        (br#"{"text": 42}"#.to_vec(), 422, "text"),
        (br#"{}"#.to_vec(), 422, "text"),
        (br#"{"text": "   "}"#.to_vec(), 422, "text"),
        (br#"{"text": "ok", "extra": 1}"#.to_vec(), 422, "extra"),
        // PostgreSQL cannot store NUL: refused naming the field, not a 500.
        (br#"{"text": "a\u0000b"}"#.to_vec(), 422, "text: must not contain NUL"),
        (format!(r#"{{"text": "{}"}}"#, "x".repeat(100_000)).into_bytes(), 413, "too large"),
    ];
    for (body, status, mention) in cases {
        let r = candidate.send_raw("POST", &turns, body, "application/json").await?;
        assert_eq!(r.status, status, "{mention}: {r:?}");
        let message = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(r.body["error"]["code"].is_string(), "{r:?}");
        assert!(message.contains(mention), "{message:?} should mention {mention:?}");
    }
    let r = candidate.send_raw("POST", &turns, br#"{"text":"hi"}"#.to_vec(), "text/plain").await?;
    assert_eq!(r.status, 415, "{r:?}");
    let r = candidate.get("/sessions/not-a-uuid").await?;
    assert_eq!(r.status, 400, "{r:?}");
    let r = recruiter
        .post("/interviews", json!({ "title": "t", "position": "p", "language": "fr", "topics": ["a"], "max_turns": 3, "duration_minutes": 30 }))
        .await?;
    assert_eq!(r.status, 422);
    assert!(r.body["error"]["message"].as_str().is_some_and(|m| m.starts_with("language")), "{r:?}");
    let r = recruiter
        .post("/interviews", json!({ "title": "t", "position": "p", "language": "en", "topics": [], "max_turns": 3, "duration_minutes": 30 }))
        .await?;
    assert!(r.body["error"]["message"].as_str().is_some_and(|m| m.starts_with("topics")), "{r:?}");
    // A number without a fraction is an integer (JSON Schema's reading).
    let r = recruiter
        .post("/interviews", json!({ "title": "t", "position": "p", "language": "en", "topics": ["a"], "max_turns": 3.0, "duration_minutes": 30.0 }))
        .await?;
    assert_eq!(r.status, 201, "{r:?}");
    let r = anon.post("/auth/login", json!({ "email": "a\u{0}b@example.com", "password": "x" })).await?;
    assert_eq!(r.status, 422, "{r:?}");
    let r = anon.post("/auth/register", json!({ "email": "not-an-email", "password": tests::USER_PASSWORD })).await?;
    assert_eq!(r.status, 422);
    assert!(r.body["error"]["message"].as_str().is_some_and(|m| m.starts_with("email")), "{r:?}");
    let r = candidate.send("POST", &turns, Some(json!({ "text": "hi" })), &[("Idempotency-Key", "has space")]).await?;
    assert_eq!(r.status, 400, "{r:?}");

    // Malformed WebSocket frames: an error event each, and the socket stays open.
    let mut ws = candidate.ws(&session, None).await?;
    for frame in [
        "{oops",
        r#"{"type":"dance"}"#,
        r#"{"type":"answer"}"#,
        r#"{"type":"answer","text":""}"#,
        r#"{"type":"resume","after_seq":-1}"#,
    ] {
        ws.send_text(frame).await?;
        let e = ws.until(WAIT, |e| is(e, "error")).await?;
        assert!(e["code"].is_string() && e["message"].is_string(), "{frame}: {e}");
    }
    ws.send(json!({ "type": "ping" })).await?;
    ws.until(WAIT, |e| is(e, "pong")).await?;
    // The answer accepted before all this is intact, and a good answer still works.
    ws.send(json!({ "type": "answer", "text": "a real answer" })).await?;
    let done = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(done["number"], 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_websocket_frames_close_with_1009() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    env.set("WS_MESSAGE_MAX_SIZE", "1024");
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let anon = api.client();
    let recruiter = anon.user("r@example.com", "recruiter").await?;
    let candidate = anon.user("c@example.com", "candidate").await?;
    let session = opened(&env, &candidate, &recruiter).await?;
    let mut ws = candidate.ws(&session, None).await?;
    ws.send(json!({ "type": "answer", "text": "x".repeat(2000) })).await?;
    assert_eq!(ws.close_code(WAIT).await?, Some(1009));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frame_larger_than_a_socket_s_read_buffer_is_read_whole() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let mut ws = api.opened_session(10).await?.ws;
    // 7,000 characters of three bytes: a 21 KB frame against a 4 KiB read buffer.
    let text = "あ".repeat(7_000);
    ws.send(json!({ "type": "answer", "text": text, "client_msg_id": "big-1" })).await?;
    let accepted = ws.until(WAIT, |e| is(e, "answer.accepted")).await?;
    assert_eq!(accepted["client_msg_id"], "big-1", "{accepted}");
    let db = env.db().await?;
    let stored: String =
        sqlx::query_scalar("SELECT candidate_message FROM turns WHERE number = 1").fetch_one(&db).await?;
    assert_eq!(stored, text);
    Ok(())
}
