//! `bench_costs`: what one answered interview turn costs, measured on the
//! running system (the figures of `docs/capacity.md`).
//!
//! `api` and `worker` run as processes of this build, each reaching
//! PostgreSQL and Redis through a counting proxy of its own
//! (`tests/src/wire_counter`), so the counts are theirs alone on a
//! PostgreSQL other runs share; Redis is a server of the bench's own, so
//! its CPU time is this run's too (as is that of the PostgreSQL backends
//! serving the test database, found by their process titles).
//!
//! N candidates each open their session's WebSocket and answer turn after
//! turn as a candidate does: the answer frame, the streamed reply,
//! `turn.completed`, the next answer. After a warm-up the processes
//! idle for a while (their timers: queue polls, heartbeats, reconciler),
//! then the measured turns run; the idle rate is taken off the measured
//! window, so a figure is what one more turn costs. Per turn, for api and
//! worker: PostgreSQL round trips, statements and bytes, Redis commands by
//! name and bytes, pub/sub messages, CPU time (utime + stime); and the test
//! database's `pg_stat_database` deltas.
//!
//! The scripted provider pauses `BENCH_COST_DELTA_DELAY_MS` (1) between its
//! deltas: at 0 the worker merges a reply that is all there at once into a
//! single `turn.delta`, which no real provider does. The bench then runs the
//! same number of turns in fresh sessions with a worker at 0: the difference
//! is the cost of the deltas, for replies longer than the scripted ones.
//!
//! `BENCH_COST_TURNS` (400) measured turns in all, over
//! `BENCH_COST_SESSIONS` sessions (one for every 20 turns);
//! `BENCH_COST_IDLE_SECONDS` (10) of idleness measured.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::json;
use tests::{Client, PrivateRedis, TestEnv, Ws, is};
use wire_counter::report::{Costs, Snapshot, backend_run_ns, cpu_ticks, run_ns};
use wire_counter::{Protocol, WireCounter};

// Beside the harness's modules, but this bench's alone.
#[path = "../wire_counter/mod.rs"]
mod wire_counter;

