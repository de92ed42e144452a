//! This API instance's series (Prometheus scrapes every instance): requests
//! by endpoint and status with their durations, WebSockets, logins and
//! second-factor checks, the database pool; and the fleet's state, read at
//! each scrape (`routes::metrics`) and the same from every instance.

use shared::metrics::{Gauge, GaugeVec, HistogramVec, IntCounterVec, Registry, counters, gauge, gauges, histograms};

/// Upper bounds (ms) of the `api_request_duration_ms` buckets.
const BUCKETS_MS: [f64; 11] = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_000.0, 5_000.0, 10_000.0];

/// The families, in the process's registry.
pub struct ApiMetrics {
    requests: IntCounterVec,
    durations: HistogramVec,
    ws_messages: IntCounterVec,
    ws_disconnects: IntCounterVec,
    logins: IntCounterVec,
    mfa: IntCounterVec,
    /// Set at each scrape: this instance's state.
    pub instance: InstanceGauges,
    /// Set at each scrape: the fleet's state, `max` over the instances.
    pub fleet: FleetGauges,
}

/// This instance's state.
pub struct InstanceGauges {
    /// `websocket_active_connections`.
    pub websockets: Gauge,
    /// `db_connection_pool_size`.
    pub pool_size: Gauge,
    /// `db_connection_pool_in_use`.
    pub pool_in_use: Gauge,
    /// `db_connection_pool_available`.
    pub pool_available: Gauge,
}

/// The fleet's state, exported alike by every API instance.
pub struct FleetGauges {
    /// `queue_jobs{queue,state}`.
    pub queue_jobs: GaugeVec,
    /// `queue_oldest_pending_age_seconds{queue}`.
    pub oldest_pending: GaugeVec,
    /// `queue_workers{queue}`: live worker pools.
    pub workers: GaugeVec,
    /// `interview_active_sessions`.
    pub active_sessions: Gauge,
    /// `interview_completion_rate`: the last aggregated day.
    pub completion_rate: Gauge,
    /// `redis_memory_used_bytes`.
    pub redis_used: Gauge,
    /// `redis_memory_max_bytes`.
    pub redis_max: Gauge,
}

impl ApiMetrics {
    /// The families, registered in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let r = registry;
        Self {
            requests: counters(
                r,
                "api_request_count",
                "HTTP requests by endpoint and status.",
                &["method", "endpoint", "status"],
            ),
            durations: histograms(
                r,
                "api_request_duration_ms",
                "HTTP request time (ms).",
                &["method", "endpoint"],
                &BUCKETS_MS,
            ),
            ws_messages: counters(r, "websocket_message_count", "WebSocket frames.", &["direction"]),
            ws_disconnects: counters(r, "websocket_disconnect_count", "WebSockets closed.", &[]),
            logins: counters(r, "auth_login_count", "Logins by outcome.", &["outcome"]),
            mfa: counters(r, "auth_mfa_verification_count", "Second-factor checks by outcome.", &["outcome"]),
            instance: InstanceGauges {
                websockets: gauge(r, "websocket_active_connections", "WebSockets open on this instance."),
                pool_size: gauge(r, "db_connection_pool_size", "Connections this instance may open."),
                pool_in_use: gauge(r, "db_connection_pool_in_use", "Connections in use."),
                pool_available: gauge(r, "db_connection_pool_available", "Connections left."),
            },
            fleet: FleetGauges {
                queue_jobs: gauges(r, "queue_jobs", "Jobs per queue and state (fleet).", &["queue", "state"]),
                oldest_pending: gauges(
                    r,
                    "queue_oldest_pending_age_seconds",
                    "Age of the oldest pending job, 0 when none (fleet).",
                    &["queue"],
                ),
                workers: gauges(r, "queue_workers", "Live worker pools (fleet).", &["queue"]),
                active_sessions: gauge(r, "interview_active_sessions", "Sessions open now (fleet)."),
                completion_rate: gauge(
                    r,
                    "interview_completion_rate",
                    "Sessions completed / started, the last aggregated day (fleet).",
                ),
                redis_used: gauge(r, "redis_memory_used_bytes", "Memory Redis uses (fleet)."),
                redis_max: gauge(r, "redis_memory_max_bytes", "Redis maxmemory, 0 for no limit (fleet)."),
            },
        }
    }

    /// One request to `endpoint` (the route's template) answered `status` in `ms`.
    pub fn request(&self, method: &str, endpoint: &str, status: u16, ms: f64) {
        self.requests.with_label_values(&[method, endpoint, status.to_string().as_str()]).inc();
        self.durations.with_label_values(&[method, endpoint]).observe(ms);
    }

    /// A WebSocket frame received (`incoming`) or sent.
    pub fn ws_message(&self, incoming: bool) {
        self.ws_messages.with_label_values(&[if incoming { "in" } else { "out" }]).inc();
    }

    /// A WebSocket closed.
    pub fn ws_disconnect(&self) {
        self.ws_disconnects.with_label_values(&[] as &[&str]).inc();
    }

    /// A login attempt: `success`, `bad_password`, `unknown_user`,
    /// `disabled`, `throttled`, `mfa_required`.
    pub fn login(&self, outcome: &'static str) {
        self.logins.with_label_values(&[outcome]).inc();
    }

    /// A second-factor check: `success`, `recovery_code`, `wrong_code`,
    /// `replayed`, `void`, `enrolled`, `enrolment_wrong_code`.
    pub fn mfa(&self, outcome: &'static str) {
        self.mfa.with_label_values(&[outcome]).inc();
    }
}
