//! Each batch's effect, checked against the rows it touched, and the alerts
//! it sends to a local Slack / Teams receiver.

use std::time::Duration;

use serde_json::json;
use shared::domain::Batch;
use tests::TestEnv;
use tests::receiver::Receiver;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(20);

/// An environment whose alerts go to `receiver` (`/slack`, `/teams`).
async fn alerting_env(receiver: &Receiver) -> anyhow::Result<TestEnv> {
    let mut env = TestEnv::new().await?;
    env.set("SLACK_WEBHOOK_URL", &format!("{}/slack", receiver.origin))
        .set("TEAMS_WEBHOOK_URL", &format!("{}/teams", receiver.origin));
    Ok(env)
}

/// A recruiter's interview and a candidate, straight into the database.
async fn people(db: &shared::db::Db) -> anyhow::Result<(Uuid, Uuid)> {
    let (recruiter, candidate, interview) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    for (id, email, role) in [(recruiter, "r@example.com", "recruiter"), (candidate, "c@example.com", "candidate")] {
        sqlx::query("INSERT INTO users (id, email, password_hash, role) VALUES ($1, $2, 'x', $3)")
            .bind(id)
            .bind(email)
            .bind(role)
            .execute(db)
            .await?;
    }
    sqlx::query(
        "INSERT INTO interviews (id, owner_id, title, position, language, topics, max_turns, duration_minutes)
         VALUES ($1, $2, 'Backend', 'Engineer', 'en', '[]', 5, 30)",
    )
    .bind(interview)
    .bind(recruiter)
    .execute(db)
    .await?;
    Ok((interview, candidate))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_sessions_expire_and_their_evaluations_are_enqueued() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (_, candidate, interview) = api.interview_for_candidate(5).await?;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(candidate.start_session(&interview).await?);
    }
    let db = env.db().await?;
    // Opening turns answered: nothing in flight.
    tests::eventually(WAIT, || {
        let db = db.clone();
        async move {
            let open: i64 =
                sqlx::query_scalar("SELECT count(*) FROM turns WHERE status <> 'completed'").fetch_one(&db).await?;
            Ok((open == 0).then_some(()))
        }
    })
    .await?;
    let (idle, overdue, fresh) = (&sessions[0], &sessions[1], &sessions[2]);
    sqlx::query("UPDATE sessions SET last_activity_at = now() - interval '61 minutes' WHERE id = $1::uuid")
        .bind(idle)
        .execute(&db)
        .await?;
    sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 minute' WHERE id = $1::uuid")
        .bind(overdue)
        .execute(&db)
        .await?;

    let run = env.run_batch(Batch::ExpiredSessionsCleanup, json!({})).await?;
    assert_eq!(run.status.as_str(), "succeeded", "{run:?}");
    assert_eq!(run.counts, Some(json!({ "expired": 2, "evaluations_enqueued": 2 })));
    for (session, status) in [(idle, "expired"), (overdue, "expired"), (fresh, "active")] {
        let s: String =
            sqlx::query_scalar("SELECT status FROM sessions WHERE id = $1::uuid").bind(session).fetch_one(&db).await?;
        assert_eq!(s, status, "session {session}");
    }
    // The evaluations were enqueued: the worker writes them.
    let evaluated: Vec<String> = tests::eventually(WAIT, || {
        let db = db.clone();
        async move {
            let done: Vec<String> = sqlx::query_scalar(
                "SELECT session_id::text FROM evaluations WHERE status = 'completed' ORDER BY session_id",
            )
            .fetch_all(&db)
            .await?;
            Ok((done.len() == 2).then_some(done))
        }
    })
    .await?;
    let mut expected = vec![idle.clone(), overdue.clone()];
    expected.sort();
    assert_eq!(evaluated, expected);
    // Again: nothing left to expire.
    let again = env.run_batch(Batch::ExpiredSessionsCleanup, json!({})).await?;
    assert_eq!(again.counts, Some(json!({ "expired": 0, "evaluations_enqueued": 0 })));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expired_and_long_revoked_tokens_are_deleted_and_others_kept() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    env.set("TOKEN_CLEANUP_REVOKED_DAYS", "30");
    let ctx = env.batch_context().await?;
    let db = &ctx.core.db;
    let (_, user) = people(db).await?;
    let mut ids = Vec::new();
    for (expires, revoked) in [
        ("now() - interval '1 hour'", "NULL"),                       // expired
        ("now() + interval '5 days'", "now() - interval '40 days'"), // revoked long ago
        ("now() + interval '5 days'", "now() - interval '1 day'"),   // revoked lately: kept
        ("now() + interval '5 days'", "NULL"),                       // valid: kept
    ] {
        let id = Uuid::now_v7();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at, revoked_at)
             VALUES ($1, $2, $3, $4, {expires}, {revoked})"
        )))
        .bind(id)
        .bind(user)
        .bind(Uuid::now_v7())
        .bind(id.as_bytes().to_vec())
        .execute(db)
        .await?;
        ids.push(id);
    }
    for expires in ["now() - interval '1 minute'", "now() + interval '5 minutes'"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO mfa_challenges (id, user_id, expires_at) VALUES ($1, $2, {expires})"
        )))
        .bind(Uuid::now_v7())
        .bind(user)
        .execute(db)
        .await?;
    }
    let run = env.run_batch(Batch::TokenCleanup, json!({})).await?;
    let counts = json!({ "deleted_expired": 1, "deleted_revoked": 1, "deleted_mfa_challenges": 1 });
    assert_eq!(run.counts, Some(counts), "{run:?}");
    let left: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM refresh_tokens ORDER BY id").fetch_all(db).await?;
    assert_eq!(left, ids[2..]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_day_is_aggregated_from_its_sessions_and_turns_in_tokyo_time() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let ctx = env.batch_context().await?;
    let db = &ctx.core.db;
    let (interview, candidate) = people(db).await?;
    // 2026-02-15 in Tokyo is 2026-02-14T15:00Z .. 2026-02-15T15:00Z.
    let mut sessions = Vec::new();
    for (started, status) in [
        ("2026-02-14T15:30:00Z", "completed"), // 00:30 JST
        ("2026-02-15T01:00:00Z", "completed"), // 10:00 JST
        ("2026-02-15T14:30:00Z", "active"),    // 23:30 JST
        ("2026-02-14T14:30:00Z", "completed"), // 23:30 JST the day before: not counted
    ] {
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO sessions (id, interview_id, candidate_id, status, started_at, last_activity_at, expires_at)
             VALUES ($1, $2, $3, $4, $5::timestamptz, $5::timestamptz, $5::timestamptz + interval '30 minutes')",
        )
        .bind(id)
        .bind(interview)
        .bind(candidate)
        .bind(status)
        .bind(started)
        .execute(db)
        .await?;
        sessions.push(id);
    }
    for (n, (completed_at, latency, provider, prompt, completion, cost)) in [
        ("2026-02-14T15:40:00Z", 100, "azure_openai", 10, 20, 0.01),
        ("2026-02-14T15:41:00Z", 200, "azure_openai", 10, 20, 0.01),
        ("2026-02-15T01:10:00Z", 300, "azure_openai", 10, 20, 0.01),
        ("2026-02-15T01:11:00Z", 400, "aws_bedrock", 5, 5, 0.002),
        ("2026-02-14T14:40:00Z", 9_000, "azure_openai", 999, 999, 9.0), // the day before
    ]
    .into_iter()
    .enumerate()
    {
        sqlx::query(
            "INSERT INTO turns (id, session_id, number, status, provider, latency_ms, prompt_tokens, completion_tokens,
                                cost_usd, completed_at)
             VALUES ($1, $2, $3, 'completed', $4, $5, $6, $7, $8, $9::timestamptz)",
        )
        .bind(Uuid::now_v7())
        .bind(sessions[if n == 4 { 3 } else { n / 2 }])
        .bind(n as i32)
        .bind(provider)
        .bind(latency)
        .bind(prompt)
        .bind(completion)
        .bind(cost)
        .bind(completed_at)
        .execute(db)
        .await?;
    }
    sqlx::query(
        "INSERT INTO evaluations (session_id, status, provider, prompt_tokens, completion_tokens, cost_usd, completed_at)
         VALUES ($1, 'completed', 'azure_openai', 100, 50, 0.1, '2026-02-15T02:00:00Z')",
    )
    .bind(sessions[1])
    .execute(db)
    .await?;

    for _ in 0..2 {
        // Twice: the day is replaced, not added to.
        let run = env.run_batch(Batch::AnalyticsAggregation, json!({ "date": "2026-02-15" })).await?;
        assert_eq!(run.status.as_str(), "succeeded", "{run:?}");
    }
    let day: (i32, i32, Option<f64>, i32, Option<i32>, Option<i32>) = sqlx::query_as(
        "SELECT sessions_started, sessions_completed, completion_rate, turns, ai_latency_p50_ms, ai_latency_p95_ms
         FROM daily_analytics WHERE day = '2026-02-15'",
    )
    .fetch_one(db)
    .await?;
    let (started, completed, rate, turns, p50, p95) = day;
    assert_eq!((started, completed, turns), (3, 2, 4));
    assert!((rate.unwrap_or(0.0) - 2.0 / 3.0).abs() < 1e-9, "{rate:?}");
    // Continuous percentiles of 100, 200, 300, 400 ms.
    assert_eq!((p50, p95), (Some(250), Some(385)));
    let providers: Vec<(String, i32, i64, i64, f64)> = sqlx::query_as(
        "SELECT provider, requests, prompt_tokens, completion_tokens, cost_usd FROM daily_provider_usage
         WHERE day = '2026-02-15' ORDER BY provider",
    )
    .fetch_all(db)
    .await?;
    assert_eq!(providers.len(), 2, "{providers:?}");
    assert_eq!((providers[0].0.as_str(), providers[0].1, providers[0].2, providers[0].3), ("aws_bedrock", 1, 5, 5));
    assert_eq!(
        (providers[1].0.as_str(), providers[1].1, providers[1].2, providers[1].3),
        ("azure_openai", 4, 130, 110)
    );
    assert!((providers[1].4 - 0.13).abs() < 1e-9 && (providers[0].4 - 0.002).abs() < 1e-9, "{providers:?}");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM daily_analytics").fetch_one(db).await?;
    assert_eq!(rows, 1);
    // The metric reads the last aggregated day.
    let api = env.start_api().await?;
    let metrics = reqwest::get(format!("http://{}/metrics", api.addr)).await?.text().await?;
    let rate: Option<f64> =
        metrics.lines().find_map(|l| l.strip_prefix("interview_completion_rate ")).and_then(|v| v.parse().ok());
    assert!(rate.is_some_and(|r| (r - 2.0 / 3.0).abs() < 1e-9), "{metrics}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_monthly_report_is_the_sum_of_its_days_and_is_sent() -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let env = alerting_env(&receiver).await?;
    let ctx = env.batch_context().await?;
    let db = &ctx.core.db;
    for (day, started, completed, turns, p50, p95, cost) in [
        ("2026-10-01", 10, 8, 50, 200, 900, 1.25),
        ("2026-10-15", 20, 15, 90, 300, 1_200, 2.5),
        ("2026-10-31", 5, 5, 20, 250, 800, 0.75),
        ("2026-11-01", 99, 99, 999, 999, 9_999, 99.0), // next month: not counted
    ] {
        sqlx::query(
            "INSERT INTO daily_analytics (day, sessions_started, sessions_completed, completion_rate, turns,
                                          ai_latency_p50_ms, ai_latency_p95_ms)
             VALUES ($1::date, $2, $3, $3::float8 / $2, $4, $5, $6)",
        )
        .bind(day)
        .bind(started)
        .bind(completed)
        .bind(turns)
        .bind(p50)
        .bind(p95)
        .execute(db)
        .await?;
        sqlx::query(
            "INSERT INTO daily_provider_usage (day, provider, requests, prompt_tokens, completion_tokens, cost_usd)
             VALUES ($1::date, 'azure_openai', $2, 1000, 500, $3)",
        )
        .bind(day)
        .bind(turns)
        .bind(cost)
        .execute(db)
        .await?;
    }
    let run = env.run_batch(Batch::MonthlyReport, json!({ "date": "2026-10-20" })).await?;
    assert_eq!(run.status.as_str(), "succeeded", "{run:?}");
    let report: serde_json::Value =
        sqlx::query_scalar("SELECT report FROM monthly_reports WHERE month = '2026-10-01'").fetch_one(db).await?;
    assert_eq!(report["days_aggregated"], 3);
    assert_eq!((report["sessions_started"].as_i64(), report["sessions_completed"].as_i64()), (Some(35), Some(28)));
    assert_eq!(report["turns"], 160);
    assert_eq!(report["completion_rate"], 0.8);
    assert_eq!(report["ai_latency_p95_ms_worst_day"], 1_200);
    assert_eq!(report["providers"][0]["requests"], 160);
    assert_eq!(report["providers"][0]["prompt_tokens"], 3_000);
    assert!((report["cost_usd"].as_f64().unwrap_or(0.0) - 4.5).abs() < 1e-9, "{report}");
    let slack = receiver.posted("/slack");
    assert_eq!(slack.len(), 1, "the summary went out");
    assert_eq!(slack[0]["text"], "📊 REPORT: Monthly report 2026-10");
    let summary = slack[0]["blocks"][2]["text"]["text"].as_str().unwrap_or_default();
    assert!(summary.contains("35 sessions started, 28 completed (80.0 %); 160 turns; AI cost $4.50"), "{summary}");
    Ok(())
}

