//! The fake's service account: an RSA 2048 key pair generated per fake, the
//! JSON key file as the IAM console and `gcloud iam service-accounts keys
//! create` issue it ("Create and delete service account keys"), and RS256
//! (RSASSA-PKCS1-v1_5 with SHA-256, RFC 7518 §3.3) signing and verification.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{self, KeyPair as _, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::RngExt;
use serde_json::{Value, json};

/// The project the fake plays.
pub const PROJECT_ID: &str = "fake-gcp-project";

/// A service account with one user-managed key.
pub struct ServiceAccount {
    /// `client_email`.
    pub client_email: String,
    /// `client_id`: 21 digits.
    pub client_id: String,
    /// `private_key_id`: 40 hex digits, also the JWT header's `kid`.
    pub private_key_id: String,
    key: KeyPair,
    /// The PKCS#8 DER of the private key.
    pkcs8: Vec<u8>,
}

impl ServiceAccount {
    /// A new account with a freshly generated RSA 2048 key.
    pub fn generate() -> anyhow::Result<ServiceAccount> {
        let key = KeyPair::generate(KeySize::Rsa2048).map_err(|_| anyhow::anyhow!("RSA key generation failed"))?;
        let pkcs8 = key.as_der().map_err(|_| anyhow::anyhow!("PKCS#8 export failed"))?.as_ref().to_vec();
        let mut rng = rand::rng();
        let private_key_id =
            format!("{:016x}{:016x}{:08x}", rng.random::<u64>(), rng.random::<u64>(), rng.random::<u32>());
        let client_id = format!("1{:020}", rng.random::<u64>());
        Ok(ServiceAccount {
            client_email: format!("fake-vertex@{PROJECT_ID}.iam.gserviceaccount.com"),
            client_id,
            private_key_id,
            key,
            pkcs8,
        })
    }

    /// The private key as PEM: `-----BEGIN PRIVATE KEY-----`, base64 lines
    /// of 64 characters (RFC 7468 §10).
    pub fn private_key_pem(&self) -> String {
        let body = STANDARD.encode(&self.pkcs8);
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        pem
    }

    /// The key file's JSON, field for field as Google issues it, with
    /// `token_uri` pointing at the fake.
    pub fn key_file(&self, token_uri: &str) -> Value {
        let escaped_email = self.client_email.replace('@', "%40");
        json!({
            "type": "service_account",
            "project_id": PROJECT_ID,
            "private_key_id": self.private_key_id,
            "private_key": self.private_key_pem(),
            "client_email": self.client_email,
            "client_id": self.client_id,
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": format!("https://www.googleapis.com/robot/v1/metadata/x509/{escaped_email}"),
            "universe_domain": "googleapis.com"
        })
    }

    /// Whether `signature` is this key's RS256 signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let public = UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, self.key.public_key().as_ref());
        public.verify(message, signature).is_ok()
    }

    /// A compact JWT (RFC 7519) of `header` and `claims`, signed RS256 with
    /// this key: what a client sends as the `assertion`.
    pub fn sign_jwt(&self, header: &Value, claims: &Value) -> anyhow::Result<String> {
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(&signature::RSA_PKCS1_SHA256, &aws_lc_rs::rand::SystemRandom::new(), input.as_bytes(), &mut sig)
            .map_err(|_| anyhow::anyhow!("RS256 signing failed"))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pem_round_trips_to_the_same_key_and_the_key_file_has_every_field() {
        let account = ServiceAccount::generate().expect("key");
        let pem = account.private_key_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n") && pem.ends_with("-----END PRIVATE KEY-----\n"));
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(pem.lines().all(|l| l.len() <= 64));
        let der = STANDARD.decode(body).expect("base64");
        let parsed = KeyPair::from_pkcs8(&der).expect("PKCS#8");
        assert_eq!(parsed.public_key().as_ref(), account.key.public_key().as_ref());
        assert_eq!(parsed.public_modulus_len(), 256);
        let file = account.key_file("http://127.0.0.1:1/token");
        for field in [
            "type",
            "project_id",
            "private_key_id",
            "private_key",
            "client_email",
            "client_id",
            "auth_uri",
            "token_uri",
            "auth_provider_x509_cert_url",
            "client_x509_cert_url",
            "universe_domain",
        ] {
            assert!(file[field].is_string(), "{field} missing");
        }
        assert_eq!(file["private_key_id"].as_str().map(str::len), Some(40));
        assert_eq!(file["client_id"].as_str().map(str::len), Some(21));
    }

    #[test]
    fn a_signature_verifies_and_a_changed_message_does_not() {
        let account = ServiceAccount::generate().expect("key");
        let jwt = account.sign_jwt(&json!({ "alg": "RS256", "typ": "JWT" }), &json!({ "a": 1 })).expect("jwt");
        let (input, sig) = jwt.rsplit_once('.').expect("three parts");
        let sig = URL_SAFE_NO_PAD.decode(sig).expect("base64url");
        assert!(account.verifies(input.as_bytes(), &sig));
        assert!(!account.verifies(format!("{input}x").as_bytes(), &sig));
    }
}
