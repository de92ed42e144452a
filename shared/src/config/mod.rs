//! Configuration from the seed's environment variables (see `.env.example`),
//! validated once at start-up, one file per part: the API's, the worker's
//! providers (Bedrock on its own), the scheduler's and the alerts'.

mod api;
mod bedrock;
mod database;
mod limits;
mod mfa;
mod operations;
mod providers;
mod redis;
mod secrets;
mod telemetry;
#[cfg(test)]
mod tests;
mod vars;
mod vertex;

use std::time::Duration;

pub use api::{ApiConfig, JwtConfig};
pub use bedrock::{BedrockAuth, BedrockConfig};
pub use database::DatabaseConfig;
pub use limits::{IpBlock, LimitsConfig};
pub use mfa::MfaConfig;
pub use operations::{AlertConfig, BatchSchedule, BatchSettings, SchedulerConfig};
pub use providers::{AzureConfig, EndpointConfig, ProviderKind, ProviderPolicy, WorkerConfig};
pub use redis::RedisConfig;
pub use secrets::SECRETS;
pub use telemetry::{ParentlessSampler, Sampler, SentryConfig, TelemetryConfig, TracesConfig};
pub use vars::{ConfigError, Vars};
pub use vertex::{VertexAuth, VertexConfig};

/// Which binary is loading the configuration: some variables are required
/// only by the part that uses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The HTTP / WebSocket API.
    Api,
    /// The job worker.
    Worker,
    /// The cron scheduler.
    Scheduler,
    /// `api migrate`: needs only the database.
    Migrate,
    /// The operators' queue commands (`worker queues`, `worker dead …`):
    /// the database and Redis, no keys.
    Operator,
}

impl Component {
    /// The `service` field of log lines.
    pub fn service_name(self) -> &'static str {
        match self {
            Component::Api => "api-backend",
            Component::Worker => "worker",
            Component::Scheduler => "scheduler",
            Component::Migrate => "migrate",
            Component::Operator => "operator",
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `APP_NAME`, `APP_VERSION`, `ENVIRONMENT`, `LOG_LEVEL`.
    pub app: AppConfig,
    /// `DATABASE_*`.
    pub database: DatabaseConfig,
    /// `REDIS_*`.
    pub redis: RedisConfig,
    /// Queue and job policy shared by the API (which enqueues) and the worker.
    pub jobs: JobsConfig,
    /// `API_*`, `JWT_*`, `WS_*`, `CORS_*` and request limits.
    pub api: ApiConfig,
    /// Worker pools and the provider used by jobs.
    pub worker: WorkerConfig,
    /// `BOOTSTRAP_ADMIN_*`.
    pub bootstrap_admin: Option<BootstrapAdmin>,
    /// The cron table.
    pub scheduler: SchedulerConfig,
    /// What the batches check.
    pub batches: BatchSettings,
    /// Where alerts go.
    pub alerts: AlertConfig,
    /// `METRICS_*`: each process's Prometheus series.
    pub telemetry: TelemetryConfig,
}

/// Application identity and logging.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// `APP_NAME`.
    pub name: String,
    /// `APP_VERSION` (default: the crate version).
    pub version: String,
    /// `ENVIRONMENT`: development, staging or production.
    pub environment: String,
    /// `LOG_LEVEL`: the seed's levels (DEBUG, INFO, WARNING, ERROR, CRITICAL) or a tracing filter.
    pub log_filter: String,
}

/// Queue policy.
#[derive(Debug, Clone)]
pub struct JobsConfig {
    /// `JOB_MAX_ATTEMPTS`: attempts of a job before it is dead.
    pub max_attempts: u32,
    /// `JOB_BACKOFF_BASE_MS`: first retry delay (doubles each attempt, full jitter).
    pub backoff_base: Duration,
    /// `JOB_BACKOFF_MAX_MS`: cap on a retry delay.
    pub backoff_max: Duration,
    /// `TURN_LEASE_SECONDS`: a running turn whose worker stops renewing its
    /// lease this long is taken over by another worker.
    pub lease: Duration,
    /// `RECONCILE_INTERVAL_SECONDS`: how often a worker looks for lost jobs.
    pub reconcile_interval: Duration,
    /// `RECONCILE_QUEUED_AFTER_SECONDS`: a turn still `queued` after this long is re-enqueued.
    pub requeue_after: Duration,
    /// `QUEUE_DONE_RETENTION_HOURS`: finished jobs stay in the queues' `done`
    /// sets this long (apalis never trims them); the workers trim the rest.
    pub done_retention: Duration,
}