/// `pg_dump -Fc` of this test's database into `file`.
async fn dump(env: &TestEnv, file: &std::path::Path) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("pg_dump")
        .arg("-Fc")
        .arg("-f")
        .arg(file)
        .arg(&env.direct_database_url)
        .output()
        .await?;
    anyhow::ensure!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_dump_passes_and_a_truncated_one_alerts() -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let mut env = alerting_env(&receiver).await?;
    let dir = std::env::temp_dir().join(format!("{}-backups", env.prefix));
    tokio::fs::create_dir_all(&dir).await?;
    env.set("BACKUP_DIR", &dir.display().to_string()).set("BACKUP_PATTERN", "ai_interviewer_*.dump");
    env.batch_context().await?; // migrated: a dump with tables in it
    let good = dir.join("ai_interviewer_2026-11-28.dump");
    dump(&env, &good).await?;
    tokio::fs::write(dir.join("notes.txt"), "not a backup").await?;

    let run = env.run_batch(Batch::BackupVerification, json!({})).await?;
    let counts = run.counts.clone().unwrap_or_default();
    assert_eq!(counts["healthy"], true, "{run:?}");
    assert_eq!(counts["file"], good.display().to_string());
    assert!(counts["toc_entries"].as_u64().unwrap_or(0) > 5, "{counts}");
    assert!(receiver.posted("/slack").is_empty());

    // A newer dump cut in half: the newest is what is checked.
    let bytes = tokio::fs::read(&good).await?;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let truncated = dir.join("ai_interviewer_2026-11-29.dump");
    tokio::fs::write(&truncated, &bytes[..bytes.len() / 2]).await?;
    let run = env.run_batch(Batch::BackupVerification, json!({})).await?;
    let counts = run.counts.clone().unwrap_or_default();
    let _ = tokio::fs::remove_dir_all(&dir).await;
    assert_eq!(run.status.as_str(), "succeeded", "the check ran; it found a problem");
    assert_eq!(counts["healthy"], false, "{run:?}");
    let problem = counts["problem"].as_str().unwrap_or_default();
    assert!(problem.contains("pg_restore cannot read") && problem.contains("2026-11-29.dump"), "{problem}");
    assert_eq!(counts["alert"], "sent");
    let slack = receiver.posted("/slack");
    assert_eq!(slack.len(), 1);
    assert_eq!(slack[0]["blocks"][0]["text"]["text"], "🔴 HIGH ALERT (P2)");
    assert!(slack[0]["blocks"][2]["text"]["text"].as_str().unwrap_or_default().contains("pg_restore cannot read"));
    assert_eq!(receiver.posted("/teams").len(), 1);
    Ok(())
}

