//! Vertex AI's access tokens, obtained and refreshed by the worker in one of
//! three ways (`shared::config::VertexAuth`): a service-account key through
//! gcp_auth (a JWT signed with the key, exchanged at the key's `token_uri`);
//! the metadata server (GKE Workload Identity, GCE, Cloud Run); or a token
//! file something else keeps fresh.
//!
//! A token is reused until 20 s before it expires (gcp_auth's margin), then
//! fetched again on the next request. After a 401 the cached token is
//! dropped ([`GoogleAuth::forget`]) and the next request fetches a new one.
//!
//! The metadata server is asked by us (one GET with `Metadata-Flavor:
//! Google`): gcp_auth's own client is wired to `metadata.google.internal`
//! and ignores `GCE_METADATA_HOST`. The answer is read as gcp_auth's token,
//! with its expiry rules.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gcp_auth::{CustomServiceAccount, Token, TokenProvider};
use shared::config::VertexAuth;
use tokio::sync::{Mutex, RwLock};

/// The scope Vertex AI takes.
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// How long the metadata server may take to answer.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the bearer tokens of Vertex requests come from.
pub(super) enum GoogleAuth {
    /// Read for every request.
    TokenFile(PathBuf),
    /// gcp_auth's service account, made anew to drop its cached tokens.
    ServiceAccount { path: PathBuf, account: RwLock<Arc<CustomServiceAccount>> },
    /// Our cache of the metadata server's token; the lock is held while one
    /// is fetched, so concurrent requests wait for that one fetch.
    Metadata { url: String, http: reqwest::Client, cached: Mutex<Option<Arc<Token>>> },
}

impl GoogleAuth {
    /// The source `auth` names. A key file that gcp_auth cannot use stops
    /// start-up here.
    pub(super) fn new(auth: &VertexAuth) -> Result<Self, String> {
        Ok(match auth {
            VertexAuth::TokenFile(path) => Self::TokenFile(path.clone()),
            VertexAuth::ServiceAccountKey(path) => {
                let account = service_account(path)?;
                Self::ServiceAccount { path: path.clone(), account: RwLock::new(Arc::new(account)) }
            }
            VertexAuth::MetadataServer { host } => Self::Metadata {
                url: format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/token"),
                http: reqwest::Client::builder()
                    .timeout(METADATA_TIMEOUT)
                    .build()
                    .map_err(|e| format!("HTTP client for the metadata server: {e}"))?,
                cached: Mutex::new(None),
            },
        })
    }

    /// The token to send now. The error says where it should have come from
    /// (it never holds a token).
    pub(super) async fn bearer(&self) -> Result<String, String> {
        match self {
            // Whoever refreshes it (a sidecar, a cron) only rewrites the file.
            Self::TokenFile(path) => tokio::fs::read_to_string(path)
                .await
                .map(|t| t.trim().to_owned())
                .map_err(|e| format!("{}: {e}", path.display())),
            Self::ServiceAccount { path, account } => {
                let account = account.read().await.clone();
                let token = account
                    .token(&[SCOPE])
                    .await
                    .map_err(|e| format!("service-account key {}: {}", path.display(), shared::error_chain(&e)))?;
                Ok(token.as_str().to_owned())
            }
            Self::Metadata { url, http, cached } => {
                let mut cached = cached.lock().await;
                if let Some(token) = cached.as_ref().filter(|t| !t.has_expired()) {
                    return Ok(token.as_str().to_owned());
                }
                let token = Arc::new(from_metadata_server(http, url).await?);
                *cached = Some(token.clone());
                Ok(token.as_str().to_owned())
            }
        }
    }

    /// Drops the cached token (Vertex answered 401): the next request
    /// fetches a new one.
    pub(super) async fn forget(&self) {
        match self {
            Self::TokenFile(_) => {}
            Self::ServiceAccount { path, account } => match service_account(path) {
                Ok(fresh) => *account.write().await = Arc::new(fresh),
                Err(e) => tracing::warn!(error = %e, "service-account key not reloaded; its cached token stays"),
            },
            Self::Metadata { cached, .. } => *cached.lock().await = None,
        }
    }
}

fn service_account(path: &std::path::Path) -> Result<CustomServiceAccount, String> {
    CustomServiceAccount::from_file(path)
        .map_err(|e| format!("service-account key {}: {}", path.display(), shared::error_chain(&e)))
}

async fn from_metadata_server(http: &reqwest::Client, url: &str) -> Result<Token, String> {
    let failed = |e: &dyn std::fmt::Display| format!("no token from the metadata server ({url}): {e}");
    let response =
        http.get(url).header("Metadata-Flavor", "Google").send().await.map_err(|e| failed(&shared::error_chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(300).collect();
        return Err(failed(&format!("HTTP {status}: {}", body.trim())));
    }
    response.json::<Token>().await.map_err(|e| failed(&shared::error_chain(&e)))
}
