//! The worker: two supervised apalis worker pools (`turns`, `batch`) on
//! apalis-redis, the reconciler that re-enqueues what Redis lost, and a
//! heartbeat per pool that health and operators read.
//!
//! Delivery is at least once; every handler is idempotent because
//! PostgreSQL holds each turn's state and a lease with a fencing attempt
//! number. Attempts and backoff are ours: a failed attempt hands the turn
//! back and pushes a new, delayed job; after `JOB_MAX_ATTEMPTS` the job is
//! aborted into apalis's dead set and the client gets `turn.failed`.

pub mod batches;
pub mod jobs;
pub mod metrics;
pub mod prompt;
pub mod providers;
pub mod reconciler;
pub mod retry;
pub mod wake;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use apalis::prelude::{
    Attempt, BackendExt, BoxDynError, Data, Event, Monitor, ParallelizeExt, WorkerBuilder, WorkerBuilderExt,
};
use apalis_redis::RedisStorage;
use redis::aio::ConnectionManager;
use shared::config::Config;
use shared::flow::Core;
use shared::jobs::QueueName;
use shared::queue::{POOL_HEARTBEAT, pool_key, queue_config};
use tokio_util::sync::CancellationToken;

use crate::providers::ChatProvider;
use crate::wake::Wake;

/// What every job handler uses.
pub struct Deps {
    /// Database, events, queues.
    pub core: Core,
    /// Configuration.
    pub config: Arc<Config>,
    /// The provider chain.
    pub provider: Arc<dyn ChatProvider>,
    /// This process's unique worker name (host, pid, random).
    pub name: String,
    /// Cancelled shortly before the shutdown deadline: handlers still running
    /// hand their job back to the queue instead of being cut off.
    pub hand_back: CancellationToken,
    /// The alert sender.
    pub alerter: shared::alerts::Alerter,
    /// `ai_circuit_open`, set when scraped.
    pub circuits: shared::metrics::GaugeVec,
}

impl Deps {
    /// What the batches work with.
    pub fn batch_context(&self) -> batches::Context {
        batches::Context { core: self.core.clone(), config: self.config.clone(), alerter: self.alerter.clone() }
    }
}

/// A unique name for this process: restarts never collide with a name whose
/// heartbeat is still fresh (apalis refuses those).
pub fn worker_name() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "worker".into());
    let host: String = host.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(40).collect();
    format!("{host}-{}-{}", std::process::id(), &ulid::Ulid::generate().to_string()[20..])
}

/// Builds the dependencies from configuration.
pub async fn deps(config: Config) -> anyhow::Result<Arc<Deps>> {
    let (core, redis) = Core::connect(&config).await?;
    // The providers' fleet state has a connection of its own.
    let providers_conn = shared::redis_conn::manager(&config.redis).context("REDIS_URL")?;
    let provider = providers::from_config(&config, providers_conn, &core.registry)
        .await
        .map_err(|e| anyhow::anyhow!("AI_PROVIDER: {e}"))?;
    Ok(assemble(config, core, redis, provider))
}

/// Builds the dependencies around a given provider chain.
pub async fn deps_with_provider(config: Config, provider: Arc<dyn ChatProvider>) -> anyhow::Result<Arc<Deps>> {
    let (core, redis) = Core::connect(&config).await?;
    Ok(assemble(config, core, redis, provider))
}

fn assemble(config: Config, core: Core, redis: ConnectionManager, provider: Arc<dyn ChatProvider>) -> Arc<Deps> {
    core.queues.metrics.export(&core.registry);
    Arc::new(Deps {
        circuits: metrics::circuit_gauges(&core.registry),
        alerter: shared::alerts::Alerter::for_config(&config, redis),
        core,
        provider,
        config: Arc::new(config),
        name: worker_name(),
        hand_back: CancellationToken::new(),
    })
}

/// Runs the pools and the reconciler until `shutdown` resolves, then lets
/// held jobs finish within `WORKER_SHUTDOWN_TIMEOUT_SECONDS` (handing back
/// whatever is still running a second before the deadline).
pub async fn run(deps: Arc<Deps>, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    run_with_turn_handler(deps, shutdown, jobs::turn::handle).await
}

