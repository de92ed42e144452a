//! The one-attempt HTTP service async-openai sends through: each request
//! once (async-openai's retries are gone), a non-2xx answer kept with its
//! status and `Retry-After` before async-openai parses (and loses) it, and
//! for Vertex the bearer token read from its file for every request.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use reqwest::header::HeaderMap;

/// Bytes of an error body kept for the failure reason.
const ERROR_BODY_LIMIT: usize = 2_048;

/// A non-2xx answer, read before async-openai parses (and loses) anything.
#[derive(Debug)]
pub(super) struct HttpFailure {
    pub(super) status: reqwest::StatusCode,
    pub(super) retry_after: Option<Duration>,
    body: String,
}

impl std::fmt::Display for HttpFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}: {}", self.status, self.body)
    }
}

impl std::error::Error for HttpFailure {}

/// Sends each request once; with a bearer file, with the token it holds now.
#[derive(Clone)]
pub(super) struct OneShot {
    pub(super) http: reqwest::Client,
    pub(super) bearer_file: Option<Arc<std::path::PathBuf>>,
}

/// The bearer file could not be read (a token being rotated): retryable.
#[derive(Debug)]
struct TokenUnavailable(String);

impl std::fmt::Display for TokenUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no access token: {}", self.0)
    }
}

impl std::error::Error for TokenUnavailable {}

impl tower::Service<HttpRequestFactory> for OneShot {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), OpenAIError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Self::Future {
        let http = self.http.clone();
        let bearer_file = self.bearer_file.clone();
        Box::pin(async move {
            let mut request = factory.build().await?;
            if let Some(path) = bearer_file {
                // Read for every request: whoever refreshes the token (a
                // sidecar, the GKE metadata agent, a cron) only rewrites the file.
                let unavailable = |e: String| OpenAIError::Boxed(Box::new(TokenUnavailable(e)));
                let token = tokio::fs::read_to_string(path.as_path())
                    .await
                    .map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
                let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                    .map_err(|e| unavailable(format!("{}: {e}", path.display())))?;
                request.headers_mut().insert(reqwest::header::AUTHORIZATION, value);
            }
            let response = http.execute(request).await?;
            if response.status().is_success() {
                return Ok(response);
            }
            let status = response.status();
            let retry_after = retry_after(response.headers(), SystemTime::now());
            let bytes = response.bytes().await.unwrap_or_default();
            let body = String::from_utf8_lossy(&bytes[..bytes.len().min(ERROR_BODY_LIMIT)]).trim().to_owned();
            Err(OpenAIError::Boxed(Box::new(HttpFailure { status, retry_after, body })))
        })
    }
}

/// `retry-after-ms` (OpenAI, Azure), else `retry-after` in seconds or as an HTTP date.
pub(super) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = get("retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = get("retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_milliseconds_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().expect("header value"));
            }
            h
        };
        assert_eq!(retry_after(&headers(&[("retry-after", "2")]), now), Some(Duration::from_secs(2)));
        assert_eq!(
            retry_after(&headers(&[("retry-after", "1"), ("retry-after-ms", "1500")]), now),
            Some(Duration::from_millis(1500))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(3));
        assert_eq!(retry_after(&headers(&[("retry-after", &date)]), now), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-1")]), now), None);
        assert_eq!(retry_after(&headers(&[]), now), None);
    }
}
