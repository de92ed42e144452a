//! STS `AssumeRoleWithWebIdentity` as AWS documents it: an unsigned POST of
//! the Query protocol (`Action`, `Version`, `RoleArn`, `RoleSessionName`,
//! `WebIdentityToken`, form-encoded), answered in XML with temporary
//! credentials that expire at `Expiration`.

use std::time::{Duration, SystemTime};

use super::sigv4::percent_decode;

/// A role the fake lets a web identity token assume.
#[derive(Debug, Clone)]
pub struct Role {
    /// `RoleArn` it answers for.
    pub arn: String,
    /// The token (the content of `AWS_WEB_IDENTITY_TOKEN_FILE`) it accepts.
    pub token: String,
    /// How long the credentials it issues live.
    pub lifetime: Duration,
}

/// Credentials issued for a role.
#[derive(Debug, Clone)]
pub struct Issued {
    /// `AccessKeyId`.
    pub access_key_id: String,
    /// `SecretAccessKey`.
    pub secret_access_key: String,
    /// `SessionToken`.
    pub session_token: String,
    /// `Expiration`.
    pub expires: SystemTime,
}

/// The form's fields.
pub fn form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// The answer to a form: the credentials to issue, or the XML error.
pub fn assume(role: Option<&Role>, fields: &[(String, String)], serial: u64) -> Result<Issued, (u16, String)> {
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if field("Action") != Some("AssumeRoleWithWebIdentity") || field("Version") != Some("2011-06-15") {
        return Err(error(400, "InvalidAction", "Could not find operation for this Action and Version"));
    }
    let Some(role) = role else {
        return Err(error(403, "AccessDenied", "No role may be assumed with a web identity here"));
    };
    if field("RoleArn") != Some(role.arn.as_str()) {
        return Err(error(403, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity"));
    }
    if field("RoleSessionName").is_none_or(str::is_empty) {
        return Err(error(400, "ValidationError", "RoleSessionName is required"));
    }
    if field("WebIdentityToken") != Some(role.token.as_str()) {
        return Err(error(
            400,
            "InvalidIdentityToken",
            "Couldn't retrieve verification key from your identity provider",
        ));
    }
    Ok(Issued {
        access_key_id: format!("ASIAFAKE{serial:012}"),
        secret_access_key: format!("fake-sts-secret-{serial}"),
        session_token: format!("FwoGZXIvYXdzEFAKE{serial}"),
        expires: SystemTime::now() + role.lifetime,
    })
}

/// The documented response.
pub fn response(issued: &Issued, role: &Role) -> String {
    let expiration = chrono::DateTime::<chrono::Utc>::from(issued.expires).format("%Y-%m-%dT%H:%M:%SZ");
    format!(
        r#"<AssumeRoleWithWebIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleWithWebIdentityResult>
    <SubjectFromWebIdentityToken>system:serviceaccount:ai-interviewer:worker</SubjectFromWebIdentityToken>
    <Audience>sts.amazonaws.com</Audience>
    <AssumedRoleUser>
      <Arn>{arn}/session</Arn>
      <AssumedRoleId>AROAFAKE:session</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>{token}</SessionToken>
      <SecretAccessKey>{secret}</SecretAccessKey>
      <Expiration>{expiration}</Expiration>
      <AccessKeyId>{id}</AccessKeyId>
    </Credentials>
    <Provider>arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/FAKE</Provider>
  </AssumeRoleWithWebIdentityResult>
  <ResponseMetadata>
    <RequestId>fake-sts-request</RequestId>
  </ResponseMetadata>
</AssumeRoleWithWebIdentityResponse>"#,
        arn = role.arn.replace(":role/", ":assumed-role/"),
        token = issued.session_token,
        secret = issued.secret_access_key,
        id = issued.access_key_id,
    )
}

fn error(status: u16, code: &str, message: &str) -> (u16, String) {
    let body = format!(
        r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>
  <RequestId>fake-sts-request</RequestId>
</ErrorResponse>"#
    );
    (status, body)
}
