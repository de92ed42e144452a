//! `worker` — run the queues until SIGTERM.

use shared::config::{Component, Config};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match Config::from_env(Component::Worker) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    shared::telemetry::init(Component::Worker.service_name(), &config.app.log_filter);
    let signal = shared::shutdown_signal();
    let result = async { worker::run(worker::deps(config).await?, signal).await }.await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "worker stopped");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
