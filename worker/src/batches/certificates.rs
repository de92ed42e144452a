//! `certificate_check`: for each `CERT_CHECK_HOSTS` entry, the days until
//! its TLS certificate expires, read from the handshake (the chain is not
//! verified: an expired or self-signed certificate must still be measured).
//! Alerts at 30 / 14 / 7 / 3 days with the seed's severities (P4 / P3 / P2 /
//! P1); an expired certificate is P1; a host that cannot be reached, P3.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{Value, json};
use shared::alerts::{Alert, Severity};
use tokio_rustls::rustls;

use super::{BatchError, Context};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The seed's thresholds (operations manual 3.2.2), most urgent first.
const THRESHOLDS: [(i64, Severity); 4] = [(3, Severity::P1), (7, Severity::P2), (14, Severity::P3), (30, Severity::P4)];

/// Checks every host; alerts as the thresholds say.
pub async fn check(ctx: &Context) -> Result<Value, BatchError> {
    let now = Utc::now();
    let mut results = Vec::new();
    for (host, port) in &ctx.config.batches.cert_hosts {
        let result = match not_after(host, *port).await {
            Ok(expires) => {
                let days_left = (expires - now).num_seconds().div_euclid(86_400);
                let crossed = THRESHOLDS.iter().find(|(days, _)| days_left <= *days);
                let alert = match crossed {
                    Some((threshold, severity)) => {
                        let status = if days_left < 0 {
                            format!("Expired {} days ago", -days_left)
                        } else {
                            format!("Expires in {days_left} days")
                        };
                        let alert = Alert {
                            severity: if days_left < 0 { Severity::P1 } else { *severity },
                            title: format!("TLS certificate of {host}:{port}: {}", status.to_lowercase()),
                            service: "Scheduler: certificate_check".into(),
                            status,
                            error: format!(
                                "The certificate of {host}:{port} expires {} ({threshold}-day threshold)",
                                expires.format("%Y-%m-%d %H:%M UTC")
                            ),
                            action: format!("Renew the certificate of {host} and deploy it before it expires."),
                            condition: format!("certificate:{host}:{port}:{threshold}d"),
                        };
                        Some(super::alert(ctx, alert).await)
                    }
                    None => None,
                };
                json!({
                    "host": format!("{host}:{port}"), "expires_at": expires.to_rfc3339(), "days_left": days_left,
                    "threshold_days": crossed.map(|(d, _)| d), "alert": alert,
                })
            }
            Err(problem) => {
                let alert = Alert {
                    severity: Severity::P3,
                    title: format!("TLS certificate of {host}:{port} could not be checked"),
                    service: "Scheduler: certificate_check".into(),
                    status: "Unreachable".into(),
                    error: problem.clone(),
                    action: format!("Check that {host}:{port} serves TLS and that CERT_CHECK_HOSTS is right."),
                    condition: format!("certificate:{host}:{port}:unreachable"),
                };
                let sent = super::alert(ctx, alert).await;
                json!({ "host": format!("{host}:{port}"), "error": problem, "alert": sent })
            }
        };
        results.push(result);
    }
    Ok(json!({ "hosts": results.len(), "results": results }))
}

/// The leaf certificate's `notAfter`, from a TLS handshake with `host:port`.
pub async fn not_after(host: &str, port: u16) -> Result<DateTime<Utc>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(MeasureOnly(provider)))
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| format!("{host}: {e}"))?;
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect((host, port)).await.map_err(|e| format!("{host}:{port}: {e}"))?;
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("{host}:{port}: TLS handshake: {e}"))
    };
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| format!("{host}:{port}: no TLS handshake within {} s", CONNECT_TIMEOUT.as_secs()))??;
    let (_, session) = stream.get_ref();
    let leaf = session.peer_certificates().and_then(|c| c.first()).ok_or(format!("{host}:{port}: no certificate"))?;
    der_not_after(leaf.as_ref()).ok_or_else(|| format!("{host}:{port}: the certificate's validity cannot be read"))
}

/// Accepts any certificate: we measure it, we do not trust it (no data is
/// sent over the connection).
#[derive(Debug)]
struct MeasureOnly(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for MeasureOnly {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One DER element: (tag, contents, rest).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// `notAfter` of an X.509 certificate: Certificate → tbsCertificate →
/// ([0] version), serialNumber, signature, issuer, validity → notAfter.
pub fn der_not_after(cert: &[u8]) -> Option<DateTime<Utc>> {
    let (_, certificate, _) = der_element(cert)?;
    let (_, tbs, _) = der_element(certificate)?;
    let mut rest = tbs;
    let (tag, _, after) = der_element(rest)?;
    if tag == 0xa0 {
        rest = after; // explicit version
    }
    for _ in 0..3 {
        rest = der_element(rest)?.2; // serialNumber, signature, issuer
    }
    let (_, validity, _) = der_element(rest)?;
    let (_, _, after_not_before) = der_element(validity)?;
    let (tag, time, _) = der_element(after_not_before)?;
    let text = std::str::from_utf8(time).ok()?;
    let parsed = match tag {
        // UTCTime: YYMMDDHHMMSSZ, years 50-99 are 19xx.
        0x17 => {
            let yy: i32 = text.get(..2)?.parse().ok()?;
            let century = if yy >= 50 { "19" } else { "20" };
            NaiveDateTime::parse_from_str(&format!("{century}{text}"), "%Y%m%d%H%M%SZ").ok()?
        }
        // GeneralizedTime: YYYYMMDDHHMMSSZ.
        0x18 => NaiveDateTime::parse_from_str(text, "%Y%m%d%H%M%SZ").ok()?,
        _ => return None,
    };
    Some(parsed.and_utc())
}
