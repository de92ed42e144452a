//! The batches that check the estate: a restorable dump, a fresh backup,
//! certificates that are about to expire.

use super::*;

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
