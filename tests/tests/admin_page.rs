//! The admin page in Debian's headless Chromium (playwright-core drives it:
//! tests/browser/admin_page.mjs): log in, see the queue depth change after
//! turns are enqueued, see the last hour's charts drawn from this run's
//! turns (completed, failed, latency, depth), a dead job's payload with its
//! secret redacted, retry that job, open a dead turn's detail (each attempt
//! with its error), save a screenshot. Nothing the page loads comes from
//! outside the API. `scripts/test` installs Chromium and the script's
//! node_modules.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use shared::jobs::QueueName;
use tests::fake_llm::{FakeLlm, Reply};
use tests::{TestEnv, is};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "sk-live-admin-page-0123456789";

/// Turns completed so far.
async fn completed_turns(db: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM turns WHERE status = 'completed'").fetch_one(db).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_page_shows_depth_charts_and_a_dead_jobs_detail_in_chromium() -> anyhow::Result<()> {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    anyhow::ensure!(
        Path::new(&chromium).exists() && browser_dir.join("node_modules/playwright-core").exists(),
        "Chromium ({chromium}) or tests/browser/node_modules is missing: scripts/test installs both"
    );
    // The provider fails the first turn three times (the last for good),
    // then answers.
    let fake = FakeLlm::start("Tell me more about that.").await?;
    for (status, body) in [(503, "upstream overloaded"), (500, "internal error"), (400, "model not found")] {
        fake.then(Reply::Status { status, retry_after: None, body: body.into() });
    }
    let mut env = TestEnv::new().await?;
    env.use_fake_llm(&fake).set("OPENAI_COMPATIBLE_MAX_RETRIES", "0");
    let api = env.start_api().await?;
    let db = env.db().await?;

    // A dead turn (three attempts), three completed ones, and a dead batch
    // job whose payload no handler can read (and holds a secret).
    let worker = env.start_worker().await?;
    let (_, candidate, interview) = api.interview_for_candidate(5).await?;
    let failed = candidate.start_session(&interview).await?;
    candidate.ws(&failed, None).await?.until(WAIT, |e| is(e, "turn.failed")).await?;
    for _ in 0..3 {
        let session = candidate.start_session(&interview).await?;
        candidate.ws(&session, None).await?.until(WAIT, |e| is(e, "turn.completed")).await?;
    }
    env.push_raw(QueueName::Batch, &[json!({ "kind": "no_such_job", "api_key": SECRET, "note": "kept" })]).await?;
    env.until_dead(QueueName::Batch, 1).await?;
    env.until_dead(QueueName::Turns, 1).await?;
    let mut redis = env.redis().await?;
    let dead_set = format!("{}-batch:dead", env.prefix);
    worker.stop().await?;

    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let _ = std::fs::remove_file(screenshot.with_file_name("admin-page-failed.png"));
    let mut node = tokio::process::Command::new("node")
        .arg(browser_dir.join("admin_page.mjs"))
        .arg(format!("http://{}", api.addr))
        .arg(tests::ADMIN_EMAIL)
        .arg(tests::ADMIN_PASSWORD)
        .arg(&screenshot)
        .arg(SECRET)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = node.stdin.take().ok_or_else(|| anyhow::anyhow!("no stdin"))?;
    let mut lines = BufReader::new(node.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?).lines();
    let mut next_line = async || -> anyhow::Result<String> {
        tokio::time::timeout(WAIT, lines.next_line())
            .await?
            .map_err(anyhow::Error::from)?
            .ok_or_else(|| anyhow::anyhow!("the browser script ended"))
    };
    let ready = next_line().await?;
    assert_eq!(ready, "ready 0", "logged in, the queues shown");

    // Three turns, and no worker to take them: the page must show them.
    for _ in 0..3 {
        candidate.start_session(&interview).await?;
    }
    stdin.write_all(b"enqueued 3\n").await?;
    stdin.flush().await?;
    assert_eq!(next_line().await?, "depth 3");

    // A worker takes them (sampling the depth as it goes), and stops again
    // before the page retries the dead batch job.
    let worker = env.start_worker().await?;
    tests::eventually(WAIT, || async { Ok((completed_turns(&db).await? == 6).then_some(())) }).await?;
    // and samples the emptied queue (every second here).
    let admin = api.admin().await?;
    tests::eventually(WAIT, || async {
        let history = admin.get("/admin/history?minutes=1").await?.body;
        Ok((history["history"][0]["depth"]["turns"]["pending"] == 0).then_some(()))
    })
    .await?;
    worker.stop().await?;
    stdin.write_all(b"worked\n").await?;
    stdin.flush().await?;
    let charts = next_line().await?;
    let points: Vec<u64> = charts.split_whitespace().skip(1).filter_map(|n| n.parse().ok()).collect();
    assert!(charts.starts_with("charts ") && points.len() == 4 && points.iter().all(|n| *n > 0), "{charts}");
    assert_eq!(next_line().await?, "redacted");
    assert_eq!(next_line().await?, "detail 3", "each attempt of the dead turn with its error");
    assert_eq!(next_line().await?, "done");
    drop(stdin);
    let status = tokio::time::timeout(WAIT, node.wait()).await??;
    assert!(status.success(), "{status}");

    let png = std::fs::read(&screenshot)?;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000, "a screenshot of the page");
    let (dead, pending): (u64, u64) =
        redis::pipe().scard(&dead_set).llen(format!("{}-batch:active", env.prefix)).query_async(&mut redis).await?;
    assert_eq!((dead, pending), (0, 1), "the retried job is back in line");
    Ok(())
}
