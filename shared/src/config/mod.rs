//! Configuration from the seed's environment variables (see `.env.example`),
//! validated once at start-up.

mod vars;

use std::time::Duration;

pub use vars::{ConfigError, Vars};

use crate::domain::Batch;
use crate::schedule::CronSchedule;

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
}

/// The cron table of SPEC §8.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// `SCHEDULER_TIMEZONE` (default Asia/Tokyo: the seed's times are JST).
    pub timezone: chrono_tz::Tz,
    /// `SCHEDULER_CATCH_UP_HOURS`: a tick missed while no scheduler ran is
    /// caught up at start-up when it is at most this old.
    pub catch_up_window: Duration,
    /// Every batch, in [`Batch::ALL`] order.
    pub batches: Vec<BatchSchedule>,
}

/// One batch's schedule.
#[derive(Debug, Clone)]
pub struct BatchSchedule {
    /// The batch.
    pub batch: Batch,
    /// `BATCH_<NAME>_CRON` (default: the seed's).
    pub schedule: CronSchedule,
    /// `BATCH_<NAME>_ENABLED` (default true).
    pub enabled: bool,
}

/// What the batches work with.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    /// `TOKEN_CLEANUP_REVOKED_DAYS`: revoked refresh tokens are kept this
    /// long (reuse of one revokes its family), then deleted.
    pub revoked_token_retention: Duration,
    /// `BACKUP_DIR`: where the database backups are; unset, the check alerts.
    pub backup_dir: Option<std::path::PathBuf>,
    /// `BACKUP_PATTERN`: the backups' file names (`*` and `?` wildcards).
    pub backup_pattern: String,
    /// `BACKUP_MAX_AGE_HOURS`: the newest backup must be younger.
    pub backup_max_age: Duration,
    /// `CERT_CHECK_HOSTS`: `host:port` (port 443 when left out), comma-separated.
    pub cert_hosts: Vec<(String, u16)>,
}

/// Alert channels.
#[derive(Clone)]
pub struct AlertConfig {
    /// `SLACK_WEBHOOK_URL`.
    pub slack_webhook: Option<String>,
    /// `TEAMS_WEBHOOK_URL`.
    pub teams_webhook: Option<String>,
    /// `ALERT_DEDUP_MINUTES`: one alert per condition within this window (0: every alert).
    pub dedup_window: Duration,
}

impl std::fmt::Debug for AlertConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Webhook URLs are credentials.
        f.debug_struct("AlertConfig")
            .field("slack_webhook", &self.slack_webhook.as_ref().map(|_| "<redacted>"))
            .field("teams_webhook", &self.teams_webhook.as_ref().map(|_| "<redacted>"))
            .field("dedup_window", &self.dedup_window)
            .finish()
    }
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

/// PostgreSQL.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`; the seed's `postgresql+asyncpg://` scheme is accepted.
    pub url: String,
    /// `DATABASE_POOL_SIZE` + `DATABASE_MAX_OVERFLOW`: sqlx has one pool size, the sum.
    pub max_connections: u32,
    /// `DATABASE_POOL_TIMEOUT`: how long a request waits for a connection.
    pub acquire_timeout: Duration,
    /// `RUN_MIGRATIONS`: apply pending migrations at start-up.
    pub run_migrations: bool,
}

/// Redis.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `REDIS_URL` with `REDIS_PASSWORD` applied.
    pub url: String,
    /// `REDIS_SOCKET_TIMEOUT`: connect and response timeout.
    pub socket_timeout: Duration,
    /// `REDIS_KEY_PREFIX`: prefix of every queue, key and channel this service uses.
    pub key_prefix: String,
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

/// The HTTP API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `API_HOST`.
    pub host: String,
    /// `API_PORT`.
    pub port: u16,
    /// `API_PREFIX` (default `/api/v1`).
    pub prefix: String,
    /// `JWT_SECRET_KEY`, and `JWT_SECRET_KEY_NEW` during a rotation.
    pub jwt: JwtConfig,
    /// `CORS_ALLOWED_ORIGINS` and the seed's `ALLOWED_ORIGINS`.
    pub cors_allowed_origins: Vec<String>,
    /// `MAX_REQUEST_BODY_BYTES`.
    pub max_body_bytes: usize,
    /// `ANSWER_MAX_CHARS`: longest accepted candidate answer.
    pub answer_max_chars: usize,
    /// `WS_HEARTBEAT_INTERVAL`: seconds between pings; a missed pong closes.
    pub ws_heartbeat: Duration,
    /// `WS_MAX_CONNECTIONS_PER_USER`.
    pub ws_max_connections_per_user: usize,
    /// `WS_MESSAGE_MAX_SIZE`: larger frames close the socket with 1009.
    pub ws_max_message_bytes: usize,
    /// `HEALTH_CHECK_TIMEOUT_MS`: per dependency check.
    pub health_check_timeout: Duration,
    /// `SESSION_TIMEOUT_MINUTES`: idle time after which a session expires.
    pub session_timeout: Duration,
    /// `METRICS_TOKEN`: when set, `/metrics` wants it as a bearer token.
    pub metrics_token: Option<Secret>,
}

