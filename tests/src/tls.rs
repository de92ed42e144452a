//! Servers that speak only TLS, for the tests of TLS to PostgreSQL and
//! Redis: a throwaway CA made with `openssl`, a private PostgreSQL cluster
//! whose `pg_hba.conf` admits `hostssl` connections only, and a private
//! `redis-server` with a TLS port only and an ACL user. Each is stopped and
//! its files removed when dropped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use rand::RngExt;

use crate::eventually;

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(label: &str) -> anyhow::Result<Scratch> {
        let dir = std::env::temp_dir().join(format!("aiv-{label}-{:012x}", rand::rng().random::<u64>() >> 16));
        std::fs::create_dir_all(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new(program).args(args).output().with_context(|| format!("running {program}"))?;
    if !out.status.success() {
        bail!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A certificate authority for one test.
pub struct TestCa {
    dir: Scratch,
}

impl TestCa {
    /// A new CA (RSA 2048, valid two days).
    pub fn new() -> anyhow::Result<TestCa> {
        let dir = Scratch::new("ca")?;
        let (key, pem) = (dir.0.join("ca.key"), dir.0.join("ca.pem"));
        // A name of its own: two test CAs must not pass for each other.
        let subject = format!("/CN=aiv test CA {:08x}", rand::rng().random::<u32>());
        run(
            "openssl",
            &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", &subject]
                .into_iter()
                .chain([
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ])
                .chain(["-keyout", path(&key)?, "-out", path(&pem)?])
                .collect::<Vec<_>>(),
        )?;
        Ok(TestCa { dir })
    }

    /// The CA's certificate (PEM).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.0.join("ca.pem")
    }

    /// A server certificate and key for `names` (DNS names), signed by this CA.
    pub fn server_cert(&self, names: &[&str]) -> anyhow::Result<(PathBuf, PathBuf)> {
        let stem = self.dir.0.join(format!("server-{:08x}", rand::rng().random::<u32>()));
        let (key, csr, pem, ext) = (
            stem.with_extension("key"),
            stem.with_extension("csr"),
            stem.with_extension("pem"),
            stem.with_extension("ext"),
        );
        let san: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
        std::fs::write(
            &ext,
            format!("subjectAltName={}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n", san.join(",")),
        )?;
        run(
            "openssl",
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=server",
                "-keyout",
                path(&key)?,
                "-out",
                path(&csr)?,
            ],
        )?;
        let (ca, ca_key) = (self.ca_file(), self.dir.0.join("ca.key"));
        run(
            "openssl",
            &["x509", "-req", "-days", "2", "-in", path(&csr)?, "-CA", path(&ca)?, "-CAkey", path(&ca_key)?]
                .into_iter()
                .chain(["-CAcreateserial", "-extfile", path(&ext)?, "-out", path(&pem)?])
                .collect::<Vec<_>>(),
        )?;
        Ok((pem, key))
    }
}

fn path(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("a non-UTF-8 path")
}

/// Runs as the `postgres` system user when this process is root (PostgreSQL
/// and PgBouncer refuse to run as root), as this user otherwise. `setpriv`
/// replaces itself with the program (unlike `runuser`, which stays as its
/// parent), so the child handle is the server itself and stopping it stops
/// the server.
pub(crate) fn as_postgres(program: &Path) -> anyhow::Result<tokio::process::Command> {
    let root = std::process::Command::new("id").arg("-u").output()?.stdout.starts_with(b"0");
    Ok(if root {
        let mut command = tokio::process::Command::new("setpriv");
        command.args(["--reuid=postgres", "--regid=postgres", "--init-groups", "--"]).arg(program);
        command
    } else {
        tokio::process::Command::new(program)
    })
}

/// The newest PostgreSQL server binaries (`/usr/lib/postgresql/N/bin`).
fn pg_bin(name: &str) -> anyhow::Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("no PostgreSQL server installed (scripts/test installs it)")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    versions.sort_by_key(|p| p.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<u32>().ok()).unwrap_or(0));
    Ok(versions.last().context("no PostgreSQL version")?.join("bin").join(name))
}

/// A private PostgreSQL cluster reachable only over TLS, with a role
/// `aiv_tls` (password `aiv_tls`) that may create databases.
pub struct TlsPostgres {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: Scratch,
    process: tokio::process::Child,
}