const WARM_UP_TURNS: usize = 2;
/// A backend reports its statistics within 10 s of going idle (PostgreSQL 15+).
const STATS_FLUSH: Duration = Duration::from_secs(11);
const WAIT: Duration = Duration::from_secs(120);
/// About a minute of speech: what a candidate's answer weighs.
const ANSWER: &str = "In my last role I owned the job queue behind our payments service. We ran on \
PostgreSQL and Redis; the queue lost jobs when a worker died mid-task, so I moved it to leases with \
heartbeats and an idempotency key per job, and added a reconciler that re-enqueued anything whose \
lease had expired. Latency went from seconds to tens of milliseconds at the 99th percentile, and we \
stopped paging at night. The hardest part was proving it: I wrote a chaos test that killed workers \
at random points and checked every job finished exactly once.";
const STAT_COLUMNS: [&str; 9] = [
    "xact_commit",
    "xact_rollback",
    "tup_returned",
    "tup_fetched",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
    "blks_read",
    "blks_hit",
];

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let total = env_number("BENCH_COST_TURNS", 400).max(1);
    // Twenty answered turns a session unless told: an interview's history
    // grows with it, and with it what a turn reads.
    let sessions = env_number("BENCH_COST_SESSIONS", total.div_ceil(20)).max(1);
    let rounds = total.div_ceil(sessions);
    let idle = Duration::from_secs(env_number("BENCH_COST_IDLE_SECONDS", 10).max(1) as u64);
    let delta_delay = env_number("BENCH_COST_DELTA_DELAY_MS", 1).to_string();
    anyhow::ensure!(WARM_UP_TURNS + rounds < 100, "{rounds} turns a session: over an interview's 100; add sessions");
    let started_at = chrono::Utc::now();
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut rig = Rig::start(&delta_delay).await?;
    let admin = sqlx::PgPool::connect(&tests::admin_database_url()).await?;
    let database = rig.env.database.clone();

    eprintln!("{sessions} sessions: sign-up, opening turn, {WARM_UP_TURNS} warm-up turns");
    let sockets = rig.watching(rig.open_sessions("a", sessions)).await?;
    eprintln!("letting the warm-up's statistics reach pg_stat_database, then {idle:?} idle");
    tokio::time::sleep(STATS_FLUSH).await;
    let (idle_start, idle_stats_start) = (rig.snapshot(), database_stats(&admin, &database).await?);
    tokio::time::sleep(idle).await;
    let (idle_end, idle_stats_end) = (rig.snapshot(), database_stats(&admin, &database).await?);
    let idle = (&idle_start, &idle_end);

    eprintln!("measuring {} turns: {sessions} sessions × {rounds}", sessions * rounds);
    let (phase, tally) = rig.watching(rig.measure(sockets, rounds)).await?;
    tokio::time::sleep(STATS_FLUSH).await;
    let (stats_end, stats_end_at) = (database_stats(&admin, &database).await?, Instant::now());
    let turns = (sessions * rounds) as f64;
    let costs = Costs::new(idle, (&phase.0, &phase.1), turns);

    // The same turns with each reply in one delta: the difference is what
    // the deltas cost.
    eprintln!("again with the scripted provider at zero delay (one delta a reply)");
    rig.restart_worker("0").await?;
    let sockets = rig.watching(rig.open_sessions("b", sessions)).await?;
    let (one_delta, one_tally) = rig.watching(rig.measure(sockets, rounds)).await?;
    let one_delta = Costs::new(idle, (&one_delta.0, &one_delta.1), turns);
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let secs = costs.phase_secs();
    println!("### Per-turn costs (`bench_costs`)\n");
    println!(
        "{} UTC; {} build; {} cores ({}); load average {} before, {} after; PostgreSQL {}, Redis {}.",
        started_at.format("%Y-%m-%d %H:%M"),
        if cfg!(debug_assertions) { "debug" } else { "release" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        first_field(&load_before),
        first_field(&load_after),
        server_version(&admin).await,
        info_field(&rig.redis_info, "redis_version"),
    );
    println!(
        "{sessions} sessions × {rounds} answered turns = {turns} turns (turn numbers {}–{}) in {secs:.1} s \
         ({:.0} turns/s, the client on the same cores); answers of {} characters; the reply streamed as \
         {:.1} `turn.delta` events ({:.0} characters), {:.1} WebSocket events a turn in all. The processes' \
         idle rate is taken off (table below).\n",
        WARM_UP_TURNS + 1,
        WARM_UP_TURNS + rounds,
        turns / secs,
        ANSWER.chars().count(),
        tally.deltas as f64 / turns,
        tally.reply_chars as f64 / turns,
        tally.events as f64 / turns,
    );
    costs.print_table();
    let deltas = (tally.deltas as f64 - one_tally.deltas as f64) / turns;
    println!(
        "\nOne more `turn.delta`: the same turns again, each reply in {:.1} delta, cost this much less per \
         delta left out ({deltas:.1} a turn):\n",
        one_tally.deltas as f64 / turns
    );
    costs.print_marginal(&one_delta, deltas);
    let db_window = stats_end_at.duration_since(idle_end.at).as_secs_f64();
    println!("\n`pg_stat_database` for the test database (api and worker), per turn:\n");
    println!("| {} |\n|{}", STAT_COLUMNS.join(" | "), "---:|".repeat(STAT_COLUMNS.len()));
    let per_turn: Vec<String> = (0..STAT_COLUMNS.len())
        .map(|i| {
            let idle_rate = (idle_stats_end[i] - idle_stats_start[i]) as f64 / costs.idle_secs();
            let net = (stats_end[i] - idle_stats_end[i]) as f64 - idle_rate * db_window;
            format!("{:.1}", (net / turns).max(0.0))
        })
        .collect();
    println!("| {} |", per_turn.join(" | "));
    Ok(())
}