/// A value kept out of logs and debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The first admin, created at start-up when none exists.
#[derive(Clone)]
pub struct BootstrapAdmin {
    /// `BOOTSTRAP_ADMIN_EMAIL`.
    pub email: String,
    /// `BOOTSTRAP_ADMIN_PASSWORD`.
    pub password: String,
}

impl std::fmt::Debug for BootstrapAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapAdmin").field("email", &self.email).field("password", &"<redacted>").finish()
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env(component: Component) -> Result<Self, ConfigError> {
        Self::from_vars(Vars::from_env(), component)
    }

    /// Reads `vars`; every problem is collected and reported together.
    pub fn from_vars(mut v: Vars, component: Component) -> Result<Self, ConfigError> {
        let worker = providers::worker(&mut v, component);
        let app = AppConfig {
            name: v.string("APP_NAME", "AI Interview System"),
            version: v.string("APP_VERSION", env!("CARGO_PKG_VERSION")),
            environment: environment(&mut v),
            log_filter: log_filter(&mut v),
        };
        let database = database::read(&mut v);
        let redis = redis::read(&mut v);
        let jobs = JobsConfig {
            max_attempts: v.ranged("JOB_MAX_ATTEMPTS", 5, 1, 100),
            backoff_base: v.millis("JOB_BACKOFF_BASE_MS", 500, 1, 3_600_000),
            backoff_max: v.millis("JOB_BACKOFF_MAX_MS", 30_000, 1, 86_400_000),
            lease: v.seconds("TURN_LEASE_SECONDS", 30, 1, 3600),
            reconcile_interval: v.seconds("RECONCILE_INTERVAL_SECONDS", 5, 1, 3600),
            requeue_after: v.seconds("RECONCILE_QUEUED_AFTER_SECONDS", 30, 1, 86_400),
            done_retention: Duration::from_secs(3600 * v.ranged("QUEUE_DONE_RETENTION_HOURS", 24, 0, 24 * 365)),
        };
        if jobs.backoff_base > jobs.backoff_max {
            v.problem("JOB_BACKOFF_BASE_MS", "must not exceed JOB_BACKOFF_MAX_MS");
        }
        let api = api::read(&mut v, component == Component::Api);
        let bootstrap_admin = match (v.get("BOOTSTRAP_ADMIN_EMAIL"), v.get("BOOTSTRAP_ADMIN_PASSWORD")) {
            (Some(email), Some(password)) => {
                Some(BootstrapAdmin { email: email.to_owned(), password: password.to_owned() })
            }
            (None, None) => None,
            (Some(_), None) => {
                v.problem("BOOTSTRAP_ADMIN_PASSWORD", "is required when BOOTSTRAP_ADMIN_EMAIL is set");
                None
            }
            (None, Some(_)) => {
                v.problem("BOOTSTRAP_ADMIN_EMAIL", "is required when BOOTSTRAP_ADMIN_PASSWORD is set");
                None
            }
        };
        let scheduler = operations::scheduler(&mut v);
        let batches = operations::batches(&mut v);
        let alerts = operations::alerts(&mut v);
        let telemetry = telemetry::read(&mut v, component, &app.environment);
        v.finish()?;
        Ok(Config { scheduler, batches, alerts, telemetry, app, database, redis, jobs, api, worker, bootstrap_admin })
    }
}

fn environment(v: &mut Vars) -> String {
    let env = v.string("ENVIRONMENT", "development").to_ascii_lowercase();
    if !matches!(env.as_str(), "development" | "staging" | "production" | "test") {
        v.problem("ENVIRONMENT", format!("expected development, staging, production or test, got {env:?}"));
    }
    env
}

fn log_filter(v: &mut Vars) -> String {
    let raw = v.string("LOG_LEVEL", "INFO");
    let level = match raw.to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "INFO" => "info",
        "WARNING" | "WARN" => "warn",
        "ERROR" | "CRITICAL" => "error",
        // Anything else is taken as a tracing filter such as `info,sqlx=warn`.
        _ => return raw,
    };
    // Our crates at the chosen level; chatty dependencies one step quieter.
    format!("{level},sqlx=warn,apalis=warn,apalis_core=warn,apalis_redis=warn,tower_http=warn")
}
