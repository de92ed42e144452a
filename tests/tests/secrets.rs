//! Secrets given as files (`NAME_FILE`, the Docker / Kubernetes secrets
//! convention) to api, worker and scheduler running as real processes at
//! `LOG_LEVEL=DEBUG`: they read them (the interview works on the provider
//! key, the admin logs in with the file's password, `/metrics` wants the
//! file's token, the alert reaches the file's webhook, Redis takes the
//! file's password), and no secret appears in any line any process writes,
//! in any answer, or in the CLIs' output, failures included. And a start-up
//! with a secret set twice, or an unreadable file, stops naming the
//! variable.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt;
use serde_json::json;
use sha2::Sha256;
use tests::captured::{Lines, run_captured, spawn_captured};
use tests::fake_llm::{Auth, FakeLlm, Reply};
use tests::receiver::Receiver;
use tests::{ADMIN_EMAIL, Client, TestEnv, is, terminate};

const WAIT: Duration = Duration::from_secs(20);
const REPLY: &str = "Thank you. How would you keep a job queue alive when its workers crash?";
const SCORECARD: &str = r#"{"scores":{"communication":4,"technical_depth":4,"problem_solving":3,"engagement":5},"summary":"Clear answers.","recommendation":"hire"}"#;

fn random(label: &str) -> String {
    let mut rng = rand::rng();
    format!("{label}-{:016x}{:016x}", rng.random::<u64>(), rng.random::<u64>())
}

/// Files of this test's own, removed when dropped.
struct SecretFiles(PathBuf);

impl SecretFiles {
    fn new() -> anyhow::Result<SecretFiles> {
        let dir = std::env::temp_dir().join(random("aiv-secrets"));
        std::fs::create_dir_all(&dir)?;
        Ok(SecretFiles(dir))
    }

    /// Writes `contents` to a file named `name`; its path.
    fn write(&self, name: &str, contents: &str) -> anyhow::Result<String> {
        let path = self.0.join(name);
        std::fs::write(&path, contents)?;
        path.to_str().map(str::to_owned).context("non-UTF-8 temp path")
    }
}

impl Drop for SecretFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `redis-server` of this test's own that wants a password (the shared
/// one has none). Stopped when dropped.
struct PasswordRedis {
    port: u16,
    _process: tokio::process::Child,
}

impl PasswordRedis {
    async fn start(password: &str) -> anyhow::Result<PasswordRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let process = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--requirepass", password])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server (is it installed? scripts/test installs it)")?;
        let client = redis::Client::open(format!("redis://:{password}@127.0.0.1:{port}/0"))?;
        tests::eventually(Duration::from_secs(10), || {
            let client = client.clone();
            async move {
                let Ok(mut conn) = client.get_multiplexed_async_connection().await else { return Ok(None) };
                Ok(redis::cmd("PING").query_async::<String>(&mut conn).await.ok().map(|_| ()))
            }
        })
        .await
        .context("redis-server with a password did not come up")?;
        Ok(PasswordRedis { port, _process: process })
    }
}

/// HMAC-SHA256 of `input` under `key`, base64url: a JWT signature.
fn sign(key: &str, input: &str) -> anyhow::Result<String> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes())?;
    mac.update(input.as_bytes());
    Ok(B64.encode(mac.finalize().into_bytes()))
}

