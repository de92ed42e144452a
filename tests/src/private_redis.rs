//! A Redis server of a test's own.

use std::time::Duration;

use anyhow::Context;

use crate::eventually;

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
