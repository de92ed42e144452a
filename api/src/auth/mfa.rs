//! TOTP (RFC 6238: SHA1, 6 digits, 30 s, ±1 step; what authenticator apps
//! compute) with `totp-rs`; secrets sealed at rest with AES-256-GCM under a
//! key derived (HKDF-SHA256) from `TOTP_SECRET_KEY`, the user id as
//! associated data; single-use recovery codes stored as SHA-256 hashes.

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use rand::RngExt;
use sha2::{Digest, Sha256};
use shared::ids::UserId;
use totp_rs::{Algorithm, Builder, Secret, Totp};

/// How long a login waits for its second factor.
pub const CHALLENGE_TTL_SECS: i64 = 300;
/// Wrong codes per MFA token; it is void after them.
pub const MAX_FAILURES: i32 = 5;
/// Recovery codes handed out at setup.
pub const RECOVERY_CODES: usize = 10;
/// The format of a sealed secret (leading byte), so the key can be rotated.
const SEALED_V1: u8 = 1;

/// Seals and opens TOTP secrets.
pub struct Sealer {
    key: RandomizedNonceKey,
}

impl Sealer {
    /// From `TOTP_SECRET_KEY`.
    pub fn new(secret_key: &str) -> anyhow::Result<Self> {
        let prk = Salt::new(HKDF_SHA256, b"ai-interviewer").extract(secret_key.as_bytes());
        let mut key = [0u8; 32];
        prk.expand(&[b"totp secret v1"], &AES_256_GCM)
            .and_then(|okm| okm.fill(&mut key))
            .map_err(|_| anyhow::anyhow!("TOTP_SECRET_KEY: could not derive a key"))?;
        let key =
            RandomizedNonceKey::new(&AES_256_GCM, &key).map_err(|_| anyhow::anyhow!("TOTP_SECRET_KEY: bad key"))?;
        Ok(Self { key })
    }

    /// `version ‖ nonce ‖ ciphertext ‖ tag`, bound to `user`.
    pub fn seal(&self, user: UserId, secret: &[u8]) -> Result<Vec<u8>, String> {
        let mut buffer = secret.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(user.to_string().as_bytes()), &mut buffer)
            .map_err(|_| "sealing failed".to_owned())?;
        let mut sealed = vec![SEALED_V1];
        sealed.extend_from_slice(nonce.as_ref());
        sealed.extend_from_slice(&buffer);
        Ok(sealed)
    }

    /// The secret `seal` sealed for `user`; `Err` when it was sealed with
    /// another key or for another user, or is damaged.
    pub fn open(&self, user: UserId, sealed: &[u8]) -> Result<Vec<u8>, String> {
        let refused = || "the stored TOTP secret cannot be opened (another TOTP_SECRET_KEY?)".to_owned();
        let rest = sealed.strip_prefix(&[SEALED_V1]).ok_or_else(refused)?;
        if rest.len() < NONCE_LEN {
            return Err(refused());
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused())?;
        let mut buffer = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(user.to_string().as_bytes()), &mut buffer)
            .map_err(|_| refused())?;
        Ok(plain.to_vec())
    }
}

/// A new random secret (160 bits, as RFC 4226 recommends).
pub fn new_secret() -> Vec<u8> {
    Secret::generate().as_bytes().to_vec()
}

fn totp(secret: &[u8], issuer: Option<&str>, account: Option<&str>) -> Result<Totp, String> {
    let mut builder = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret.to_vec());
    if let Some(account) = account {
        builder = builder.with_account_name(account).with_issuer(issuer);
    }
    builder.build().map_err(|e| e.to_string())
}

/// The base32 secret and the `otpauth://` URI an authenticator app scans.
pub fn enrolment(secret: &[u8], issuer: &str, account: &str) -> Result<(String, String), String> {
    let totp = totp(secret, Some(issuer), Some(&account.replace(':', "")))?;
    Ok((totp.secret().to_base32(), totp.to_url().map_err(|e| e.to_string())?))
}

