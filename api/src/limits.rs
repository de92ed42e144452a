//! Request limits that hold across every API replica: `RATE_LIMIT_PER_MINUTE`
//! per user (per client IP when anonymous) and login throttling, both on the
//! sliding-window log the providers' fleet limit uses (one mechanism, Redis's
//! clock); and who the client is behind `TRUSTED_PROXIES`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use shared::config::IpBlock;
use shared::provider_state::ProviderKeys;
use shared::provider_state::rate_limit::{self, Budget};

use crate::error::ApiError;
use crate::state::AppState;

/// The client's address: the peer, or behind trusted proxies the rightmost
/// `X-Forwarded-For` entry that is not one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

const WINDOW: Duration = Duration::from_secs(60);

/// The client's address behind `trusted` proxies. Each proxy appends the
/// address it was reached from, so entries are read from the right; the
/// leftmost ones are whatever the client wrote.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpBlock]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|block| block.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for entry in entries.iter().rev() {
        match parse_forwarded(entry) {
            Some(ip) if is_trusted(ip) => continue,
            Some(ip) => return ip,
            // Garbage from the client's side: the last address we can vouch for.
            None => return peer,
        }
    }
    peer
}

/// An `X-Forwarded-For` entry: an address, with a port or IPv6 brackets.
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    entry
        .parse()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| entry.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

/// Gives the request its [`ClientIp`], then spends one request of its
/// user's (or address's) budget: over it, `429` with `Retry-After`. Health
/// and metrics are not counted (probes and scrapers). A Redis that cannot
/// be reached lets requests through (logged once per period): the limit
/// protects the service, and Redis's absence must not take it down.
pub async fn rate_limit(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer =
        req.extensions().get::<ConnectInfo<SocketAddr>>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let ip = client_ip(peer, req.headers(), &state.config.api.limits.trusted_proxies);
    req.extensions_mut().insert(ClientIp(ip));
    let limit = state.config.api.limits.per_minute;
    let path = req.uri().path();
    if limit == 0 || path == "/metrics" || path.contains("/health") {
        return next.run(req).await;
    }
    let now = chrono::Utc::now().timestamp();
    let bucket = match crate::auth::bearer(req.headers()).map(|token| state.jwt.verify(token, now)) {
        Some(Ok(claims)) => {
            let bucket = format!("rate:user:{}", claims.sub);
            // Verified once: the handler's `AuthUser` takes them from here.
            req.extensions_mut().insert(claims);
            bucket
        }
        _ => format!("rate:ip:{ip}"),
    };
    let keys = ProviderKeys::limiter(&state.config.redis.key_prefix, &bucket);
    let budget = Budget { window: WINDOW, requests: Some(limit), tokens: None };
    let policy = HeaderValue::from_str(&format!("\"per-minute\";q={limit};w={}", WINDOW.as_secs()));
    let outcome = rate_limit::acquire_counted(&mut state.redis.clone(), &keys, &budget, 0, Duration::ZERO).await;
    let (remaining, reset, refused) = match outcome {
        Ok(Ok((_, held))) => (u64::from(limit).saturating_sub(held.count), held.oldest_expires_in, false),
        Ok(Err(wait)) => (0, wait, true),
        Err(e) => {
            static UNAVAILABLE: shared::log_throttle::Throttle = shared::log_throttle::Throttle::new(WINDOW);
            if let Some(held_back) = UNAVAILABLE.allow() {
                tracing::warn!(error = %e, held_back, "rate limit unavailable; requests pass unlimited until Redis answers");
            }
            return next.run(req).await;
        }
    };
    let mut response = if refused {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("more than {limit} requests in a minute; retry after {} s", seconds(reset)),
        )
        .with_retry_after(seconds(reset))
        .into_response()
    } else {
        next.run(req).await
    };
    let headers = response.headers_mut();
    if let Ok(policy) = policy {
        headers.insert("ratelimit-policy", policy);
    }
    if let Ok(current) = HeaderValue::from_str(&format!("\"per-minute\";r={remaining};t={}", seconds(reset))) {
        headers.insert("ratelimit", current);
    }
    response
}

/// Whole seconds, rounded up (a client waiting that long finds room).
fn seconds(d: Duration) -> u64 {
    d.as_millis().div_ceil(1000).max(1) as u64
}

