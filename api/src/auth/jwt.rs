//! HS256 JWTs: the only algorithm accepted. Built on RustCrypto's `hmac` and
//! `sha2` (already in the tree through sqlx) rather than a JWT crate that
//! would bring RSA and elliptic-curve code this service never uses.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use shared::config::JwtConfig;
use shared::domain::Role;
use shared::ids::UserId;

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: UserId,
    /// The user's role when the token was issued.
    pub role: Role,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Always `access`.
    pub typ: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts of JSON.
    #[error("malformed token")]
    Malformed,
    /// `alg` other than HS256 (including `none`).
    #[error("unsupported token algorithm")]
    Algorithm,
    /// No key verifies the signature.
    #[error("invalid token signature")]
    Signature,
    /// Past `exp`.
    #[error("token expired")]
    Expired,
    /// Not an access token.
    #[error("not an access token")]
    Kind,
}

/// Signs with the newest key; verifies with every configured key (key rotation).
#[derive(Clone)]
pub struct Jwt {
    signing: Vec<u8>,
    verifying: Vec<Vec<u8>>,
    /// Lifetime of access tokens.
    pub access_ttl_secs: i64,
}

impl Jwt {
    /// From `JWT_SECRET_KEY` / `JWT_SECRET_KEY_NEW`.
    pub fn new(config: &JwtConfig) -> Self {
        let old = config.secret.as_bytes().to_vec();
        match &config.new_secret {
            Some(new) => Self {
                signing: new.as_bytes().to_vec(),
                verifying: vec![new.as_bytes().to_vec(), old],
                access_ttl_secs: config.access_ttl.as_secs() as i64,
            },
            None => {
                Self { signing: old.clone(), verifying: vec![old], access_ttl_secs: config.access_ttl.as_secs() as i64 }
            }
        }
    }

    /// An access token for `user`.
    pub fn issue(&self, user: UserId, role: Role, now: i64) -> String {
        let claims = Claims { sub: user, role, iat: now, exp: now + self.access_ttl_secs, typ: "access".into() };
        let payload = serde_json::to_vec(&claims).unwrap_or_default();
        let signing_input = format!("{}.{}", B64.encode(HEADER), B64.encode(payload));
        let signature = mac(&self.signing, signing_input.as_bytes()).finalize().into_bytes();
        format!("{signing_input}.{}", B64.encode(signature))
    }

    /// The claims of a valid, unexpired access token.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        #[derive(Deserialize)]
        struct Header {
            alg: String,
        }
        let header: Header = decode_json(header)?;
        if header.alg != "HS256" {
            return Err(TokenError::Algorithm);
        }
        let signature = B64.decode(signature).map_err(|_| TokenError::Malformed)?;
        let signing_input = &token[..token.len() - token.rsplit('.').next().map_or(0, str::len) - 1];
        let valid =
            self.verifying.iter().any(|key| mac(key, signing_input.as_bytes()).verify_slice(&signature).is_ok());
        if !valid {
            return Err(TokenError::Signature);
        }
        let claims: Claims = decode_json(payload)?;
        if claims.typ != "access" {
            return Err(TokenError::Kind);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

fn mac(key: &[u8], data: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(data);
    mac
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, TokenError> {
    let bytes = B64.decode(part).map_err(|_| TokenError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn jwt(secret: &str, new: Option<&str>) -> Jwt {
        Jwt::new(&JwtConfig {
            secret: secret.into(),
            new_secret: new.map(Into::into),
            access_ttl: Duration::from_secs(1800),
            refresh_ttl: Duration::from_secs(86400),
        })
    }

    const A: &str = "a-secret-that-is-at-least-32-chars!!";
    const B: &str = "b-secret-that-is-at-least-32-chars!!";

    #[test]
    fn issued_tokens_verify_until_they_expire() {
        let j = jwt(A, None);
        let user = UserId::new();
        let token = j.issue(user, Role::Candidate, 1_000);
        let claims = j.verify(&token, 1_001).expect("valid");
        assert_eq!(claims.sub, user);
        assert_eq!(claims.role, Role::Candidate);
        assert_eq!(j.verify(&token, 1_000 + 1800), Err(TokenError::Expired));
    }

    #[test]
    fn wrong_key_alg_none_and_tampering_are_refused() {
        let token = jwt(A, None).issue(UserId::new(), Role::Admin, 1_000);
        assert_eq!(jwt(B, None).verify(&token, 1_001), Err(TokenError::Signature));

        let payload = token.split('.').nth(1).expect("payload");
        let none = format!("{}.{payload}.", B64.encode(r#"{"alg":"none","typ":"JWT"}"#));
        assert_eq!(jwt(A, None).verify(&none, 1_001), Err(TokenError::Algorithm));

        let forged_payload = B64
            .encode(String::from_utf8(B64.decode(payload).expect("b64")).expect("utf8").replace("admin", "candidate"));
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
        assert_eq!(jwt(A, None).verify(&forged, 1_001), Err(TokenError::Signature));
        assert_eq!(jwt(A, None).verify("a.b", 1_001), Err(TokenError::Malformed));
    }

    #[test]
    fn during_rotation_the_new_key_signs_and_both_verify() {
        let old = jwt(A, None).issue(UserId::new(), Role::Candidate, 1_000);
        let rotating = jwt(A, Some(B));
        assert!(rotating.verify(&old, 1_001).is_ok());
        let new = rotating.issue(UserId::new(), Role::Candidate, 1_000);
        assert!(jwt(B, None).verify(&new, 1_001).is_ok());
        assert_eq!(jwt(A, None).verify(&new, 1_001), Err(TokenError::Signature));
    }
}
