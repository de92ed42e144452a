//! Redis: the URL (with `REDIS_PASSWORD` merged in), TLS for `rediss://`,
//! timeouts, and the key prefix.

use std::path::PathBuf;
use std::time::Duration;

use super::Vars;

/// Redis.
#[derive(Clone)]
pub struct RedisConfig {
    /// `REDIS_URL` with `REDIS_PASSWORD` applied (it holds the password: not
    /// `Debug`, see [`RedisConfig::redacted_url`]).
    pub url: String,
    /// `REDIS_TLS_CA_FILE`: the PEM of the CA that signed the server's
    /// certificate (a private CA); the system's roots when unset.
    pub tls_ca: Option<Vec<u8>>,
    /// `REDIS_TLS_INSECURE`: accept any server certificate (development only;
    /// a warning is logged at start-up).
    pub tls_insecure: bool,
    /// `REDIS_SOCKET_TIMEOUT`: connect and response timeout.
    pub socket_timeout: Duration,
    /// `REDIS_KEY_PREFIX`: prefix of every queue, key and channel this service uses.
    pub key_prefix: String,
}

impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("tls_ca", &self.tls_ca.as_ref().map(|_| "(PEM)"))
            .field("tls_insecure", &self.tls_insecure)
            .field("socket_timeout", &self.socket_timeout)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}

impl RedisConfig {
    /// Whether connections use TLS (`rediss://`).
    pub fn tls(&self) -> bool {
        self.url.starts_with("rediss://")
    }

    /// The URL with its password replaced by `***`, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }
}

/// `url` without the password of its user info.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split_once(':').map_or(user_info, |(user, _)| user);
            let slash = if rest.contains('/') { "/" } else { "" };
            format!("{scheme}://{user}:***@{host}{slash}{path}")
        }
        None => url.to_owned(),
    }
}

/// Reads the Redis settings.
pub(super) fn read(v: &mut Vars) -> RedisConfig {
    let url = url(v);
    let tls_ca = v.get("REDIS_TLS_CA_FILE").map(PathBuf::from).and_then(|path| match std::fs::read(&path) {
        Ok(pem) if String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") => Some(pem),
        Ok(_) => {
            v.problem("REDIS_TLS_CA_FILE", format!("{} holds no PEM certificate", path.display()));
            None
        }
        Err(e) => {
            v.problem("REDIS_TLS_CA_FILE", format!("{} cannot be read: {e}", path.display()));
            None
        }
    });
    let tls_insecure = v.flag("REDIS_TLS_INSECURE", false);
    let tls = url.starts_with("rediss://");
    for (set, name) in [(tls_ca.is_some(), "REDIS_TLS_CA_FILE"), (tls_insecure, "REDIS_TLS_INSECURE")] {
        if set && !tls {
            v.problem(name, "applies to rediss:// URLs only; REDIS_URL is redis://");
        }
    }
    if tls_insecure && tls_ca.is_some() {
        v.problem(
            "REDIS_TLS_INSECURE",
            "and REDIS_TLS_CA_FILE contradict each other: verify with the CA, or not at all",
        );
    }
    RedisConfig {
        url,
        tls_ca,
        tls_insecure,
        socket_timeout: v.seconds("REDIS_SOCKET_TIMEOUT", 5, 1, 300),
        key_prefix: key_prefix(v),
    }
}

/// `REDIS_URL`, with `REDIS_PASSWORD` as its password when it names none
/// (`redis://host`, or an ACL user without one: `rediss://user@host`).
fn url(v: &mut Vars) -> String {
    let url = v.string("REDIS_URL", "redis://127.0.0.1:6379/0");
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        v.problem("REDIS_URL", "must start with redis:// or rediss://");
        return url;
    }
    let Some(password) = v.get("REDIS_PASSWORD").map(percent_encode) else { return url };
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", &url));
    let authority = rest.split('/').next().unwrap_or_default();
    match authority.rsplit_once('@') {
        None => format!("{scheme}://:{password}@{rest}"),
        // The URL's own password wins.
        Some((user_info, _)) if user_info.contains(':') => url,
        Some((user, _)) => format!("{scheme}://{user}:{password}@{}", &rest[user.len() + 1..]),
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn key_prefix(v: &mut Vars) -> String {
    let prefix = v.string("REDIS_KEY_PREFIX", "aiv");
    // apalis-redis splits notification channels on ':', so queue names may not hold one.
    if !prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') || prefix.len() > 64 {
        v.problem("REDIS_KEY_PREFIX", "may hold only letters, digits, '_' and '-' (at most 64)");
    }
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_from(pairs: &[(&str, &str)]) -> (RedisConfig, Vec<String>) {
        let mut v = Vars::from_map(pairs.iter().map(|(k, val)| ((*k).to_owned(), (*val).to_owned())).collect());
        let config = read(&mut v);
        (config, v.finish().err().map(|e| e.problems).unwrap_or_default())
    }

    #[test]
    fn the_password_is_merged_into_the_url_and_kept_out_of_debug_output() {
        let (c, _) = read_from(&[("REDIS_PASSWORD", "p@ss word")]);
        assert_eq!(c.url, "redis://:p%40ss%20word@127.0.0.1:6379/0");
        let (c, _) = read_from(&[("REDIS_URL", "rediss://aiv@cache:6380/0"), ("REDIS_PASSWORD", "s3cret")]);
        assert_eq!(c.url, "rediss://aiv:s3cret@cache:6380/0", "an ACL user gets the password");
        let (c, _) = read_from(&[("REDIS_URL", "rediss://aiv:own@cache:6380"), ("REDIS_PASSWORD", "s3cret")]);
        assert_eq!(c.url, "rediss://aiv:own@cache:6380");
        assert_eq!(c.redacted_url(), "rediss://aiv:***@cache:6380");
        assert!(!format!("{c:?}").contains("own@"), "{c:?}");
        assert_eq!(redact("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
    }

    #[test]
    fn tls_settings_are_checked() {
        let (_, problems) = read_from(&[("REDIS_TLS_INSECURE", "true")]);
        assert!(problems.iter().any(|p| p.starts_with("REDIS_TLS_INSECURE: applies to rediss://")), "{problems:?}");
        let (_, problems) =
            read_from(&[("REDIS_URL", "rediss://h:6380"), ("REDIS_TLS_CA_FILE", "/nonexistent/ca.pem")]);
        assert!(problems.iter().any(|p| p.contains("/nonexistent/ca.pem cannot be read")), "{problems:?}");
        let (c, problems) = read_from(&[("REDIS_URL", "rediss://h:6380"), ("REDIS_TLS_INSECURE", "true")]);
        assert!(problems.is_empty() && c.tls() && c.tls_insecure, "{problems:?}");
    }
}