/// Failed logins of one account and one address, counted over
/// `LOGIN_FAILURE_WINDOW_SECONDS`: past the limit, attempts get 429 with
/// `Retry-After` until the oldest failure leaves the window (never a
/// permanent lockout). Unlike the request limit it fails closed: without
/// Redis, logins get 503.
pub struct LoginThrottle {
    account: ProviderKeys,
    address: ProviderKeys,
    account_budget: Budget,
    address_budget: Budget,
    redis: redis::aio::ConnectionManager,
}

impl LoginThrottle {
    /// The throttle of logins to `email` from `ip`.
    pub fn new(state: &AppState, email: &str, ip: IpAddr) -> Self {
        let limits = &state.config.api.limits;
        let prefix = &state.config.redis.key_prefix;
        // The email, hashed: no addresses in Redis keys.
        let account = Sha256::digest(email.trim().to_lowercase().as_bytes());
        let account: String = account[..16].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            account: ProviderKeys::limiter(prefix, &format!("login:account:{account}")),
            address: ProviderKeys::limiter(prefix, &format!("login:ip:{ip}")),
            account_budget: Budget {
                window: limits.login_window,
                requests: Some(limits.login_max_failures),
                tokens: None,
            },
            address_budget: Budget {
                window: limits.login_window,
                requests: Some(limits.login_max_failures_per_ip),
                tokens: None,
            },
            redis: state.redis.clone(),
        }
    }

    /// `Err(429)` while either count is at its limit.
    pub async fn check(&mut self) -> Result<(), ApiError> {
        for (keys, budget) in [(&self.account, &self.account_budget), (&self.address, &self.address_budget)] {
            let (usage, wait) = rate_limit::peek(&mut self.redis, keys, budget.window).await.map_err(unavailable)?;
            if budget.requests.is_some_and(|max| usage.requests >= u64::from(max)) {
                let secs = seconds(wait);
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_login_failures",
                    format!("too many failed logins; retry after {secs} s"),
                )
                .with_retry_after(secs));
            }
        }
        Ok(())
    }

    /// Counts a failure against both.
    pub async fn failed(&mut self) -> Result<(), ApiError> {
        for (keys, budget) in [(&self.account, &self.account_budget), (&self.address, &self.address_budget)] {
            // A full window stays full: the failure need not be logged twice.
            rate_limit::try_acquire(&mut self.redis, keys, budget, 0, Duration::ZERO).await.map_err(unavailable)?.ok();
        }
        Ok(())
    }
}

fn unavailable(e: redis::RedisError) -> ApiError {
    ApiError::unavailable(format!("login throttling unavailable (Redis: {e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in xff {
            map.append("x-forwarded-for", HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_forwarded_address() {
        let ip = |s: &str| s.parse::<IpAddr>().expect(s);
        let trusted = [IpBlock::parse("10.0.0.0/8").expect("block")];
        // Straight from the internet: the peer, whatever it claims.
        assert_eq!(client_ip(ip("203.0.113.9"), &headers(&["1.1.1.1"]), &trusted), ip("203.0.113.9"));
        // Through our proxy: the address it saw, not the client's own claim on the left.
        let spoofed = headers(&["6.6.6.6, 198.51.100.7"]);
        assert_eq!(client_ip(ip("10.0.0.2"), &spoofed, &trusted), ip("198.51.100.7"));
        // Two proxies of ours, over two header lines.
        let chained = headers(&["6.6.6.6", "198.51.100.7, 10.1.2.3"]);
        assert_eq!(client_ip(ip("10.0.0.2"), &chained, &trusted), ip("198.51.100.7"));
        assert_eq!(client_ip(ip("10.0.0.2"), &headers(&["[2001:db8::1]:443"]), &trusted), ip("2001:db8::1"));
        assert_eq!(client_ip(ip("10.0.0.2"), &headers(&["198.51.100.7:5000"]), &trusted), ip("198.51.100.7"));
        // Garbage or nothing: the proxy itself.
        assert_eq!(client_ip(ip("10.0.0.2"), &headers(&["unknown"]), &trusted), ip("10.0.0.2"));
        assert_eq!(client_ip(ip("10.0.0.2"), &headers(&[]), &trusted), ip("10.0.0.2"));
        assert_eq!(client_ip(ip("10.0.0.2"), &headers(&["6.6.6.6"]), &[]), ip("10.0.0.2"), "no trusted proxies");
    }
}
