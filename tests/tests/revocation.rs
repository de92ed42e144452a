//! Revocation that holds (issue 13): logout ends the access token at once,
//! a password change ends the user's other logins, a disabled account's
//! open WebSocket closes; the WebSocket handshake's `Origin` and CORS.

use std::time::Duration;

use serde_json::json;
use tests::{TestEnv, USER_PASSWORD};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_logout_the_access_token_and_the_refresh_token_are_refused() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let anon = api.client();
    anon.user("c@example.com", "candidate").await?;
    let pair = anon.login("c@example.com", USER_PASSWORD).await?;
    let other = anon.login("c@example.com", USER_PASSWORD).await?;
    let token = pair["access_token"].as_str().unwrap_or_default();
    let client = anon.with_token(token);
    assert_eq!(client.get("/interviews").await?.status, 403, "a candidate may not list interviews, but is known");

    // Logout without a body: the access token's own login ends.
    let out = client.send_raw("POST", "/auth/logout", Vec::new(), "application/json").await?;
    assert_eq!(out.status, 400, "an empty JSON body is malformed: {out:?}");
    let out = client.send("POST", "/auth/logout", None, &[]).await?;
    assert_eq!(out.status, 204, "{out:?}");
    let after = client.get("/sessions/00000000-0000-7000-8000-000000000000").await?;
    assert_eq!(after.status, 401, "{after:?}");
    assert!(after.body["error"]["message"].as_str().is_some_and(|m| m.contains("revoked")), "{after:?}");
    let refresh = anon.post("/auth/refresh", json!({ "refresh_token": pair["refresh_token"] })).await?;
    assert_eq!(refresh.status, 401, "{refresh:?}");

    // The other login is untouched, and logging it out with its refresh token in the body works.
    let second = anon.with_token(other["access_token"].as_str().unwrap_or_default());
    assert_eq!(second.get("/interviews").await?.status, 403);
    let out = second.post("/auth/logout", json!({ "refresh_token": other["refresh_token"] })).await?;
    assert_eq!(out.status, 204, "{out:?}");
    assert_eq!(second.get("/interviews").await?.status, 401);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_password_change_ends_the_other_logins_and_keeps_this_one() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let anon = api.client();
    anon.user("c@example.com", "candidate").await?;
    let here = anon.login("c@example.com", USER_PASSWORD).await?;
    let elsewhere = anon.login("c@example.com", USER_PASSWORD).await?;
    let client = anon.with_token(here["access_token"].as_str().unwrap_or_default());

    let wrong = client
        .post(
            "/auth/password",
            json!({ "current_password": "not-the-password", "new_password": "violet-otter-sings-77" }),
        )
        .await?;
    assert_eq!((wrong.status, wrong.body["error"]["code"].as_str()), (403, Some("does_not_match")), "{wrong:?}");
    assert!(wrong.body["error"]["message"].as_str().is_some_and(|m| m.starts_with("current_password")), "{wrong:?}");
    let weak = client
        .post("/auth/password", json!({ "current_password": USER_PASSWORD, "new_password": "password1" }))
        .await?;
    assert_eq!(weak.status, 422, "{weak:?}");
    assert!(
        weak.body["error"]["message"].as_str().is_some_and(|m| m.starts_with("new_password: too easy")),
        "{weak:?}"
    );

    let changed = client
        .post("/auth/password", json!({ "current_password": USER_PASSWORD, "new_password": "violet-otter-sings-77" }))
        .await?;
    assert_eq!(changed.status, 204, "{changed:?}");
    // The other login: its refresh fails and its access token is refused at once.
    let refresh = anon.post("/auth/refresh", json!({ "refresh_token": elsewhere["refresh_token"] })).await?;
    assert_eq!(refresh.status, 401, "{refresh:?}");
    let other = anon.with_token(elsewhere["access_token"].as_str().unwrap_or_default());
    assert_eq!(other.get("/interviews").await?.status, 401);
    // This login goes on, and refreshes.
    assert_eq!(client.get("/interviews").await?.status, 403);
    let refresh = anon.post("/auth/refresh", json!({ "refresh_token": here["refresh_token"] })).await?;
    assert_eq!(refresh.status, 200, "{refresh:?}");
    // The old password no longer logs in; the new one does.
    let old = anon.post("/auth/login", json!({ "email": "c@example.com", "password": USER_PASSWORD })).await?;
    assert_eq!(old.status, 401);
    anon.login("c@example.com", "violet-otter-sings-77").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_disabled_account_s_open_websocket_closes_and_it_cannot_log_in() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let (candidate, session, mut ws) = api.candidate_session(3).await?;
    let admin = api.admin().await?;
    let user_id = candidate.get(&format!("/sessions/{session}")).await?.body["candidate_id"].clone();
    let user_id = user_id.as_str().unwrap_or_default().to_owned();

    let disabled = admin.post(&format!("/admin/users/{user_id}/disable"), json!({})).await?;
    assert_eq!(disabled.status, 204, "{disabled:?}");
    let closed = ws.close_frame(WAIT).await?;
    assert_eq!(closed, Some((4401, "access revoked: account disabled".to_owned())));
    assert_eq!(candidate.get(&format!("/sessions/{session}")).await?.status, 401);
    let login =
        api.client().post("/auth/login", json!({ "email": "c@example.com", "password": USER_PASSWORD })).await?;
    assert_eq!((login.status, login.body["error"]["code"].as_str()), (403, Some("account_disabled")), "{login:?}");
    // Only admins act on accounts; unknown ids are 404s; enabling lets the user back in.
    assert_eq!(candidate.post(&format!("/admin/users/{user_id}/enable"), json!({})).await?.status, 401);
    let unknown = admin.post("/admin/users/00000000-0000-7000-8000-000000000000/disable", json!({})).await?;
    assert_eq!(unknown.status, 404);
    assert_eq!(admin.post(&format!("/admin/users/{user_id}/enable"), json!({})).await?.status, 204);
    api.client().login("c@example.com", USER_PASSWORD).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn logout_closes_that_login_s_websocket_only() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let (candidate, session, mut ws) = api.candidate_session(3).await?;
    let second = api.client().login("c@example.com", USER_PASSWORD).await?;
    let second = api.client().with_token(second["access_token"].as_str().unwrap_or_default());
    let mut other_ws = second.ws(&session, None).await?;
    assert_eq!(candidate.send("POST", "/auth/logout", None, &[]).await?.status, 204);
    assert_eq!(ws.close_frame(WAIT).await?, Some((4401, "access revoked: logged out".to_owned())));
    // The other login's socket stays open: it still answers a ping.
    other_ws.send(json!({ "type": "ping" })).await?;
    other_ws.until(WAIT, |e| tests::is(e, "pong")).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cors_and_the_websocket_origin_follow_the_allowed_origins() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    env.set("CORS_ALLOWED_ORIGINS", "https://app.example.com");
    let api = env.start_api().await?;
    let (candidate, session, _ws) = api.candidate_session(3).await?;

    let path = format!("/sessions/{session}");
    let allowed = candidate.send("GET", &path, None, &[("origin", "https://app.example.com")]).await?;
    assert_eq!(allowed.header("access-control-allow-origin").as_deref(), Some("https://app.example.com"));
    let foreign = candidate.send("GET", &path, None, &[("origin", "https://evil.example")]).await?;
    assert_eq!(foreign.header("access-control-allow-origin"), None);

    let ok = candidate.ws_with(&session, "", &[("origin", "https://app.example.com")]).await;
    assert!(ok.is_ok(), "allowed origin refused: {:?}", ok.err());
    let refused = candidate.ws_with(&session, "", &[("origin", "https://evil.example")]).await;
    let error = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("403"), "a foreign origin must be refused with 403: {error}");
    Ok(())
}