/// A value kept out of logs and debug output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Token signing.
#[derive(Clone)]
pub struct JwtConfig {
    /// `JWT_SECRET_KEY`: verifies, and signs unless a new key is set.
    pub secret: String,
    /// `JWT_SECRET_KEY_NEW`: during a rotation it signs; both verify.
    pub new_secret: Option<String>,
    /// `JWT_ACCESS_TOKEN_EXPIRE_MINUTES`.
    pub access_ttl: Duration,
    /// `JWT_REFRESH_TOKEN_EXPIRE_DAYS`.
    pub refresh_ttl: Duration,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field("secret", &"<redacted>")
            .field("new_secret", &self.new_secret.as_ref().map(|_| "<redacted>"))
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .finish()
    }
}

/// Worker pools and provider.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `TURN_WORKER_CONCURRENCY`: turn jobs one worker process runs at once.
    pub turn_concurrency: usize,
    /// `BATCH_WORKER_CONCURRENCY`: evaluation and batch jobs at once, in their own pool.
    pub batch_concurrency: usize,
    /// `WORKER_SHUTDOWN_TIMEOUT_SECONDS`: on SIGTERM, how long held jobs may finish.
    pub shutdown_timeout: Duration,
    /// `AI_PROVIDER`, validated.
    pub provider_name: &'static str,
    /// `AI_FALLBACK_PROVIDERS`, validated: tried in order after it.
    pub fallback_names: Vec<&'static str>,
    /// The settings of the whole chain, primary first: read and validated
    /// only by the worker, the one part that calls providers (the API and
    /// the scheduler hold no provider keys).
    pub providers: Option<Vec<ProviderKind>>,
    /// `SCRIPTED_DELTA_DELAY_MS`: pause between the scripted provider's deltas.
    pub scripted_delta_delay: Duration,
    /// Rate limits and circuit breaking, for every provider of the chain.
    pub policy: ProviderPolicy,
}

/// The provider kinds of SPEC §7.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderKind {
    /// The built-in deterministic interviewer.
    Scripted,
    /// Any OpenAI-compatible endpoint (`OPENAI_COMPATIBLE_*`).
    OpenAiCompatible(EndpointConfig),
    /// Azure OpenAI (`AZURE_OPENAI_*`): a deployment, an `api-key` header.
    AzureOpenAi(AzureConfig),
    /// AWS Bedrock's OpenAI-compatible endpoint with a Bedrock API key.
    AwsBedrock(EndpointConfig),
    /// Vertex AI's OpenAI-compatible endpoint. `api_key` is unused: the
    /// bearer token is read from `token_file` for every request.
    GcpVertex(EndpointConfig, std::path::PathBuf),
}

/// An Azure OpenAI deployment: `endpoint.base_url` is `AZURE_OPENAI_ENDPOINT`,
/// `endpoint.model` is `AZURE_OPENAI_DEPLOYMENT`, the key goes in an
/// `api-key` header.
#[derive(Debug, Clone, PartialEq)]
pub struct AzureConfig {
    /// The endpoint settings every provider has.
    pub endpoint: EndpointConfig,
    /// `AZURE_OPENAI_API_VERSION`.
    pub api_version: String,
}

/// An OpenAI-compatible endpoint.
#[derive(Clone, PartialEq)]
pub struct EndpointConfig {
    /// `{P}_BASE_URL`: up to and without `/chat/completions`.
    pub base_url: String,
    /// `{P}_API_KEY`: sent as a bearer token.
    pub api_key: String,
    /// `{P}_MODEL`.
    pub model: String,
    /// `{P}_TIMEOUT` (seconds): connecting, waiting for headers, and any gap in a stream.
    pub timeout: Duration,
    /// `{P}_MAX_RETRIES`: retries on this provider before the next one.
    pub max_retries: u32,
    /// `{P}_PRICE_INPUT_PER_1K`, `{P}_PRICE_OUTPUT_PER_1K`: USD per 1,000 tokens.
    pub prices: (f64, f64),
    /// `{P}_RPM`: requests per minute for the whole fleet; none when unset.
    pub rpm: Option<u32>,
    /// `{P}_TPM`: tokens per minute for the whole fleet; none when unset.
    pub tpm: Option<u32>,
}

impl std::fmt::Debug for EndpointConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &"<redacted>")
            .field("model", &self.model)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("prices", &self.prices)
            .field("rpm", &self.rpm)
            .field("tpm", &self.tpm)
            .finish()
    }
}

