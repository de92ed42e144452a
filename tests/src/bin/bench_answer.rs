//! `bench_answer`: answer submission, ours beside the seed's stack doing the
//! same work and beside pgbench running the same statements, on this
//! machine in one sitting (issue 15: ≥ 4 × the FastAPI peer, p99 ≤ 20 ms at
//! 50 connections, ≥ 80 % of pgbench).
//!
//! One database and Redis prefix; our API (release, as `scripts/bench`
//! builds it) and the FastAPI peer (`scripts/peers/fastapi`, uvicorn with a
//! worker per core) both up on them. Every answer goes to a session of its
//! own, prepared in SQL beforehand with its opening turn completed (the
//! answer is turn 1). The same 50-connection load (`tests::load`) runs
//! against ours, the peer, ours, the peer, after a warm-up of each; then,
//! both servers stopped, pgbench runs what ours runs in PostgreSQL per
//! answer (the token's access check and the answer's transaction), and the
//! transaction alone, then the statements our worker runs per turn
//! (`turn.sql`) over the turns the last run queued: the worker's PostgreSQL
//! ceiling (`bench` measures the worker). No worker runs: the turns wait in the queue, as in
//! `bench`. `BENCH_ANSWERS` sets the answers per run (10,000);
//! `BENCH_FASTAPI_VENV` the peer's virtualenv; `BENCH_DRAIN=1` has a
//! worker run the turns afterwards (a check that the peer's jobs are ours).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tests::load::{CONNECTIONS, percentile, submit_answers};
use tests::peers::{FastApi, cpu_time, pgbench};
use tests::{Client, TestEnv};

