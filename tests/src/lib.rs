//! The test harness: every test gets its own PostgreSQL database and its own
//! Redis key prefix, starts the parts it needs (in-process, or as real
//! processes when a test kills or signals them), and leaves nothing behind.

pub mod captured;
pub mod fake_aws;
pub mod fake_gcp;
pub mod fake_llm;
pub mod netns;
pub mod pgbouncer;
pub mod prometheus;
pub mod receiver;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use rand::RngExt;
use serde_json::{Value, json};
use shared::config::{Component, Config, Vars};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// Where test databases are created (a server this user may create databases on).
pub fn admin_database_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The Redis the tests use.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// The bootstrap admin of every test environment.
pub const ADMIN_EMAIL: &str = "admin@example.com";
/// Its password.
pub const ADMIN_PASSWORD: &str = "admin-password-1";
const JWT_SECRET: &str = "test-secret-test-secret-test-secret!";

/// One test's database and Redis prefix, dropped (both) when the test ends,
/// even when it fails.
pub struct TestEnv {
    /// The database name.
    pub database: String,
    /// The Redis key prefix.
    pub prefix: String,
    /// Variables every component of this test gets.
    pub vars: HashMap<String, String>,
    stop: CancellationToken,
}

impl TestEnv {
    /// A fresh database (migrated by the first component that starts) and prefix.
    pub async fn new() -> anyhow::Result<TestEnv> {
        let suffix = format!("{:012x}", rand::rng().random::<u64>() & 0xffff_ffff_ffff);
        let database = format!("aiv_test_{suffix}");
        let prefix = format!("aivt{suffix}");
        let admin = sqlx::PgPool::connect(&admin_database_url()).await.context("connecting to TEST_DATABASE_URL")?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}"))).execute(&admin).await?;
        admin.close().await;
        let base = admin_database_url();
        let db_url = match base.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{database}"),
            None => anyhow::bail!("TEST_DATABASE_URL has no database part"),
        };
        let vars: HashMap<String, String> = [
            ("DATABASE_URL", db_url.as_str()),
            ("DATABASE_POOL_SIZE", "8"),
            ("DATABASE_MAX_OVERFLOW", "0"),
            ("REDIS_URL", redis_url().as_str()),
            ("REDIS_KEY_PREFIX", prefix.as_str()),
            ("JWT_SECRET_KEY", JWT_SECRET),
            ("BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL),
            ("BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("ENVIRONMENT", "test"),
            ("LOG_LEVEL", "WARNING"),
            ("API_HOST", "127.0.0.1"),
            ("API_PORT", "0"),
            ("SCRIPTED_DELTA_DELAY_MS", "2"),
            ("TURN_LEASE_SECONDS", "3"),
            ("RECONCILE_INTERVAL_SECONDS", "1"),
            ("RECONCILE_QUEUED_AFTER_SECONDS", "2"),
            ("JOB_BACKOFF_BASE_MS", "50"),
            ("JOB_BACKOFF_MAX_MS", "500"),
            ("WORKER_SHUTDOWN_TIMEOUT_SECONDS", "5"),
            ("HEALTH_CHECK_TIMEOUT_MS", "1000"),
            ("REDIS_SOCKET_TIMEOUT", "2"),
            // The AWS credential chain never looks for an instance role here.
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Ok(TestEnv { database, prefix, vars, stop: CancellationToken::new() })
    }

    /// Sets a variable for the components started after this.
    pub fn set(&mut self, name: &str, value: &str) -> &mut Self {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Makes `AI_PROVIDER` the OpenAI-compatible endpoint of `fake` (key
    /// `sk-test-key`, model `fake-model`).
    pub fn use_fake_llm(&mut self, fake: &fake_llm::FakeLlm) -> &mut Self {
        self.set("AI_PROVIDER", "openai_compatible")
            .set("OPENAI_COMPATIBLE_BASE_URL", &fake.base_url)
            .set("OPENAI_COMPATIBLE_API_KEY", "sk-test-key")
            .set("OPENAI_COMPATIBLE_MODEL", "fake-model")
    }

    /// Pushes `payloads` onto `queue` as they are (no type checks: a
    /// payload no handler can read), and wakes the idle pools.
    pub async fn push_raw(&self, queue: shared::jobs::QueueName, payloads: &[serde_json::Value]) -> anyhow::Result<()> {
        let mut redis = self.redis().await?;
        let mut storage: apalis_redis::RedisStorage<serde_json::Value> = apalis_redis::RedisStorage::new(redis.clone())
            .with_config(shared::queue::queue_config(&self.prefix, queue));
        for payload in payloads {
            apalis::prelude::TaskSink::push(&mut storage, payload.clone()).await?;
        }
        redis::cmd("PUBLISH").arg(queue.notify_channel(&self.prefix)).arg(1).query_async::<()>(&mut redis).await?;
        Ok(())
    }

    /// Waits until `queue`'s dead set holds `n` jobs.
    pub async fn until_dead(&self, queue: shared::jobs::QueueName, n: u64) -> anyhow::Result<()> {
        let redis = self.redis().await?;
        let dead_set = shared::queue::queue_config(&self.prefix, queue).dead_jobs_set();
        eventually(Duration::from_secs(30), || {
            let (mut redis, dead_set) = (redis.clone(), dead_set.clone());
            async move {
                let dead: u64 = redis::cmd("SCARD").arg(&dead_set).query_async(&mut redis).await?;
                Ok((dead == n).then_some(()))
            }
        })
        .await
    }

    /// The configuration a component would read.
    pub fn config(&self, component: Component) -> anyhow::Result<Config> {
        Config::from_vars(Vars::from_map(self.vars.clone()), component).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// Starts the API in this process on a free port.
    pub async fn start_api(&self) -> anyhow::Result<ApiHandle> {
        let api = api::Api::build(self.config(Component::Api)?).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = self.stop.child_token();
        let serve_stop = stop.clone();
        let task = tokio::spawn(api.serve(listener, async move { serve_stop.cancelled().await }));
        Ok(ApiHandle { addr, stop, task: Some(task) })
    }

    /// Starts a worker in this process.
    pub async fn start_worker(&self) -> anyhow::Result<WorkerHandle> {
        Ok(self.run_worker(worker::deps(self.config(Component::Worker)?).await?))
    }

    /// Runs a worker on prepared dependencies (a provider of the test's own).
    pub fn run_worker(&self, deps: std::sync::Arc<worker::Deps>) -> WorkerHandle {
        let stop = self.stop.child_token();
        let run_stop = stop.clone();
        let task = tokio::spawn(worker::run(deps, async move { run_stop.cancelled().await }));
        WorkerHandle { stop, task: Some(task) }
    }

    /// Starts a component binary (`api`, `worker`, `scheduler`) as a child process.
    pub fn spawn_process(&self, binary: &str, extra: &[(&str, &str)]) -> anyhow::Result<tokio::process::Child> {
        let path = binary_path(binary)?;
        let mut command = tokio::process::Command::new(&path);
        command.env_clear().envs(&self.vars).kill_on_drop(true);
        for (k, v) in extra {
            command.env(k, v);
        }
        command.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::inherit());
        command.spawn().with_context(|| format!("starting {}", path.display()))
    }

    /// A component binary as a command with this test's variables, to run
    /// to completion (the CLIs).
    pub fn command(&self, binary: &str) -> anyhow::Result<tokio::process::Command> {
        let mut command = tokio::process::Command::new(binary_path(binary)?);
        command.env_clear().envs(&self.vars).kill_on_drop(true);
        Ok(command)
    }

    /// What the batches work with, on this test's database and Redis (the
    /// database migrated).
    pub async fn batch_context(&self) -> anyhow::Result<worker::batches::Context> {
        let mut config = self.config(Component::Worker)?;
        config.database.run_migrations = true;
        worker::batches::Context::connect(config).await
    }

    /// Runs `batch` here and now with `params` (as `scheduler batch run`
    /// does) and returns the finished run.
    pub async fn run_batch(
        &self,
        batch: shared::domain::Batch,
        params: serde_json::Value,
    ) -> anyhow::Result<shared::db::batch_runs::BatchRun> {
        let ctx = self.batch_context().await?;
        Ok(worker::jobs::batch_run::run_here(&ctx, batch, &params).await?)
    }

    /// The opening turn of the test's session once it is completed or
    /// failed (`turn.completed` is published just before its transaction
    /// commits, so it is waited for), up to 20 s.
    pub async fn opening_turn(&self) -> anyhow::Result<FinishedTurn> {
        let db = self.db().await?;
        eventually(Duration::from_secs(20), || {
            let db = db.clone();
            async move {
                Ok(sqlx::query_as(
                    "SELECT status, attempts, interviewer_message, provider, prompt_tokens, completion_tokens
                     FROM turns WHERE number = 0 AND status IN ('completed', 'failed')",
                )
                .fetch_optional(&db)
                .await?)
            }
        })
        .await
    }

    /// Once no turn is queued or running (up to 20 s: `turn.completed`
    /// reaches a socket just before its transaction commits), how many
    /// turns failed or needed more than one job attempt.
    pub async fn troubled_turns(&self) -> anyhow::Result<i64> {
        let db = self.db().await?;
        eventually(Duration::from_secs(20), || {
            let db = db.clone();
            async move {
                let (unsettled, troubled): (i64, i64) = sqlx::query_as(
                    "SELECT count(*) FILTER (WHERE status IN ('queued', 'running')),
                            count(*) FILTER (WHERE status = 'failed' OR attempts > 1)
                     FROM turns",
                )
                .fetch_one(&db)
                .await?;
                Ok((unsettled == 0).then_some(troubled))
            }
        })
        .await
    }

    /// A direct connection to this test's database.
    pub async fn db(&self) -> anyhow::Result<sqlx::PgPool> {
        Ok(sqlx::PgPool::connect(&self.vars["DATABASE_URL"]).await?)
    }

    /// A direct connection to Redis.
    pub async fn redis(&self) -> anyhow::Result<redis::aio::ConnectionManager> {
        Ok(redis::Client::open(redis_url())?.get_connection_manager().await?)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.stop.cancel();
        let database = self.database.clone();
        let prefix = self.prefix.clone();
        // Drop runs outside any runtime we may block on: clean up on a thread of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                if let Ok(admin) = sqlx::PgPool::connect(&admin_database_url()).await {
                    let _ =
                        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")))
                            .execute(&admin)
                            .await;
                }
                if let Ok(client) = redis::Client::open(redis_url())
                    && let Ok(mut conn) = client.get_multiplexed_async_connection().await
                {
                    let keys: Vec<String> =
                        redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await.unwrap_or_default();
                    for chunk in keys.chunks(500) {
                        let _ = redis::cmd("DEL").arg(chunk).query_async::<()>(&mut conn).await;
                    }
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// Path of a workspace binary of the same build as this executable: next to
/// it (the bench binary) or one level up (test executables live in `deps/`).
/// `scripts/test` and `scripts/bench` build them first.
pub fn binary_path(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let here = exe.parent().context("no target directory")?;
    let dir = if here.ends_with("deps") { here.parent().context("no target directory")? } else { here };
    let path = dir.join(name);
    anyhow::ensure!(path.exists(), "{} is missing: run `cargo build --bins` first (scripts/test does)", path.display());
    Ok(path)
}

/// A finished turn as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct FinishedTurn {
    /// `completed` or `failed`.
    pub status: String,
    /// Attempts it took.
    pub attempts: i32,
    /// The reply.
    pub interviewer_message: Option<String>,
    /// Who answered.
    pub provider: Option<String>,
    /// Tokens sent.
    pub prompt_tokens: Option<i32>,
    /// Tokens received.
    pub completion_tokens: Option<i32>,
}

/// A session whose opening turn is done ([`ApiHandle::opened_session`]).
pub struct OpenedSession {
    /// The interview's recruiter.
    pub recruiter: Client,
    /// The session's candidate.
    pub candidate: Client,
    /// The session id.
    pub session: String,
    /// The candidate's socket.
    pub ws: Ws,
    /// The opening turn's `turn.completed`.
    pub opening: Value,
}

/// An API running in this process.
pub struct ApiHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl ApiHandle {
    /// Whether it stopped on its own (a crash, a fatal error).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(tokio::task::JoinHandle::is_finished)
    }

    /// The base URL with the API prefix.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/api/v1{path}", self.addr)
    }
    /// A candidate in a fresh session of a new English interview of
    /// `max_turns`, with the session's socket open; the recruiter is
    /// `r@example.com`, the candidate `c@example.com`.
    pub async fn candidate_session(&self, max_turns: i32) -> anyhow::Result<(Client, String, Ws)> {
        let (_, candidate, interview) = self.interview_for_candidate(max_turns).await?;
        let session = candidate.start_session(&interview).await?;
        let ws = candidate.ws(&session, None).await?;
        Ok((candidate, session, ws))
    }

    /// A recruiter (`r@example.com`), the new English interview of
    /// `max_turns` it created, and a candidate (`c@example.com`) to start
    /// sessions of it.
    pub async fn interview_for_candidate(&self, max_turns: i32) -> anyhow::Result<(Client, Client, String)> {
        let anon = self.client();
        let recruiter = anon.user("r@example.com", "recruiter").await?;
        let candidate = anon.user("c@example.com", "candidate").await?;
        let interview = recruiter.interview("en", max_turns).await?;
        Ok((recruiter, candidate, interview))
    }

    /// [`ApiHandle::interview_for_candidate`], a session of it with its
    /// socket open, once the opening turn is `turn.completed` (within 20 s).
    pub async fn opened_session(&self, max_turns: i32) -> anyhow::Result<OpenedSession> {
        let (recruiter, candidate, interview) = self.interview_for_candidate(max_turns).await?;
        let session = candidate.start_session(&interview).await?;
        let mut ws = candidate.ws(&session, None).await?;
        let opening = ws.until(Duration::from_secs(20), |e| is(e, "turn.completed")).await?;
        Ok(OpenedSession { recruiter, candidate, session, ws, opening })
    }

    /// A client logged in as the bootstrap admin.
    pub async fn admin(&self) -> anyhow::Result<Client> {
        let anon = self.client();
        let tokens = anon.login(ADMIN_EMAIL, ADMIN_PASSWORD).await?;
        Ok(anon.with_token(tokens["access_token"].as_str().context("admin token")?))
    }

    /// A client for this API.
    pub fn client(&self) -> Client {
        Client::new(&format!("http://{}/api/v1", self.addr))
    }
    /// Shuts it down gracefully.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }
}

/// A worker running in this process.
pub struct WorkerHandle {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl WorkerHandle {
    /// Whether it stopped on its own (a crash, a fatal error).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(tokio::task::JoinHandle::is_finished)
    }

    /// Graceful shutdown (as SIGTERM).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }
}

/// An HTTP client of the API, with an optional bearer token.
#[derive(Clone)]
pub struct Client {
    /// `http://host:port/api/v1`.
    pub base: String,
    http: reqwest::Client,
    /// The access token sent, if any.
    pub token: Option<String>,
}

/// Status and JSON body of a response.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// JSON body (`Null` when empty or not JSON).
    pub body: Value,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
}

impl Reply {
    async fn read(res: reqwest::Response) -> anyhow::Result<Reply> {
        let status = res.status().as_u16();
        let retry_after = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text = res.text().await?;
        Ok(Reply { status, body: serde_json::from_str(&text).unwrap_or(Value::Null), retry_after })
    }
}

impl Client {
    /// A client of the API at `base` (`http://host:port/api/v1`).
    pub fn new(base: &str) -> Client {
        Client { base: base.to_owned(), http: reqwest::Client::new(), token: None }
    }

    /// The same client authenticated with `token`.
    pub fn with_token(&self, token: &str) -> Client {
        Client { token: Some(token.to_owned()), ..self.clone() }
    }

    /// Sends a request.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        Reply::read(req.send().await?).await
    }

    /// Sends a raw body with a content type.
    pub async fn send_raw(&self, method: &str, path: &str, body: Vec<u8>, content_type: &str) -> anyhow::Result<Reply> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req =
            self.http.request(method, format!("{}{path}", self.base)).header("content-type", content_type).body(body);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        Reply::read(req.send().await?).await
    }

    /// GET.
    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.send("GET", path, None, &[]).await
    }

    /// POST with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Reply> {
        self.send("POST", path, Some(body), &[]).await
    }

    /// Logs in; returns the token pair.
    pub async fn login(&self, email: &str, password: &str) -> anyhow::Result<Value> {
        let r = self.post("/auth/login", json!({ "email": email, "password": password })).await?;
        anyhow::ensure!(r.status == 200, "login {email}: {r:?}");
        Ok(r.body)
    }

    /// Registers (as admin for non-candidates) and logs in; returns an authenticated client.
    pub async fn user(&self, email: &str, role: &str) -> anyhow::Result<Client> {
        let password = "password-123";
        let registrar = if role == "candidate" {
            self.clone()
        } else {
            let admin = self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await?;
            self.with_token(admin["access_token"].as_str().context("admin token")?)
        };
        let r = registrar.post("/auth/register", json!({ "email": email, "password": password, "role": role })).await?;
        anyhow::ensure!(r.status == 201, "register {email}: {r:?}");
        let tokens = self.login(email, password).await?;
        Ok(self.with_token(tokens["access_token"].as_str().context("access token")?))
    }

    /// Creates an interview (as a recruiter); returns its id.
    pub async fn interview(&self, language: &str, max_turns: i32) -> anyhow::Result<String> {
        let r = self
            .post(
                "/interviews",
                json!({
                    "title": "Backend interview", "position": "Backend Engineer", "language": language,
                    "topics": ["Rust", "PostgreSQL", "Redis queues"], "max_turns": max_turns, "duration_minutes": 30
                }),
            )
            .await?;
        anyhow::ensure!(r.status == 201, "create interview: {r:?}");
        Ok(r.body["id"].as_str().context("interview id")?.to_owned())
    }

    /// Starts a session (as a candidate); returns its id.
    pub async fn start_session(&self, interview: &str) -> anyhow::Result<String> {
        let r = self.post(&format!("/interviews/{interview}/sessions"), json!({})).await?;
        anyhow::ensure!(r.status == 201, "start session: {r:?}");
        Ok(r.body["id"].as_str().context("session id")?.to_owned())
    }

    /// Opens the session's WebSocket (with `after_seq` when given).
    pub async fn ws(&self, session: &str, after_seq: Option<i64>) -> anyhow::Result<Ws> {
        let base = self.base.replacen("http://", "ws://", 1);
        let query = after_seq.map(|s| format!("?after_seq={s}")).unwrap_or_default();
        let mut request = format!("{base}/ws/sessions/{session}{query}").into_client_request()?;
        if let Some(token) = &self.token {
            request.headers_mut().insert("authorization", format!("Bearer {token}").parse()?);
        }
        let (stream, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Ws { stream, seen: Vec::new() })
    }
}

