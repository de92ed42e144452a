//! The test harness: every test gets its own PostgreSQL database and its own
//! Redis key prefix, starts the parts it needs (in-process, or as real
//! processes when a test kills or signals them), and leaves nothing behind.

pub mod captured;
mod client;
pub mod fake_aws;
pub mod fake_gcp;
pub mod fake_llm;
pub mod fake_sentry;
mod handles;
pub mod load;
pub mod netns;
pub mod openapi;
pub mod otlp;
pub mod peers;
pub mod pgbouncer;
mod private_redis;
pub mod prometheus;
pub mod prometheus_server;
pub mod receiver;
pub mod tls;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use rand::RngExt;
use shared::config::{Component, Config, Vars};
use tokio_util::sync::CancellationToken;

pub use client::{Client, Reply, Ws, is};
pub use handles::{ApiHandle, FinishedTurn, OpenedSession, WorkerHandle};
pub use private_redis::PrivateRedis;

/// Where test databases are created (a server this user may create databases on).
pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The Redis the tests use.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// The bootstrap admin of every test environment.
pub const ADMIN_EMAIL: &str = "admin@example.com";
/// Its password.
pub const ADMIN_PASSWORD: &str = "admin-password-1";
/// The password of the users tests register (strong enough for the policy).
pub const USER_PASSWORD: &str = "amber-walrus-juggles-42";
const JWT_SECRET: &str = "test-secret-test-secret-test-secret!";
const TOTP_SECRET: &str = "totp-test-secret-totp-test-secret!!";

/// One test's database and Redis prefix, dropped (both) when the test ends,
/// even when it fails.
pub struct TestEnv {
    /// The database name.
    pub database: String,
    /// The Redis key prefix.
    pub prefix: String,
    /// Variables every component of this test gets.
    pub vars: HashMap<String, String>,
    /// The database's own URL (`DATABASE_URL` may lead through a PgBouncer).
    pub direct_database_url: String,
    pgbouncer: Option<pgbouncer::PgBouncer>,
    stop: CancellationToken,
}