/// How the workers share each provider (`docs/rate-limits.md`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderPolicy {
    /// `AI_RATE_LIMIT_WINDOW_SECONDS`: the sliding window `{P}_RPM` and
    /// `{P}_TPM` are enforced over, scaled to it (default 60: per minute; 10
    /// enforces a sixth of the budget per 10 s, as Azure does).
    pub rate_window: Duration,
    /// `AI_RATE_LIMIT_MAX_WAIT_MS`: how long a call waits for the limit
    /// before it moves to the next provider (or back to the queue).
    pub rate_max_wait: Duration,
    /// `AI_CIRCUIT_BREAKER_FAILURES`: consecutive failures (5xx, timeouts,
    /// broken connections) that open a provider's circuit.
    pub circuit_failures: u32,
    /// `AI_CIRCUIT_BREAKER_COOLDOWN_SECONDS`: how long an open circuit skips
    /// its provider before one probe request decides.
    pub circuit_cooldown: Duration,
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
        let provider_name = provider_name(&mut v, "AI_PROVIDER", "scripted");
        let mut fallback_names: Vec<&'static str> = Vec::new();
        for name in v.list("AI_FALLBACK_PROVIDERS") {
            let known = provider_name_of(&mut v, "AI_FALLBACK_PROVIDERS", &name);
            if known == provider_name || fallback_names.contains(&known) {
                v.problem("AI_FALLBACK_PROVIDERS", format!("{name:?} is already in the chain"));
            } else {
                fallback_names.push(known);
            }
        }
        let app = AppConfig {
            name: v.string("APP_NAME", "AI Interview System"),
            version: v.string("APP_VERSION", env!("CARGO_PKG_VERSION")),
            environment: environment(&mut v),
            log_filter: log_filter(&mut v),
        };
        let database = DatabaseConfig {
            url: database_url(&mut v),
            max_connections: v.ranged("DATABASE_POOL_SIZE", 20, 1, 1000)
                + v.ranged("DATABASE_MAX_OVERFLOW", 10, 0, 1000),
            acquire_timeout: v.seconds("DATABASE_POOL_TIMEOUT", 30, 1, 600),
            run_migrations: v.flag("RUN_MIGRATIONS", true),
        };
        let redis = RedisConfig {
            url: redis_url(&mut v),
            socket_timeout: v.seconds("REDIS_SOCKET_TIMEOUT", 5, 1, 300),
            key_prefix: key_prefix(&mut v),
        };
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
        let api = ApiConfig {
            host: v.string("API_HOST", "0.0.0.0"),
            port: v.parse("API_PORT", 8001),
            prefix: api_prefix(&mut v),
            jwt: jwt(&mut v, component == Component::Api),
            cors_allowed_origins: {
                let mut origins = v.list("CORS_ALLOWED_ORIGINS");
                origins.extend(v.list("ALLOWED_ORIGINS"));
                origins.dedup();
                origins
            },
            max_body_bytes: v.ranged("MAX_REQUEST_BODY_BYTES", 65_536, 1_024, 16 * 1_048_576),
            answer_max_chars: v.ranged("ANSWER_MAX_CHARS", 8_000, 1, 1_000_000),
            ws_heartbeat: v.seconds("WS_HEARTBEAT_INTERVAL", 30, 1, 3600),
            ws_max_connections_per_user: v.ranged("WS_MAX_CONNECTIONS_PER_USER", 3, 1, 1000),
            ws_max_message_bytes: v.ranged("WS_MESSAGE_MAX_SIZE", 1_048_576, 256, 64 * 1_048_576),
            health_check_timeout: v.millis("HEALTH_CHECK_TIMEOUT_MS", 2_000, 10, 60_000),
            session_timeout: Duration::from_secs(60 * v.ranged("SESSION_TIMEOUT_MINUTES", 60, 1, 100_000)),
            metrics_token: v.get("METRICS_TOKEN").filter(|t| !t.is_empty()).map(|t| Secret(t.to_owned())),
        };
        let worker = WorkerConfig {
            turn_concurrency: v.ranged("TURN_WORKER_CONCURRENCY", 64, 1, 10_000),
            batch_concurrency: v.ranged("BATCH_WORKER_CONCURRENCY", 4, 1, 1_000),
            shutdown_timeout: v.seconds("WORKER_SHUTDOWN_TIMEOUT_SECONDS", 30, 1, 3600),
            provider_name,
            providers: (component == Component::Worker).then(|| {
                std::iter::once(provider_name)
                    .chain(fallback_names.iter().copied())
                    .map(|n| provider(&mut v, n))
                    .collect()
            }),
            fallback_names,
            scripted_delta_delay: v.millis("SCRIPTED_DELTA_DELAY_MS", 20, 0, 10_000),
            policy: ProviderPolicy {
                rate_window: v.seconds("AI_RATE_LIMIT_WINDOW_SECONDS", 60, 1, 60),
                rate_max_wait: v.millis("AI_RATE_LIMIT_MAX_WAIT_MS", 30_000, 0, 3_600_000),
                circuit_failures: v.ranged("AI_CIRCUIT_BREAKER_FAILURES", 5, 1, 1_000),
                circuit_cooldown: v.seconds("AI_CIRCUIT_BREAKER_COOLDOWN_SECONDS", 30, 1, 86_400),
            },
        };
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
        let scheduler = SchedulerConfig {
            timezone: {
                let name = v.string("SCHEDULER_TIMEZONE", "Asia/Tokyo");
                name.parse().unwrap_or_else(|_| {
                    v.problem(
                        "SCHEDULER_TIMEZONE",
                        format!("{name:?} is not an IANA time zone (e.g. Asia/Tokyo, UTC)"),
                    );
                    chrono_tz::Asia::Tokyo
                })
            },
            catch_up_window: Duration::from_secs(3600 * v.ranged("SCHEDULER_CATCH_UP_HOURS", 24, 0, 24 * 62)),
            batches: Batch::ALL.iter().filter_map(|b| batch_schedule(&mut v, *b)).collect(),
        };
        let batches = BatchSettings {
            revoked_token_retention: Duration::from_secs(86_400 * v.ranged("TOKEN_CLEANUP_REVOKED_DAYS", 30, 0, 3650)),
            backup_dir: v.get("BACKUP_DIR").map(std::path::PathBuf::from),
            backup_pattern: v.string("BACKUP_PATTERN", "*.dump"),
            backup_max_age: Duration::from_secs(3600 * v.ranged("BACKUP_MAX_AGE_HOURS", 26, 1, 24 * 365)),
            cert_hosts: cert_hosts(&mut v),
        };
        let alerts = AlertConfig {
            slack_webhook: webhook(&mut v, "SLACK_WEBHOOK_URL"),
            teams_webhook: webhook(&mut v, "TEAMS_WEBHOOK_URL"),
            dedup_window: Duration::from_secs(60 * v.ranged("ALERT_DEDUP_MINUTES", 60, 0, 7 * 24 * 60)),
        };
        v.finish()?;
        Ok(Config { scheduler, batches, alerts, app, database, redis, jobs, api, worker, bootstrap_admin })
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

