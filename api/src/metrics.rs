//! This API instance's own series for `/metrics` (Prometheus scrapes every
//! instance): requests by endpoint and status with their durations,
//! WebSocket messages and disconnects, logins by outcome.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (ms) of the `api_request_duration_ms` buckets.
const BUCKETS_MS: [f64; 11] = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_000.0, 5_000.0, 10_000.0];

/// One route and method: answers by status, and their durations.
#[derive(Default)]
struct Route {
    statuses: BTreeMap<u16, u64>,
    buckets: [u64; BUCKETS_MS.len()],
    count: u64,
    sum: f64,
}

/// The counters.
#[derive(Default)]
pub struct ApiMetrics {
    /// endpoint → method → counts: looked up by `&str`, so a request to a
    /// known route allocates nothing.
    routes: Mutex<BTreeMap<String, BTreeMap<String, Route>>>,
    ws_in: AtomicU64,
    ws_out: AtomicU64,
    ws_disconnects: AtomicU64,
    logins: Mutex<BTreeMap<&'static str, u64>>,
    mfa: Mutex<BTreeMap<&'static str, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A label value, escaped.
pub fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl ApiMetrics {
    /// One request to `endpoint` (the route's template) answered `status` in `ms`.
    pub fn request(&self, method: &str, endpoint: &str, status: u16, ms: f64) {
        let mut routes = lock(&self.routes);
        if !routes.contains_key(endpoint) {
            routes.insert(endpoint.to_owned(), BTreeMap::new());
        }
        let Some(methods) = routes.get_mut(endpoint) else { return };
        if !methods.contains_key(method) {
            methods.insert(method.to_owned(), Route::default());
        }
        let Some(route) = methods.get_mut(method) else { return };
        *route.statuses.entry(status).or_default() += 1;
        for (i, bound) in BUCKETS_MS.iter().enumerate() {
            if ms <= *bound {
                route.buckets[i] += 1;
            }
        }
        route.count += 1;
        route.sum += ms;
    }

    /// A WebSocket frame received (`incoming`) or sent.
    pub fn ws_message(&self, incoming: bool) {
        let counter = if incoming { &self.ws_in } else { &self.ws_out };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A WebSocket closed.
    pub fn ws_disconnect(&self) {
        self.ws_disconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// A login attempt: `success`, `bad_password`, `unknown_user`,
    /// `disabled`, `throttled`.
    pub fn login(&self, outcome: &'static str) {
        *lock(&self.logins).entry(outcome).or_default() += 1;
    }

    /// A second-factor check: `success`, `recovery_code`, `wrong_code`,
    /// `replayed`, `void`, `enrolled`, `enrolment_wrong_code`.
    pub fn mfa(&self, outcome: &'static str) {
        *lock(&self.mfa).entry(outcome).or_default() += 1;
    }

    /// The series, in the text format.
    pub fn render(&self, out: &mut String) {
        {
            let routes = lock(&self.routes);
            let each =
                || routes.iter().flat_map(|(endpoint, methods)| methods.iter().map(move |(m, r)| (endpoint, m, r)));
            let _ = writeln!(
                out,
                "# HELP api_request_count HTTP requests by endpoint and status.\n# TYPE api_request_count counter"
            );
            for (endpoint, method, route) in each() {
                for (status, n) in &route.statuses {
                    let _ = writeln!(
                        out,
                        "api_request_count{{method=\"{method}\",endpoint=\"{}\",status=\"{status}\"}} {n}",
                        label(endpoint)
                    );
                }
            }
            let _ = writeln!(
                out,
                "# HELP api_request_duration_ms HTTP request time (ms).\n# TYPE api_request_duration_ms histogram"
            );
            for (endpoint, method, route) in each() {
                let l = format!("method=\"{method}\",endpoint=\"{}\"", label(endpoint));
                for (bound, n) in BUCKETS_MS.iter().zip(route.buckets) {
                    let _ = writeln!(out, "api_request_duration_ms_bucket{{{l},le=\"{bound}\"}} {n}");
                }
                let _ = writeln!(out, "api_request_duration_ms_bucket{{{l},le=\"+Inf\"}} {}", route.count);
                let _ = writeln!(out, "api_request_duration_ms_sum{{{l}}} {}", route.sum);
                let _ = writeln!(out, "api_request_duration_ms_count{{{l}}} {}", route.count);
            }
        }
        let _ = writeln!(
            out,
            "# HELP websocket_message_count WebSocket frames.\n# TYPE websocket_message_count counter\nwebsocket_message_count{{direction=\"in\"}} {}\nwebsocket_message_count{{direction=\"out\"}} {}",
            self.ws_in.load(Ordering::Relaxed),
            self.ws_out.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP websocket_disconnect_count WebSockets closed.\n# TYPE websocket_disconnect_count counter\nwebsocket_disconnect_count {}",
            self.ws_disconnects.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP auth_login_count Logins by outcome.\n# TYPE auth_login_count counter");
        for (outcome, n) in lock(&self.logins).iter() {
            let _ = writeln!(out, "auth_login_count{{outcome=\"{outcome}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP auth_mfa_verification_count Second-factor checks by outcome.\n# TYPE auth_mfa_verification_count counter"
        );
        for (outcome, n) in lock(&self.mfa).iter() {
            let _ = writeln!(out, "auth_mfa_verification_count{{outcome=\"{outcome}\"}} {n}");
        }
    }
}
