//! The peers `bench_answer` measures our answer endpoint against (issue
//! 15): the seed's stack (FastAPI + asyncpg + redis-py under uvicorn,
//! `scripts/peers/fastapi`) doing the same work on the same database and
//! Redis prefix, and `pgbench` running the same statements
//! (`scripts/peers/pgbench`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::TestEnv;

/// `scripts/peers` of this checkout.
pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/peers")
}

/// The FastAPI peer under uvicorn, in a process group of its own so that
/// its workers go with it.
pub struct FastApi {
    child: tokio::process::Child,
    /// Its workers.
    pub workers: usize,
    /// `http://127.0.0.1:port/api/v1`.
    pub base: String,
}

impl FastApi {
    /// Starts `workers` uvicorn workers of `scripts/peers/fastapi/app.py`
    /// from the virtualenv `venv` (made by `scripts/peers/fastapi/install`)
    /// with `env`'s variables, as our API gets them.
    pub fn start(env: &TestEnv, venv: &Path, workers: usize) -> anyhow::Result<FastApi> {
        let port = crate::free_port()?.to_string();
        let uvicorn = venv.join("bin/uvicorn");
        anyhow::ensure!(uvicorn.exists(), "{} is missing: run scripts/peers/fastapi/install", uvicorn.display());
        let mut command = tokio::process::Command::new(&uvicorn);
        command
            .args(["app:app", "--host", "127.0.0.1", "--port", &port, "--workers", &workers.to_string()])
            .args(["--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"])
            .current_dir(peers_dir().join("fastapi"))
            .env_clear()
            .envs(&env.vars)
            .env("WEB_CONCURRENCY", workers.to_string())
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .process_group(0)
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null());
        let child = command.spawn().with_context(|| format!("starting {}", uvicorn.display()))?;
        Ok(FastApi { child, workers, base: format!("http://127.0.0.1:{port}/api/v1") })
    }

    /// The supervisor's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Stops the supervisor and its workers (SIGTERM to the group).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.signal_group();
        tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await.context("uvicorn did not stop")??;
        Ok(())
    }

    fn signal_group(&self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", "--", &format!("-{pid}")]).status();
        }
    }
}

impl Drop for FastApi {
    fn drop(&mut self) {
        // The workers outlive a killed supervisor: the group is told first.
        self.signal_group();
    }
}

/// A pgbench run's figures.
pub struct PgBench {
    /// Transactions per second, connections excluded.
    pub tps: f64,
    /// Transactions done.
    pub transactions: usize,
    /// Every transaction's latency.
    pub latencies: Vec<Duration>,
}

/// Runs `scripts/peers/pgbench/{script}` on `database_url` over `clients`
/// connections (2 threads, prepared statements), `per_client` transactions
/// each, with `vars` (`-D name=value`); reads the per-transaction log.
pub async fn pgbench(
    database_url: &str,
    script: &str,
    clients: usize,
    per_client: usize,
    vars: &[(&str, String)],
) -> anyhow::Result<PgBench> {
    let logs = std::env::temp_dir().join(format!("bench-pgbench-{}", std::process::id()));
    std::fs::create_dir_all(&logs)?;
    let mut command = tokio::process::Command::new("pgbench");
    command
        .args(["-n", "-M", "prepared", "-c", &clients.to_string(), "-j", "2", "-t", &per_client.to_string()])
        .arg("-f")
        .arg(peers_dir().join("pgbench").join(script))
        .args(["--log", "--log-prefix"])
        .arg(logs.join("tx"))
        .arg("-D")
        .arg("n=0");
    for (name, value) in vars {
        command.arg("-D").arg(format!("{name}={value}"));
    }
    let out = command.arg(database_url).current_dir(&logs).output().await.context("running pgbench")?;
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(out.status.success(), "pgbench failed: {report}{}", String::from_utf8_lossy(&out.stderr));
    let field = |prefix: &str| report.lines().find_map(|l| l.strip_prefix(prefix)).map(str::trim);
    let tps = field("tps = ").and_then(|v| v.split_whitespace().next()?.parse().ok()).context("no tps")?;
    let transactions = field("number of transactions actually processed:")
        .and_then(|v| v.split('/').next()?.parse().ok())
        .context("no transaction count")?;
    let mut latencies = Vec::with_capacity(transactions);
    for file in std::fs::read_dir(&logs)? {
        let path = file?.path();
        // client, transaction, latency in µs, script, epoch s, µs
        for line in std::fs::read_to_string(&path)?.lines() {
            if let Some(us) = line.split_whitespace().nth(2).and_then(|v| v.parse().ok()) {
                latencies.push(Duration::from_micros(us));
            }
        }
        std::fs::remove_file(path)?;
    }
    std::fs::remove_dir(&logs)?;
    Ok(PgBench { tps, transactions, latencies })
}

/// CPU time (user + system) a process and its direct children have used.
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc")? {
        let name = entry?.file_name();
        let Some(candidate) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{candidate}/stat")) else { continue };
        // Fields after the command, which may hold spaces: state, ppid, ... utime (14), stime (15).
        let Some((_, rest)) = stat.rsplit_once(") ") else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ppid: u32 = fields.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
        if candidate == pid || ppid == pid {
            let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            ticks += field(11) + field(12);
        }
    }
    Ok(Duration::from_secs_f64(ticks as f64 / ticks_per_sec))
}
