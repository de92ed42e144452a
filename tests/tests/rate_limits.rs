//! Request limits across API replicas and login throttling (issue 13).

use std::time::{Duration, Instant};

use serde_json::json;
use tests::{Client, TestEnv, USER_PASSWORD};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_requests_over_two_replicas_pass_and_the_61st_is_refused() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    env.set("RATE_LIMIT_PER_MINUTE", "60");
    // One API in this process, one as a process of its own: two replicas on one Redis.
    let one = env.start_api().await?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let _two = env.spawn_process("api", &[("API_PORT", &port.to_string())])?;
    let two = Client::new(&format!("http://127.0.0.1:{port}/api/v1"));
    tests::eventually(Duration::from_secs(20), || {
        let two = two.clone();
        async move { Ok(two.get("/health/live").await.ok().filter(|r| r.status == 200).map(|_| ())) }
    })
    .await?;
    let recruiter = one.client().user("r@example.com", "recruiter").await?;
    let token = recruiter.token.clone().unwrap_or_default();
    let clients = [recruiter, two.with_token(&token)];
    for i in 0..60 {
        let r = clients[i % 2].get("/interviews").await?;
        assert_eq!(r.status, 200, "request {}: {r:?}", i + 1);
        let remaining = format!("\"per-minute\";r={};", 59 - i);
        assert!(r.header("ratelimit").is_some_and(|v| v.starts_with(&remaining)), "{i}: {:?}", r.header("ratelimit"));
        assert_eq!(r.header("ratelimit-policy").as_deref(), Some("\"per-minute\";q=60;w=60"));
    }
    let refused = clients[0].get("/interviews").await?;
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.body["error"]["code"], "rate_limited");
    let retry_after: u64 = refused.retry_after.as_deref().unwrap_or_default().parse()?;
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    let field = refused.header("ratelimit").unwrap_or_default();
    assert_eq!(field, format!("\"per-minute\";r=0;t={retry_after}"));
    // The other replica refuses too: one budget for the fleet.
    assert_eq!(clients[1].get("/interviews").await?.status, 429);
    // Health is never counted.
    assert_eq!(clients[1].get("/health/live").await?.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anonymous_requests_are_limited_per_client_ip_and_the_leftmost_forwarded_entry_is_ignored() -> anyhow::Result<()>
{
    let mut env = TestEnv::new().await?;
    env.set("RATE_LIMIT_PER_MINUTE", "5").set("TRUSTED_PROXIES", "127.0.0.1");
    let api = env.start_api().await?;
    let anon = api.client();
    let from = |xff: &'static str| [("x-forwarded-for", xff)];
    for _ in 0..5 {
        assert_eq!(anon.send("GET", "/interviews", None, &from("6.6.6.6, 198.51.100.7")).await?.status, 401);
    }
    // A different claim on the left is the same client.
    let spoofed = anon.send("GET", "/interviews", None, &from("7.7.7.7, 198.51.100.7")).await?;
    assert_eq!(spoofed.status, 429, "{spoofed:?}");
    // Another client behind the proxy, and the proxy itself, have budgets of their own.
    assert_eq!(anon.send("GET", "/interviews", None, &from("198.51.100.8")).await?.status, 401);
    assert_eq!(anon.get("/interviews").await?.status, 401);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sixth_failed_login_is_throttled_until_retry_after_and_unknown_emails_look_the_same() -> anyhow::Result<()>
{
    let mut env = TestEnv::new().await?;
    env.set("LOGIN_MAX_FAILURES", "5").set("LOGIN_FAILURE_WINDOW_SECONDS", "3");
    let api = env.start_api().await?;
    let anon = api.client();
    anon.user("c@example.com", "candidate").await?;
    let attempt = |email: &'static str, password: &'static str| {
        let anon = anon.clone();
        async move { anon.post("/auth/login", json!({ "email": email, "password": password })).await }
    };

    // Unknown email and wrong password: the same answer, in comparable time.
    let (mut unknown_ms, mut wrong_ms) = (Vec::new(), Vec::new());
    let mut answers = Vec::new();
    for _ in 0..2 {
        let start = Instant::now();
        let r = attempt("nobody@example.com", "violet-otter-sings-77").await?;
        unknown_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        answers.push((r.status, r.body));
        let start = Instant::now();
        let r = attempt("c@example.com", "violet-otter-sings-77").await?;
        wrong_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        answers.push((r.status, r.body));
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, 401);
    let (unknown, wrong) = (unknown_ms.iter().sum::<f64>(), wrong_ms.iter().sum::<f64>());
    // A password hash takes tens of ms; a lookup alone would be a tenth of it.
    assert!(unknown > wrong * 0.3, "unknown email {unknown_ms:?} ms vs wrong password {wrong_ms:?} ms");

    // Three more failures for the account make five in the window.
    for _ in 0..3 {
        assert_eq!(attempt("c@example.com", "wrong-wrong-wrong").await?.status, 401);
    }
    let sixth = attempt("c@example.com", "wrong-wrong-wrong").await?;
    assert_eq!(sixth.status, 429, "{sixth:?}");
    assert_eq!(sixth.body["error"]["code"], "too_many_login_failures");
    // Even the right password waits: the throttle answers before checking it.
    let right = attempt("c@example.com", USER_PASSWORD).await?;
    assert_eq!(right.status, 429);
    let wait: u64 = right.retry_after.as_deref().unwrap_or_default().parse()?;
    assert!((1..=3).contains(&wait), "Retry-After {wait}");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let after = attempt("c@example.com", USER_PASSWORD).await?;
    assert_eq!(after.status, 200, "{after:?}");
    Ok(())
}
