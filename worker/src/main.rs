//! `worker` — run the queues until SIGTERM. Operators' commands:
//! `worker queues [--watch]` — depth, oldest pending job, live pools;
//! `worker dead QUEUE` — the dead jobs; `worker dead retry QUEUE ID|--all`;
//! `worker dead delete QUEUE ID`.

use std::process::ExitCode;
use std::time::Duration;

use shared::config::{Component, Config};
use shared::jobs::QueueName;
use shared::queue_admin;

const USAGE: &str =
    "usage: worker [run | queues [--watch] | dead QUEUE | dead retry QUEUE (ID | --all) | dead delete QUEUE ID]";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let component =
        if matches!(args.first(), Some(&("queues" | "dead"))) { Component::Operator } else { Component::Worker };
    let config = match Config::from_env(component) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let _telemetry = shared::telemetry::init(component.service_name(), &config);
    let queue_arg = |name: &str| -> Result<QueueName, ExitCode> {
        name.parse().map_err(|e: String| {
            eprintln!("{e}");
            ExitCode::from(2)
        })
    };
    let result = match args.as_slice() {
        [] | ["run"] => {
            let signal = shared::shutdown_signal();
            async { worker::run(worker::deps(config).await?, signal).await }.await.map(|()| ExitCode::SUCCESS)
        }
        ["queues"] => queues(&config, false).await,
        ["queues", "--watch"] => queues(&config, true).await,
        ["dead", queue] => match queue_arg(queue) {
            Ok(q) => dead(&config, q).await,
            Err(code) => return code,
        },
        ["dead", "retry", queue, target] => match queue_arg(queue) {
            Ok(q) => retry(&config, q, target).await,
            Err(code) => return code,
        },
        ["dead", "delete", queue, id] => match queue_arg(queue) {
            Ok(q) => delete(&config, q, id).await,
            Err(code) => return code,
        },
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "worker stopped");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn queues(config: &Config, watch: bool) -> anyhow::Result<ExitCode> {
    let mut redis = shared::redis_conn::manager(&config.redis)?;
    loop {
        let views = queue_admin::views(&mut redis, &config.redis.key_prefix).await?;
        if watch {
            print!("\x1b[2J\x1b[H"); // clear the screen
            println!("{}  (every 2 s; Ctrl-C to stop)\n", chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC"));
        }
        println!(
            "{:<6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12} {:>8}",
            "QUEUE", "PENDING", "SCHEDULED", "RUNNING", "DONE", "DEAD", "OLDEST (s)", "WORKERS"
        );
        for v in &views {
            let oldest = v.oldest_pending_age_seconds.map_or("-".to_owned(), |s| format!("{s:.1}"));
            println!(
                "{:<6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12} {:>8}",
                v.queue.as_str(),
                v.pending,
                v.scheduled,
                v.running,
                v.done,
                v.dead,
                oldest,
                v.workers.len()
            );
        }
        for v in &views {
            for w in &v.workers {
                println!(
                    "  {} pool {}: {} running, heartbeat {}",
                    v.queue.as_str(),
                    w.name,
                    w.running,
                    w.last_heartbeat.format("%H:%M:%S%.3f")
                );
            }
        }
        if !watch {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            () = shared::shutdown_signal() => return Ok(ExitCode::SUCCESS),
        }
    }
}

async fn dead(config: &Config, queue: QueueName) -> anyhow::Result<ExitCode> {
    let mut redis = shared::redis_conn::manager(&config.redis)?;
    let mut jobs = queue_admin::dead_jobs(&mut redis, &config.redis.key_prefix, queue, 1_000).await?;
    // As the admin API shows them: secrets in a payload are not for a terminal either.
    for job in &mut jobs {
        job.payload = shared::dead_job::redact(&job.payload);
    }
    println!("{}", serde_json::to_string_pretty(&jobs)?);
    Ok(ExitCode::SUCCESS)
}

async fn retry(config: &Config, queue: QueueName, target: &str) -> anyhow::Result<ExitCode> {
    let mut redis = shared::redis_conn::manager(&config.redis)?;
    let db = shared::db::Db::connect_lazy(&config.database)?;
    let prefix = &config.redis.key_prefix;
    let ids: Vec<String> = if target == "--all" {
        queue_admin::dead_jobs(&mut redis, prefix, queue, usize::MAX).await?.into_iter().map(|j| j.id).collect()
    } else {
        vec![target.to_owned()]
    };
    let mut failed = false;
    for id in ids {
        match queue_admin::retry(&db, &mut redis, prefix, queue, &id).await {
            Ok(()) => println!("retried {id}"),
            Err(e) => {
                eprintln!("{id}: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

async fn delete(config: &Config, queue: QueueName, id: &str) -> anyhow::Result<ExitCode> {
    let mut redis = shared::redis_conn::manager(&config.redis)?;
    if queue_admin::delete_dead(&mut redis, &config.redis.key_prefix, queue, id).await? {
        println!("deleted {id}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("no dead job {id} in {}", queue.as_str());
        Ok(ExitCode::FAILURE)
    }
}
