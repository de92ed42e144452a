//! What the api, the worker and the scheduler share: configuration, domain
//! types, database access, job payloads, events and telemetry.

pub mod config;
pub mod db;
pub mod domain;
pub mod events;
pub mod flow;
pub mod ids;
pub mod jobs;
pub mod queue;
pub mod redis_conn;
pub mod stream;
pub mod telemetry;

/// A request id: taken from `X-Request-Id` when the client sends one, made up otherwise.
pub fn new_request_id() -> String {
    format!("req_{}", uuid::Uuid::new_v4().simple())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received");
}
