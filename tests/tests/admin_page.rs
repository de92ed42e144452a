//! The admin page in Debian's headless Chromium (playwright-core drives it:
//! tests/browser/admin_page.mjs): log in, see the queue depth change after
//! turns are enqueued, retry a dead job, save a screenshot.
//! `scripts/test` installs Chromium and the script's node_modules.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use shared::jobs::QueueName;
use tests::TestEnv;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_page_shows_depth_and_retries_a_dead_job_in_chromium() -> anyhow::Result<()> {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    anyhow::ensure!(
        Path::new(&chromium).exists() && browser_dir.join("node_modules/playwright-core").exists(),
        "Chromium ({chromium}) or tests/browser/node_modules is missing: scripts/test installs both"
    );
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;

    // A dead job: a worker meets a payload it cannot read, then stops.
    let worker = env.start_worker().await?;
    env.push_raw(QueueName::Batch, &[serde_json::json!({ "kind": "no_such_job" })]).await?;
    env.until_dead(QueueName::Batch, 1).await?;
    let mut redis = env.redis().await?;
    let dead_set = format!("{}-batch:dead", env.prefix);
    worker.stop().await?;

    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("admin-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let mut node = tokio::process::Command::new("node")
        .arg(browser_dir.join("admin_page.mjs"))
        .arg(format!("http://{}", api.addr))
        .arg(tests::ADMIN_EMAIL)
        .arg(tests::ADMIN_PASSWORD)
        .arg(&screenshot)
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
    let (_, candidate, interview) = api.interview_for_candidate(5).await?;
    for _ in 0..3 {
        candidate.start_session(&interview).await?;
    }
    stdin.write_all(b"enqueued 3\n").await?;
    stdin.flush().await?;
    assert_eq!(next_line().await?, "depth 3");
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
