//! GCP Vertex AI: its OpenAI-compatible endpoint, the model, and where the
//! worker gets its access tokens.
//!
//! The variables are the seed's (`GCP_PROJECT_ID`, `GCP_LOCATION`,
//! `VERTEX_AI_MODEL`), Google's own (`GOOGLE_APPLICATION_CREDENTIALS`,
//! `GCE_METADATA_HOST`), and ours (`VERTEX_AI_ENDPOINT`, `VERTEX_AI_TOKEN_FILE`).

use std::path::PathBuf;

use super::Vars;
use super::providers::{EndpointConfig, endpoint};

/// A current Gemini model (GA 2026-05-19, retiring no earlier than
/// 2027-05-19), served through the global endpoint.
pub const DEFAULT_MODEL: &str = "gemini-3.5-flash";
/// Where the default model is served: the global endpoint.
pub const DEFAULT_LOCATION: &str = "global";
/// The metadata server of GCE, GKE (Workload Identity) and Cloud Run.
pub const METADATA_HOST: &str = "metadata.google.internal";

/// Vertex AI through its OpenAI-compatible Chat Completions endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct VertexConfig {
    /// `endpoint.base_url`: up to `/endpoints/openapi`; `endpoint.model`:
    /// `google/<model>`; `endpoint.api_key` is unused (see `auth`).
    pub endpoint: EndpointConfig,
    /// Where access tokens come from.
    pub auth: VertexAuth,
}

/// Where Vertex access tokens come from, in the order they are looked for.
#[derive(Debug, Clone, PartialEq)]
pub enum VertexAuth {
    /// `VERTEX_AI_TOKEN_FILE`: a token something else keeps fresh, read
    /// for every request.
    TokenFile(PathBuf),
    /// `GOOGLE_APPLICATION_CREDENTIALS`: a service-account key; a signed JWT
    /// is exchanged at its `token_uri` for tokens.
    ServiceAccountKey(PathBuf),
    /// The metadata server (`GCE_METADATA_HOST`, else
    /// `metadata.google.internal`): the attached service account's tokens
    /// (GKE Workload Identity, GCE, Cloud Run).
    MetadataServer {
        /// `host[:port]`.
        host: String,
    },
}

/// Reads the `gcp_vertex` settings.
pub(super) fn read(v: &mut Vars) -> VertexConfig {
    let location = v.string("GCP_LOCATION", DEFAULT_LOCATION).trim().to_owned();
    // VERTEX_AI_ENDPOINT overrides the URL (private endpoints, tests).
    let base_url = match v.get("VERTEX_AI_ENDPOINT") {
        Some(url) => url.to_owned(),
        None => {
            let project = v.required("GCP_PROJECT_ID");
            format!("https://{}/v1/projects/{project}/locations/{location}/endpoints/openapi", host(&location))
        }
    };
    // Vertex's OpenAI-compatible endpoint names models by publisher: the
    // manual's `gemini-…` is sent as `google/gemini-…`.
    let model = v.string("VERTEX_AI_MODEL", DEFAULT_MODEL).trim().to_owned();
    let model = if model.contains('/') { model } else { format!("google/{model}") };
    let endpoint = endpoint(v, "VERTEX_AI", ("VERTEX_AI_ENDPOINT", base_url), String::new(), model);
    VertexConfig { endpoint, auth: auth(v) }
}

/// The API host of `location`: the global endpoint, a multi-region one
/// (`us`, `eu`), or a region's.
fn host(location: &str) -> String {
    match location {
        "global" => "aiplatform.googleapis.com".to_owned(),
        "us" | "eu" => format!("aiplatform.{location}.rep.googleapis.com"),
        region => format!("{region}-aiplatform.googleapis.com"),
    }
}

fn auth(v: &mut Vars) -> VertexAuth {
    if let Some(path) = v.get("VERTEX_AI_TOKEN_FILE").filter(|p| !p.trim().is_empty()).map(PathBuf::from) {
        if std::fs::metadata(&path).is_err() {
            v.problem("VERTEX_AI_TOKEN_FILE", format!("{} cannot be read", path.display()));
        }
        return VertexAuth::TokenFile(path);
    }
    if let Some(path) = v.get("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.trim().is_empty()).map(PathBuf::from) {
        if let Err(problem) = check_key(&path) {
            v.problem("GOOGLE_APPLICATION_CREDENTIALS", problem);
        }
        return VertexAuth::ServiceAccountKey(path);
    }
    let host = v.string("GCE_METADATA_HOST", METADATA_HOST).trim().to_owned();
    if host.is_empty() || host.contains('/') {
        v.problem("GCE_METADATA_HOST", format!("{host:?} is not a host[:port]"));
    }
    VertexAuth::MetadataServer { host }
}