/// [`run`] with `turn_handler` in place of [`jobs::turn::handle`]: the same
/// pools, queues and settings (`bench_noop` measures the queue machinery
/// alone with a handler that does nothing).
pub async fn run_with_turn_handler<H, F>(
    deps: Arc<Deps>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    turn_handler: H,
) -> anyhow::Result<()>
where
    H: Fn(serde_json::Value, Data<Arc<Deps>>, Attempt) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<(), BoxDynError>> + Send + 'static,
{
    let config = deps.config.clone();
    let prefix = config.redis.key_prefix.clone();
    let conn = shared::redis_conn::manager(&config.redis).context("REDIS_URL")?;
    let metrics_listener = shared::metrics::listen(&config.telemetry).await?;

    // The queues run on a RESP3 connection: on RESP2 one dropped connection
    // kills an apalis pool. Producers PUBLISH on each queue's notify channel
    // after a push; the pools wake on it (see `wake`).
    let (turns_wake, turns_woken) = futures::channel::mpsc::unbounded::<()>();
    let (batch_wake, batch_woken) = futures::channel::mpsc::unbounded::<()>();
    let turns_channel = QueueName::Turns.notify_channel(&prefix);
    let batch_channel = QueueName::Batch.notify_channel(&prefix);
    let route = {
        let (turns_channel, batch_channel) = (turns_channel.clone(), batch_channel.clone());
        move |push: redis::PushInfo| {
            match push.kind {
                redis::PushKind::Message => match push.data.first() {
                    Some(redis::Value::BulkString(channel)) if *channel == turns_channel.as_bytes() => {
                        let _ = turns_wake.unbounded_send(());
                    }
                    Some(redis::Value::BulkString(channel)) if *channel == batch_channel.as_bytes() => {
                        let _ = batch_wake.unbounded_send(());
                    }
                    _ => {}
                },
                redis::PushKind::Disconnection => {
                    let _ = turns_wake.unbounded_send(());
                    let _ = batch_wake.unbounded_send(());
                }
                _ => {}
            }
            Ok::<(), std::convert::Infallible>(())
        }
    };
    let mut queue_conn = shared::redis_conn::subscriber_resubscribing(&config.redis, route).context("REDIS_URL")?;
    if let Err(e) = queue_conn.subscribe(&[&turns_channel, &batch_channel]).await {
        // Not fatal: the 1 s poll still runs, and the connection resubscribes on reconnect.
        tracing::warn!(error = %e, "queue notifications not subscribed yet; polling every second");
    }
    let (turns_strategy, batch_strategy) =
        (Wake::new(turns_woken, FALLBACK_POLL), Wake::new(batch_woken, FALLBACK_POLL));

    // Heartbeats a third of the lease: a dead worker's jobs are recovered
    // by apalis within about the lease, and by our reconciler regardless.
    let heartbeat = (config.jobs.lease / 3).max(Duration::from_secs(1));
    // No apalis lock: it only writes `Running` and `locked_at`/`locked_by`
    // into the job's meta after the handler has started (nothing recovers
    // or excludes by it: recovery goes by the pool's heartbeat and inflight
    // set, exclusion by the turn's lease in PostgreSQL), and its LREM scans
    // the whole pending list once per job (a 50,000-job backlog drained at
    // about 700 jobs/s with it).
    let storage_config =
        |queue| queue_config(&prefix, queue).heartbeat_interval(heartbeat).missed_heartbeats(3).lock_tasks(false);
    // Payloads are decoded in the handlers: see `jobs::decode`.
    let turns: RedisStorage<serde_json::Value> =
        RedisStorage::new(queue_conn.clone()).with_config(storage_config(QueueName::Turns));
    let batch: RedisStorage<serde_json::Value> =
        RedisStorage::new(queue_conn.clone()).with_config(storage_config(QueueName::Batch));

    let turns_alive = Arc::new(AtomicBool::new(false));
    let batch_alive = Arc::new(AtomicBool::new(false));
    let stop = CancellationToken::new();
    tokio::spawn(heartbeat_pool(
        conn.clone(),
        pool_key(&prefix, QueueName::Turns),
        deps.name.clone(),
        turns_alive.clone(),
        stop.clone(),
    ));
    tokio::spawn(heartbeat_pool(
        conn.clone(),
        pool_key(&prefix, QueueName::Batch),
        deps.name.clone(),
        batch_alive.clone(),
        stop.clone(),
    ));
    tokio::spawn(reconciler::run(deps.clone(), stop.clone()));
    tokio::spawn(reconciler::trim_done(deps.clone(), conn.clone(), stop.clone()));
    promote_due(&mut conn.clone(), &prefix).await;
    tokio::spawn(promote_loop(conn.clone(), prefix.clone(), stop.clone()));
    let refresh = {
        let (deps, conn, prefix) = (deps.clone(), conn.clone(), prefix.clone());
        move || {
            let (deps, conn, prefix) = (deps.clone(), conn.clone(), prefix.clone());
            async move { metrics::refresh_circuits(&deps.circuits, conn, &prefix).await }
        }
    };
    let metrics_stop = stop.clone();
    tokio::spawn(shared::metrics::serve(
        metrics_listener,
        deps.core.registry.clone(),
        config.telemetry.metrics_token.clone(),
        refresh,
        async move { metrics_stop.cancelled().await },
    ));

    let (d1, d2) = (deps.clone(), deps.clone());
    let (turns_pauses, batch_pauses) = (RestartPauses::default(), RestartPauses::default());
    let (name1, name2) = (format!("turns-{}", deps.name), format!("batch-{}", deps.name));
    let turn_concurrency = config.worker.turn_concurrency;
    let batch_concurrency = config.worker.batch_concurrency;
    let alive = move |name: &str, up: bool| {
        if name.starts_with("turns-") {
            turns_alive.store(up, Ordering::Relaxed);
        } else {
            batch_alive.store(up, Ordering::Relaxed);
        }
    };
    let monitor = Monitor::new()
        .register(move |run: usize| {
            WorkerBuilder::new(format!("{name1}-{run}"))
                .backend(
                    turns
                        .clone()
                        .before_start(turns_pauses.before_start(run))
                        .poll_with_strategy(turns_strategy.clone()),
                )
                .data(d1.clone())
                .concurrency(turn_concurrency)
                .parallelize(tokio::spawn)
                .build(looking_again(turn_handler.clone(), turns_strategy.clone()))
        })
        .register(move |run: usize| {
            WorkerBuilder::new(format!("{name2}-{run}"))
                .backend(
                    batch
                        .clone()
                        .before_start(batch_pauses.before_start(run))
                        .poll_with_strategy(batch_strategy.clone()),
                )
                .data(d2.clone())
                .concurrency(batch_concurrency)
                .parallelize(tokio::spawn)
                .build(looking_again(jobs::evaluation::handle, batch_strategy.clone()))
        })
        // `Event::Error` is one job's error (the handlers log those); a pool
        // that dies ends its worker future, which is what `should_restart` sees.
        .on_event({
            let alive = alive.clone();
            move |ctx, event| match event {
                Event::Start => alive(ctx.name(), true),
                Event::Stop | Event::Exit => alive(ctx.name(), false),
                _ => {}
            }
        })
        .should_restart(move |ctx, error| {
            alive(ctx.name(), false);
            tracing::error!(worker = ctx.name(), error = %error, "worker pool failed; restarting");
            true
        })
        .shutdown_timeout(config.worker.shutdown_timeout);

    let hand_back = deps.hand_back.clone();
    let deadline = config.worker.shutdown_timeout;
    let signal = async move {
        shutdown.await;
        tracing::info!(deadline_secs = deadline.as_secs(), "stopping: finishing held jobs");
        tokio::spawn(async move {
            tokio::time::sleep(deadline.saturating_sub(Duration::from_secs(1))).await;
            hand_back.cancel();
        });
    };
    tracing::info!(worker = %deps.name, "worker started");
    let result = monitor.run_with_signal(async move {
        signal.await;
        Ok(())
    });
    let result = result.await;
    stop.cancel();
    let mut conn = conn;
    for queue in QueueName::ALL {
        let _ = redis::cmd("ZREM").arg(pool_key(&prefix, queue)).arg(&deps.name).query_async::<()>(&mut conn).await;
    }
    result.context("worker pools")?;
    tracing::info!("worker stopped");
    Ok(())
}