fn database_url(v: &mut Vars) -> String {
    let url = v.required("DATABASE_URL");
    // The seed's SQLAlchemy URL names its driver; sqlx speaks the protocol itself.
    let url = url.replacen("postgresql+asyncpg://", "postgres://", 1).replacen("postgresql://", "postgres://", 1);
    if !url.is_empty() && !url.starts_with("postgres://") {
        v.problem("DATABASE_URL", "must start with postgres:// or postgresql://");
    }
    url
}

fn redis_url(v: &mut Vars) -> String {
    let url = v.string("REDIS_URL", "redis://127.0.0.1:6379/0");
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        v.problem("REDIS_URL", "must start with redis:// or rediss://");
        return url;
    }
    match v.get("REDIS_PASSWORD").map(str::to_owned) {
        Some(password) if !url.contains('@') => {
            let (scheme, rest) = url.split_once("://").unwrap_or(("redis", &url));
            format!("{scheme}://:{}@{rest}", percent_encode(&password))
        }
        _ => url,
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn key_prefix(v: &mut Vars) -> String {
    let prefix = v.string("REDIS_KEY_PREFIX", "aiv");
    // apalis-redis splits notification channels on ':', so queue names may not hold one.
    if !prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') || prefix.len() > 64 {
        v.problem("REDIS_KEY_PREFIX", "may hold only letters, digits, '_' and '-' (at most 64)");
    }
    prefix
}

fn api_prefix(v: &mut Vars) -> String {
    let prefix = v.string("API_PREFIX", "/api/v1");
    if !prefix.starts_with('/') || prefix.ends_with('/') {
        v.problem("API_PREFIX", "must start with '/' and not end with one");
    }
    prefix
}

fn jwt(v: &mut Vars, required: bool) -> JwtConfig {
    let algorithm = v.string("JWT_ALGORITHM", "HS256");
    if algorithm != "HS256" {
        v.problem("JWT_ALGORITHM", format!("only HS256 is supported, got {algorithm:?}"));
    }
    let secret = if required { v.required("JWT_SECRET_KEY") } else { v.string("JWT_SECRET_KEY", "") };
    if required && !secret.is_empty() && secret.len() < 32 {
        v.problem("JWT_SECRET_KEY", "must be at least 32 characters");
    }
    let new_secret = v.get("JWT_SECRET_KEY_NEW").map(str::to_owned);
    if new_secret.as_ref().is_some_and(|s| s.len() < 32) {
        v.problem("JWT_SECRET_KEY_NEW", "must be at least 32 characters");
    }
    JwtConfig {
        secret,
        new_secret,
        access_ttl: Duration::from_secs(60 * v.ranged("JWT_ACCESS_TOKEN_EXPIRE_MINUTES", 30, 1, 1440)),
        refresh_ttl: Duration::from_secs(86_400 * v.ranged("JWT_REFRESH_TOKEN_EXPIRE_DAYS", 7, 1, 365)),
    }
}

/// `None` (with the problem recorded, so start-up stops) when the
/// expression does not parse.
fn batch_schedule(v: &mut Vars, batch: Batch) -> Option<BatchSchedule> {
    let variable = format!("BATCH_{}_CRON", batch.env_name());
    let expression = v.string(&variable, batch.default_cron());
    let enabled = v.flag(&format!("BATCH_{}_ENABLED", batch.env_name()), true);
    match CronSchedule::parse(&expression) {
        Ok(schedule) => Some(BatchSchedule { batch, schedule, enabled }),
        Err(e) => {
            v.problem(&variable, e);
            None
        }
    }
}

