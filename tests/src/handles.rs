//! The components a test runs in its own process, and what they give back.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::{ADMIN_EMAIL, ADMIN_PASSWORD, Client, Ws, is};

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
    pub(crate) stop: CancellationToken,
    pub(crate) task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
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
    /// Its series (an in-process worker's metrics port is a free one).
    pub registry: shared::metrics::Registry,
    pub(crate) stop: CancellationToken,
    pub(crate) task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
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
