//! Secrets from files, the Docker and Kubernetes secrets convention: each
//! variable of [`SECRETS`] may instead be given as `NAME_FILE`, the path of
//! a file holding the value (a Compose `secrets:` entry under
//! `/run/secrets/`, a Kubernetes Secret mounted as a volume). Resolved when
//! the variables are collected ([`super::Vars::from_map`]), so every binary
//! and subcommand, and the tests' maps, get it alike. The value is the
//! file's contents without trailing newlines; an empty file counts as
//! unset, as a blank variable does (an optional secret mounted empty).

use std::collections::HashMap;
use std::path::Path;

/// The variables that hold secrets: passwords, keys, tokens, and the URLs
/// that carry a credential (a database URL with its password, a webhook URL
/// whose path is the key). Each may be given as `NAME_FILE` instead of
/// `NAME`; setting both is a start-up error. The one list of them: the
/// `_FILE` convention, the documentation (`.env.example`) and the tests
/// that check no secret reaches a log line all go by it.
///
/// Not here, as they are not secret: `AWS_ACCESS_KEY_ID` (an identifier;
/// its secret half is), and the variables that already name a file
/// (`GOOGLE_APPLICATION_CREDENTIALS`, `VERTEX_AI_TOKEN_FILE`,
/// `AWS_WEB_IDENTITY_TOKEN_FILE`, `REDIS_TLS_CA_FILE`). The AWS keys are read
/// by our configuration and handed to the AWS SDK (`bedrock.rs`), so their
/// `_FILE` forms work too; what the SDK's default chain reads by itself
/// (profiles, web identity) is not ours to resolve.
pub const SECRETS: &[&str] = &[
    "DATABASE_URL",
    "REDIS_URL",
    "REDIS_PASSWORD",
    "JWT_SECRET_KEY",
    "JWT_SECRET_KEY_NEW",
    "TOTP_SECRET_KEY",
    "BOOTSTRAP_ADMIN_PASSWORD",
    "METRICS_TOKEN",
    "SLACK_WEBHOOK_URL",
    "TEAMS_WEBHOOK_URL",
    "SENTRY_DSN",
    "OPENAI_COMPATIBLE_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_BEARER_TOKEN_BEDROCK",
];

/// What [`resolve`] found.
#[derive(Default)]
pub(super) struct Resolved {
    /// `VARIABLE: what is wrong` lines.
    pub problems: Vec<String>,
    /// The secrets whose file is empty (name, path): unset, as a blank
    /// variable is, so an optional secret can be mounted empty.
    pub empty: HashMap<String, String>,
}