/// The time step (unix time / 30) a 6-digit `code` was computed for, within
/// ±1 step of `now`; none when it matches none.
pub fn matching_step(secret: &[u8], code: &str, now: u64) -> Option<i64> {
    let totp = totp(secret, None, None).ok()?;
    totp.check(code, now).and_then(|step| i64::try_from(step).ok())
}

/// A code as typed: spaces and dashes dropped. Six digits are a TOTP code;
/// anything else is taken for a recovery code.
pub fn normalize(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace() && *c != '-').collect::<String>().to_ascii_uppercase()
}

/// Whether a normalized code is a TOTP code (six digits).
pub fn is_totp_code(normalized: &str) -> bool {
    normalized.len() == 6 && normalized.bytes().all(|b| b.is_ascii_digit())
}

/// Ten recovery codes (`XXXXX-XXXXX`, 50 random bits each, an alphabet
/// without 0/O and 1/I) and their hashes.
pub fn recovery_codes() -> (Vec<String>, Vec<Vec<u8>>) {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| {
            let chars: String = (0..10).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect();
            format!("{}-{}", &chars[..5], &chars[5..])
        })
        .collect();
    let hashes = codes.iter().map(|c| recovery_hash(&normalize(c))).collect();
    (codes, hashes)
}

/// The stored form of a normalized recovery code.
pub fn recovery_hash(normalized: &str) -> Vec<u8> {
    Sha256::digest(normalized.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_key_and_user() {
        let sealer = Sealer::new("a-totp-secret-key-of-32-characters!!").expect("key");
        let (user, other) = (UserId::new(), UserId::new());
        let sealed = sealer.seal(user, b"twenty bytes secret!").expect("seal");
        assert_ne!(&sealed[1 + NONCE_LEN..1 + NONCE_LEN + 20], b"twenty bytes secret!", "not in the clear");
        assert_eq!(sealer.open(user, &sealed).expect("open"), b"twenty bytes secret!");
        assert!(sealer.open(other, &sealed).is_err(), "bound to the user");
        let other_key = Sealer::new("another-totp-secret-key-32-chars!!!").expect("key");
        assert!(other_key.open(user, &sealed).is_err(), "bound to the key");
        // Two seals of one secret differ (random nonces).
        assert_ne!(sealer.seal(user, b"twenty bytes secret!").expect("seal"), sealed);
    }

    #[test]
    fn rfc_6238_sha1_vectors_match_at_their_step() {
        // RFC 6238 appendix B, SHA1, truncated to 6 digits.
        let secret = b"12345678901234567890";
        for (time, code) in [(59u64, "287082"), (1111111109, "081804"), (1234567890, "005924"), (2000000000, "279037")]
        {
            assert_eq!(matching_step(secret, code, time), Some((time / 30) as i64), "{time}");
        }
        // One step either side is accepted, two are not.
        assert_eq!(matching_step(secret, "081804", 1111111109 + 30), Some(1111111109 / 30));
        assert_eq!(matching_step(secret, "081804", 1111111109 + 60), None);
        assert_eq!(matching_step(secret, "000000", 59), None);
    }

    #[test]
    fn the_enrolment_uri_names_issuer_and_account_and_codes_normalize() {
        let (base32, uri) = enrolment(b"12345678901234567890", "AI Interview System", "c@example.com").expect("uri");
        assert_eq!(base32, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert!(uri.starts_with("otpauth://totp/AI%20Interview%20System:c%40example.com?"), "{uri}");
        assert!(
            uri.contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ") && uri.contains("issuer=AI%20Interview%20System")
        );
        assert!(is_totp_code(&normalize(" 123 456 ")));
        assert!(!is_totp_code(&normalize("abcde-fghij")));
        let (codes, hashes) = recovery_codes();
        assert_eq!((codes.len(), hashes.len()), (10, 10));
        assert!(codes.iter().all(|c| c.len() == 11 && c.as_bytes()[5] == b'-'), "{codes:?}");
        assert_eq!(recovery_hash(&normalize(&codes[0].to_lowercase())), hashes[0]);
    }
}