impl TlsPostgres {
    /// Starts a cluster with a server certificate from `ca` for `localhost` only.
    pub async fn start(ca: &TestCa) -> anyhow::Result<TlsPostgres> {
        let dir = Scratch::new("pg")?;
        let data = dir.0.join("data");
        let (cert, key) = ca.server_cert(&["localhost"])?;
        std::fs::copy(&cert, dir.0.join("server.pem"))?;
        std::fs::copy(&key, dir.0.join("server.key"))?;
        run("chown", &["-R", "postgres", path(&dir.0)?]).or_else(|_| Ok::<_, anyhow::Error>(()))?;
        run("chmod", &["0600", path(&dir.0.join("server.key"))?])?;
        let status = as_postgres(&pg_bin("initdb")?)?
            .args([
                "-D",
                path(&data)?,
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
            ])
            .stdout(Stdio::null())
            .status()
            .await?;
        anyhow::ensure!(status.success(), "initdb failed");
        let port = free_port()?;
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nssl = on\n\
             ssl_cert_file = '{}'\nssl_key_file = '{}'\nfsync = off\nmax_connections = 100\n",
            dir.0.display(),
            dir.0.join("server.pem").display(),
            dir.0.join("server.key").display()
        );
        std::fs::write(data.join("postgresql.auto.conf"), conf)?;
        // TLS or nothing: no plain `host` line.
        std::fs::write(data.join("pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\n")?;
        run("chown", &["-R", "postgres", path(&dir.0)?]).or_else(|_| Ok::<_, anyhow::Error>(()))?;
        let process = as_postgres(&pg_bin("postgres")?)?
            .args(["-D", path(&data)?])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting postgres")?;
        let server = TlsPostgres { port, dir, process };
        let socket = server.dir.0.clone();
        eventually(Duration::from_secs(20), || {
            let socket = socket.clone();
            async move {
                let ready = tokio::process::Command::new("pg_isready")
                    .args(["-q", "-h", path(&socket)?, "-p", &port.to_string()])
                    .status()
                    .await?;
                Ok(ready.success().then_some(()))
            }
        })
        .await
        .context("the TLS PostgreSQL did not come up")?;
        server.psql("CREATE ROLE aiv_tls LOGIN PASSWORD 'aiv_tls' CREATEDB").await?;
        Ok(server)
    }

    /// Runs `sql` as the superuser over the cluster's Unix socket.
    pub async fn psql(&self, sql: &str) -> anyhow::Result<()> {
        let out = as_postgres(Path::new("psql"))?
            .args(["-h", path(&self.dir.0)?, "-p", &self.port.to_string(), "-U", "postgres", "-d", "postgres"])
            .args(["-v", "ON_ERROR_STOP=1", "-qc", sql])
            .output()
            .await?;
        anyhow::ensure!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    }

    /// `postgres://aiv_tls:aiv_tls@{host}:{port}/{database}?{params}`.
    pub fn url(&self, host: &str, database: &str, params: &str) -> String {
        format!("postgres://aiv_tls:aiv_tls@{host}:{}/{database}?{params}", self.port)
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        // SIGQUIT: the postmaster stops its backends and frees its shared
        // memory (SIGKILL would leave the segment behind).
        match self.process.id() {
            Some(pid) => {
                let _ = std::process::Command::new("kill").args(["-QUIT", &pid.to_string()]).status();
            }
            None => {
                let _ = self.process.start_kill();
            }
        }
    }
}

/// A private `redis-server` with a TLS port only, the default user's
/// password set and an ACL user `aiv` (password `aiv-redis-pass`).
pub struct TlsRedis {
    /// Its TLS port on 127.0.0.1.
    pub port: u16,
    _dir: Scratch,
    _process: tokio::process::Child,
}

impl TlsRedis {
    /// Starts it with a certificate from `ca` for `localhost`.
    pub async fn start(ca: &TestCa) -> anyhow::Result<TlsRedis> {
        let dir = Scratch::new("redis")?;
        let (cert, key) = ca.server_cert(&["localhost"])?;
        let port = free_port()?;
        let process = tokio::process::Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args([
                "--tls-cert-file",
                path(&cert)?,
                "--tls-key-file",
                path(&key)?,
                "--tls-ca-cert-file",
                path(&ca.ca_file())?,
            ])
            .args(["--tls-auth-clients", "no", "--requirepass", "default-user-pass", "--dir", path(&dir.0)?])
            .args(["--user", "aiv", "on", ">aiv-redis-pass", "~*", "&*", "+@all"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server with TLS")?;
        let ca_file = ca.ca_file();
        eventually(Duration::from_secs(10), || {
            let ca_file = ca_file.clone();
            async move {
                let out = tokio::process::Command::new("redis-cli")
                    .args(["--tls", "--cacert", path(&ca_file)?, "-h", "localhost", "-p", &port.to_string()])
                    .args(["--user", "aiv", "--pass", "aiv-redis-pass", "--no-auth-warning", "ping"])
                    .output()
                    .await?;
                Ok(String::from_utf8_lossy(&out.stdout).contains("PONG").then_some(()))
            }
        })
        .await
        .context("the TLS redis-server did not come up")?;
        Ok(TlsRedis { port, _dir: dir, _process: process })
    }

    /// `rediss://aiv:aiv-redis-pass@localhost:{port}/0`.
    pub fn url(&self) -> String {
        format!("rediss://aiv:aiv-redis-pass@localhost:{}/0", self.port)
    }
}