/// Sets each `NAME` of [`SECRETS`] given as `NAME_FILE` in `values` to the
/// file's contents without its trailing newlines (`\n`, `\r\n`: a file
/// written by `echo`, or by an editor, ends with one). The problems name
/// their variable: both forms set, a file that cannot be read (with its
/// path; its contents are never quoted).
pub(super) fn resolve(values: &mut HashMap<String, String>) -> Resolved {
    let set = |values: &HashMap<String, String>, name: &str| {
        values.get(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    };
    let mut resolved = Resolved::default();
    for name in SECRETS {
        let file_var = format!("{name}_FILE");
        let Some(path) = set(values, &file_var) else { continue };
        if set(values, name).is_some() {
            resolved.problems.push(format!("{name}: set either {name} or {file_var}, not both"));
            continue;
        }
        match std::fs::read_to_string(Path::new(&path)) {
            Ok(contents) => {
                let value = contents.trim_end_matches(['\n', '\r']);
                if value.trim().is_empty() {
                    resolved.empty.insert((*name).to_owned(), path);
                }
                values.insert((*name).to_owned(), value.to_owned());
            }
            Err(e) => resolved.problems.push(format!("{file_var}: {path} cannot be read: {e}")),
        }
    }
    resolved
}

#[cfg(test)]
mod tests {
    use super::super::tests::{SECRET, load};
    use super::super::{Component, Vars};
    use super::SECRETS;
    use std::path::PathBuf;

    /// A directory of this test's own, removed when dropped.
    struct Dir(PathBuf);

    impl Dir {
        fn new(test: &str) -> Dir {
            let dir = std::env::temp_dir().join(format!("aiv-secrets-{test}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            Dir(dir)
        }

        fn file(&self, name: &str, contents: &str) -> String {
            let path = self.0.join(name);
            std::fs::write(&path, contents).expect("write");
            path.to_str().expect("UTF-8 path").to_owned()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        Vars::from_map(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn every_secret_can_come_from_a_file_without_its_trailing_newlines() {
        let dir = Dir::new("each");
        for (i, name) in SECRETS.iter().enumerate() {
            // `echo` (\n), an editor on Windows (\r\n), a stray blank line.
            let ending = ["\n", "\r\n", "\n\n", ""][i % 4];
            let path = dir.file(name, &format!("value of {name}{ending}"));
            let v = vars(&[(&format!("{name}_FILE"), &path)]);
            assert_eq!(v.get(name), Some(format!("value of {name}").as_str()), "{name} from {path}");
            assert!(v.finish().is_ok(), "{name}");
        }
        // Inner newlines and spaces are the value's own.
        let path = dir.file("multi", "line one\nline two\r\n");
        let v = vars(&[("JWT_SECRET_KEY_FILE", &path)]);
        assert_eq!(v.get("JWT_SECRET_KEY"), Some("line one\nline two"));
    }

    #[test]
    fn a_whole_configuration_reads_its_secrets_from_files() {
        let dir = Dir::new("config");
        let database = dir.file("db", "postgres://aiv:db-pass@db.internal:5432/aiv\n");
        let jwt = dir.file("jwt", &format!("{SECRET}\n"));
        let admin = dir.file("admin", "admin password\r\n");
        let metrics = dir.file("metrics", "metrics-token\n");
        let redis = dir.file("redis", "redis pass\n");
        let config = load(
            &[
                ("DATABASE_URL_FILE", &database),
                ("JWT_SECRET_KEY_FILE", &jwt),
                ("BOOTSTRAP_ADMIN_EMAIL", "admin@example.com"),
                ("BOOTSTRAP_ADMIN_PASSWORD_FILE", &admin),
                ("METRICS_TOKEN_FILE", &metrics),
                ("REDIS_PASSWORD_FILE", &redis),
            ],
            Component::Api,
        )
        .expect("valid");
        assert_eq!(config.database.url, "postgres://aiv:db-pass@db.internal:5432/aiv");
        assert_eq!(config.api.jwt.secret, SECRET);
        assert_eq!(config.bootstrap_admin.as_ref().map(|a| a.password.as_str()), Some("admin password"));
        assert_eq!(config.telemetry.metrics_token.as_ref().map(|t| t.0.as_str()), Some("metrics-token"));
        assert_eq!(config.redis.url, "redis://:redis%20pass@127.0.0.1:6379/0");
        // None of them in the configuration's debug output.
        let debug = format!("{config:?}");
        for secret in ["db-pass", SECRET, "admin password", "metrics-token", "redis%20pass"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(debug.contains("postgres://aiv:***@db.internal:5432/aiv"), "{debug}");
    }

    #[test]
    fn no_secret_is_in_the_configuration_s_debug_output() {
        let dir = Dir::new("debug");
        let value = |name: &str| {
            let secret = format!("s3cr3t-{}-0123456789abcdef0123456789", name.to_ascii_lowercase());
            match name {
                "DATABASE_URL" => format!("postgres://aiv:{secret}@db:5432/aiv"),
                "REDIS_URL" => format!("redis://:{secret}@cache:6379/0"),
                "SLACK_WEBHOOK_URL" | "TEAMS_WEBHOOK_URL" => format!("https://hooks.example.com/services/{secret}"),
                "SENTRY_DSN" => format!("https://{secret}@o1.ingest.sentry.io/42"),
                _ => secret,
            }
        };
        let mut pairs: Vec<(String, String)> = SECRETS
            .iter()
            .map(|name| (format!("{name}_FILE"), dir.file(name, &format!("{}\n", value(name)))))
            .collect();
        for (name, v) in [
            ("BOOTSTRAP_ADMIN_EMAIL", "admin@example.com"),
            ("AI_PROVIDER", "openai_compatible"),
            ("AI_FALLBACK_PROVIDERS", "azure_openai,aws_bedrock"),
            ("OPENAI_COMPATIBLE_BASE_URL", "http://llm.internal/v1"),
            ("OPENAI_COMPATIBLE_MODEL", "m"),
            ("AZURE_OPENAI_ENDPOINT", "https://r.openai.azure.com"),
            ("AZURE_OPENAI_DEPLOYMENT", "d"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        ] {
            pairs.push((name.to_owned(), v.to_owned()));
        }
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let config = load(&pairs, Component::Worker).expect("valid");
        assert_eq!(config.api.jwt.secret, value("JWT_SECRET_KEY"), "read");
        assert!(config.worker.providers.as_ref().is_some_and(|p| p.len() == 3), "{:?}", config.worker.providers);
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cr3t-"), "{debug}");
    }

    #[test]
    fn both_forms_set_is_refused_naming_the_variable() {
        let dir = Dir::new("both");
        let path = dir.file("jwt", SECRET);
        let err = load(
            &[("DATABASE_URL", "postgres://x/y"), ("JWT_SECRET_KEY", SECRET), ("JWT_SECRET_KEY_FILE", &path)],
            Component::Api,
        )
        .expect_err("both set")
        .to_string();
        assert!(err.contains("JWT_SECRET_KEY: set either JWT_SECRET_KEY or JWT_SECRET_KEY_FILE, not both"), "{err}");
        assert!(!err.contains(SECRET), "{err}");
        // A blank one counts as unset, as everywhere.
        assert!(
            load(
                &[("DATABASE_URL", "postgres://x/y"), ("JWT_SECRET_KEY", ""), ("JWT_SECRET_KEY_FILE", &path)],
                Component::Api
            )
            .is_ok()
        );
    }

    #[test]
    fn an_unreadable_file_is_named_with_its_path_never_its_contents() {
        let dir = Dir::new("bad");
        let missing = dir.0.join("missing").to_str().expect("UTF-8 path").to_owned();
        let wrong = dir.file("wrong", "mysql://root:hunter2-secret@db/app\n");
        let err = load(
            &[
                ("DATABASE_URL_FILE", &wrong),
                ("JWT_SECRET_KEY_FILE", &missing),
                ("REDIS_PASSWORD_FILE", dir.0.to_str().expect("UTF-8 path")),
            ],
            Component::Api,
        )
        .expect_err("bad files")
        .to_string();
        for expected in [
            format!("JWT_SECRET_KEY_FILE: {missing} cannot be read: "),
            format!("REDIS_PASSWORD_FILE: {} cannot be read: ", dir.0.display()),
            // The value read is checked as any other, and not quoted.
            "DATABASE_URL: must start with postgres://".to_owned(),
        ] {
            assert!(err.contains(&expected), "{expected} in {err}");
        }
        assert!(!err.contains("hunter2-secret"), "{err}");
    }

    #[test]
    fn an_empty_file_is_unset_as_a_blank_variable_is() {
        // An optional secret mounted empty (a Secret's key left blank) is unset...
        let dir = Dir::new("empty");
        let empty = dir.file("empty", "\n");
        let config = load(
            &[("DATABASE_URL", "postgres://x/y"), ("JWT_SECRET_KEY", SECRET), ("METRICS_TOKEN_FILE", &empty)],
            Component::Api,
        )
        .expect("valid");
        assert!(config.telemetry.metrics_token.is_none());
        // ... and a required one says which file was empty.
        let err = load(&[("DATABASE_URL", "postgres://x/y"), ("JWT_SECRET_KEY_FILE", &empty)], Component::Api)
            .expect_err("no key")
            .to_string();
        assert!(
            err.contains(&format!("JWT_SECRET_KEY: is required but JWT_SECRET_KEY_FILE ({empty}) is empty")),
            "{err}"
        );
    }

    #[test]
    fn the_database_url_is_redacted_in_debug_output() {
        let url = "postgres://aiv:pg-pass@db:5432/aiv?sslmode=require&password=q-pass&sslpassword=k-pass";
        let config = load(&[("DATABASE_URL", url)], Component::Migrate).expect("valid");
        assert_eq!(
            config.database.redacted_url(),
            "postgres://aiv:***@db:5432/aiv?sslmode=require&password=***&sslpassword=***"
        );
        let debug = format!("{:?}", config.database);
        assert!(!debug.contains("pg-pass") && !debug.contains("q-pass") && !debug.contains("k-pass"), "{debug}");
    }

    #[test]
    fn other_file_variables_are_left_alone() {
        // Not secrets: names that end in _FILE already, and are paths.
        let v = vars(&[("VERTEX_AI_TOKEN_FILE", "/nonexistent"), ("REDIS_TLS_CA_FILE", "/nonexistent")]);
        assert_eq!(v.get("VERTEX_AI_TOKEN"), None);
        assert!(v.finish().is_ok());
    }
}