/// A WebSocket client that records every event it receives.
pub struct Ws {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Every event received, in order.
    pub seen: Vec<Value>,
}

impl Ws {
    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) -> anyhow::Result<()> {
        self.stream.send(Message::Text(frame.to_string().into())).await?;
        Ok(())
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.stream.send(Message::Text(text.to_owned().into())).await?;
        Ok(())
    }

    /// The next event, or `None` on close; errors after `limit`.
    pub async fn next(&mut self, limit: Duration) -> anyhow::Result<Option<Value>> {
        loop {
            let message = tokio::time::timeout(limit, self.stream.next()).await.context("no event in time")?;
            match message {
                None | Some(Ok(Message::Close(_))) => return Ok(None),
                Some(Ok(Message::Text(text))) => {
                    let event: Value = serde_json::from_str(text.as_str())?;
                    self.seen.push(event.clone());
                    return Ok(Some(event));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    /// Reads events until one matches; returns it.
    pub async fn until(&mut self, limit: Duration, matches: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await? {
                Some(event) if matches(&event) => return Ok(event),
                Some(_) => {}
                None => anyhow::bail!("socket closed while waiting; seen: {:?}", self.seen),
            }
        }
    }

    /// Sends answer `number` ("Answer {number}.") and waits up to `limit`
    /// for the interviewer's reply to it.
    pub async fn answer(&mut self, number: i64, limit: Duration) -> anyhow::Result<Value> {
        let frame =
            json!({ "type": "answer", "text": format!("Answer {number}."), "client_msg_id": format!("a{number}") });
        self.send(frame).await?;
        self.until(limit, |e| is(e, "turn.completed") && e["number"] == number).await
    }

    /// The deltas' text before the first `turn.reset` and after it.
    pub fn text_around_reset(&self) -> anyhow::Result<(String, String)> {
        let reset = self.seen.iter().position(|e| is(e, "turn.reset")).context("no turn.reset")?;
        let text = |events: &[Value]| -> String {
            events.iter().filter(|e| is(e, "turn.delta")).filter_map(|e| e["text"].as_str()).collect()
        };
        Ok((text(&self.seen[..reset]), text(&self.seen[reset..])))
    }

    /// The close frame's code, waiting up to `limit`.
    pub async fn close_code(&mut self, limit: Duration) -> anyhow::Result<Option<u16>> {
        loop {
            match tokio::time::timeout(limit, self.stream.next()).await.context("socket did not close")? {
                Some(Ok(Message::Close(frame))) => return Ok(frame.map(|f| f.code.into())),
                None => return Ok(None),
                Some(Ok(_)) => {}
                Some(Err(_)) => return Ok(None),
            }
        }
    }

    /// Closes the socket.
    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

/// Whether `event` has type `kind`.
pub fn is(event: &Value, kind: &str) -> bool {
    event["type"] == kind
}

/// Polls `check` every 20 ms until it returns `Some`, up to `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "condition not met within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A Redis server of this test's own, on a free port, for tests that do
/// what the shared one must not see (FLUSHALL). Stopped when dropped.
pub struct PrivateRedis {
    /// `redis://127.0.0.1:{port}/0`.
    pub url: String,
    _process: tokio::process::Child,
}

impl PrivateRedis {
    /// Starts `redis-server` (on `PATH`, as `scripts/test` ensures) without persistence.
    pub async fn start() -> anyhow::Result<PrivateRedis> {
        // The probe listener is closed before redis-server binds the port.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        Self::on_port(port).await
    }

    async fn on_port(port: u16) -> anyhow::Result<PrivateRedis> {
        let process = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server (is it installed? scripts/test installs it)")?;
        let url = format!("redis://127.0.0.1:{port}/0");
        let client = redis::Client::open(url.as_str())?;
        eventually(Duration::from_secs(10), || {
            let client = client.clone();
            async move { Ok(client.get_multiplexed_async_connection().await.ok().map(|_| ())) }
        })
        .await
        .context("private redis-server did not come up")?;
        Ok(PrivateRedis { url, _process: process })
    }

    /// Kills the server (as a crash: its data is gone).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self._process.kill().await.context("killing the private redis-server")
    }

    /// Starts the server again on the same port, empty.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let _ = self._process.kill().await;
        let port = self.url.rsplit(':').next().and_then(|p| p.split('/').next()).context("the URL's port")?;
        let fresh = Self::on_port(port.parse()?).await?;
        *self = fresh;
        Ok(())
    }
}

/// Sends SIGTERM to a child process.
pub fn terminate(child: &tokio::process::Child) -> anyhow::Result<()> {
    let pid = child.id().context("process already reaped")?;
    let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status()?;
    anyhow::ensure!(status.success(), "kill -TERM {pid} failed");
    Ok(())
}