fn cert_hosts(v: &mut Vars) -> Vec<(String, u16)> {
    let mut hosts = Vec::new();
    for item in v.list("CERT_CHECK_HOSTS") {
        let (host, port) = match item.rsplit_once(':') {
            Some((host, port)) => match port.parse::<u16>() {
                Ok(port) if port > 0 => (host.to_owned(), port),
                _ => {
                    v.problem("CERT_CHECK_HOSTS", format!("{item:?}: {port:?} is not a port"));
                    continue;
                }
            },
            None => (item.clone(), 443),
        };
        if host.is_empty() {
            v.problem("CERT_CHECK_HOSTS", format!("{item:?} has no host"));
            continue;
        }
        hosts.push((host, port));
    }
    hosts
}

fn webhook(v: &mut Vars, variable: &str) -> Option<String> {
    let url = v.get(variable)?.to_owned();
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        v.problem(variable, "must be an http(s) URL");
        return None;
    }
    Some(url)
}

/// `variable` (a provider name, `default` when unset): one built so far.
fn provider_name(v: &mut Vars, variable: &str, default: &str) -> &'static str {
    let name = v.string(variable, default);
    provider_name_of(v, variable, &name)
}

fn provider_name_of(v: &mut Vars, variable: &str, name: &str) -> &'static str {
    let name = name.trim().to_ascii_lowercase();
    match name.as_str() {
        "scripted" => "scripted",
        "openai_compatible" => "openai_compatible",
        "azure_openai" => "azure_openai",
        "aws_bedrock" => "aws_bedrock",
        "gcp_vertex" => "gcp_vertex",
        other => {
            v.problem(
                variable,
                format!("unknown provider {other:?}; expected scripted, azure_openai, aws_bedrock, gcp_vertex or openai_compatible"),
            );
            "scripted"
        }
    }
}

/// The settings of provider `name` (from [`provider_name`]).
fn provider(v: &mut Vars, name: &str) -> ProviderKind {
    match name {
        "scripted" => ProviderKind::Scripted,
        "openai_compatible" => {
            let base_url = v.required("OPENAI_COMPATIBLE_BASE_URL");
            let api_key = v.required("OPENAI_COMPATIBLE_API_KEY");
            let model = v.required("OPENAI_COMPATIBLE_MODEL");
            ProviderKind::OpenAiCompatible(endpoint(v, "OPENAI_COMPATIBLE", base_url, api_key, model))
        }
        "azure_openai" => {
            let endpoint_url = v.required("AZURE_OPENAI_ENDPOINT");
            let api_key = v.required("AZURE_OPENAI_API_KEY");
            let deployment = v.required("AZURE_OPENAI_DEPLOYMENT");
            let api_version = v.string("AZURE_OPENAI_API_VERSION", "2024-10-21");
            let endpoint = endpoint(v, "AZURE_OPENAI", endpoint_url, api_key, deployment);
            ProviderKind::AzureOpenAi(AzureConfig { endpoint, api_version })
        }
        "aws_bedrock" => {
            // BEDROCK_ENDPOINT overrides the regional URL (private endpoints, tests).
            let base_url = match v.get("BEDROCK_ENDPOINT") {
                Some(url) => url.to_owned(),
                None => format!("https://bedrock-runtime.{}.amazonaws.com/openai/v1", v.required("AWS_REGION")),
            };
            let api_key = v.required("AWS_BEARER_TOKEN_BEDROCK");
            let model = v.required("BEDROCK_MODEL_ID");
            ProviderKind::AwsBedrock(endpoint(v, "BEDROCK", base_url, api_key, model))
        }
        "gcp_vertex" => {
            // VERTEX_AI_ENDPOINT overrides the regional URL (private endpoints, tests).
            let base_url = match v.get("VERTEX_AI_ENDPOINT") {
                Some(url) => url.to_owned(),
                None => {
                    let (project, location) = (v.required("GCP_PROJECT_ID"), v.required("GCP_LOCATION"));
                    format!(
                        "https://{location}-aiplatform.googleapis.com/v1/projects/{project}/locations/{location}/endpoints/openapi"
                    )
                }
            };
            let token_file = std::path::PathBuf::from(v.required("VERTEX_AI_TOKEN_FILE"));
            if !token_file.as_os_str().is_empty() && std::fs::metadata(&token_file).is_err() {
                v.problem("VERTEX_AI_TOKEN_FILE", format!("{} cannot be read", token_file.display()));
            }
            let model = v.required("VERTEX_AI_MODEL");
            ProviderKind::GcpVertex(endpoint(v, "VERTEX_AI", base_url, String::new(), model), token_file)
        }
        _ => ProviderKind::Scripted,
    }
}

