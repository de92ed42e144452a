//! `/admin`: the operators' page (plain HTML and JS in `api/admin/`, built
//! into the binary; nothing is fetched from elsewhere). It logs in through
//! the API and works through the admin endpoints, refreshed every 2 s:
//! queue depth; the last hour's charts (jobs, turn latency, depth over
//! time), drawn as inline SVG by `charts.js`; dead jobs in detail, retried
//! and deleted; provider circuits; last batch runs.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::state::AppState;

const PAGE: &str = include_str!("../../admin/index.html");
/// `charts.js` then `app.js`, served as one script (one request, one route).
const SCRIPT: &str = concat!(include_str!("../../admin/charts.js"), "\n", include_str!("../../admin/app.js"));
/// Only this origin's script and API; the page's own inline styles.
const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self'; form-action 'none'; frame-ancestors 'none'";

/// The page, with the API prefix it calls.
pub async fn page(State(state): State<AppState>) -> impl IntoResponse {
    let prefix = state.config.api.prefix.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;");
    let html = PAGE.replace("{{API_PREFIX}}", &prefix);
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CONTENT_SECURITY_POLICY, CSP)], html)
}

/// Its script.
pub async fn script() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], SCRIPT)
}
