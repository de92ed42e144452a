//! Signature Version 4 checked the way AWS documents it ("Create a signed
//! AWS API request"): the canonical request, the string to sign, the
//! signing key derived from the secret, date, region and service, and the
//! signature recomputed and compared. Written from the documentation, not
//! from any client: it refuses what AWS refuses.

use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Why a request was refused: HTTP status, AWS error type, message.
pub type Refusal = (u16, &'static str, String);

/// How far a request's `X-Amz-Date` may be from the fake's clock.
const SKEW: Duration = Duration::from_secs(5 * 60);

/// What a verified signature was made with.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The access key id of `Credential=`.
    pub access_key_id: String,
    /// The headers that were signed, as `SignedHeaders=` lists them.
    pub signed_headers: Vec<String>,
}

/// The request's parts the signature covers.
pub struct Request<'a> {
    /// `POST`.
    pub method: &'a str,
    /// The path exactly as it arrived (percent-encoded once).
    pub path: &'a str,
    /// The raw query, if any.
    pub query: Option<&'a str>,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The body.
    pub body: &'a [u8],
}

/// Checks `request`'s `Authorization: AWS4-HMAC-SHA256 ...` for `region`
/// and `service`, the secret of its access key given by `secret_of`.
pub fn verify(
    request: &Request<'_>,
    region: &str,
    service: &str,
    now: SystemTime,
    secret_of: impl Fn(&str) -> Option<String>,
) -> Result<Signed, Refusal> {
    let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let invalid = |message: &str| (403, "InvalidSignatureException", message.to_owned());
    let authorization = header("authorization")
        .ok_or_else(|| (403, "MissingAuthenticationTokenException", "Missing Authentication Token".to_owned()))?;
    let fields = authorization
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| (400, "IncompleteSignatureException", format!("unsupported scheme in {authorization:?}")))?;
    let field = |name: &str| {
        fields.split(',').map(str::trim).find_map(|f| f.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
    };
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (field("Credential"), field("SignedHeaders"), field("Signature"))
    else {
        return Err((400, "IncompleteSignatureException", format!("incomplete: {authorization:?}")));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, scope_region, scope_service, "aws4_request"] = scope.as_slice() else {
        return Err(invalid("Credential should be scoped to a valid date, region, service and aws4_request"));
    };
    if *scope_region != region || *scope_service != service {
        return Err(invalid(&format!(
            "Credential should be scoped to {region}/{service}, not {scope_region}/{scope_service}"
        )));
    }
    let amz_date = header("x-amz-date").ok_or_else(|| invalid("X-Amz-Date is missing"))?;
    if !amz_date.starts_with(date) {
        return Err(invalid("the Credential date does not match X-Amz-Date"));
    }
    let signed_at = parse_amz_date(&amz_date).ok_or_else(|| invalid("X-Amz-Date is not yyyymmddThhmmssZ"))?;
    let skew = now.duration_since(signed_at).or_else(|e| Ok::<_, ()>(e.duration())).unwrap_or_default();
    if skew > SKEW {
        return Err((
            403,
            "InvalidSignatureException",
            format!("Signature expired: {amz_date} is now too far from the server's time"),
        ));
    }
    let names: Vec<String> = signed_headers.split(';').map(str::to_owned).collect();
    if !names.iter().any(|n| n == "host") || names.windows(2).any(|w| w[0] >= w[1]) {
        return Err(invalid("SignedHeaders must include host and be sorted"));
    }
    let secret = secret_of(access_key_id).ok_or_else(|| {
        (403, "UnrecognizedClientException", "The security token included in the request is invalid.".to_owned())
    })?;
    let mut canonical_headers = String::new();
    for name in &names {
        let values: Vec<String> = request
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return Err(invalid(&format!("signed header {name} is missing")));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        canonical_uri(request.path),
        canonical_query(request.query.unwrap_or("")),
        canonical_headers,
        signed_headers,
        hex(&Sha256::digest(request.body)),
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let string_to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex(&Sha256::digest(canonical_request.as_bytes())));
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let expected = hex(&hmac(&key, string_to_sign.as_bytes()));
    if expected != signature {
        return Err(invalid(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.",
        ));
    }
    Ok(Signed { access_key_id: (*access_key_id).to_owned(), signed_headers: names })
}

/// Each path segment URI-encoded again: AWS services other than S3 encode
/// the path twice, and the wire carries it encoded once.
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    path.split('/').map(uri_encode).collect::<Vec<_>>().join("/")
}

/// Parameters sorted by name, each name and value URI-encoded.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&percent_decode(k)), uri_encode(&percent_decode(v)))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// Every byte but the unreserved `A-Z a-z 0-9 - _ . ~` as `%XY`, upper case.
fn uri_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `%XY` escapes and `+` (a form's space) decoded.
pub(super) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex_at = |j: usize| bytes.get(j).and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex_at(i + 1), hex_at(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b'+', ..) => {
                out.push(b' ');
                i += 1;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!("any key length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `yyyymmddThhmmssZ`.
fn parse_amz_date(value: &str) -> Option<SystemTime> {
    let at = chrono::NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%SZ").ok()?.and_utc();
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at.timestamp()).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's worked example ("Examples of the complete Signature Version 4
    /// signing process"): GET https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08.
    #[test]
    fn the_documented_example_verifies_and_a_changed_secret_does_not() {
        let mut headers = HeaderMap::new();
        headers.insert("host", "iam.amazonaws.com".parse().expect("header"));
        headers.insert("content-type", "application/x-www-form-urlencoded; charset=utf-8".parse().expect("header"));
        headers.insert("x-amz-date", "20150830T123600Z".parse().expect("header"));
        headers.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
                .parse()
                .expect("header"),
        );
        let request = Request {
            method: "GET",
            path: "/",
            query: Some("Action=ListUsers&Version=2010-05-08"),
            headers: &headers,
            body: b"",
        };
        let at = parse_amz_date("20150830T123600Z").expect("date");
        let secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
        let ok = verify(&request, "us-east-1", "iam", at, |id| (id == "AKIDEXAMPLE").then(|| secret.to_owned()));
        assert_eq!(ok.map(|s| s.access_key_id).ok().as_deref(), Some("AKIDEXAMPLE"));
        let wrong = verify(&request, "us-east-1", "iam", at, |_| Some("not-the-secret".into()));
        assert_eq!(wrong.map_err(|e| e.1).err(), Some("InvalidSignatureException"));
        let late = verify(&request, "us-east-1", "iam", at + Duration::from_secs(3600), |_| Some(secret.into()));
        assert!(late.is_err_and(|e| e.2.contains("Signature expired")));
    }

    #[test]
    fn the_path_is_encoded_twice() {
        assert_eq!(
            canonical_uri("/model/us.anthropic.claude%3A0/converse-stream"),
            "/model/us.anthropic.claude%253A0/converse-stream"
        );
    }
}
