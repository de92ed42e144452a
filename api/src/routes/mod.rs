//! The router: every resource's routes under `API_PREFIX`, with request ids,
//! access logs, body limits and CORS.

pub mod admin;
pub mod admin_page;
pub mod auth;
pub mod health;
pub mod interviews;
pub mod metrics;
pub mod mfa;
pub mod sessions;
pub mod users;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::AppState;

/// The id of the request being served: from `X-Request-Id` when it is sane, new otherwise.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole HTTP surface. Every route but the admin page's is one of the
/// OpenAPI document's (`openapi.rs`).
pub fn router(state: AppState) -> Router {
    let prefix = state.config.api.prefix.clone();
    let api = OpenApiRouter::new()
        .merge(health::router())
        .merge(admin::router())
        .merge(auth::router())
        .merge(mfa::router())
        .merge(interviews::router())
        .merge(sessions::router())
        .merge(users::router())
        .merge(crate::ws::router());
    let (routes, document) = OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .nest(&prefix, api)
        .routes(routes!(metrics::metrics))
        .split_for_parts();
    Router::new()
        .merge(routes)
        .merge(crate::openapi::docs(&prefix, &document, state.config.api.answer_max_chars))
        .route("/admin", axum::routing::get(admin_page::page))
        .route("/admin/app.js", axum::routing::get(admin_page::script))
        .fallback(|| async { ApiError::not_found("route") })
        .layer(DefaultBodyLimit::max(state.config.api.max_body_bytes))
        // Inside CORS: preflights are not counted, and a 429 carries CORS headers.
        .layer(middleware::from_fn_with_state(state.clone(), crate::limits::rate_limit))
        .layer(cors(&state.config.api.cors_allowed_origins))
        .layer(middleware::from_fn_with_state(state.clone(), request_context))
        .with_state(state)
}

fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            REQUEST_ID.clone(),
        ])
}

fn sane_request_id(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    (!s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        .then(|| s.to_owned())
}

/// Gives the request an id and a span, and logs it with its response time.
async fn request_context(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let request_id = req.headers().get(&REQUEST_ID).and_then(sane_request_id).unwrap_or_else(shared::new_request_id);
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // The route's template keeps the label set small (ids are not labels).
    let endpoint = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let empty = tracing::field::Empty;
    let span = tracing::info_span!("request", otel.name = empty, otel.kind = empty, otel.status_code = empty,
        http.request.method = empty, http.route = empty, http.response.status_code = empty,
        request_id = %request_id, user_id = empty, trace_id = empty);
    let traced = shared::telemetry::traces::enabled();
    if traced {
        span.record("otel.name", format!("{method} {endpoint}"))
            .record("otel.kind", "server")
            .record("http.request.method", method.as_str())
            .record("http.route", endpoint.as_str());
        // A caller's W3C `traceparent` header makes this request part of its trace.
        let traceparent = req.headers().get("traceparent").and_then(|v| v.to_str().ok());
        shared::telemetry::traces::continue_trace(&span, traceparent);
    }
    let start = Instant::now();
    let mut response = next.run(req).instrument(span.clone()).await;
    let elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
    let status = response.status().as_u16();
    state.metrics.request(method.as_str(), &endpoint, status, elapsed_ms);
    if traced {
        span.record("http.response.status_code", i64::from(status));
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
    }
    span.in_scope(|| {
        if status >= 500 {
            tracing::error!(method = %method, path = %path, status, response_time_ms = elapsed_ms, "request failed");
        } else {
            tracing::info!(method = %method, path = %path, status, response_time_ms = elapsed_ms, "request completed");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    response.into_response()
}
