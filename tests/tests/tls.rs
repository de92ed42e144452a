//! TLS to PostgreSQL and Redis, against servers that speak nothing else: a
//! PostgreSQL whose `pg_hba.conf` admits `hostssl` only and a Redis with a
//! TLS port only and an ACL user, both with certificates from a CA the test
//! makes. A whole interview runs with `sslmode=verify-full` and
//! `rediss://` (api and worker in this process, the scheduler as its own); a wrong host name, a missing or wrong CA, TLS turned off or
//! a wrong password stop start-up with a message naming the cause.

use std::time::Duration;

use shared::config::Component;
use tests::tls::{TestCa, TlsPostgres, TlsRedis};
use tests::{TestEnv, is};

const WAIT: Duration = Duration::from_secs(20);

/// A database of its own on `pg`.
async fn database(pg: &TlsPostgres, env: &TestEnv) -> anyhow::Result<String> {
    let name = format!("{}_tls", env.database);
    pg.psql(&format!("CREATE DATABASE {name} OWNER aiv_tls")).await?;
    Ok(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_whole_interview_runs_over_tls_to_postgres_and_redis() -> anyhow::Result<()> {
    let ca = TestCa::new()?;
    let (pg, redis) = (TlsPostgres::start(&ca).await?, TlsRedis::start(&ca).await?);
    let mut env = TestEnv::new().await?;
    let db = database(&pg, &env).await?;
    let ca_file = ca.ca_file().display().to_string();
    env.set("DATABASE_URL", &pg.url("localhost", &db, &format!("sslmode=verify-full&sslrootcert={ca_file}")))
        .set("REDIS_URL", &redis.url())
        .set("REDIS_TLS_CA_FILE", &ca_file);
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    // The scheduler as its own process, on the same TLS settings.
    let mut scheduler = env.spawn_process("scheduler", &[])?;
    let tests::OpenedSession { recruiter, session, mut ws, opening, .. } = api.opened_session(2).await?;
    assert!(opening["message"].as_str().is_some_and(|m| !m.is_empty()), "events reach the socket: {opening}");
    ws.answer(1, WAIT).await?;
    ws.answer(2, WAIT).await?;
    ws.until(WAIT, |e| is(e, "evaluation.completed")).await?;
    let evaluation = recruiter.get(&format!("/sessions/{session}/evaluation")).await?;
    assert_eq!(evaluation.body["status"], "completed");
    assert!(scheduler.try_wait()?.is_none(), "the scheduler runs on TLS connections");
    let listed = env.command("scheduler")?.args(["batch", "list"]).output().await?;
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let health = api.client().get("/health").await?;
    assert_eq!(
        (&health.body["checks"]["database"]["status"], &health.body["checks"]["redis"]["status"]),
        (&serde_json::json!("healthy"), &serde_json::json!("healthy")),
        "{}",
        health.body
    );
    Ok(())
}

/// The error `api` start-up stops with under `vars`.
async fn start_up_error(env: &TestEnv, vars: &[(&str, &str)]) -> anyhow::Result<String> {
    let mut env_vars = env.vars.clone();
    for (k, v) in vars {
        env_vars.insert((*k).to_owned(), (*v).to_owned());
    }
    let config = shared::config::Config::from_vars(shared::config::Vars::from_map(env_vars), Component::Api)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match api::Api::build(config).await {
        Ok(_) => anyhow::bail!("started with {vars:?}"),
        Err(e) => Ok(format!("{e:#}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_stop_start_up_naming_the_cause() -> anyhow::Result<()> {
    let ca = TestCa::new()?;
    let other_ca = TestCa::new()?;
    let (pg, redis) = (TlsPostgres::start(&ca).await?, TlsRedis::start(&ca).await?);
    let env = TestEnv::new().await?;
    let db = database(&pg, &env).await?;
    let ca_file = ca.ca_file().display().to_string();
    let good_redis = [("REDIS_URL", redis.url()), ("REDIS_TLS_CA_FILE", ca_file.clone())];
    let with = |database_url: String| {
        let mut v = vec![("DATABASE_URL", database_url)];
        v.extend(good_redis.iter().cloned());
        v
    };
    let cases = [
        // The certificate names localhost, not 127.0.0.1.
        (
            with(pg.url("127.0.0.1", &db, &format!("sslmode=verify-full&sslrootcert={ca_file}"))),
            "not valid for name \"127.0.0.1\"",
        ),
        // Without the CA, only public CAs are trusted.
        (with(pg.url("localhost", &db, "sslmode=verify-full")), "UnknownIssuer"),
        (with(pg.url("localhost", &db, "sslmode=disable")), "no encryption"),
    ];
    for (vars, cause) in cases {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let error = start_up_error(&env, &vars).await?;
        assert!(error.contains("DATABASE_URL") && error.contains(cause), "{cause}: {error}");
        assert!(!error.contains("aiv_tls:aiv_tls"), "no password in the message: {error}");
    }
    let good_db = pg.url("localhost", &db, &format!("sslmode=verify-full&sslrootcert={ca_file}"));
    let other = other_ca.ca_file().display().to_string();
    let wrong_pass = redis.url().replace("aiv-redis-pass", "wrong-pass");
    let no_user = redis.url().replace("aiv:aiv-redis-pass@", "");
    let redis_cases = [
        (vec![("REDIS_URL", redis.url()), ("REDIS_TLS_CA_FILE", other)], "UnknownIssuer"),
        (vec![("REDIS_URL", wrong_pass), ("REDIS_TLS_CA_FILE", ca_file.clone())], "WRONGPASS"),
        (vec![("REDIS_URL", no_user), ("REDIS_TLS_CA_FILE", ca_file.clone())], "NOAUTH"),
    ];
    for (mut vars, cause) in redis_cases {
        vars.push(("DATABASE_URL", good_db.clone()));
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let error = start_up_error(&env, &vars).await?;
        assert!(error.contains("REDIS_URL") && error.contains(cause), "{cause}: {error}");
        assert!(!error.contains("aiv-redis-pass") && !error.contains("wrong-pass"), "no password: {error}");
    }
    Ok(())
}
