use super::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use std::time::Duration;

fn jwt(secret: &str, new: Option<&str>) -> Jwt {
    Jwt::new(&JwtConfig {
        secret: secret.into(),
        new_secret: new.map(Into::into),
        access_ttl: Duration::from_secs(1800),
        refresh_ttl: Duration::from_secs(86400),
    })
    .expect("keys")
}

const A: &str = "a-secret-that-is-at-least-32-chars!!";
const B: &str = "b-secret-that-is-at-least-32-chars!!";

fn issue(j: &Jwt, role: Role, now: i64) -> String {
    j.issue(UserId::new(), role, TokenFamilyId::new(), now)
}

/// A token signed with `A` whose header and claims are given whole.
fn hand_made(header_typ: &str, claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some(header_typ.into());
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(A.as_bytes()).expect("key")).expect("encode")
}

#[test]
fn issued_tokens_verify_from_nbf_until_they_expire() {
    let j = jwt(A, None);
    let (user, session) = (UserId::new(), TokenFamilyId::new());
    let token = j.issue(user, Role::Candidate, session, 1_000);
    let claims = j.verify(&token, 1_001).expect("valid");
    assert_eq!((claims.sub, claims.role, claims.sid), (user, Role::Candidate, session));
    assert_eq!(j.verify(&token, 1_000 + 1800), Err(TokenError::Expired));
    assert_eq!(j.verify(&token, 999), Err(TokenError::NotYetValid));
}

#[test]
fn the_header_is_typed_and_the_registered_claims_are_present() {
    let token = issue(&jwt(A, None), Role::Admin, 1_000);
    let mut parts = token.split('.');
    let header: serde_json::Value =
        serde_json::from_slice(&B64.decode(parts.next().expect("header")).expect("b64")).expect("json");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "HS256");
    let claims: serde_json::Value =
        serde_json::from_slice(&B64.decode(parts.next().expect("claims")).expect("b64")).expect("json");
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(
        (claims["iat"].as_i64(), claims["nbf"].as_i64(), claims["exp"].as_i64()),
        (Some(1_000), Some(1_000), Some(2_800))
    );
}

#[test]
fn wrong_key_alg_none_and_tampering_are_refused() {
    let token = issue(&jwt(A, None), Role::Admin, 1_000);
    assert_eq!(jwt(B, None).verify(&token, 1_001), Err(TokenError::Signature));

    let payload = token.split('.').nth(1).expect("payload");
    let none = format!("{}.{payload}.", B64.encode(r#"{"alg":"none","typ":"at+jwt"}"#));
    assert_eq!(jwt(A, None).verify(&none, 1_001), Err(TokenError::Algorithm));

    let forged_payload =
        B64.encode(String::from_utf8(B64.decode(payload).expect("b64")).expect("utf8").replace("admin", "candidate"));
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert_eq!(jwt(A, None).verify(&forged, 1_001), Err(TokenError::Signature));
    assert_eq!(jwt(A, None).verify("a.b", 1_001), Err(TokenError::Malformed));
}

#[test]
fn another_issuer_audience_or_a_missing_claim_is_refused() {
    let j = jwt(A, None);
    let claims = |iss: &str, aud: &str| {
        serde_json::json!({ "iss": iss, "aud": aud, "iat": 1_000, "nbf": 1_000, "exp": 9_000,
            "sub": UserId::new(), "role": "admin", "sid": TokenFamilyId::new() })
    };
    assert!(j.verify(&hand_made("at+jwt", claims(ISSUER, AUDIENCE)), 1_001).is_ok());
    assert_eq!(j.verify(&hand_made("at+jwt", claims("someone-else", AUDIENCE)), 1_001), Err(TokenError::Claims));
    assert_eq!(j.verify(&hand_made("at+jwt", claims(ISSUER, "another-api")), 1_001), Err(TokenError::Claims));
    let mut without_nbf = claims(ISSUER, AUDIENCE);
    without_nbf.as_object_mut().expect("object").remove("nbf");
    assert_eq!(j.verify(&hand_made("at+jwt", without_nbf), 1_001), Err(TokenError::Claims));
    // An untyped or plain `JWT` header is not an access token.
    assert_eq!(j.verify(&hand_made("JWT", claims(ISSUER, AUDIENCE)), 1_001), Err(TokenError::Kind));
}

#[test]
fn an_mfa_token_is_no_access_token_and_the_reverse() {
    let j = jwt(A, None);
    let (user, challenge) = (UserId::new(), Uuid::new_v4());
    let mfa = j.issue_mfa(user, challenge, 1_000, 300);
    assert_eq!(j.verify_mfa(&mfa, 1_001), Ok(MfaClaims { sub: user, jti: challenge }));
    assert_eq!(j.verify(&mfa, 1_001), Err(TokenError::Kind));
    assert_eq!(j.verify_mfa(&issue(&j, Role::Candidate, 1_000), 1_001), Err(TokenError::Kind));
    assert_eq!(j.verify_mfa(&mfa, 1_300), Err(TokenError::Expired));
}

#[test]
fn during_rotation_the_new_key_signs_and_both_verify() {
    let old = issue(&jwt(A, None), Role::Candidate, 1_000);
    let rotating = jwt(A, Some(B));
    assert!(rotating.verify(&old, 1_001).is_ok());
    let new = issue(&rotating, Role::Candidate, 1_000);
    assert!(jwt(B, None).verify(&new, 1_001).is_ok());
    assert_eq!(jwt(A, None).verify(&new, 1_001), Err(TokenError::Signature));
}