/// An endpoint from its URL, key and model (read by the caller, whose
/// variables differ per provider) and the `{prefix}_TIMEOUT` and
/// `{prefix}_PRICE_*` variables every provider has.
fn endpoint(v: &mut Vars, prefix: &str, base_url: String, api_key: String, model: String) -> EndpointConfig {
    let url_variable = match prefix {
        "AZURE_OPENAI" => "AZURE_OPENAI_ENDPOINT".to_owned(),
        "BEDROCK" => "BEDROCK_ENDPOINT".to_owned(),
        "VERTEX_AI" => "VERTEX_AI_ENDPOINT".to_owned(),
        _ => format!("{prefix}_BASE_URL"),
    };
    if !(base_url.is_empty() || base_url.starts_with("http://") || base_url.starts_with("https://")) {
        v.problem(&url_variable, format!("{base_url:?} is not an http(s) URL"));
    }
    let price = |v: &mut Vars, name: String| {
        let price: f64 = v.parse(&name, 0.0);
        if !(price.is_finite() && price >= 0.0) {
            v.problem(&name, format!("{price} is not a price (USD per 1,000 tokens, 0 or more)"));
        }
        price
    };
    EndpointConfig {
        base_url: base_url.trim_end_matches('/').to_owned(),
        api_key,
        model,
        timeout: v.seconds(&format!("{prefix}_TIMEOUT"), 60, 1, 600),
        max_retries: v.ranged(&format!("{prefix}_MAX_RETRIES"), 3, 0, 10),
        prices: (price(v, format!("{prefix}_PRICE_INPUT_PER_1K")), price(v, format!("{prefix}_PRICE_OUTPUT_PER_1K"))),
        rpm: v.get(&format!("{prefix}_RPM")).is_some().then(|| v.ranged(&format!("{prefix}_RPM"), 1, 1, 10_000_000)),
        tpm: v.get(&format!("{prefix}_TPM")).is_some().then(|| v.ranged(&format!("{prefix}_TPM"), 1, 1, 1_000_000_000)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)], component: Component) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_vars(Vars::from_map(map), component)
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn an_openai_compatible_endpoint_needs_its_variables() {
        let err = load(&[("DATABASE_URL", "postgres://x/y"), ("AI_PROVIDER", "openai_compatible")], Component::Worker)
            .expect_err("incomplete");
        for name in ["OPENAI_COMPATIBLE_BASE_URL", "OPENAI_COMPATIBLE_API_KEY", "OPENAI_COMPATIBLE_MODEL"] {
            assert!(err.to_string().contains(&format!("{name}: is required")), "{err}");
        }
        let err = load(
            &[
                ("DATABASE_URL", "postgres://x/y"),
                ("AI_PROVIDER", "openai_compatible"),
                ("OPENAI_COMPATIBLE_BASE_URL", "ftp://llm"),
                ("OPENAI_COMPATIBLE_API_KEY", "k"),
                ("OPENAI_COMPATIBLE_MODEL", "m"),
                ("OPENAI_COMPATIBLE_PRICE_INPUT_PER_1K", "-1"),
                ("OPENAI_COMPATIBLE_TIMEOUT", "0"),
            ],
            Component::Worker,
        )
        .expect_err("bad values");
        for name in ["OPENAI_COMPATIBLE_BASE_URL", "OPENAI_COMPATIBLE_PRICE_INPUT_PER_1K", "OPENAI_COMPATIBLE_TIMEOUT"]
        {
            assert!(err.to_string().contains(name), "{name} in {err}");
        }
        let c = load(
            &[
                ("DATABASE_URL", "postgres://x/y"),
                ("AI_PROVIDER", "openai_compatible"),
                ("OPENAI_COMPATIBLE_BASE_URL", "http://llm.internal/v1/"),
                ("OPENAI_COMPATIBLE_API_KEY", "k"),
                ("OPENAI_COMPATIBLE_MODEL", "m"),
            ],
            Component::Worker,
        )
        .expect("valid");
        match c.worker.providers.as_deref() {
            Some([ProviderKind::OpenAiCompatible(e)]) => {
                assert_eq!(e.base_url, "http://llm.internal/v1");
                assert_eq!(e.timeout, Duration::from_secs(60));
                assert!(!format!("{e:?}").contains("\"k\""), "the key is redacted");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn azure_and_bedrock_read_their_own_variables() {
        let err = load(&[("DATABASE_URL", "postgres://x/y"), ("AI_PROVIDER", "azure_openai")], Component::Worker)
            .expect_err("incomplete");
        for name in ["AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_DEPLOYMENT"] {
            assert!(err.to_string().contains(&format!("{name}: is required")), "{err}");
        }
        let c = load(
            &[
                ("DATABASE_URL", "postgres://x/y"),
                ("AI_PROVIDER", "aws_bedrock"),
                ("AWS_REGION", "eu-west-1"),
                ("AWS_BEARER_TOKEN_BEDROCK", "k"),
                ("BEDROCK_MODEL_ID", "m"),
                ("BEDROCK_TIMEOUT", "30"),
            ],
            Component::Worker,
        )
        .expect("valid");
        match c.worker.providers.as_deref() {
            Some([ProviderKind::AwsBedrock(e)]) => {
                assert_eq!(e.base_url, "https://bedrock-runtime.eu-west-1.amazonaws.com/openai/v1");
                assert_eq!(e.timeout, Duration::from_secs(30));
            }
            other => panic!("{other:?}"),
        }
        // Only the worker holds provider keys.
        let api = load(
            &[("DATABASE_URL", "postgres://x/y"), ("AI_PROVIDER", "azure_openai"), ("JWT_SECRET_KEY", SECRET)],
            Component::Api,
        )
        .expect("the API needs no Azure settings");
        assert_eq!((api.worker.provider_name, api.worker.providers), ("azure_openai", None));
        let err = load(&[("DATABASE_URL", "postgres://x/y"), ("AI_PROVIDER", "gcp_vertex")], Component::Worker)
            .expect_err("incomplete");
        for name in ["GCP_PROJECT_ID", "GCP_LOCATION", "VERTEX_AI_TOKEN_FILE", "VERTEX_AI_MODEL"] {
            assert!(err.to_string().contains(&format!("{name}: is required")), "{err}");
        }
        let token = std::env::temp_dir().join("aiv-config-test-vertex-token");
        std::fs::write(&token, "t").expect("temp file");
        let c = load(
            &[
                ("DATABASE_URL", "postgres://x/y"),
                ("AI_PROVIDER", "gcp_vertex"),
                ("GCP_PROJECT_ID", "p1"),
                ("GCP_LOCATION", "europe-west4"),
                ("VERTEX_AI_MODEL", "m"),
                ("VERTEX_AI_TOKEN_FILE", token.to_str().unwrap_or_default()),
            ],
            Component::Worker,
        );
        let _ = std::fs::remove_file(&token);
        match c.expect("valid").worker.providers.as_deref() {
            Some([ProviderKind::GcpVertex(e, _)]) => assert_eq!(
                e.base_url,
                "https://europe-west4-aiplatform.googleapis.com/v1/projects/p1/locations/europe-west4/endpoints/openapi"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_fallback_chain_is_validated() {
        let base = [("DATABASE_URL", "postgres://x/y"), ("AI_PROVIDER", "scripted")];
        let err = load(&[base[0], base[1], ("AI_FALLBACK_PROVIDERS", "scripted, gpt")], Component::Worker)
            .expect_err("bad chain");
        let text = err.to_string();
        assert!(text.contains("AI_FALLBACK_PROVIDERS: \"scripted\" is already in the chain"), "{text}");
        assert!(text.contains("AI_FALLBACK_PROVIDERS: unknown provider \"gpt\""), "{text}");
        let c = load(
            &[
                base[0],
                ("AI_PROVIDER", "aws_bedrock"),
                ("AI_FALLBACK_PROVIDERS", " Scripted "),
                ("AWS_REGION", "us-east-1"),
                ("AWS_BEARER_TOKEN_BEDROCK", "k"),
                ("BEDROCK_MODEL_ID", "m"),
            ],
            Component::Worker,
        )
        .expect("valid");
        assert_eq!(c.worker.fallback_names, ["scripted"]);
        assert!(matches!(c.worker.providers.as_deref(), Some([ProviderKind::AwsBedrock(_), ProviderKind::Scripted])));
    }

    #[test]
    fn rate_limits_and_the_circuit_are_read_and_bad_values_are_named() {
        let base = [
            ("DATABASE_URL", "postgres://x/y"),
            ("AI_PROVIDER", "aws_bedrock"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_BEARER_TOKEN_BEDROCK", "k"),
            ("BEDROCK_MODEL_ID", "m"),
        ];
        let c = load(
            &[&base[..], &[("BEDROCK_RPM", "120"), ("AI_RATE_LIMIT_WINDOW_SECONDS", "10")]].concat(),
            Component::Worker,
        )
        .expect("valid");
        match c.worker.providers.as_deref() {
            Some([ProviderKind::AwsBedrock(e)]) => assert_eq!((e.rpm, e.tpm), (Some(120), None)),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.worker.policy.rate_window, Duration::from_secs(10));
        assert_eq!((c.worker.policy.circuit_failures, c.worker.policy.circuit_cooldown), (5, Duration::from_secs(30)));
        let bad = [
            ("BEDROCK_RPM", "lots"),
            ("BEDROCK_TPM", "0"),
            ("AI_RATE_LIMIT_WINDOW_SECONDS", "3600"),
            ("AI_CIRCUIT_BREAKER_FAILURES", "-1"),
        ];
        let text = load(&[&base[..], &bad[..]].concat(), Component::Worker).expect_err("bad values").to_string();
        for name in [
            "BEDROCK_RPM: cannot parse",
            "BEDROCK_TPM: must be between 1",
            "AI_RATE_LIMIT_WINDOW_SECONDS: must be between 1 and 60",
            "AI_CIRCUIT_BREAKER_FAILURES: cannot parse",
        ] {
            assert!(text.contains(name), "{name} in {text}");
        }
    }

    #[test]
    fn the_cron_table_and_batch_settings_are_read_and_bad_values_are_named() {
        let c = load(&[("DATABASE_URL", "postgres://x/y")], Component::Scheduler).expect("defaults");
        assert_eq!(c.scheduler.timezone, chrono_tz::Asia::Tokyo);
        assert_eq!(c.scheduler.batches.len(), Batch::ALL.len(), "every default schedule parses");
        assert!(c.scheduler.batches.iter().all(|b| b.enabled && b.schedule.expression == b.batch.default_cron()));
        let c = load(
            &[
                ("DATABASE_URL", "postgres://x/y"),
                ("BATCH_TOKEN_CLEANUP_CRON", "*/5 * * * * *"),
                ("BATCH_MONTHLY_REPORT_ENABLED", "false"),
                ("CERT_CHECK_HOSTS", "api.example.com, 127.0.0.1:8443"),
                ("SCHEDULER_TIMEZONE", "UTC"),
            ],
            Component::Scheduler,
        )
        .expect("valid");
        assert_eq!(c.scheduler.timezone, chrono_tz::UTC);
        let token = c.scheduler.batches.iter().find(|b| b.batch == Batch::TokenCleanup).expect("token_cleanup");
        assert_eq!(token.schedule.expression, "*/5 * * * * *");
        assert!(!c.scheduler.batches.iter().any(|b| b.batch == Batch::MonthlyReport && b.enabled));
        assert_eq!(c.batches.cert_hosts, [("api.example.com".to_owned(), 443), ("127.0.0.1".to_owned(), 8443)]);
        let err = load(
            &[
                ("DATABASE_URL", "postgres://x/y"),
                ("BATCH_CERTIFICATE_CHECK_CRON", "every monday"),
                ("SCHEDULER_TIMEZONE", "Mars/Olympus"),
                ("CERT_CHECK_HOSTS", "host:http"),
                ("SLACK_WEBHOOK_URL", "hooks.slack.com/x"),
                ("BATCH_TOKEN_CLEANUP_ENABLED", "maybe"),
            ],
            Component::Scheduler,
        )
        .expect_err("bad values")
        .to_string();
        for name in [
            "BATCH_CERTIFICATE_CHECK_CRON: \"every monday\" has 2 fields",
            "SCHEDULER_TIMEZONE: \"Mars/Olympus\" is not an IANA time zone",
            "CERT_CHECK_HOSTS: \"host:http\"",
            "SLACK_WEBHOOK_URL: must be an http(s) URL",
            "BATCH_TOKEN_CLEANUP_ENABLED: expected true or false",
        ] {
            assert!(err.contains(name), "{name} in {err}");
        }
    }

    #[test]
    fn the_seed_database_url_is_accepted() {
        let c = load(
            &[("DATABASE_URL", "postgresql+asyncpg://u:p@db:5432/ai"), ("JWT_SECRET_KEY", SECRET)],
            Component::Api,
        )
        .expect("valid");
        assert_eq!(c.database.url, "postgres://u:p@db:5432/ai");
        assert_eq!(c.database.max_connections, 30);
        assert_eq!(c.api.port, 8001);
    }

    #[test]
    fn the_api_needs_a_long_jwt_secret_but_the_worker_does_not() {
        let err = load(&[("DATABASE_URL", "postgres://x/y"), ("JWT_SECRET_KEY", "short")], Component::Api)
            .expect_err("short secret");
        assert!(err.to_string().contains("JWT_SECRET_KEY: must be at least 32"), "{err}");
        assert!(load(&[("DATABASE_URL", "postgres://x/y")], Component::Worker).is_ok());
        assert!(load(&[("DATABASE_URL", "postgres://x/y")], Component::Migrate).is_ok(), "api migrate");
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err = load(
            &[
                ("DATABASE_URL", "mysql://x"),
                ("API_PORT", "eighty"),
                ("REDIS_KEY_PREFIX", "a:b"),
                ("AI_PROVIDER", "claude"),
                ("WS_MAX_CONNECTIONS_PER_USER", "0"),
            ],
            Component::Worker,
        )
        .expect_err("bad");
        let text = err.to_string();
        for name in ["DATABASE_URL", "API_PORT", "REDIS_KEY_PREFIX", "AI_PROVIDER", "WS_MAX_CONNECTIONS_PER_USER"] {
            assert!(text.contains(&format!("{name}:")), "{name} missing from {text}");
        }
    }

    #[test]
    fn redis_password_goes_into_the_url() {
        let c = load(
            &[("DATABASE_URL", "postgres://x/y"), ("REDIS_URL", "redis://r:6379/0"), ("REDIS_PASSWORD", "p@ss")],
            Component::Worker,
        )
        .expect("valid");
        assert_eq!(c.redis.url, "redis://:p%40ss@r:6379/0");
    }

    #[test]
    fn seed_log_levels_map_to_filters() {
        let c =
            load(&[("DATABASE_URL", "postgres://x/y"), ("LOG_LEVEL", "WARNING")], Component::Worker).expect("valid");
        assert!(c.app.log_filter.starts_with("warn,"));
    }
}
