//! The authorization matrix (issue 13): every endpoint × anonymous, the
//! session's candidate, another candidate, the interview's recruiter,
//! another recruiter and an admin → the status each must get; a refusal's
//! body is the error alone, so it leaks nothing of another user's data.

use std::time::Duration;

use serde_json::{Value, json};
use tests::{Client, TestEnv, is};

/// anonymous, candidate (owner), candidate (other), recruiter (owner),
/// recruiter (other), admin.
const WHO: [&str; 6] = ["anonymous", "candidate", "other candidate", "recruiter", "other recruiter", "admin"];

struct Cell {
    method: &'static str,
    path: String,
    body: Option<Value>,
    expected: [u16; 6],
}

fn cell(method: &'static str, path: impl Into<String>, body: Option<Value>, expected: [u16; 6]) -> Cell {
    Cell { method, path: path.into(), body, expected }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_endpoint_answers_each_kind_of_caller_as_expected() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let tests::OpenedSession { recruiter, candidate, session, mut ws, .. } = api.opened_session(5).await?;
    let anon = api.client();
    let other_candidate = anon.user("c2@example.com", "candidate").await?;
    let other_recruiter = anon.user("r2@example.com", "recruiter").await?;
    let admin = api.admin().await?;
    let clients: [&Client; 6] = [&anon, &candidate, &other_candidate, &recruiter, &other_recruiter, &admin];
    let interview = recruiter.get(&format!("/sessions/{session}")).await?.body["interview_id"].clone();
    let interview = interview.as_str().unwrap_or_default().to_owned();
    let target_user =
        admin.post("/auth/register", json!({ "email": "x@example.com", "password": tests::USER_PASSWORD })).await?;
    let target_user = target_user.body["id"].as_str().unwrap_or_default().to_owned();
    let s = format!("/sessions/{session}");
    let new_interview = json!({ "title": "T", "position": "P", "language": "en", "topics": ["Rust"],
        "max_turns": 3, "duration_minutes": 30 });
    const A: u16 = 401;

    let cells = vec![
        // Anyone.
        cell("GET", "/health", None, [200; 6]),
        cell("GET", "/health/live", None, [200; 6]),
        cell("GET", "/health/ready", None, [200; 6]),
        // Interviews: recruiters and admins; a recruiter sees their own only.
        cell("GET", "/interviews", None, [A, 403, 403, 200, 200, 200]),
        cell("GET", format!("/interviews/{interview}"), None, [A, 403, 403, 200, 404, 200]),
        cell("POST", "/interviews", Some(new_interview), [A, 403, 403, 201, 201, 201]),
        cell("POST", format!("/interviews/{interview}/sessions"), Some(json!({})), [A, 201, 201, 403, 403, 403]),
        // The session: its candidate, the interview's owner, admins; outsiders learn nothing (404).
        cell("GET", s.clone(), None, [A, 200, 404, 200, 404, 200]),
        cell("POST", "/ws/tickets", Some(json!({ "session_id": session })), [A, 200, 404, 200, 404, 200]),
        cell("GET", format!("{s}/evaluation"), None, [A, 403, 404, 404, 404, 404]),
        // Answers: the candidate only (the owner and admins are told 403, outsiders 404).
        cell("POST", format!("{s}/turns"), Some(json!({ "text": "An answer." })), [A, 202, 404, 403, 404, 403]),
        // Operators.
        cell("GET", "/admin/queues", None, [A, 403, 403, 403, 403, 200]),
        cell("GET", "/admin/queues/turns/dead", None, [A, 403, 403, 403, 403, 200]),
        cell("POST", "/admin/queues/turns/dead/retry", Some(json!({})), [A, 403, 403, 403, 403, 200]),
        cell("POST", "/admin/queues/turns/dead/no-such-job/retry", Some(json!({})), [A, 403, 403, 403, 403, 404]),
        cell("DELETE", "/admin/queues/turns/dead/no-such-job", None, [A, 403, 403, 403, 403, 404]),
        cell("GET", "/admin/providers", None, [A, 403, 403, 403, 403, 200]),
        cell("GET", "/admin/batches", None, [A, 403, 403, 403, 403, 200]),
        cell("POST", "/admin/batches/token_cleanup/run", Some(json!({})), [A, 403, 403, 403, 403, 202]),
        cell("POST", format!("/admin/users/{target_user}/enable"), Some(json!({})), [A, 403, 403, 403, 403, 204]),
        cell("POST", format!("/admin/users/{target_user}/disable"), Some(json!({})), [A, 403, 403, 403, 403, 204]),
        // Registering another role: admins only.
        cell(
            "POST",
            "/auth/register",
            Some(json!({ "email": "new-r@example.com", "password": tests::USER_PASSWORD,
            "role": "recruiter" })),
            [403, 403, 403, 403, 403, 201],
        ),
        // The caller's own account.
        cell(
            "POST",
            "/auth/mfa/setup",
            Some(json!({ "password": tests::USER_PASSWORD })),
            [A, 200, 200, 200, 200, 403],
        ),
        cell(
            "POST",
            "/auth/password",
            Some(json!({ "current_password": "x", "new_password": "y" })),
            [A, 403, 403, 403, 403, 403],
        ),
        // A wrong code for the setups above (the admin's failed: not set up).
        cell("POST", "/auth/mfa/verify", Some(json!({ "code": "000000" })), [A, 403, 403, 403, 403, 409]),
        cell(
            "POST",
            "/auth/mfa/disable",
            Some(json!({ "password": tests::USER_PASSWORD, "code": "000000" })),
            [A, 409, 409, 409, 409, 409],
        ),
        // Credentials, not roles, decide these (the sixth failure for one account is throttled).
        cell(
            "POST",
            "/auth/login",
            Some(json!({ "email": "c@example.com", "password": "wrong-wrong" })),
            [401, 401, 401, 401, 401, 429],
        ),
        cell("POST", "/auth/refresh", Some(json!({ "refresh_token": "not-a-token" })), [401; 6]),
        // Ending the session: its candidate, the owner, admins (again: still 202).
        cell("POST", format!("{s}/end"), Some(json!({})), [A, 202, 404, 202, 404, 202]),
        // The scorecard: the interview's owner and admins; the candidate is told 403.
        cell("GET", format!("{s}/evaluation"), None, [A, 403, 404, 200, 404, 200]),
    ];

    let mut wrong = Vec::new();
    for cell in &cells {
        for (i, client) in clients.iter().enumerate() {
            // The same answer twice would be a replay: each caller gets a key of their own.
            let key = format!("authz-{i}");
            let headers: &[(&str, &str)] =
                if cell.path.ends_with("/turns") { &[("idempotency-key", &key)] } else { &[] };
            let r = client.send(cell.method, &cell.path, cell.body.clone(), headers).await?;
            if r.status != cell.expected[i] {
                wrong.push(format!(
                    "{} {} as {}: {} (expected {}): {}",
                    cell.method, cell.path, WHO[i], r.status, cell.expected[i], r.body
                ));
            }
            if r.status >= 400 {
                // The error, and nothing else.
                let keys: Vec<&String> = r.body.as_object().map(|o| o.keys().collect()).unwrap_or_default();
                if keys != ["error"] || r.body["error"].as_object().is_none_or(|e| e.len() != 2) {
                    wrong.push(format!(
                        "{} {} as {}: a refusal with more than the error: {}",
                        cell.method, cell.path, WHO[i], r.body
                    ));
                }
            }
        }
        if cell.path.ends_with("/turns") {
            // Let the accepted answer's turn finish before the next cells.
            ws.until(Duration::from_secs(20), |e| is(e, "turn.completed") && e["number"] == 1).await?;
        }
    }
    // The session's WebSocket, as its HTTP read.
    for (i, client) in clients.iter().enumerate() {
        let outcome = match client.ws(&session, None).await {
            Ok(socket) => {
                socket.close().await;
                "101".to_owned()
            }
            Err(e) => e.to_string(),
        };
        let expected = ["401", "101", "404", "101", "404", "101"][i];
        if !outcome.contains(expected) {
            wrong.push(format!("GET /ws/sessions/{session} as {}: {outcome} (expected {expected})", WHO[i]));
        }
    }
    // Last: logging out ends each caller's login.
    for (i, client) in clients.iter().enumerate() {
        let status = client.send("POST", "/auth/logout", None, &[]).await?.status;
        let expected = if i == 0 { A } else { 204 };
        if status != expected {
            wrong.push(format!("POST /auth/logout as {}: {status} (expected {expected})", WHO[i]));
        }
    }
    assert!(wrong.is_empty(), "{} cells wrong:\n{}", wrong.len(), wrong.join("\n"));
    Ok(())
}