impl TestEnv {
    /// A fresh database (migrated by the first component that starts) and
    /// prefix. With `TEST_PGBOUNCER=transaction` (or `session`) in the
    /// environment, the components reach it through a PgBouncer in that
    /// pooling mode (`scripts/test` runs the batch suite so).
    pub async fn new() -> anyhow::Result<TestEnv> {
        let suffix = format!("{:012x}", rand::rng().random::<u64>() & 0xffff_ffff_ffff);
        let database = format!("aiv_test_{suffix}");
        let prefix = format!("aivt{suffix}");
        let admin = sqlx::PgPool::connect(&admin_database_url()).await.context("connecting to TEST_DATABASE_URL")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}"))).execute(&admin).await?;
        admin.close().await;
        let base = admin_database_url();
        let db_url = match base.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{database}"),
            None => anyhow::bail!("TEST_DATABASE_URL has no database part"),
        };
        let vars: HashMap<String, String> = [
            ("DATABASE_URL", db_url.as_str()),
            ("DATABASE_POOL_SIZE", "8"),
            ("DATABASE_MAX_OVERFLOW", "0"),
            ("REDIS_URL", redis_url().as_str()),
            ("REDIS_KEY_PREFIX", prefix.as_str()),
            ("JWT_SECRET_KEY", JWT_SECRET),
            ("TOTP_SECRET_KEY", TOTP_SECRET),
            ("BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL),
            ("BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("ENVIRONMENT", "test"),
            ("LOG_LEVEL", "WARNING"),
            ("API_HOST", "127.0.0.1"),
            ("API_PORT", "0"),
            ("METRICS_HOST", "127.0.0.1"),
            ("METRICS_PORT", "0"),
            ("SCRIPTED_DELTA_DELAY_MS", "2"),
            ("TURN_LEASE_SECONDS", "3"),
            ("RECONCILE_INTERVAL_SECONDS", "1"),
            ("RECONCILE_QUEUED_AFTER_SECONDS", "2"),
            ("JOB_BACKOFF_BASE_MS", "50"),
            ("JOB_BACKOFF_MAX_MS", "500"),
            ("WORKER_SHUTDOWN_TIMEOUT_SECONDS", "5"),
            ("HEALTH_CHECK_TIMEOUT_MS", "1000"),
            // Tests send bursts from one address; tests/tests/rate_limits.rs sets its own.
            ("RATE_LIMIT_PER_MINUTE", "100000"),
            ("REDIS_SOCKET_TIMEOUT", "2"),
            // The AWS credential chain never looks for an instance role here.
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let mut env = TestEnv {
            database,
            prefix,
            vars,
            direct_database_url: db_url,
            pgbouncer: None,
            stop: CancellationToken::new(),
        };
        match std::env::var("TEST_PGBOUNCER").as_deref() {
            Ok("transaction") => env.behind_pgbouncer(pgbouncer::PoolMode::Transaction).await?,
            Ok("session") => env.behind_pgbouncer(pgbouncer::PoolMode::Session).await?,
            Ok("") | Err(_) => {}
            Ok(other) => anyhow::bail!("TEST_PGBOUNCER: expected transaction or session, got {other:?}"),
        }
        Ok(env)
    }

    /// Puts a PgBouncer in `mode` between the components started after this
    /// and the database, set up as docs/managed-services.md says.
    pub async fn behind_pgbouncer(&mut self, mode: pgbouncer::PoolMode) -> anyhow::Result<()> {
        let direct = reqwest::Url::parse(&self.direct_database_url)?;
        let server = (direct.host_str().unwrap_or("127.0.0.1"), direct.port().unwrap_or(5432));
        let bouncer =
            pgbouncer::PgBouncer::start(mode, server, direct.username(), direct.password().unwrap_or_default()).await?;
        let mut pooled = direct.clone();
        pooled.set_host(Some("127.0.0.1"))?;
        pooled.set_port(Some(bouncer.port)).map_err(|()| anyhow::anyhow!("cannot set the port"))?;
        self.set("DATABASE_URL", pooled.as_str());
        self.set("DATABASE_TRANSACTION_POOLING", &(mode == pgbouncer::PoolMode::Transaction).to_string());
        self.pgbouncer = Some(bouncer);
        Ok(())
    }

    /// Sets a variable for the components started after this.
    pub fn set(&mut self, name: &str, value: &str) -> &mut Self {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Makes `AI_PROVIDER` the OpenAI-compatible endpoint of `fake` (key
    /// `sk-test-key`, model `fake-model`).
    pub fn use_fake_llm(&mut self, fake: &fake_llm::FakeLlm) -> &mut Self {
        self.set("AI_PROVIDER", "openai_compatible")
            .set("OPENAI_COMPATIBLE_BASE_URL", &fake.base_url)
            .set("OPENAI_COMPATIBLE_API_KEY", "sk-test-key")
            .set("OPENAI_COMPATIBLE_MODEL", "fake-model")
    }

    /// Pushes `payloads` onto `queue` as they are (no type checks: a
    /// payload no handler can read), and wakes the idle pools.
    pub async fn push_raw(&self, queue: shared::jobs::QueueName, payloads: &[serde_json::Value]) -> anyhow::Result<()> {
        let mut redis = self.redis().await?;
        let mut storage: apalis_redis::RedisStorage<serde_json::Value> = apalis_redis::RedisStorage::new(redis.clone())
            .with_config(shared::queue::queue_config(&self.prefix, queue));
        for payload in payloads {
            apalis::prelude::TaskSink::push(&mut storage, payload.clone()).await?;
        }
        redis::cmd("PUBLISH").arg(queue.notify_channel(&self.prefix)).arg(1).query_async::<()>(&mut redis).await?;
        Ok(())
    }

    /// Waits until `queue`'s dead set holds `n` jobs.
    pub async fn until_dead(&self, queue: shared::jobs::QueueName, n: u64) -> anyhow::Result<()> {
        let redis = self.redis().await?;
        let dead_set = shared::queue::queue_config(&self.prefix, queue).dead_jobs_set();
        eventually(Duration::from_secs(30), || {
            let (mut redis, dead_set) = (redis.clone(), dead_set.clone());
            async move {
                let dead: u64 = redis::cmd("SCARD").arg(&dead_set).query_async(&mut redis).await?;
                Ok((dead == n).then_some(()))
            }
        })
        .await
    }

    /// The configuration a component would read.
    pub fn config(&self, component: Component) -> anyhow::Result<Config> {
        Config::from_vars(Vars::from_map(self.vars.clone()), component).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Starts the API in this process on a free port.
    pub async fn start_api(&self) -> anyhow::Result<ApiHandle> {
        let api = api::Api::build(self.config(Component::Api)?).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = self.stop.child_token();
        let serve_stop = stop.clone();
        let task = tokio::spawn(api.serve(listener, async move { serve_stop.cancelled().await }));
        Ok(ApiHandle { addr, stop, task: Some(task) })
    }

    /// Starts a worker in this process.
    pub async fn start_worker(&self) -> anyhow::Result<WorkerHandle> {
        Ok(self.run_worker(worker::deps(self.config(Component::Worker)?).await?))
    }

    /// Runs a worker on prepared dependencies (a provider of the test's own).
    pub fn run_worker(&self, deps: std::sync::Arc<worker::Deps>) -> WorkerHandle {
        let stop = self.stop.child_token();
        let run_stop = stop.clone();
        let registry = deps.core.registry.clone();
        let task = tokio::spawn(worker::run(deps, async move { run_stop.cancelled().await }));
        WorkerHandle { registry, stop, task: Some(task) }
    }

    /// Starts a component binary (`api`, `worker`, `scheduler`) as a child process.
    pub fn spawn_process(&self, binary: &str, extra: &[(&str, &str)]) -> anyhow::Result<tokio::process::Child> {
        let path = binary_path(binary)?;
        let mut command = tokio::process::Command::new(&path);
        command.env_clear().envs(&self.vars).kill_on_drop(true);
        for (k, v) in extra {
            command.env(k, v);
        }
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::inherit());
        command.spawn().with_context(|| format!("starting {}", path.display()))
    }

    /// A component binary as a command with this test's variables, to run
    /// to completion (the CLIs).
    pub fn command(&self, binary: &str) -> anyhow::Result<tokio::process::Command> {
        let mut command = tokio::process::Command::new(binary_path(binary)?);
        command.env_clear().envs(&self.vars).kill_on_drop(true);
        Ok(command)
    }

    /// What the batches work with, on this test's database and Redis (the
    /// database migrated).
    pub async fn batch_context(&self) -> anyhow::Result<worker::batches::Context> {
        let mut config = self.config(Component::Worker)?;
        config.database.run_migrations = true;
        worker::batches::Context::connect(config).await
    }

    /// Runs `batch` here and now with `params` (as `scheduler batch run`
    /// does) and returns the finished run.
    pub async fn run_batch(
        &self,
        batch: shared::domain::Batch,
        params: serde_json::Value,
    ) -> anyhow::Result<shared::db::batch_runs::BatchRun> {
        let ctx = self.batch_context().await?;
        Ok(worker::jobs::batch_run::run_here(&ctx, batch, &params).await?)
    }

    /// The opening turn of the test's session once it is completed or
    /// failed (`turn.completed` is published just before its transaction
    /// commits, so it is waited for), up to 20 s.
    pub async fn opening_turn(&self) -> anyhow::Result<FinishedTurn> {
        let db = self.db().await?;
        eventually(Duration::from_secs(20), || {
            let db = db.clone();
            async move {
                Ok(sqlx::query_as(
                    "SELECT status, attempts, interviewer_message, provider, prompt_tokens, completion_tokens
                     FROM turns WHERE number = 0 AND status IN ('completed', 'failed')",
                )
                .fetch_optional(&db)
                .await?)
            }
        })
        .await
    }

    /// Once no turn is queued or running (up to 20 s: `turn.completed`
    /// reaches a socket just before its transaction commits), how many
    /// turns failed or needed more than one job attempt.
    pub async fn troubled_turns(&self) -> anyhow::Result<i64> {
        let db = self.db().await?;
        eventually(Duration::from_secs(20), || {
            let db = db.clone();
            async move {
                let (unsettled, troubled): (i64, i64) = sqlx::query_as(
                    "SELECT count(*) FILTER (WHERE status IN ('queued', 'running')),
                            count(*) FILTER (WHERE status = 'failed' OR attempts > 1)
                     FROM turns",
                )
                .fetch_one(&db)
                .await?;
                Ok((unsettled == 0).then_some(troubled))
            }
        })
        .await
    }

    /// A direct connection to this test's database.
    pub async fn db(&self) -> anyhow::Result<sqlx::PgPool> {
        Ok(sqlx::PgPool::connect(&self.direct_database_url).await?)
    }

    /// A direct connection to Redis.
    pub async fn redis(&self) -> anyhow::Result<redis::aio::ConnectionManager> {
        Ok(redis::Client::open(redis_url())?.get_connection_manager().await?)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.stop.cancel();
        // Let go of the database before it is dropped.
        drop(self.pgbouncer.take());
        let database = self.database.clone();
        let prefix = self.prefix.clone();
        // Drop runs outside any runtime we may block on: clean up on a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                if let Ok(admin) = sqlx::PgPool::connect(&admin_database_url()).await {
                    let _ =
                        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")))
                            .execute(&admin)
                            .await;
                }
                if let Ok(client) = redis::Client::open(redis_url())
                    && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                {
                    let keys: Vec<String> =
                        redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await.unwrap_or_default();
                    for chunk in keys.chunks(500) {
                        let _ = redis::cmd("DEL").arg(chunk).query_async::<()>(&mut conn).await;
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Path of a workspace binary of the same build as this executable: next to
/// it (the bench binary) or one level up (test executables live in `deps/`).
/// `scripts/test` and `scripts/bench` build them first.
pub fn binary_path(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let here = exe.parent().context("no target directory")?;
    let dir = if here.ends_with("deps") { here.parent().context("no target directory")? } else { here };
    let path = dir.join(name);
    anyhow::ensure!(path.exists(), "{} is missing: run `cargo build --bins` first (scripts/test does)", path.display());
    Ok(path)
}

/// Polls `check` every 20 ms until it returns `Some`, up to `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "condition not met within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends SIGTERM to a child process.
pub fn terminate(child: &tokio::process::Child) -> anyhow::Result<()> {
    let pid = child.id().context("process already reaped")?;
    let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
    anyhow::ensure!(status.success(), "kill -TERM {pid} failed");
    Ok(())
}

/// A port free on 127.0.0.1 now, for a process told to listen on it.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A memory figure of a child process (`VmRSS:`, `VmHWM:`), in KB.
pub fn process_memory_kb(child: &tokio::process::Child, field: &str) -> anyhow::Result<u64> {
    let pid = child.id().context("process already exited")?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field}"))
}
