//! The OAuth 2.0 token endpoint as "Using OAuth 2.0 for Server to Server
//! Applications" describes it: a form-encoded POST of
//! `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` and
//! `assertion=<JWT>`, the JWT's header `{"alg":"RS256","typ":"JWT"}`
//! (`kid` optional: the key's `private_key_id`), its claims `iss` (the
//! account's email), `scope` (space-delimited), `aud` (the key's
//! `token_uri`), `iat` and `exp` (at most one hour after `iat`), `sub`
//! only for domain-wide delegation, signed RS256 with the account's key.
//! A refusal is a 400 with `error` and `error_description` as in the
//! guide's table of JWT error codes.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State as Extract;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::alphabet::URL_SAFE;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Value, json};

use super::{Outcome, Shared, State, TokenRequest, Via, expires_in, lock};

/// The JWT bearer grant type (RFC 7523 §2.1).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// The clock skew the fake forgives on `iat` and `exp`.
const SKEW_SECONDS: i64 = 60;

pub(super) fn router() -> axum::Router<Shared> {
    axum::Router::new().route("/token", post(token))
}

/// A refusal: the OAuth `error`, its `error_description`, and the reason recorded.
#[derive(Debug)]
pub(super) struct Refusal {
    pub error: &'static str,
    pub description: String,
    pub reason: String,
}

fn refuse(error: &'static str, description: &str, reason: impl Into<String>) -> Refusal {
    Refusal { error, description: description.to_owned(), reason: reason.into() }
}

const INVALID_SIGNATURE: &str = "Invalid JWT Signature.";
const BAD_TIMEFRAME: &str = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. \
     Check your iat and exp values in the JWT claim.";

async fn token(Extract(state): Extract<Shared>, uri: Uri, headers: HeaderMap, body: String) -> Response {
    let form_encoded = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let fields: Vec<(String, String)> = if form_encoded {
        form_urlencoded::parse(body.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    } else {
        Vec::new()
    };
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let mut state = lock(&state);
    let claims = field("assertion").and_then(|jwt| decode_part(jwt.split('.').nth(1)?));
    let checked = check(&state, field("grant_type"), field("assertion"), unix_now());
    let (response, token, outcome) = match checked {
        Ok(scopes) => {
            let issued = state.issue(Via::ServiceAccount, scopes);
            let body = json!({ "access_token": issued.token, "expires_in": expires_in(issued.lifetime), "token_type": "Bearer" });
            (axum::Json(body).into_response(), Some(issued.token), Outcome::Accepted)
        }
        Err(refusal) => {
            let body = json!({ "error": refusal.error, "error_description": refusal.description });
            (
                (StatusCode::BAD_REQUEST, axum::Json(body)).into_response(),
                None,
                Outcome::refused(400, format!("{}: {}", refusal.error, refusal.reason)),
            )
        }
    };
    let path = uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
    state.token_requests.push(TokenRequest {
        at: Instant::now(),
        via: Via::ServiceAccount,
        path,
        claims,
        token,
        outcome,
    });
    response
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or_default()
}

/// base64url with or without `=` padding: JWTs are written without it
/// (RFC 7515), but Google's token endpoint also takes padded parts, which
/// widely used clients (gcp_auth among them) send.
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A base64url JSON part of a JWT.
fn decode_part(part: &str) -> Option<Value> {
    serde_json::from_slice(&BASE64URL.decode(part).ok()?).ok()
}

/// The scopes to grant for this form, or why not.
pub(super) fn check(
    state: &State,
    grant_type: Option<&str>,
    assertion: Option<&str>,
    now: i64,
) -> Result<Vec<String>, Refusal> {
    if grant_type != Some(JWT_BEARER) {
        let sent = grant_type.unwrap_or_default();
        return Err(refuse(
            "unsupported_grant_type",
            &format!("Invalid grant_type: {sent}"),
            format!("grant_type {sent:?}"),
        ));
    }
    let Some(jwt) = assertion else {
        return Err(refuse("invalid_request", "Missing required parameter: assertion", "no assertion"));
    };
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err(refuse("invalid_grant", "Invalid JWT: malformed", format!("{} parts, not 3", parts.len())));
    };
    let (Some(header_json), Some(claims_json)) = (decode_part(header), decode_part(claims)) else {
        return Err(refuse("invalid_grant", "Invalid JWT: malformed", "header or claims are not base64url JSON"));
    };
    if header_json["alg"] != "RS256" {
        return Err(refuse("invalid_grant", INVALID_SIGNATURE, format!("alg {}", header_json["alg"])));
    }
    if !header_json["typ"].is_null() && header_json["typ"] != "JWT" {
        return Err(refuse("invalid_grant", "Invalid JWT: malformed", format!("typ {}", header_json["typ"])));
    }
    let account = &state.account;
    if !header_json["kid"].is_null() && header_json["kid"] != account.private_key_id.as_str() {
        return Err(refuse("invalid_grant", INVALID_SIGNATURE, format!("kid {} is not the key's", header_json["kid"])));
    }
    if claims_json["iss"] != account.client_email.as_str() {
        let iss = &claims_json["iss"];
        return Err(refuse("invalid_grant", "Invalid grant: account not found", format!("iss {iss}")));
    }
    let signed = BASE64URL.decode(signature).unwrap_or_default();
    if !account.verifies(format!("{header}.{claims}").as_bytes(), &signed) {
        return Err(refuse("invalid_grant", INVALID_SIGNATURE, "the signature does not verify with the account's key"));
    }
    if claims_json["aud"] != state.token_uri.as_str() {
        let description = format!("Invalid JWT: Failed audience check. The expected audience is {}.", state.token_uri);
        return Err(refuse("invalid_grant", &description, format!("aud {}", claims_json["aud"])));
    }
    let (Some(iat), Some(exp)) = (claims_json["iat"].as_i64(), claims_json["exp"].as_i64()) else {
        return Err(refuse("invalid_grant", BAD_TIMEFRAME, "iat or exp is not a number of seconds"));
    };
    if exp <= iat || exp - iat > 3600 {
        return Err(refuse("invalid_grant", BAD_TIMEFRAME, format!("exp - iat = {} s", exp - iat)));
    }
    if exp + SKEW_SECONDS <= now || iat - SKEW_SECONDS > now {
        return Err(refuse("invalid_grant", BAD_TIMEFRAME, format!("iat {iat}, exp {exp}, now {now}")));
    }
    if !claims_json["sub"].is_null() && claims_json["sub"] != account.client_email.as_str() {
        return Err(refuse(
            "unauthorized_client",
            "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.",
            format!("sub {} without domain-wide delegation", claims_json["sub"]),
        ));
    }
    let scopes: Vec<String> = claims_json["scope"]
        .as_str()
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() || scopes.iter().any(|s| !s.starts_with("https://www.googleapis.com/auth/")) {
        return Err(refuse(
            "invalid_scope",
            "Invalid OAuth scope or ID token audience provided.",
            format!("scope {}", claims_json["scope"]),
        ));
    }
    Ok(scopes)
}