/// What is wrong with the key file at `path`, if anything we can see
/// without using it. (The message never quotes the file: it holds a key.)
fn check_key(path: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{} cannot be read: {e}", path.display()))?;
    let key: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not a JSON key file: {e}", path.display()))?;
    match key["type"].as_str() {
        Some("service_account") => {}
        other => {
            return Err(format!(
                "{} is a {} credential; only service-account keys are supported (on GKE, GCE and Cloud Run leave it \
                 unset and the metadata server is used; or set VERTEX_AI_TOKEN_FILE)",
                path.display(),
                other.map_or("typeless".to_owned(), |t| format!("{t:?}"))
            ));
        }
    }
    for field in ["client_email", "private_key", "token_uri"] {
        if key[field].as_str().is_none_or(str::is_empty) {
            return Err(format!("{}: the key has no {field}", path.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_from(pairs: &[(&str, &str)]) -> (VertexConfig, Result<(), super::super::ConfigError>) {
        let mut v = Vars::from_map(pairs.iter().map(|(k, val)| ((*k).to_owned(), (*val).to_owned())).collect());
        let config = read(&mut v);
        (config, v.finish())
    }

    #[test]
    fn the_endpoint_follows_the_location_and_the_model_gets_its_publisher() {
        let (c, ok) = read_from(&[("GCP_PROJECT_ID", "p1")]);
        assert!(ok.is_ok());
        assert_eq!(
            c.endpoint.base_url,
            "https://aiplatform.googleapis.com/v1/projects/p1/locations/global/endpoints/openapi"
        );
        assert_eq!(c.endpoint.model, "google/gemini-3.5-flash");
        assert_eq!(c.auth, VertexAuth::MetadataServer { host: METADATA_HOST.into() });
        let (c, _) = read_from(&[("GCP_PROJECT_ID", "p1"), ("GCP_LOCATION", "europe-west4"), ("VERTEX_AI_MODEL", "m")]);
        assert_eq!(
            c.endpoint.base_url,
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/p1/locations/europe-west4/endpoints/openapi"
        );
        assert_eq!(c.endpoint.model, "google/m");
        let (c, _) = read_from(&[("GCP_PROJECT_ID", "p1"), ("GCP_LOCATION", "eu"), ("VERTEX_AI_MODEL", "meta/llama")]);
        assert!(
            c.endpoint.base_url.starts_with("https://aiplatform.eu.rep.googleapis.com/v1/projects/p1/locations/eu/")
        );
        assert_eq!(c.endpoint.model, "meta/llama", "a publisher given is kept");
        let (_, err) = read_from(&[]);
        assert!(err.expect_err("no project").to_string().contains("GCP_PROJECT_ID: is required"));
    }

    #[test]
    fn tokens_come_from_the_file_the_key_or_the_metadata_server() {
        let dir = std::env::temp_dir().join(format!("aiv-vertex-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let key = dir.join("key.json");
        let token = dir.join("token");
        std::fs::write(&token, "t").expect("write");
        let base = ("VERTEX_AI_ENDPOINT", "http://127.0.0.1:1/v1/projects/p/locations/global/endpoints/openapi");
        let (c, ok) = read_from(&[base, ("VERTEX_AI_TOKEN_FILE", token.to_str().unwrap_or_default())]);
        assert!(ok.is_ok());
        assert_eq!(c.auth, VertexAuth::TokenFile(token.clone()));
        let (c, ok) = read_from(&[base, ("GCE_METADATA_HOST", "127.0.0.1:8080")]);
        assert!(ok.is_ok());
        assert_eq!(c.auth, VertexAuth::MetadataServer { host: "127.0.0.1:8080".into() });
        let problem = |contents: &str| {
            std::fs::write(&key, contents).expect("write");
            let (_, result) = read_from(&[base, ("GOOGLE_APPLICATION_CREDENTIALS", key.to_str().unwrap_or_default())]);
            result.err().map(|e| e.to_string())
        };
        let good = r#"{"type":"service_account","client_email":"a@p.iam.gserviceaccount.com","private_key":"-----BEGIN PRIVATE KEY-----\nsecret\n","token_uri":"https://oauth2.googleapis.com/token"}"#;
        assert_eq!(problem(good), None);
        let user = problem(r#"{"type":"authorized_user","refresh_token":"secret"}"#).expect("refused");
        assert!(user.contains("GOOGLE_APPLICATION_CREDENTIALS") && user.contains("\"authorized_user\""), "{user}");
        let no_uri = problem(&good.replace("token_uri", "x")).expect("refused");
        assert!(no_uri.contains("no token_uri") && !no_uri.contains("secret"), "{no_uri}");
        assert!(problem("{not json").expect("refused").contains("not a JSON key file"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
