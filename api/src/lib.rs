//! The HTTP and WebSocket API. Thin: it authenticates, validates, writes the
//! minimal rows, enqueues, and relays events; it never calls an LLM.

pub mod auth;
pub mod error;
pub mod extract;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod relay;
pub mod routes;
pub mod state;
pub mod ws;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use shared::config::Config;
use shared::db;
use shared::domain::{Email, Role};
use shared::flow::Core;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::auth::jwt::Jwt;
use crate::relay::Relay;
use crate::state::AppState;

/// A built API, ready to serve.
pub struct Api {
    /// Its state (tests reach into it).
    pub state: AppState,
}

impl Api {
    /// Connects to PostgreSQL and Redis, applies migrations when
    /// `RUN_MIGRATIONS` is on, and creates the bootstrap admin when configured.
    pub async fn build(config: Config) -> anyhow::Result<Api> {
        let (core, redis) = Core::connect(&config).await?;
        let relay = Relay::start(&config.redis).context("REDIS_URL")?;
        let db = core.db.clone();
        let sealer = match (&config.api.mfa.secret_key, config.api.mfa.enabled) {
            (Some(key), true) => Some(Arc::new(crate::auth::mfa::Sealer::new(&key.0)?)),
            _ => None,
        };
        let metrics = Arc::new(crate::metrics::ApiMetrics::new(&core.registry));
        let state = AppState {
            jwt: Arc::new(Jwt::new(&config.api.jwt)?),
            sealer,
            core,
            config: Arc::new(config),
            db,
            redis,
            relay,
            shutdown: CancellationToken::new(),
            ws_active: Arc::default(),
            metrics,
        };
        if let Some(admin) = state.config.bootstrap_admin.clone() {
            bootstrap_admin(&state, &admin.email, admin.password).await?;
        }
        Ok(Api { state })
    }

    /// Serves on `listener` until `shutdown` resolves; then WebSockets close
    /// with "going away" and in-flight requests finish.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let token = self.state.shutdown.clone();
        let app = routes::router(self.state);
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .with_graceful_shutdown(async move {
                shutdown.await;
                token.cancel();
            })
            .await
            .context("serving HTTP")
    }
}

/// Creates the first admin when no admin exists yet. Returns whether it did.
pub async fn bootstrap_admin(state: &AppState, email: &str, password: String) -> anyhow::Result<bool> {
    if db::users::admin_exists(&state.db).await? {
        return Ok(false);
    }
    let email = Email::parse(email).map_err(|e| anyhow::anyhow!("BOOTSTRAP_ADMIN_EMAIL: {e}"))?;
    match routes::auth::create_user(state, &email, password, Role::Admin).await {
        Ok(user) => {
            tracing::info!(user_id = %user.id, "bootstrap admin created");
            Ok(true)
        }
        // Another replica starting at the same time created it first.
        Err(e) if e.code == "email_taken" && db::users::admin_exists(&state.db).await? => Ok(false),
        Err(e) if e.code == "email_taken" => {
            anyhow::bail!("BOOTSTRAP_ADMIN_EMAIL: {} is already registered as a non-admin user", email.as_str())
        }
        Err(e) => anyhow::bail!("creating the bootstrap admin: {}", e.message),
    }
}

/// Runs the API until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let signal = shared::shutdown_signal();
    let addr = format!("{}:{}", config.api.host, config.api.port);
    let api = Api::build(config).await?;
    let listener = TcpListener::bind(&addr).await.with_context(|| format!("binding {addr} (API_HOST, API_PORT)"))?;
    tracing::info!(address = %addr, "API listening");
    api.serve(listener, signal).await
}