/// `token` with its signature replaced by one under `key`.
fn resigned(token: &str, key: &str) -> anyhow::Result<String> {
    let (input, _) = token.rsplit_once('.').context("not a JWT")?;
    Ok(format!("{input}.{}", sign(key, input)?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secrets_given_as_files_are_read_and_never_logged() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let files = SecretFiles::new()?;

    // The secrets. The database's are the test server's own (TEST_DATABASE_URL).
    let database_url = env.vars.get("DATABASE_URL").context("DATABASE_URL")?.clone();
    let database_password = database_url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(user_info, _)| user_info.split_once(':'))
        .map(|(_, password)| password.to_owned());
    let redis_password = random("redis-pass");
    let jwt_old = random("jwt-old-key");
    let jwt_new = random("jwt-new-key");
    let totp_key = random("totp-sealing-key");
    let admin_password = random("admin-pass");
    let metrics_token = random("metrics-token");
    let provider_key = random("sk-provider-key");
    // A parameter sqlx does not know, which it logs with its value.
    let url_parameter = random("url-parameter");
    let slack_key = random("slack-key");
    let teams_key = random("teams-key");

    let redis = PasswordRedis::start(&redis_password).await?;
    let fake = FakeLlm::start(REPLY).await?;
    for reply in [REPLY, REPLY, SCORECARD] {
        fake.then(Reply::Stream(reply.into()));
    }
    // A request with any other key gets a 401: the worker must have read the file's.
    fake.expect_auth(Auth::Bearer(provider_key.clone()));
    let receiver = Receiver::start().await?;
    // Slack's webhook is a closed port, so its delivery fails (reqwest's error names the URL).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let slack_url = format!("http://127.0.0.1:{closed}/services/T000/B000/{slack_key}");
    let teams_path = format!("/webhookb2/{teams_key}");
    let teams_url = format!("{}{teams_path}", receiver.origin);

    // The variables: no secret among them, each given as a file, written as
    // `echo` and editors write them (a trailing newline, one with \r\n).
    let mut vars = env.vars.clone();
    for name in shared::config::SECRETS {
        vars.remove(*name);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    for (name, value) in [
        ("DATABASE_URL", format!("{database_url}?sslpassword={url_parameter}\n")),
        ("REDIS_URL", format!("redis://127.0.0.1:{}/0\n", redis.port)),
        ("REDIS_PASSWORD", format!("{redis_password}\n")),
        ("JWT_SECRET_KEY", format!("{jwt_old}\n")),
        ("JWT_SECRET_KEY_NEW", format!("{jwt_new}\r\n")),
        ("TOTP_SECRET_KEY", format!("{totp_key}\n")),
        ("BOOTSTRAP_ADMIN_PASSWORD", format!("{admin_password}\n")),
        ("METRICS_TOKEN", format!("{metrics_token}\n")),
        ("OPENAI_COMPATIBLE_API_KEY", format!("{provider_key}\n")),
        ("SLACK_WEBHOOK_URL", format!("{slack_url}\n")),
        ("TEAMS_WEBHOOK_URL", format!("{teams_url}\n")),
    ] {
        vars.insert(format!("{name}_FILE"), files.write(&name.to_ascii_lowercase(), &value)?);
    }
    for (name, value) in [
        ("LOG_LEVEL", "DEBUG"),
        ("API_PORT", &port.to_string()),
        ("AI_PROVIDER", "openai_compatible"),
        ("OPENAI_COMPATIBLE_BASE_URL", &fake.base_url),
        ("OPENAI_COMPATIBLE_MODEL", "fake-model"),
        ("ALERT_DEDUP_MINUTES", "0"),
    ] {
        vars.insert(name.to_owned(), value.to_owned());
    }
    let lines: Lines = Arc::default();

    // `api migrate` first (the database alone), then the three services.
    let migrated = run_captured(WAIT, "api", &["migrate"], &vars, &lines).await?;
    anyhow::ensure!(migrated.success(), "api migrate: {migrated}; {:?}", lines.lock().map(|l| l.clone()));
    let mut services = Vec::new();
    let mut readers = Vec::new();
    for binary in ["api", "worker", "scheduler"] {
        let (child, r) = spawn_captured(binary, &[], &vars, &lines)?;
        services.push(child);
        readers.extend(r);
    }

    let anon = Client::new(&format!("http://127.0.0.1:{port}/api/v1"));
    let health = tests::eventually(WAIT, || {
        let anon = anon.clone();
        async move {
            let Ok(r) = anon.get("/health").await else { return Ok(None) };
            Ok((r.status == 200 && r.body["status"] == "healthy").then_some(r.body))
        }
    })
    .await
    .with_context(|| format!("the fleet did not come up healthy: {:?}", lines.lock().map(|l| l.clone())))?;
    assert_eq!(health["checks"]["redis"]["connected"], true, "Redis took the file's password: {health}");
    let mut answers = vec![health.to_string()];

    // The admin of BOOTSTRAP_ADMIN_PASSWORD_FILE; a wrong password and the
    // harness's usual one are refused.
    for wrong in ["wrong-password-123", tests::ADMIN_PASSWORD] {
        let r = anon.post("/auth/login", json!({ "email": ADMIN_EMAIL, "password": wrong })).await?;
        assert_eq!(r.status, 401, "{r:?}");
        answers.push(r.body.to_string());
    }
    let tokens = anon.login(ADMIN_EMAIL, &admin_password).await?;
    let admin_token = tokens["access_token"].as_str().context("admin token")?.to_owned();
    let admin = anon.with_token(&admin_token);

    // JWT_SECRET_KEY_NEW_FILE signs; JWT_SECRET_KEY_FILE still verifies.
    let (input, signature) = admin_token.rsplit_once('.').context("a JWT")?;
    assert_eq!(signature, sign(&jwt_new, input)?, "signed with the new key of the file");
    let r = anon.with_token(&resigned(&admin_token, &jwt_old)?).get("/interviews").await?;
    assert_eq!(r.status, 200, "the old key of the file verifies: {r:?}");
    // Bad bearer tokens: garbage, and a token signed with another key.
    for bad in ["not-a-token".to_owned(), resigned(&admin_token, "some-other-key-some-other-key-1234")?] {
        let r = anon.with_token(&bad).get("/interviews").await?;
        assert_eq!(r.status, 401, "{r:?}");
        answers.push(r.body.to_string());
    }
    anyhow::ensure!(anon.with_token("not-a-token").ws("00000000-0000-0000-0000-000000000000", None).await.is_err());

    // /metrics wants METRICS_TOKEN_FILE's token.
    let metrics = Client::new(&format!("http://127.0.0.1:{port}"));
    for (token, status) in [(None, 401), (Some("wrong-token"), 401), (Some(metrics_token.as_str()), 200)] {
        let client = token.map_or_else(|| metrics.clone(), |t| metrics.with_token(t));
        let r = client.send("GET", "/metrics", None, &[]).await?;
        assert_eq!(r.status, status, "/metrics with {token:?}: {r:?}");
        answers.push(r.body.to_string());
    }

    // A whole interview, on the provider key of the file.
    let register = |email: &str, role: &str| {
        let (admin, anon, email, role) = (admin.clone(), anon.clone(), email.to_owned(), role.to_owned());
        async move {
            let registrar = if role == "candidate" { anon.clone() } else { admin };
            let r = registrar
                .post("/auth/register", json!({ "email": email, "password": tests::USER_PASSWORD, "role": role }))
                .await?;
            anyhow::ensure!(r.status == 201, "register {email}: {r:?}");
            let tokens = anon.login(&email, tests::USER_PASSWORD).await?;
            anyhow::Ok(anon.with_token(tokens["access_token"].as_str().context("token")?))
        }
    };
    let recruiter = register("r@example.com", "recruiter").await?;
    let candidate = register("c@example.com", "candidate").await?;
    let interview = recruiter.interview("en", 1).await?;
    let session = candidate.start_session(&interview).await?;
    let mut ws = candidate.ws(&session, None).await?;
    let opening = ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    assert_eq!(opening["message"], REPLY);
    ws.answer(1, WAIT).await?;
    let evaluated = ws.until(WAIT, |e| is(e, "evaluation.completed")).await?;
    assert_eq!(evaluated["scores"]["engagement"], 5, "{evaluated}");
    assert!(
        fake.received().iter().all(|r| r.authorization.as_deref() == Some(format!("Bearer {provider_key}").as_str()))
    );

    // An alert: backup_verification without BACKUP_DIR. Teams (the file's
    // URL) gets it; Slack's delivery fails, and the failure is logged.
    let r = admin.post("/admin/batches/backup_verification/run", json!({})).await?;
    assert_eq!(r.status, 202, "{r:?}");
    tests::eventually(WAIT, || {
        let posted = receiver.posted(&teams_path);
        async move { Ok((!posted.is_empty()).then_some(())) }
    })
    .await
    .context("no alert reached the Teams webhook of TEAMS_WEBHOOK_URL_FILE")?;
    tests::eventually(WAIT, || {
        let lines = lines.clone();
        async move {
            let lines = lines.lock().unwrap_or_else(|p| p.into_inner());
            Ok(lines
                .iter()
                .any(|(who, l)| who.starts_with("worker") && l.contains("alert not delivered"))
                .then_some(()))
        }
    })
    .await
    .context("the failed Slack delivery was not logged")?;
    for path in ["/admin/providers", "/admin/batches", "/admin/queues"] {
        let r = admin.get(path).await?;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        answers.push(r.body.to_string());
    }

    // The operators' commands read the same files.
    for (binary, args) in [
        ("worker", vec!["queues"]),
        ("scheduler", vec!["batch", "list"]),
        ("api", vec!["create-admin", "second-admin@example.com"]),
    ] {
        let status = run_captured(WAIT, binary, &args, &vars, &lines).await?;
        assert!(status.success(), "{binary} {args:?}: {status}");
    }

    // Stop the services; every line they wrote is in.
    for service in &services {
        terminate(service)?;
    }
    for mut service in services {
        tokio::time::timeout(WAIT, service.wait()).await.context("a service did not stop")??;
    }
    for reader in readers {
        reader.await?;
    }

    let lines = lines.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for who in ["api (stdout)", "worker (stdout)", "scheduler (stdout)"] {
        assert!(lines.iter().any(|(w, _)| w == who), "nothing captured from {who}");
    }
    assert!(lines.iter().any(|(_, l)| l.contains(r#""level":"DEBUG""#)), "LOG_LEVEL=DEBUG took effect");
    assert!(
        lines.iter().any(|(_, l)| l.contains("unrecognized connect parameter") && l.contains("sslpassword")),
        "sqlx warned of the parameter it does not know"
    );
    let mut secrets: Vec<(&str, String)> = vec![
        ("REDIS_PASSWORD", redis_password.clone()),
        ("JWT_SECRET_KEY", jwt_old.clone()),
        ("JWT_SECRET_KEY_NEW", jwt_new.clone()),
        ("TOTP_SECRET_KEY", totp_key.clone()),
        ("BOOTSTRAP_ADMIN_PASSWORD", admin_password.clone()),
        ("METRICS_TOKEN", metrics_token.clone()),
        ("OPENAI_COMPATIBLE_API_KEY", provider_key.clone()),
        ("SLACK_WEBHOOK_URL", slack_key.clone()),
        ("TEAMS_WEBHOOK_URL", teams_key.clone()),
        ("DATABASE_URL", database_url.clone()),
        ("DATABASE_URL's sslpassword", url_parameter.clone()),
        ("the admin's access token", admin_token.clone()),
        ("a refused password", "wrong-password-123".to_owned()),
    ];
    if let Some(password) = database_password {
        // The local server's password may be as short as its user's name
        // (`aiv:aiv`): looked for where a URL carries it, and alone when it
        // is long enough to mean something.
        secrets.push(("DATABASE_URL's password", format!(":{password}@")));
        if password.len() >= 8 {
            secrets.push(("DATABASE_URL's password", password));
        }
    }
    let mut leaks = Vec::new();
    for (name, secret) in &secrets {
        for (who, line) in &lines {
            if line.contains(secret.as_str()) {
                leaks.push(format!("{name} in {who}: {line}"));
            }
        }
        for answer in &answers {
            if answer.contains(secret.as_str()) {
                leaks.push(format!("{name} in an answer: {answer}"));
            }
        }
    }
    assert!(leaks.is_empty(), "{} leaks:\n{}", leaks.len(), leaks.join("\n"));
    Ok(())
}

#[tokio::test]
async fn a_secret_set_twice_or_an_unreadable_file_stops_start_up_naming_the_variable() -> anyhow::Result<()> {
    let files = SecretFiles::new()?;
    let jwt = random("jwt-twice-key");
    let jwt_file = files.write("jwt", &format!("{jwt}\n"))?;
    let missing = files.0.join("missing").to_str().context("UTF-8 path")?.to_owned();
    let vars: HashMap<String, String> = [
        ("DATABASE_URL_FILE", missing.as_str()),
        ("JWT_SECRET_KEY", jwt.as_str()),
        ("JWT_SECRET_KEY_FILE", jwt_file.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for binary in ["api", "worker", "scheduler"] {
        let lines: Lines = Arc::default();
        let status = run_captured(WAIT, binary, &[], &vars, &lines).await?;
        assert_eq!(status.code(), Some(2), "{binary}: {status}");
        let text: String =
            lines.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(_, l)| format!("{l}\n")).collect();
        assert!(
            text.contains("JWT_SECRET_KEY: set either JWT_SECRET_KEY or JWT_SECRET_KEY_FILE, not both"),
            "{binary}: {text}"
        );
        assert!(text.contains(&format!("DATABASE_URL_FILE: {missing} cannot be read")), "{binary}: {text}");
        assert!(!text.contains(&jwt), "{binary}: {text}");
    }
    Ok(())
}
