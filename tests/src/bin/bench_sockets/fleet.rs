//! The system under test: API processes on one database and Redis prefix,
//! candidates registered through the API, and their sessions written in bulk.

use std::time::Duration;

use anyhow::Context;
use tests::{Client, TestEnv};
use uuid::Uuid;

/// Sockets a candidate holds: `WS_MAX_CONNECTIONS_PER_USER` is raised to
/// its ceiling, and a candidate has as many sessions as fit.
const PER_CANDIDATE: usize = 1_000;

/// One API process.
pub struct Api {
    pub child: tokio::process::Child,
    pub port: u16,
}

/// API processes sharing sessions, and who may open a socket on each.
pub struct Fleet {
    pub apis: Vec<Api>,
    /// Every session, with its candidate's access token.
    pub sessions: Vec<(Uuid, String)>,
    pub env: TestEnv,
}

impl Fleet {
    /// Starts `processes` API processes and `sessions` active sessions, each
    /// candidate's login made through the API (its handshakes check them).
    pub async fn start(processes: usize, sessions: usize) -> anyhow::Result<Fleet> {
        let mut env = TestEnv::new().await?;
        env.set("LOG_LEVEL", "WARNING").set("WS_MAX_CONNECTIONS_PER_USER", &PER_CANDIDATE.to_string());
        let per_candidate = PER_CANDIDATE / processes;
        let mut apis = Vec::with_capacity(processes);
        // One at a time: the first migrates the database.
        for _ in 0..processes {
            let port = tests::free_port()?;
            let child = env.spawn_process("api", &[("API_PORT", &port.to_string())])?;
            Client::new(&base(port)).until_live(Duration::from_secs(60)).await?;
            apis.push(Api { child, port });
        }
        let anon = Client::new(&base(apis[0].port));
        let interview: Uuid =
            anon.user("recruiter@example.com", "recruiter").await?.interview("en", 100).await?.parse()?;
        let db = env.db().await?;
        let mut all = Vec::with_capacity(sessions);
        for c in 0..sessions.div_ceil(per_candidate) {
            let email = format!("candidate{c}@example.com");
            let candidate = anon.user(&email, "candidate").await?;
            let token = candidate.token.context("a candidate token")?;
            let count = per_candidate.min(sessions - all.len()) as i32;
            // Active sessions as starting one leaves them, without the
            // opening turn: nothing is stored, so seq 1 is the first event.
            let ids: Vec<Uuid> = sqlx::query_scalar(
                "INSERT INTO sessions (id, interview_id, candidate_id, expires_at)
                 SELECT gen_random_uuid(), $1, u.id, now() + interval '1 day'
                 FROM users u, generate_series(1, $3) WHERE lower(u.email) = lower($2)
                 RETURNING id",
            )
            .bind(interview)
            .bind(&email)
            .bind(count)
            .fetch_all(&db)
            .await?;
            all.extend(ids.into_iter().map(|id| (id, token.clone())));
        }
        db.close().await;
        Ok(Fleet { apis, sessions: all, env })
    }

    /// Each process's resident memory, in KB.
    pub fn rss_kb(&self) -> anyhow::Result<Vec<u64>> {
        self.apis.iter().map(|api| tests::process_memory_kb(&api.child, "VmRSS:")).collect()
    }

    /// Stops the processes (SIGTERM, then a kill after 10 s).
    pub async fn stop(mut self) {
        for api in &self.apis {
            let _ = tests::terminate(&api.child);
        }
        for api in &mut self.apis {
            if tokio::time::timeout(Duration::from_secs(10), api.child.wait()).await.is_err() {
                let _ = api.child.kill().await;
            }
        }
    }
}

/// The API's base URL on `port`.
pub fn base(port: u16) -> String {
    format!("http://127.0.0.1:{port}/api/v1")
}
