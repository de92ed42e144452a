//! `scheduler` — run until SIGTERM.

use shared::config::{Component, Config};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match Config::from_env(Component::Scheduler) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    shared::telemetry::init(Component::Scheduler.service_name(), &config.app.log_filter);
    match scheduler::run(config, shared::shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