/// One measured load.
struct Run {
    name: String,
    rate: f64,
    latencies: Vec<Duration>,
    errors: usize,
    /// Server CPU per answer, when known.
    cpu_per_answer: Option<Duration>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let answers: usize = std::env::var("BENCH_ANSWERS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    // pgbench gives each client the same count.
    let answers = answers.div_ceil(CONNECTIONS) * CONNECTIONS;
    let warmup = (answers / 10).max(CONNECTIONS * 4);
    let venv = std::env::var("BENCH_FASTAPI_VENV").map(PathBuf::from).unwrap_or_else(|_| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/ai-interviewer/peers/fastapi-venv")
    });
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());

    let mut env = TestEnv::new().await?;
    for (k, v) in [
        // As `bench` runs ours; the peer's workers share the same count.
        ("DATABASE_POOL_SIZE", "20"),
        ("DATABASE_MAX_OVERFLOW", "10"),
        ("LOG_LEVEL", "WARNING"),
        // Every run's answers come from one candidate within the minute.
        ("RATE_LIMIT_PER_MINUTE", "1000000"),
    ] {
        env.set(k, v);
    }
    let port = tests::free_port()?.to_string();
    let mut api = env.spawn_process("api", &[("API_PORT", &port)])?;
    let ours = Client::new(&format!("http://127.0.0.1:{port}/api/v1"));
    ours.until_live(Duration::from_secs(30)).await?;
    let interview = ours.user("recruiter@example.com", "recruiter").await?.interview("en", 100).await?;
    let ours = ours.user("candidate@example.com", "candidate").await?;
    let db = env.db().await?;
    let (candidate, family): (uuid::Uuid, uuid::Uuid) = sqlx::query_as(
        "SELECT u.id, r.family_id FROM users u JOIN refresh_tokens r ON r.user_id = u.id
         WHERE u.email = 'candidate@example.com'",
    )
    .fetch_one(&db)
    .await?;

    // Session numbers: two warm-ups, four runs, two pgbench scripts.
    let total = 2 * warmup + 6 * answers;
    eprintln!("preparing {total} sessions");
    prepare_sessions(&db, interview.parse()?, candidate, total).await?;
    let mut next = 1u64;

    let peer = FastApi::start(&env, &venv, workers)?;
    let theirs = Client::new(&peer.base).with_token(ours.token.as_deref().context("candidate token")?);
    theirs.until_live(Duration::from_secs(30)).await?;
    let api_pid = api.id().context("api exited")?;
    let peer_pid = peer.pid().context("uvicorn exited")?;
    eprintln!("warming up ({warmup} answers each)");
    let mut http_accepted = 0;
    for client in [&ours, &theirs] {
        http_accepted += submit_answers(client, &take(&mut next, warmup)).await?.0.len();
    }

    let mut runs = Vec::new();
    for round in 1..=2 {
        for (name, client, pid) in [("ours", &ours, api_pid), ("FastAPI peer", &theirs, peer_pid)] {
            eprintln!("{name}, run {round}: {answers} answers over {CONNECTIONS} connections");
            let cpu_before = cpu_time(pid)?;
            let (latencies, elapsed, errors) = submit_answers(client, &take(&mut next, answers)).await?;
            let cpu = cpu_time(pid)?.saturating_sub(cpu_before);
            let rate = latencies.len() as f64 / elapsed.as_secs_f64();
            eprintln!("  {rate:.0} req/s, p99 {:.2?}, {errors} errors", percentile(&latencies, 99.0));
            let cpu_per_answer = Some(cpu / latencies.len().max(1) as u32);
            runs.push(Run { name: format!("{name}, run {round}"), rate, latencies, errors, cpu_per_answer });
        }
    }
    peer.stop().await?;
    tests::terminate(&api)?;
    api.wait().await?;
    http_accepted += runs.iter().map(|r| r.latencies.len()).sum::<usize>();

    // pgbench: the same statements, 50 clients, prepared.
    let per_client = answers / CONNECTIONS;
    for (name, script) in
        [("pgbench: access check + transaction", "answer.sql"), ("pgbench: transaction", "transaction.sql")]
    {
        eprintln!("{name}: {answers} transactions over {CONNECTIONS} clients");
        let first = next - 1;
        take(&mut next, answers);
        let vars = [
            ("base", first.to_string()),
            ("per_client", per_client.to_string()),
            ("candidate", candidate.to_string()),
            ("family", family.to_string()),
        ];
        let run = pgbench(&env.direct_database_url, script, CONNECTIONS, per_client, &vars).await?;
        eprintln!("  {:.0} tps, p99 {:.2?}", run.tps, percentile(&run.latencies, 99.0));
        let errors = answers - run.transactions;
        runs.push(Run { name: name.into(), rate: run.tps, latencies: run.latencies, errors, cpu_per_answer: None });
    }
    // The worker's statements per turn, over the turns transaction.sql queued.
    let name = "pgbench: the worker's statements per turn";
    eprintln!("{name}: {answers} turns over {CONNECTIONS} clients");
    let vars = [("base", (next - 1 - answers as u64).to_string()), ("per_client", per_client.to_string())];
    let run = pgbench(&env.direct_database_url, "turn.sql", CONNECTIONS, per_client, &vars).await?;
    eprintln!("  {:.0} tps, p99 {:.2?}", run.tps, percentile(&run.latencies, 99.0));
    let errors = answers - run.transactions;
    runs.push(Run { name: name.into(), rate: run.tps, latencies: run.latencies, errors, cpu_per_answer: None });
    let mut checked = check(&env, &db, http_accepted, 2 * answers).await?;
    if std::env::var("BENCH_DRAIN").is_ok_and(|v| v == "1") {
        checked += &drain(&env, &db, http_accepted, answers).await?;
    }
    report(&runs, workers, &checked);
    Ok(())
}

/// The ids of the next `n` prepared sessions.
fn take(next: &mut u64, n: usize) -> Vec<String> {
    let first = *next;
    *next += n as u64;
    (first..*next).map(|k| uuid::Uuid::from_u128(u128::from(k)).to_string()).collect()
}

/// Sessions 1..=`n` (id `lpad(to_hex(k), 32, '0')`, as the pgbench scripts
/// name them) of `candidate`, active for a day, each with its opening turn
/// completed.
async fn prepare_sessions(
    db: &sqlx::PgPool,
    interview: uuid::Uuid,
    candidate: uuid::Uuid,
    n: usize,
) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO sessions (id, interview_id, candidate_id, expires_at)
         SELECT lpad(to_hex(k), 32, '0')::uuid, $1, $2, now() + interval '1 day' FROM generate_series(1, $3::bigint) k",
    )
    .bind(interview)
    .bind(candidate)
    .bind(n as i64)
    .execute(db)
    .await?;
    sqlx::query(
        "INSERT INTO turns (id, session_id, number, status, interviewer_message, attempts, started_at, completed_at)
         SELECT gen_random_uuid(), lpad(to_hex(k), 32, '0')::uuid, 0, 'completed', 'Tell me about a queue you built.',
                1, now(), now()
         FROM generate_series(1, $1::bigint) k",
    )
    .bind(n as i64)
    .execute(db)
    .await?;
    // Every run starts from settled statistics and visibility maps.
    sqlx::raw_sql("VACUUM ANALYZE sessions, turns, session_events").execute(db).await?;
    Ok(())
}

