//! The state every handler shares.

use std::sync::Arc;

use redis::aio::ConnectionManager;
use shared::config::Config;
use shared::flow::Core;
use tokio_util::sync::CancellationToken;

use crate::auth::jwt::Jwt;
use crate::relay::Relay;

/// Shared by all handlers; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Configuration.
    pub config: Arc<Config>,
    /// PostgreSQL.
    pub db: shared::db::Db,
    /// Redis, for tickets, connection limits and health.
    pub redis: ConnectionManager,
    /// Sessions, answers and their jobs.
    pub core: Core,
    /// Redis pub/sub → local WebSockets.
    pub relay: Relay,
    /// Token signing; shared, since every request and socket clones the state.
    pub jwt: Arc<Jwt>,
    /// TOTP secrets at rest; none when MFA is off.
    pub sealer: Option<Arc<crate::auth::mfa::Sealer>>,
    /// Cancelled at shutdown: WebSockets close with "going away".
    pub shutdown: CancellationToken,
    /// WebSockets open on this instance.
    pub ws_active: Arc<std::sync::atomic::AtomicI64>,
    /// This instance's request, WebSocket and login counters.
    pub metrics: Arc<crate::metrics::ApiMetrics>,
}