/// `handler`, the pool looking again shortly after each job it finishes,
/// so that its acknowledgement goes out ([`Wake::look_soon`]).
fn looking_again<H, F>(
    handler: H,
    wake: Wake,
) -> impl Fn(serde_json::Value, Data<Arc<Deps>>, Attempt) -> futures::future::BoxFuture<'static, Result<(), BoxDynError>>
+ Clone
+ Send
+ Sync
+ 'static
where
    H: Fn(serde_json::Value, Data<Arc<Deps>>, Attempt) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<(), BoxDynError>> + Send + 'static,
{
    move |raw, deps, attempt| {
        let (job, wake) = (handler(raw, deps, attempt), wake.clone());
        Box::pin(async move {
            let result = job.await;
            wake.look_soon();
            result
        })
    }
}

/// How often an idle pool fetches without a notification.
const FALLBACK_POLL: Duration = Duration::from_secs(1);

/// Restart pauses of one pool: none at first start, then 1 s, 2 s, 4 s …
/// up to 30 s while it keeps failing, so a pool failing on a Redis outage does
/// not spin against it; back to 1 s once a run lasted a minute.
#[derive(Clone, Default)]
struct RestartPauses(Arc<std::sync::Mutex<(u32, Option<std::time::Instant>)>>);

impl RestartPauses {
    fn before_start<B>(
        &self,
        run: usize,
    ) -> impl Fn(&mut B) -> futures::future::BoxFuture<'static, Result<(), apalis_redis::Error>> + use<B> {
        let state = self.0.clone();
        move |_| {
            let pause = {
                let mut state = state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                let (streak, last_start) = &mut *state;
                if last_start.is_some_and(|t| t.elapsed() > Duration::from_secs(60)) {
                    *streak = 0;
                }
                let pause = match (run, *streak) {
                    (0, _) => Duration::ZERO,
                    (_, n) => Duration::from_secs(1u64 << n.min(5)).min(Duration::from_secs(30)),
                };
                if run > 0 {
                    *streak += 1;
                }
                *last_start = Some(std::time::Instant::now() + pause);
                pause
            };
            Box::pin(async move {
                if !pause.is_zero() {
                    tracing::warn!(
                        restart = run,
                        pause_ms = pause.as_millis() as u64,
                        "restarting worker pool after a pause"
                    );
                    tokio::time::sleep(pause).await;
                }
                Ok(())
            })
        }
    }
}