/// The system under measurement: api and worker as processes, each behind
/// counting proxies, a Redis of its own.
struct Rig {
    env: TestEnv,
    anon: Client,
    interview: String,
    api: tokio::process::Child,
    worker: tokio::process::Child,
    worker_vars: [(&'static str, String); 2],
    proxies: [WireCounter; 4],
    redis_pid: u32,
    redis_info: String,
    _redis: PrivateRedis,
}

impl Rig {
    async fn start(delta_delay: &str) -> anyhow::Result<Rig> {
        let mut env = TestEnv::new().await?;
        for (k, v) in [
            ("DATABASE_POOL_SIZE", "20"),
            ("DATABASE_MAX_OVERFLOW", "10"),
            ("TURN_LEASE_SECONDS", "30"),
            ("RECONCILE_INTERVAL_SECONDS", "5"),
            ("RECONCILE_QUEUED_AFTER_SECONDS", "120"),
            ("LOG_LEVEL", "WARNING"),
        ] {
            env.set(k, v);
        }
        // A Redis of its own, so that its CPU time is this run's alone.
        let redis = PrivateRedis::start().await?;
        let redis_info = redis_info(&redis.url).await?;
        let redis_pid: u32 = info_field(&redis_info, "process_id").parse()?;
        let database_url = env.vars.get("DATABASE_URL").context("no DATABASE_URL")?.clone();
        let (api_pg, api_db_url) = proxy(Protocol::Postgres, &database_url).await?;
        let (worker_pg, worker_db_url) = proxy(Protocol::Postgres, &database_url).await?;
        let (api_redis, api_redis_url) = proxy(Protocol::Redis, &redis.url).await?;
        let (worker_redis, worker_redis_url) = proxy(Protocol::Redis, &redis.url).await?;
        let port = tests::free_port()?.to_string();
        let api = env.spawn_process(
            "api",
            &[("API_PORT", &port), ("DATABASE_URL", &api_db_url), ("REDIS_URL", &api_redis_url)],
        )?;
        let worker_vars = [("DATABASE_URL", worker_db_url), ("REDIS_URL", worker_redis_url)];
        let worker = spawn_worker(&env, &worker_vars, delta_delay)?;
        let anon = Client::new(&format!("http://127.0.0.1:{port}/api/v1"));
        anon.until_live(Duration::from_secs(60)).await?;
        let recruiter = anon.user("recruiter@example.com", "recruiter").await?;
        let interview = recruiter.interview("en", 100).await?;
        Ok(Rig {
            env,
            anon,
            interview,
            api,
            worker,
            worker_vars,
            proxies: [api_pg, worker_pg, api_redis, worker_redis],
            redis_pid,
            redis_info,
            _redis: redis,
        })
    }

    /// Stops the worker and starts another with the scripted provider's
    /// pause between deltas at `delta_delay` ms.
    async fn restart_worker(&mut self, delta_delay: &str) -> anyhow::Result<()> {
        tests::terminate(&self.worker)?;
        self.worker.wait().await?;
        self.worker = spawn_worker(&self.env, &self.worker_vars, delta_delay)?;
        Ok(())
    }

    /// Runs `work` unless api or worker exits first (a worker refusing the
    /// database's migrations would otherwise leave every turn waiting).
    async fn watching<T>(&self, work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
        let processes = [("api", &self.api), ("worker", &self.worker)].map(|(name, child)| (name, child.id()));
        let exited = async {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Some((name, _)) = processes.iter().find(|(_, pid)| pid.is_none_or(has_exited)) {
                    return *name;
                }
            }
        };
        tokio::select! {
            done = work => done,
            name = exited => anyhow::bail!("the {name} process exited (its log is above)"),
        }
    }

    fn snapshot(&self) -> Snapshot {
        let [api_pg, worker_pg, api_redis, worker_redis] = &self.proxies;
        let pid = |child: &tokio::process::Child| child.id().unwrap_or_default();
        Snapshot {
            at: Instant::now(),
            pg: [api_pg.snapshot(), worker_pg.snapshot()],
            redis: [api_redis.snapshot(), worker_redis.snapshot()],
            cpu_ticks: [cpu_ticks(pid(&self.api)), cpu_ticks(pid(&self.worker))],
            server_ns: [backend_run_ns(&self.env.database), run_ns(self.redis_pid)],
        }
    }

    /// Candidates of their own (a user's sockets are limited), each in a
    /// session past its opening and warm-up turns, socket open.
    async fn open_sessions(&self, tag: &str, n: usize) -> anyhow::Result<Vec<Ws>> {
        let mut tasks = FuturesUnordered::new();
        for i in 0..n {
            let (anon, interview, email) =
                (self.anon.clone(), self.interview.clone(), format!("cost-{tag}{i}@example.com"));
            tasks.push(tokio::spawn(async move {
                let candidate = anon.user(&email, "candidate").await?;
                let id = candidate.start_session(&interview).await?;
                let mut ws = candidate.ws(&id, None).await?;
                ws.until(WAIT, |e| is(e, "turn.completed") && e["number"] == 0).await?;
                ws.seen.clear();
                anyhow::Ok(ws)
            }));
        }
        let mut sockets = Vec::with_capacity(n);
        while let Some(ws) = tasks.next().await {
            sockets.push(ws??);
        }
        for round in 1..=WARM_UP_TURNS {
            sockets = play_round(sockets, round, &mut Tally::default()).await?;
        }
        Ok(sockets)
    }

    /// Snapshots around `rounds` turns of every session (then closes them).
    async fn measure(&self, mut sockets: Vec<Ws>, rounds: usize) -> anyhow::Result<((Snapshot, Snapshot), Tally)> {
        let start = self.snapshot();
        let mut tally = Tally::default();
        for round in WARM_UP_TURNS + 1..=WARM_UP_TURNS + rounds {
            sockets = play_round(sockets, round, &mut tally).await?;
        }
        // turn.completed is published just before the worker commits.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let end = self.snapshot();
        for ws in sockets {
            ws.close().await;
        }
        Ok(((start, end), tally))
    }
}

/// Whether a child process has exited (a zombie not yet reaped).
fn has_exited(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    matches!(state, None | Some("Z" | "X"))
}

fn spawn_worker(
    env: &TestEnv,
    vars: &[(&'static str, String); 2],
    delta_delay: &str,
) -> anyhow::Result<tokio::process::Child> {
    let [(k1, v1), (k2, v2)] = vars;
    env.spawn_process("worker", &[(k1, v1), (k2, v2), ("SCRIPTED_DELTA_DELAY_MS", delta_delay)])
}

/// A counting proxy in front of the server of `url`, and `url` through it.
async fn proxy(protocol: Protocol, url: &str) -> anyhow::Result<(WireCounter, String)> {
    let mut url = reqwest::Url::parse(url)?;
    anyhow::ensure!(matches!(url.scheme(), "postgres" | "postgresql" | "redis"), "{} cannot be counted", url.scheme());
    let host = url.host_str().context("no host")?.to_owned();
    let port = url.port().unwrap_or(if protocol == Protocol::Postgres { 5432 } else { 6379 });
    let upstream = tokio::net::lookup_host((host.as_str(), port)).await?.next().context("host not found")?;
    let counter = WireCounter::start(protocol, upstream).await?;
    url.set_host(Some("127.0.0.1"))?;
    url.set_port(Some(counter.addr.port())).map_err(|()| anyhow::anyhow!("cannot set the port"))?;
    if protocol == Protocol::Postgres {
        // Counting needs the plain protocol.
        url.query_pairs_mut().append_pair("sslmode", "disable");
    }
    Ok((counter, url.to_string()))
}

/// What the candidates received.
#[derive(Default)]
struct Tally {
    events: u64,
    deltas: u64,
    reply_chars: u64,
}

/// Every session answers turn `round` and reads the reply to its end.
async fn play_round(sockets: Vec<Ws>, round: usize, tally: &mut Tally) -> anyhow::Result<Vec<Ws>> {
    let mut tasks = FuturesUnordered::new();
    for mut ws in sockets {
        tasks.push(tokio::spawn(async move {
            ws.send(json!({ "type": "answer", "text": ANSWER, "client_msg_id": format!("cost-{round}") })).await?;
            let done = ws.until(WAIT, |e| is(e, "turn.completed") && e["number"] == round).await?;
            let counted = Tally {
                events: ws.seen.len() as u64,
                deltas: ws.seen.iter().filter(|e| is(e, "turn.delta")).count() as u64,
                reply_chars: done["message"].as_str().map_or(0, |m| m.chars().count() as u64),
            };
            ws.seen.clear();
            anyhow::Ok((ws, counted))
        }));
    }
    let mut sockets = Vec::new();
    while let Some(done) = tasks.next().await {
        let (ws, counted) = done??;
        tally.events += counted.events;
        tally.deltas += counted.deltas;
        tally.reply_chars += counted.reply_chars;
        sockets.push(ws);
    }
    Ok(sockets)
}

async fn database_stats(admin: &sqlx::PgPool, database: &str) -> anyhow::Result<Vec<i64>> {
    let sql = format!("SELECT {} FROM pg_stat_database WHERE datname = $1", STAT_COLUMNS.join(", "));
    let row: (i64, i64, i64, i64, i64, i64, i64, i64, i64) =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(database).fetch_one(admin).await?;
    Ok(vec![row.0, row.1, row.2, row.3, row.4, row.5, row.6, row.7, row.8])
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info.lines().find_map(|l| l.strip_prefix("model name")).and_then(|l| l.split_once(':'));
    model.map_or_else(|| "unknown CPU".into(), |(_, m)| m.trim().to_owned())
}

fn first_field(text: &str) -> &str {
    text.split_whitespace().next().unwrap_or("?")
}

async fn server_version(admin: &sqlx::PgPool) -> String {
    let version: Result<String, _> = sqlx::query_scalar("SHOW server_version").fetch_one(admin).await;
    version.map_or_else(|_| "?".into(), |v| v.split_whitespace().next().unwrap_or("?").to_owned())
}

async fn redis_info(url: &str) -> anyhow::Result<String> {
    let mut redis = redis::Client::open(url)?.get_multiplexed_async_connection().await?;
    Ok(redis::cmd("INFO").arg("server").query_async(&mut redis).await?)
}

fn info_field<'a>(info: &'a str, name: &str) -> &'a str {
    info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).unwrap_or("?").trim()
}
