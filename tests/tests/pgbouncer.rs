//! The whole system behind PgBouncer in transaction pooling mode (Debian's
//! 1.18, without prepared-statement support), with
//! `DATABASE_TRANSACTION_POOLING=true`: migrations applied directly, then a
//! whole interview with its evaluation and every batch through the pooler.

use std::time::Duration;

use serde_json::json;
use shared::domain::{Batch, BatchStatus};
use tests::pgbouncer::PgBouncer;
use tests::{TestEnv, is};

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_interview_and_every_batch_run_through_pgbouncer() -> anyhow::Result<()> {
    let mut env = TestEnv::new().await?;
    // Migrations take a session lock: directly against PostgreSQL.
    shared::db::migrate(&env.db().await?).await?;
    let direct = env.vars["DATABASE_URL"].clone();
    let url = url_parts(&direct)?;
    let bouncer = PgBouncer::start((&url.host, url.port), &url.user, &url.password).await?;
    let pooled = format!("postgres://{}:{}@127.0.0.1:{}/{}", url.user, url.password, bouncer.port, env.database);
    env.set("DATABASE_URL", &pooled).set("DATABASE_TRANSACTION_POOLING", "true");
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let tests::OpenedSession { recruiter, session, mut ws, .. } = api.opened_session(3).await?;
    for number in 1..=3 {
        ws.answer(number, WAIT).await?;
    }
    ws.until(WAIT, |e| is(e, "evaluation.completed")).await?;
    let evaluation = recruiter.get(&format!("/sessions/{session}/evaluation")).await?;
    assert_eq!(evaluation.body["status"], "completed", "{}", evaluation.body);
    let admin = api.admin().await?;
    assert_eq!(admin.get("/admin/queues").await?.status, 200);
    for batch in Batch::ALL {
        let params = match batch {
            Batch::AnalyticsAggregation | Batch::MonthlyReport => json!({ "date": "2026-11-20" }),
            _ => json!({}),
        };
        let run = env.run_batch(*batch, params).await?;
        // The backup and certificate checks have nothing configured to check here.
        let ok = run.status == BatchStatus::Succeeded
            || matches!(batch, Batch::BackupVerification | Batch::CertificateCheck);
        assert!(ok, "{batch}: {run:?}");
    }
    Ok(())
}

struct UrlParts {
    user: String,
    password: String,
    host: String,
    port: u16,
}

/// `postgres://user:password@host:port/db` in parts.
fn url_parts(url: &str) -> anyhow::Result<UrlParts> {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let (credentials, rest) = rest.split_once('@').ok_or_else(|| anyhow::anyhow!("no user in {url}"))?;
    let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "5432"));
    Ok(UrlParts { user: user.into(), password: password.into(), host: host.into(), port: port.parse()? })
}
