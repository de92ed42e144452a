//! The Compute Engine metadata server, as "Query VM metadata" and
//! "Troubleshoot the metadata server" describe it: every request under
//! `/computeMetadata/` must carry `Metadata-Flavor: Google` and must not
//! carry `X-Forwarded-For` (403 otherwise), every answer carries
//! `Metadata-Flavor: Google`, values are `application/text` and the token
//! is JSON (`access_token`, `expires_in`, `token_type`). An unknown path is
//! a 404.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::{CLOUD_PLATFORM, Outcome, PROJECT_ID, Shared, TokenRequest, Via, expires_in, lock};

/// The project number the fake reports.
const PROJECT_NUMBER: &str = "123456789012";

pub(super) fn router() -> axum::Router<Shared> {
    axum::Router::new()
        .route("/", get(root))
        .route("/computeMetadata/v1", get(directory))
        .route("/computeMetadata/v1/", get(directory))
        .route("/computeMetadata/v1/instance/service-accounts/{account}/token", get(token))
        .route("/computeMetadata/v1/instance/service-accounts/{account}/{entry}", get(account_entry))
        .route("/computeMetadata/v1/instance/service-accounts/{account}/", get(account_directory))
        .route("/computeMetadata/v1/{*path}", get(value))
}

/// A metadata server answer: `Metadata-Flavor: Google` on every one.
fn answer(status: StatusCode, content_type: &str, body: String) -> Response {
    Response::builder()
        .status(status)
        .header("metadata-flavor", "Google")
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn text(body: &str) -> Response {
    answer(StatusCode::OK, "application/text", body.to_owned())
}

fn not_found() -> Response {
    answer(StatusCode::NOT_FOUND, "text/html; charset=UTF-8", "<p><b>404.</b> Not Found</p>\n".into())
}

/// Why the server refuses a request under `/computeMetadata/`, if it does.
fn refusal(headers: &HeaderMap, uri: &Uri) -> Option<(Response, String)> {
    let reason = if headers.contains_key("x-forwarded-for") {
        "the request carries X-Forwarded-For"
    } else if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        "no Metadata-Flavor: Google header"
    } else {
        return None;
    };
    let body = format!(
        "<p><b>403.</b> Your client does not have permission to get URL <code>{}</code> from this server. \
         Missing Metadata-Flavor:Google header.</p>\n",
        uri.path()
    );
    Some((answer(StatusCode::FORBIDDEN, "text/html; charset=UTF-8", body), reason.to_owned()))
}

/// The bare root: clients probe it to see whether a metadata server is there.
async fn root() -> Response {
    text("computeMetadata/\n")
}

async fn directory(headers: HeaderMap, uri: Uri) -> Response {
    if let Some((response, _)) = refusal(&headers, &uri) {
        return response;
    }
    text("instance/\noauth/\nproject/\nuniverse/\n")
}

/// Whether `account` names the instance's service account.
fn is_ours(state: &Shared, account: &str) -> Option<String> {
    let email = lock(state).account.client_email.clone();
    (account == "default" || account == email).then_some(email)
}

async fn account_directory(
    Extract(state): Extract<Shared>,
    Path(account): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Some((response, _)) = refusal(&headers, &uri) {
        return response;
    }
    let Some(email) = is_ours(&state, &account) else { return not_found() };
    if query(&uri, "recursive").as_deref() == Some("true") {
        let body = json!({ "aliases": ["default"], "email": email, "scopes": [CLOUD_PLATFORM] });
        return answer(StatusCode::OK, "application/json", body.to_string());
    }
    text("aliases\nemail\nidentity\nscopes\ntoken\n")
}

async fn account_entry(
    Extract(state): Extract<Shared>,
    Path((account, entry)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Some((response, _)) = refusal(&headers, &uri) {
        return response;
    }
    let Some(email) = is_ours(&state, &account) else { return not_found() };
    match entry.as_str() {
        "email" => text(&email),
        "aliases" => text("default\n"),
        "scopes" => text(&format!("{CLOUD_PLATFORM}\n")),
        _ => not_found(),
    }
}

async fn value(headers: HeaderMap, uri: Uri) -> Response {
    if let Some((response, _)) = refusal(&headers, &uri) {
        return response;
    }
    match uri.path().trim_start_matches("/computeMetadata/v1/") {
        "project/project-id" => text(PROJECT_ID),
        "project/numeric-project-id" => text(PROJECT_NUMBER),
        "universe/universe-domain" | "universe/universe_domain" => text("googleapis.com"),
        "instance/zone" => text(&format!("projects/{PROJECT_NUMBER}/zones/us-central1-a")),
        _ => not_found(),
    }
}

/// A query parameter, decoded.
fn query(uri: &Uri, name: &str) -> Option<String> {
    let query = uri.query()?;
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// A new token of the configured lifetime each call, with the scopes of
/// `?scopes=` (comma-separated) or, without it, `cloud-platform`.
async fn token(Extract(state): Extract<Shared>, Path(account): Path<String>, headers: HeaderMap, uri: Uri) -> Response {
    let path = uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let ours = is_ours(&state, &account).is_some();
    let mut state = lock(&state);
    let (response, token, outcome) = if let Some((response, reason)) = refusal(&headers, &uri) {
        (response, None, Outcome::refused(403, reason))
    } else if !ours {
        (not_found(), None, Outcome::refused(404, format!("no service account {account} on this instance")))
    } else {
        let scopes: Vec<String> = match query(&uri, "scopes") {
            Some(list) => list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect(),
            None => vec![CLOUD_PLATFORM.to_owned()],
        };
        let issued = state.issue(Via::Metadata, scopes);
        let body =
            json!({ "access_token": issued.token, "expires_in": expires_in(issued.lifetime), "token_type": "Bearer" });
        (answer(StatusCode::OK, "application/json", body.to_string()), Some(issued.token), Outcome::Accepted)
    };
    state.token_requests.push(TokenRequest {
        at: Instant::now(),
        via: Via::Metadata,
        path,
        claims: None,
        token,
        outcome,
    });
    response
}
