//! The one-attempt HTTP service async-openai sends through: each request
//! once (async-openai's retries are gone), a non-2xx answer kept with its
//! status and `Retry-After` before async-openai parses (and loses) it, and
//! for Vertex the access token of the moment, fetched again once after a 401.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use reqwest::header::HeaderMap;

use super::google::GoogleAuth;

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

/// Sends each request once; with Google's tokens, with the current one (and
/// once more with a new one if that one is refused: it may have been revoked
/// or expired early).
#[derive(Clone)]
pub(super) struct OneShot {
    pub(super) http: reqwest::Client,
    pub(super) google: Option<Arc<GoogleAuth>>,
}

/// No access token could be had (a metadata server or token endpoint down,
/// a token file being rotated): a fault, retried.
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
        let google = self.google.clone();
        Box::pin(async move {
            let mut response = http.execute(authorized(factory.build().await?, google.as_deref()).await?).await?;
            if let Some(google) = &google
                && response.status() == reqwest::StatusCode::UNAUTHORIZED
            {
                tracing::warn!("Vertex AI refused the access token (401); fetching a new one");
                google.forget().await;
                response = http.execute(authorized(factory.build().await?, Some(google)).await?).await?;
            }
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

/// `request` with Google's current access token, when there is one to add.
async fn authorized(
    mut request: reqwest::Request,
    google: Option<&GoogleAuth>,
) -> Result<reqwest::Request, OpenAIError> {
    let Some(google) = google else { return Ok(request) };
    let unavailable = |e: String| OpenAIError::Boxed(Box::new(TokenUnavailable(e)));
    let token = google.bearer().await.map_err(unavailable)?;
    let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| unavailable("the access token is not a valid header value".into()))?;
    request.headers_mut().insert(reqwest::header::AUTHORIZATION, value);
    Ok(request)
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
