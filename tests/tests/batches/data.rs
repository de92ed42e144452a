//! The batches that expire, delete and aggregate rows.

use super::*;

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
