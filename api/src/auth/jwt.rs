//! HS256 JWTs (`jsonwebtoken` on aws-lc, RFC 8725): the only algorithm
//! accepted, every token typed in its header (`at+jwt` for access tokens,
//! RFC 9068; `mfa+jwt` for the second step of a login) so that one kind is
//! never taken for the other, and `iss`, `aud`, `exp`, `nbf` required.
//! `exp` and `nbf` are checked here against the caller's clock.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shared::config::JwtConfig;
use shared::domain::Role;
use shared::ids::{TokenFamilyId, UserId};
use uuid::Uuid;

/// `iss` of every token.
pub const ISSUER: &str = "ai-interviewer";
/// `aud` of every token: this API.
pub const AUDIENCE: &str = "ai-interviewer-api";
/// Header `typ` of access tokens.
const ACCESS: &str = "at+jwt";
/// Header `typ` of MFA tokens.
const MFA: &str = "mfa+jwt";

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: UserId,
    /// The user's role when the token was issued.
    pub role: Role,
    /// The login it belongs to (its refresh-token family): logging out
    /// revokes it, and with it this token.
    pub sid: TokenFamilyId,
}

/// The claims of an MFA token: a login waiting for its second factor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MfaClaims {
    /// The user.
    pub sub: UserId,
    /// The challenge (its failed codes are counted in PostgreSQL).
    pub jti: Uuid,
}

/// The registered claims around a token's own (all required; optional here
/// so that a missing one is reported as such by the validation).
#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    iss: Option<String>,
    aud: Option<String>,
    iat: Option<i64>,
    nbf: Option<i64>,
    exp: Option<i64>,
    #[serde(flatten)]
    body: T,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT of JSON parts.
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
    /// Before `nbf`.
    #[error("token not valid yet")]
    NotYetValid,
    /// Another issuer or audience, or a registered claim missing.
    #[error("token not issued for this API")]
    Claims,
    /// Another kind of token (an MFA token where an access token belongs).
    #[error("not an access token")]
    Kind,
}

/// Signs with the newest key; verifies with every configured key (key rotation).
#[derive(Clone)]
pub struct Jwt {
    signing: EncodingKey,
    verifying: Vec<DecodingKey>,
    validation: Validation,
    /// Lifetime of access tokens.
    pub access_ttl_secs: i64,
}

impl Jwt {
    /// From `JWT_SECRET_KEY` / `JWT_SECRET_KEY_NEW`.
    pub fn new(config: &JwtConfig) -> anyhow::Result<Self> {
        let key = |secret: &str, name: &str| {
            anyhow::Ok((
                EncodingKey::from_secret(secret.as_bytes()).map_err(|e| anyhow::anyhow!("{name}: {e}"))?,
                DecodingKey::from_secret(secret.as_bytes()).map_err(|e| anyhow::anyhow!("{name}: {e}"))?,
            ))
        };
        let (old_signing, old_verifying) = key(&config.secret, "JWT_SECRET_KEY")?;
        let (signing, verifying) = match &config.new_secret {
            Some(new) => {
                let (signing, verifying) = key(new, "JWT_SECRET_KEY_NEW")?;
                (signing, vec![verifying, old_verifying])
            }
            None => (old_signing, vec![old_verifying]),
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["iss", "aud", "exp", "nbf", "sub"]);
        // Checked in `decode` against the caller's clock, without leeway.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        Ok(Self { signing, verifying, validation, access_ttl_secs: config.access_ttl.as_secs() as i64 })
    }

    /// An access token for `user` in the login `session`.
    pub fn issue(&self, user: UserId, role: Role, session: TokenFamilyId, now: i64) -> String {
        self.sign(ACCESS, Claims { sub: user, role, sid: session }, now, self.access_ttl_secs)
    }

    /// The claims of a valid access token.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        self.decode(token, ACCESS, now)
    }

    /// An MFA token for `challenge`, valid for `ttl_secs`.
    pub fn issue_mfa(&self, user: UserId, challenge: Uuid, now: i64, ttl_secs: i64) -> String {
        self.sign(MFA, MfaClaims { sub: user, jti: challenge }, now, ttl_secs)
    }

    /// The claims of a valid MFA token.
    pub fn verify_mfa(&self, token: &str, now: i64) -> Result<MfaClaims, TokenError> {
        self.decode(token, MFA, now)
    }

    fn sign<T: Serialize>(&self, typ: &str, body: T, now: i64, ttl_secs: i64) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(typ.to_owned());
        let envelope = Envelope {
            iss: Some(ISSUER.into()),
            aud: Some(AUDIENCE.into()),
            iat: Some(now),
            nbf: Some(now),
            exp: Some(now + ttl_secs),
            body,
        };
        // Serializing plain claims with an HMAC key cannot fail.
        jsonwebtoken::encode(&header, &envelope, &self.signing).unwrap_or_default()
    }

    fn decode<T: DeserializeOwned>(&self, token: &str, typ: &str, now: i64) -> Result<T, TokenError> {
        // The header first, for a precise reason (the signature is checked below).
        let header = header(token).ok_or(TokenError::Malformed)?;
        if header.alg.as_deref() != Some("HS256") {
            return Err(TokenError::Algorithm);
        }
        if header.typ.as_deref() != Some(typ) {
            return Err(TokenError::Kind);
        }
        let mut refused = TokenError::Signature;
        for key in &self.verifying {
            match jsonwebtoken::decode::<Envelope<T>>(token, key, &self.validation) {
                Ok(data) => {
                    let claims = data.claims;
                    let (Some(exp), Some(nbf)) = (claims.exp, claims.nbf) else {
                        return Err(TokenError::Claims);
                    };
                    if exp <= now {
                        return Err(TokenError::Expired);
                    }
                    if nbf > now {
                        return Err(TokenError::NotYetValid);
                    }
                    return Ok(claims.body);
                }
                Err(e) => {
                    refused = match e.kind() {
                        // The next key may be the one.
                        ErrorKind::InvalidSignature => continue,
                        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::MissingAlgorithm => {
                            TokenError::Algorithm
                        }
                        ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience | ErrorKind::MissingRequiredClaim(_) => {
                            TokenError::Claims
                        }
                        _ => TokenError::Malformed,
                    };
                    break;
                }
            }
        }
        Err(refused)
    }
}

/// `alg` and `typ` of a token's header, unverified; none when it is no JWT header.
#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    typ: Option<String>,
}

fn header(token: &str) -> Option<RawHeader> {
    use base64::Engine;
    let encoded = token.split('.').next()?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded).ok()?;
    serde_json::from_slice(&json).ok()
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