/// That every accepted answer stored its turn, and every one over HTTP
/// pushed its job (no worker ran, so each is still pending).
async fn check(env: &TestEnv, db: &sqlx::PgPool, http: usize, pgbench: usize) -> anyhow::Result<String> {
    let turns: i64 = sqlx::query_scalar("SELECT count(*) FROM turns WHERE number = 1").fetch_one(db).await?;
    let mut redis = env.redis().await?;
    let queue = shared::queue::queue_config(&env.prefix, shared::jobs::QueueName::Turns);
    // apalis-redis files a job due now in its scheduled set; a worker's fetch moves it on.
    let (scheduled, active): (usize, usize) = redis::pipe()
        .cmd("ZCARD")
        .arg(queue.scheduled_jobs_set())
        .cmd("LLEN")
        .arg(queue.active_jobs_list())
        .query_async(&mut redis)
        .await?;
    let pending = scheduled + active;
    let ok = turns as usize == http + pgbench && pending == http;
    Ok(format!(
        "{}: {turns} answer turns stored (expected {}), {pending} turn jobs pending (expected {http})",
        if ok { "consistent" } else { "INCONSISTENT" },
        http + pgbench
    ))
}

/// `BENCH_DRAIN=1`: a worker runs the queued jobs, ours and the peer's
/// alike, until as many answer turns as were accepted over HTTP completed.
async fn drain(env: &TestEnv, db: &sqlx::PgPool, http: usize, pgbench_completed: usize) -> anyhow::Result<String> {
    let worker = env.spawn_process("worker", &[("SCRIPTED_DELTA_DELAY_MS", "0")])?;
    let started = std::time::Instant::now();
    tests::eventually(Duration::from_secs(600), || async {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM turns WHERE number = 1 AND status = 'completed'")
            .fetch_one(db)
            .await?;
        // pgbench's turn.sql completed the turns of one run already.
        Ok((done as usize >= http + pgbench_completed).then_some(()))
    })
    .await?;
    tests::terminate(&worker)?;
    Ok(format!("; a worker completed the {http} answer turns in {:.1?}", started.elapsed()))
}

fn report(runs: &[Run], workers: usize, checked: &str) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| answer submission, {CONNECTIONS} connections | answers/s | p50 ms | p99 ms | server CPU per answer | errors |"
    );
    println!("|---|---|---|---|---|---|");
    for run in runs {
        let cpu = run.cpu_per_answer.map_or("".into(), |c| format!("{:.0} µs", c.as_secs_f64() * 1e6));
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {cpu} | {} |",
            run.name,
            run.rate,
            ms(percentile(&run.latencies, 50.0)),
            ms(percentile(&run.latencies, 99.0)),
            run.errors
        );
    }
    let rates = |prefix: &str| runs.iter().filter(|r| r.name.starts_with(prefix)).map(|r| r.rate).collect::<Vec<_>>();
    let (ours, peer, pgbench) = (rates("ours"), rates("FastAPI"), rates("pgbench: access"));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let low = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let high = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let ratio = mean(&ours) / mean(&peer);
    let our_latencies: Vec<Duration> =
        runs.iter().filter(|r| r.name.starts_with("ours")).flat_map(|r| r.latencies.clone()).collect();
    let p99 = ms(percentile(&our_latencies, 99.0));
    let share = mean(&ours) / mean(&pgbench);
    let met = |yes: bool| if yes { "met" } else { "NOT met" };
    println!();
    println!("| target | measured | |");
    println!("|---|---|---|");
    println!(
        "| ours ≥ 4 × the FastAPI peer ({workers} uvicorn workers) | {ratio:.2}× ({:.2}–{:.2}× run to run) | {} |",
        low(&ours) / high(&peer),
        high(&ours) / low(&peer),
        met(ratio >= 4.0)
    );
    println!("| ours p99 ≤ 20 ms at {CONNECTIONS} connections | {p99:.2} ms | {} |", met(p99 <= 20.0));
    println!(
        "| ours ≥ 80 % of pgbench, same statements | {:.0} % of {:.0} tps | {} |",
        share * 100.0,
        mean(&pgbench),
        met(share >= 0.8)
    );
    println!();
    println!("Checks: {checked}.");
}