/// A TLS server (openssl s_server) whose certificate expires in `days`.
struct TlsServer {
    port: u16,
    _process: tokio::process::Child,
    dir: std::path::PathBuf,
}

impl TlsServer {
    async fn start(days: u32, tag: &str) -> anyhow::Result<TlsServer> {
        let dir = std::env::temp_dir().join(format!("{tag}-tls"));
        tokio::fs::create_dir_all(&dir).await?;
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let made = tokio::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-days"])
            .arg(days.to_string())
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .await?;
        anyhow::ensure!(made.status.success(), "openssl req: {}", String::from_utf8_lossy(&made.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let process = tokio::process::Command::new("openssl")
            .args(["s_server", "-www", "-accept"])
            .arg(port.to_string())
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        tests::eventually(Duration::from_secs(10), || async move {
            Ok(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ()))
        })
        .await?;
        Ok(TlsServer { port, _process: process, dir })
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_certificate_expiring_in_5_days_gives_the_7_day_alert_once() -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let mut env = alerting_env(&receiver).await?;
    let server = TlsServer::start(5, &env.prefix).await?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    env.set("CERT_CHECK_HOSTS", &format!("127.0.0.1:{}, 127.0.0.1:{closed}", server.port));

    let run = env.run_batch(Batch::CertificateCheck, json!({})).await?;
    let counts = run.counts.clone().unwrap_or_default();
    assert_eq!(counts["hosts"], 2, "{run:?}");
    let checked = &counts["results"][0];
    assert_eq!(checked["days_left"], 4, "5 days less the seconds since: {checked}");
    assert_eq!((checked["threshold_days"].as_i64(), checked["alert"].as_str()), (Some(7), Some("sent")));
    let unreachable = &counts["results"][1];
    assert!(unreachable["error"].as_str().unwrap_or_default().contains(&closed.to_string()), "{unreachable}");

    // The seed's formats.
    let slack = receiver.posted("/slack");
    let cert_alert =
        slack.iter().find(|p| p["text"].as_str().unwrap_or_default().contains("expires in 4 days")).cloned();
    let cert_alert = cert_alert.unwrap_or_default();
    assert_eq!(cert_alert["text"], format!("🔴 HIGH: TLS certificate of 127.0.0.1:{}: expires in 4 days", server.port));
    assert_eq!(
        cert_alert["blocks"][0],
        json!({ "type": "header", "text": { "type": "plain_text", "text": "🔴 HIGH ALERT (P2)" } })
    );
    let fields: Vec<&str> =
        cert_alert["blocks"][1]["fields"].as_array().into_iter().flatten().filter_map(|f| f["text"].as_str()).collect();
    assert_eq!(
        fields[..3],
        ["*Service:*\nScheduler: certificate_check", "*Status:*\nExpires in 4 days", "*Environment:*\nTest"]
    );
    assert!(fields[3].starts_with("*Time:*\n") && fields[3].ends_with(" JST"), "{fields:?}");
    assert!(cert_alert["blocks"][2]["text"]["text"].as_str().unwrap_or_default().starts_with("*Error:* "));
    assert!(cert_alert["blocks"][3]["text"]["text"].as_str().unwrap_or_default().starts_with("*Action Required:* "));
    let teams = receiver.posted("/teams");
    let card = teams.iter().find(|p| p["summary"].as_str().unwrap_or_default().contains("expires in 4 days")).cloned();
    let card = card.unwrap_or_default();
    assert_eq!(
        (card["@type"].as_str(), card["@context"].as_str()),
        (Some("MessageCard"), Some("https://schema.org/extensions"))
    );
    assert_eq!(card["themeColor"], "E81123");
    let facts: Vec<&str> =
        card["sections"][0]["facts"].as_array().into_iter().flatten().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(facts, ["Status:", "Environment:", "Timestamp:", "Action Required:"]);
    assert_eq!((slack.len(), teams.len()), (2, 2), "the certificate and the unreachable host");

    // Again within ALERT_DEDUP_MINUTES: nothing new is posted.
    let again = env.run_batch(Batch::CertificateCheck, json!({})).await?;
    assert_eq!(again.counts.unwrap_or_default()["results"][0]["alert"], "suppressed");
    assert_eq!((receiver.posted("/slack").len(), receiver.posted("/teams").len()), (2, 2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_batch_is_retried_by_the_queue_policy_then_fails_and_alerts() -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let mut env = alerting_env(&receiver).await?;
    env.set("JOB_MAX_ATTEMPTS", "3");
    let ctx = env.batch_context().await?;
    // The aggregates' table is gone: every attempt fails.
    sqlx::query("DROP TABLE daily_provider_usage").execute(&ctx.core.db).await?;
    let _worker = env.start_worker().await?;
    let params = shared::schedule::BatchParams::for_batch(Batch::AnalyticsAggregation, Some("2026-02-15"))
        .map_err(anyhow::Error::msg)?;
    let run_id = ctx.core.enqueue_batch_run(Batch::AnalyticsAggregation, &params, "req_test").await?;
    let run = tests::eventually(WAIT, || {
        let db = ctx.core.db.clone();
        async move {
            let run = shared::db::batch_runs::find(&db, run_id).await?;
            Ok(run.filter(|r| r.status.as_str() == "failed"))
        }
    })
    .await?;
    assert_eq!(run.attempts, 3, "JOB_MAX_ATTEMPTS");
    assert!(run.error.as_deref().unwrap_or_default().contains("daily_provider_usage"), "{run:?}");
    let slack =
        tests::eventually(WAIT, || async { Ok(Some(receiver.posted("/slack")).filter(|p| !p.is_empty())) }).await?;
    assert_eq!(slack[0]["text"], "🟠 MEDIUM: Batch analytics_aggregation failed");
    assert_eq!(slack[0]["blocks"][1]["fields"][1]["text"], "*Status:*\nFailed after 3 attempts");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_or_missing_backup_alerts() -> anyhow::Result<()> {
    let receiver = Receiver::start().await?;
    let mut env = alerting_env(&receiver).await?;
    let dir = std::env::temp_dir().join(format!("{}-stale", env.prefix));
    tokio::fs::create_dir_all(&dir).await?;
    env.set("BACKUP_DIR", &dir.display().to_string()).set("BACKUP_MAX_AGE_HOURS", "2").set("ALERT_DEDUP_MINUTES", "0");
    env.batch_context().await?;
    let run = env.run_batch(Batch::BackupVerification, json!({})).await?;
    assert!(run.counts.unwrap_or_default()["problem"].as_str().unwrap_or_default().starts_with("no file matching"));

    let old = dir.join("ai_interviewer_2026-11-28.dump");
    dump(&env, &old).await?;
    let touched = tokio::process::Command::new("touch").args(["-d", "3 hours ago"]).arg(&old).status().await?;
    anyhow::ensure!(touched.success());
    let run = env.run_batch(Batch::BackupVerification, json!({})).await?;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    let problem = run.counts.unwrap_or_default()["problem"].as_str().unwrap_or_default().to_owned();
    assert!(problem.contains("is 3.0 hours old (limit 2 hours)"), "{problem}");
    assert_eq!(receiver.posted("/slack").len(), 2, "both problems alerted (no deduplication window)");
    Ok(())
}