/// How often due jobs are moved out of the scheduled sets (see [`shared::queue::promote_due`]).
const PROMOTE_INTERVAL: Duration = Duration::from_millis(250);

async fn promote_due(conn: &mut ConnectionManager, prefix: &str) {
    for queue in QueueName::ALL {
        match shared::queue::promote_due(conn, prefix, queue).await {
            Ok(n) if n >= shared::queue::PROMOTE_CHUNK => {
                tracing::info!(queue = queue.as_str(), jobs = n, "moved a backlog of due jobs to pending");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(queue = queue.as_str(), error = %e, "promoting due jobs failed"),
        }
    }
}

async fn promote_loop(mut conn: ConnectionManager, prefix: String, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(PROMOTE_INTERVAL);
    ticker.tick().await; // the first tick is immediate; `run` has just promoted
    loop {
        tokio::select! {
            _ = ticker.tick() => promote_due(&mut conn, &prefix).await,
            () = stop.cancelled() => return,
        }
    }
}

/// Records the pool as alive every [`POOL_HEARTBEAT`] while it runs.
async fn heartbeat_pool(
    mut conn: ConnectionManager,
    key: String,
    name: String,
    alive: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(POOL_HEARTBEAT);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        let now = chrono::Utc::now().timestamp_millis();
        let result = if alive.load(Ordering::Relaxed) {
            redis::cmd("ZADD").arg(&key).arg(now).arg(&name).query_async::<()>(&mut conn).await
        } else {
            redis::cmd("ZREM").arg(&key).arg(&name).query_async::<()>(&mut conn).await
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "pool heartbeat failed");
        }
    }
}
