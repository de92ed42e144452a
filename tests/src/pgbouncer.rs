//! Debian's PgBouncer in front of the tests' PostgreSQL, in either pooling
//! mode, set up as `docs/managed-services.md` says.

use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use rand::RngExt;

use crate::eventually;

/// PgBouncer's `pool_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A server connection per client connection.
    Session,
    /// A server connection per transaction: prepared statements are
    /// deallocated whenever a server changes hands.
    Transaction,
}

/// A PgBouncer on a free port, for every database of the tests' server.
pub struct PgBouncer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: std::path::PathBuf,
    process: tokio::process::Child,
}

impl PgBouncer {
    /// Starts it in front of `server` (`host:port` of PostgreSQL), logging
    /// in `user` with `password` there.
    pub async fn start(mode: PoolMode, server: (&str, u16), user: &str, password: &str) -> anyhow::Result<PgBouncer> {
        let dir = std::env::temp_dir().join(format!("aiv-pgbouncer-{:012x}", rand::rng().random::<u64>() >> 16));
        std::fs::create_dir_all(&dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        // In transaction mode fewer server connections than our pools hold,
        // so that they change hands; in session mode one for each of ours.
        let mode = match mode {
            PoolMode::Session => "pool_mode = session\ndefault_pool_size = 40\n",
            PoolMode::Transaction => {
                "pool_mode = transaction\nserver_reset_query = DEALLOCATE ALL\nserver_reset_query_always = 1\n\
                 default_pool_size = 4\n"
            }
        };
        let ini = format!(
            "[databases]\n* = host={} port={}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
             unix_socket_dir =\nauth_type = plain\nauth_file = {users}\n{mode}\
             ignore_startup_parameters = extra_float_digits,options\nmax_client_conn = 400\nlogfile = {log}\n",
            server.0,
            server.1,
            users = dir.join("users.txt").display(),
            log = dir.join("pgbouncer.log").display(),
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini)?;
        std::fs::write(dir.join("users.txt"), format!("\"{user}\" \"{password}\"\n"))?;
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .context("pgbouncer is not installed (scripts/test installs it)")?;
        // Owned by the user it runs as when we are root (it refuses root).
        let _ = std::process::Command::new("chown").args(["-R", "postgres"]).arg(&dir).output();
        let process = crate::tls::as_postgres(std::path::Path::new(binary))?
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting pgbouncer")?;
        eventually(Duration::from_secs(10), || async move {
            Ok(tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok().map(|_| ()))
        })
        .await
        .context("pgbouncer did not come up")?;
        Ok(PgBouncer { port, dir, process })
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.process.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
