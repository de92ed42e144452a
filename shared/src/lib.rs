//! What the api, the worker and the scheduler share: configuration, domain
//! types, database access, job payloads, events and telemetry.

pub mod alerts;
pub mod config;
pub mod db;
pub mod dead_job;
pub mod domain;
pub mod events;
pub mod flow;
pub mod history;
pub mod ids;
pub mod jobs;
pub mod log_throttle;
pub mod metrics;
pub mod provider_state;
pub mod queue;
pub mod queue_admin;
pub mod redis_conn;
pub mod rubric;
pub mod schedule;
pub mod startup;
pub mod stream;
pub mod telemetry;

/// `e` and its causes, `: `-separated (a cause whose text the chain already
/// holds is not repeated): the sources name the actual cause.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// A request id: taken from `X-Request-Id` when the client sends one, made up otherwise.
pub fn new_request_id() -> String {
    format!("req_{}", uuid::Uuid::new_v4().simple())
}

/// Resolves on SIGTERM or Ctrl-C.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    // Installed now, not on first poll: a SIGTERM that arrives while the
    // process is still connecting is kept, not lost to the default action
    // (which PID 1 in a container ignores).
    #[cfg(unix)]
    let (term, interrupt) = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::terminate()).ok(), signal(SignalKind::interrupt()).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {}
                () = wait(interrupt) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown signal received");
    }
}
