//! The scheduler: each tick exactly once across replicas, a missed tick
//! caught up once, and batches run by hand from the CLI and the admin API.

use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::domain::Batch;
use tests::TestEnv;

const WAIT: Duration = Duration::from_secs(20);

/// Only `batch` is scheduled, on `cron`.
fn only(env: &mut TestEnv, batch: Batch, cron: &str) {
    for b in Batch::ALL {
        env.set(&format!("BATCH_{}_ENABLED", b.env_name()), if *b == batch { "true" } else { "false" });
    }
    env.set(&format!("BATCH_{}_CRON", batch.env_name()), cron);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_schedulers_run_each_tick_exactly_once() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    only(&mut env, Batch::TokenCleanup, "* * * * * *");
    let db = env.db().await?;
    let _worker = env.start_worker().await?; // migrates, and runs the jobs
    let mut schedulers: Vec<_> = (0..3).map(|_| env.spawn_process("scheduler", &[])).collect::<Result<_, _>>()?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    for s in &mut schedulers {
        assert!(s.try_wait()?.is_none(), "all three schedulers ran throughout");
        tests::terminate(s)?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Every run finished, once: one row per tick, one attempt each.
    let ticks: Vec<(DateTime<Utc>, String, i32)> = tests::eventually(WAIT, || {
        let db = db.clone();
        async move {
            let rows: Vec<(DateTime<Utc>, String, i32)> = sqlx::query_as(
                "SELECT scheduled_for, status, attempts FROM batch_runs WHERE batch = 'token_cleanup' ORDER BY scheduled_for",
            )
            .fetch_all(&db)
            .await?;
            Ok(rows.iter().all(|r| r.1 == "succeeded").then_some(rows))
        }
    })
    .await?;
    assert!(ticks.len() >= 5, "about one tick a second for 6 s: {ticks:?}");
    let seconds: Vec<i64> = ticks.iter().map(|t| t.0.timestamp()).collect();
    assert!(seconds.windows(2).all(|w| w[1] == w[0] + 1), "every second, none twice, none missed: {seconds:?}");
    assert!(ticks.iter().all(|t| t.0.timestamp_subsec_nanos() == 0 && t.2 == 1), "{ticks:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missed_tick_is_caught_up_once_and_not_again_after_a_restart() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    // Midnight in Tokyo: the last one passed while no scheduler ran.
    only(&mut env, Batch::TokenCleanup, "0 0 * * *");
    env.set("SCHEDULER_CATCH_UP_HOURS", "24");
    let db = env.db().await?;
    let _worker = env.start_worker().await?;
    let tokyo = chrono_tz::Asia::Tokyo;
    let midnight =
        Utc::now().with_timezone(&tokyo).date_naive().and_hms_opt(0, 0, 0).map(|t| t.and_local_timezone(tokyo));
    let Some(chrono::LocalResult::Single(midnight)) = midnight else { anyhow::bail!("no midnight") };
    let missed = midnight.with_timezone(&Utc);
    let runs_of_missed = || {
        let db = db.clone();
        async move {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT trigger, status FROM batch_runs WHERE batch = 'token_cleanup' AND scheduled_for = $1",
            )
            .bind(missed)
            .fetch_all(&db)
            .await?;
            anyhow::Ok(rows)
        }
    };
    let scheduler = env.spawn_process("scheduler", &[])?;
    let runs = tests::eventually(WAIT, || async {
        let runs = runs_of_missed().await?;
        Ok((runs.first().is_some_and(|r| r.1 == "succeeded")).then_some(runs))
    })
    .await?;
    assert_eq!(runs, [("catch_up".to_owned(), "succeeded".to_owned())]);
    tests::terminate(&scheduler)?;

    // Restarted, with a per-second batch beside it: once that one ticks, the
    // start-up catch-up is behind the scheduler, and it found the tick taken.
    let scheduler = env.spawn_process(
        "scheduler",
        &[("BATCH_EXPIRED_SESSIONS_CLEANUP_ENABLED", "true"), ("BATCH_EXPIRED_SESSIONS_CLEANUP_CRON", "* * * * * *")],
    )?;
    tests::eventually(WAIT, || {
        let db = db.clone();
        async move {
            let ticked: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM batch_runs WHERE batch = 'expired_sessions_cleanup' AND trigger = 'schedule'",
            )
            .fetch_one(&db)
            .await?;
            Ok((ticked > 0).then_some(()))
        }
    })
    .await?;
    tests::terminate(&scheduler)?;
    assert_eq!(runs_of_missed().await?.len(), 1, "caught up once, not again after the restart");
    let token_runs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM batch_runs WHERE batch = 'token_cleanup'").fetch_one(&db).await?;
    assert_eq!(token_runs, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batches_run_by_hand_from_the_cli_and_the_admin_api() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;

    let run = env
        .command("scheduler")?
        .args(["batch", "run", "analytics_aggregation", "--date", "2026-02-15"])
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let printed: serde_json::Value = serde_json::from_str(&stdout)?;
    assert_eq!((printed["status"].as_str(), printed["trigger"].as_str()), (Some("succeeded"), Some("manual")));
    assert_eq!(printed["params"]["date"], "2026-02-15");
    assert_eq!(printed["counts"]["date"], "2026-02-15");

    let unknown = env.command("scheduler")?.args(["batch", "run", "log_rotation"]).output().await?;
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown batch \"log_rotation\""));
    let bad_date = env
        .command("scheduler")?
        .args(["batch", "run", "analytics_aggregation", "--date", "2026-02-30"])
        .output()
        .await?;
    assert_eq!(bad_date.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_date.stderr).contains("\"2026-02-30\" is not a day"));

    let list = env.command("scheduler")?.args(["batch", "list"]).output().await?;
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success());
    for b in Batch::ALL {
        assert!(listed.contains(b.as_str()), "{b} in\n{listed}");
    }
    assert!(listed.contains("succeeded"), "the CLI's run is listed:\n{listed}");

    let admin = api.admin().await?;
    let r = admin.post("/admin/batches/token_cleanup/run", serde_json::json!({})).await?;
    assert_eq!(r.status, 202, "{r:?}");
    let run_id = r.body["run"]["id"].as_str().unwrap_or_default().to_owned();
    let overview = tests::eventually(WAIT, || async {
        let r = admin.get("/admin/batches").await?;
        let batches = r.body["batches"].as_array().cloned().unwrap_or_default();
        let cleanup = batches.iter().find(|b| b["name"] == "token_cleanup").cloned().unwrap_or_default();
        Ok((cleanup["last_runs"][0]["status"] == "succeeded").then_some(r.body))
    })
    .await?;
    let batches = overview["batches"].as_array().cloned().unwrap_or_default();
    assert_eq!(batches.len(), 6);
    let cleanup = batches.iter().find(|b| b["name"] == "token_cleanup").cloned().unwrap_or_default();
    assert_eq!((cleanup["schedule"].as_str(), cleanup["timezone"].as_str()), (Some("0 2 * * *"), Some("Asia/Tokyo")));
    assert!(cleanup["next_tick"].is_string(), "{cleanup}");
    assert_eq!(cleanup["last_runs"][0]["id"], run_id.as_str());
    let analytics = batches.iter().find(|b| b["name"] == "analytics_aggregation").cloned().unwrap_or_default();
    assert_eq!(analytics["last_runs"][0]["params"]["date"], "2026-02-15", "the CLI's run");

    let r = admin.post("/admin/batches/log_rotation/run", serde_json::json!({})).await?;
    assert_eq!(r.status, 404, "{r:?}");
    let r = admin.post("/admin/batches/analytics_aggregation/run", serde_json::json!({ "date": "15/02/2026" })).await?;
    assert_eq!(r.status, 422, "{r:?}");
    assert!(r.body["error"]["message"].as_str().unwrap_or_default().contains("not a day"), "{r:?}");
    let r = admin.post("/admin/batches/token_cleanup/run", serde_json::json!({ "date": "2026-02-15" })).await?;
    assert_eq!(r.status, 422, "token_cleanup takes no date: {r:?}");
    let candidate = api.client().user("c@example.com", "candidate").await?;
    assert_eq!(candidate.get("/admin/batches").await?.status, 403);
    assert_eq!(candidate.post("/admin/batches/token_cleanup/run", serde_json::json!({})).await?.status, 403);
    Ok(())
}
