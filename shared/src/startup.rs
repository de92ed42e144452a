//! The start-up check of PostgreSQL and Redis: a server that is not up yet
//! is waited for lazily (readiness reports it), but one that answers and
//! refuses us (TLS it cannot verify or that is missing, a password it
//! rejects, a `pg_hba.conf` without a line for us, Redis's protected mode)
//! stops start-up with the server's own reason: retrying would not help.

use std::time::Duration;

use anyhow::{Context, bail};

use crate::config::{DatabaseConfig, RedisConfig};
use crate::db::Db;

/// What one connection attempt showed.
#[derive(Debug)]
pub enum Reach {
    /// Connected.
    Up,
    /// Not reachable yet (refused, timed out): carry on and retry lazily.
    NotYet(String),
}

/// Connects once to PostgreSQL; `Err` when the server refuses us for good.
pub async fn database(db: &Db, config: &DatabaseConfig) -> anyhow::Result<Reach> {
    let attempt = tokio::time::timeout(config.acquire_timeout, db.check_connect()).await;
    let error = match attempt {
        Ok(Ok(())) => return Ok(Reach::Up),
        Err(_) | Ok(Err(sqlx::Error::PoolTimedOut)) => return Ok(Reach::NotYet("no answer in time".into())),
        Ok(Err(e)) => e,
    };
    let reason = crate::error_chain(&error);
    // A TLS handshake that fails reaches us as an I/O error of kind InvalidData.
    let tls_refused = matches!(&error, sqlx::Error::Tls(_))
        || matches!(&error, sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::InvalidData);
    match &error {
        _ if tls_refused => bail!(
            "DATABASE_URL: TLS to PostgreSQL failed: {reason}. With sslmode=verify-ca or verify-full, sslrootcert \
             must name the CA that signed the server's certificate (without it, public CAs are trusted), and for \
             verify-full the host must be one the certificate names"
        ),
        sqlx::Error::Io(_) => Ok(Reach::NotYet(reason)),
        sqlx::Error::Database(db) if db.code().as_deref() == Some("28000") && reason.contains("no encryption") => {
            bail!(
                "DATABASE_URL: PostgreSQL refused a connection without TLS: {reason}. Set sslmode=require (or \
             verify-full with sslrootcert) in DATABASE_URL"
            )
        }
        _ => bail!("DATABASE_URL: PostgreSQL refused the connection: {reason}"),
    }
}

/// Connects once to Redis and sends `PING`; `Err` when the server refuses us
/// for good (authentication, TLS, protected mode).
pub async fn redis(config: &RedisConfig) -> anyhow::Result<Reach> {
    let client = crate::redis_conn::client(config).with_context(|| format!("REDIS_URL {}", config.redacted_url()))?;
    let settings = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(config.socket_timeout))
        .set_response_timeout(Some(config.socket_timeout));
    let attempt = async {
        let mut conn = client.get_multiplexed_async_connection_with_config(&settings).await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    let error = match tokio::time::timeout(config.socket_timeout + Duration::from_secs(1), attempt).await {
        Ok(Ok(_)) => return Ok(Reach::Up),
        Err(_) => return Ok(Reach::NotYet("no answer in time".into())),
        Ok(Err(e)) => e,
    };
    let mut reason = crate::error_chain(&error);
    // The redis crate reports a refused AUTH without the server's words.
    if error.kind() == redis::ErrorKind::AuthenticationFailed
        && let Some(said) = auth_refusal(config, &settings).await
    {
        reason = format!("{said} ({reason})");
    }
    // A server that hangs up at once (protected mode sends its reason and
    // closes) reaches the client as a broken pipe or a reset: ask it directly.
    if error.kind() == redis::ErrorKind::Io
        && !error.is_timeout()
        && let Some(said) = greeting(config).await
    {
        let url = config.redacted_url();
        bail!("REDIS_URL ({url}): Redis refused the connection: {said}");
    }
    let unreachable = error.is_connection_refusal() || error.is_timeout();
    if unreachable {
        return Ok(Reach::NotYet(reason));
    }
    let url = config.redacted_url();
    let hint = if reason.contains("certificate") || reason.contains("tls") || reason.contains("TLS") {
        "; REDIS_TLS_CA_FILE must name the CA that signed the server's certificate (the system's roots are used \
         without it), and the host must be one the certificate names"
    } else if reason.contains("DENIED") || reason.contains("protected mode") {
        "; Redis is in protected mode: give the default user a password (requirepass) or an ACL user, and set it \
         in REDIS_URL or REDIS_PASSWORD"
    } else {
        ""
    };
    bail!("REDIS_URL ({url}): Redis refused the connection: {reason}{hint}")
}

/// The error line a plain-TCP Redis answers a bare `PING` with, if it does.
async fn greeting(config: &RedisConfig) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = crate::redis_conn::plain_address(config)?;
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((address.0.as_str(), address.1)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut buf = vec![0u8; 4096];
        let n = stream.read(&mut buf).await.ok()?;
        let line = String::from_utf8_lossy(&buf[..n]).lines().next()?.to_owned();
        line.strip_prefix('-').map(str::to_owned)
    };
    tokio::time::timeout(config.socket_timeout, exchange).await.ok().flatten()
}

/// What the server answers to the URL's `AUTH`, sent by hand.
async fn auth_refusal(config: &RedisConfig, settings: &redis::AsyncConnectionConfig) -> Option<String> {
    let (user, password, client) = crate::redis_conn::without_credentials(config).ok()?;
    let mut conn = client.get_multiplexed_async_connection_with_config(settings).await.ok()?;
    let mut auth = redis::cmd("AUTH");
    if let Some(user) = user {
        auth.arg(user);
    }
    auth.arg(password?);
    auth.query_async::<()>(&mut conn).await.err().map(|e| e.to_string())
}
