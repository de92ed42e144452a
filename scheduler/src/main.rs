//! `scheduler` — run the cron table until SIGTERM;
//! `scheduler batch list` — every batch, its schedule, next tick and last runs;
//! `scheduler batch run NAME [--date YYYY-MM-DD]` — run one now, here, and
//! print the recorded run (exit 1 if it failed).

use std::process::ExitCode;

use shared::config::{Component, Config};
use shared::domain::{Batch, BatchStatus};
use shared::schedule::BatchParams;

const USAGE: &str = "usage: scheduler [serve | batch list | batch run NAME [--date YYYY-MM-DD]]";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let config = match Config::from_env(Component::Scheduler) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let _telemetry = shared::telemetry::init(Component::Scheduler.service_name(), &config);
    let result = match args.as_slice() {
        [] | ["serve"] => scheduler::run(config, shared::shutdown_signal()).await.map(|()| ExitCode::SUCCESS),
        ["batch", "list"] => list(&config).await,
        ["batch", "run", name, rest @ ..] => {
            let batch = match name.parse::<Batch>() {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            let date = match rest {
                [] => None,
                ["--date", date] => Some(*date),
                _ => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            };
            let params = match BatchParams::for_batch(batch, date) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            run_now(config, batch, params).await
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn list(config: &Config) -> anyhow::Result<ExitCode> {
    let (core, _) = shared::flow::Core::connect(config).await?;
    let tz = config.scheduler.timezone;
    println!("{:<26} {:<8} {:<14} {:<26} LAST RUN", "BATCH", "ENABLED", "SCHEDULE", format!("NEXT ({})", tz.name()));
    for b in shared::schedule::overview(&core.db, config, 1).await? {
        let next = b.next_tick.map_or("-".to_owned(), |t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string());
        let last = b.last_runs.first().map_or("never".to_owned(), |r| {
            let at = r.finished_at.or(r.started_at).unwrap_or(r.enqueued_at).with_timezone(&tz);
            format!("{} {} ({})", r.status, at.format("%Y-%m-%d %H:%M:%S"), r.trigger)
        });
        println!("{:<26} {:<8} {:<14} {:<26} {last}", b.name.as_str(), b.enabled, b.schedule, next);
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_now(config: Config, batch: Batch, params: BatchParams) -> anyhow::Result<ExitCode> {
    let ctx = worker::batches::Context::connect(config).await?;
    let run = worker::jobs::batch_run::run_here(&ctx, batch, &params.to_json()).await?;
    println!("{}", serde_json::to_string_pretty(&run)?);
    Ok(if run.status == BatchStatus::Succeeded { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
