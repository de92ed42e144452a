//! Redis connections with the timeouts of `REDIS_SOCKET_TIMEOUT` (apalis-redis
//! would otherwise use a 500 ms response timeout that can kill a worker pool),
//! over TLS for `rediss://` (every connection we open is made here: queues,
//! pub/sub, the fleet limiter, the admin views).

use redis::aio::{AsyncPushSender, ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ConnectionInfo, IntoConnectionInfo, RedisResult, TlsCertificates};

use crate::config::RedisConfig;

/// The client for `REDIS_URL`.
pub fn client(config: &RedisConfig) -> RedisResult<Client> {
    with_tls(config, connection_info(config)?)
}

/// `REDIS_URL` as connection settings; `REDIS_TLS_INSECURE` turns off the
/// certificate check (the redis crate's `#insecure`).
fn connection_info(config: &RedisConfig) -> RedisResult<ConnectionInfo> {
    if config.tls_insecure {
        return format!("{}#insecure", config.url).as_str().into_connection_info();
    }
    config.url.as_str().into_connection_info()
}

/// The URL's user and password, and a client for the same server that
/// sends neither (to ask the server itself why it refuses them).
pub(crate) fn without_credentials(config: &RedisConfig) -> RedisResult<(Option<String>, Option<String>, Client)> {
    let info = connection_info(config)?;
    let settings = info.redis_settings();
    let (user, password) = (settings.username().map(str::to_owned), settings.password().map(str::to_owned));
    let bare = info.set_redis_settings(redis::RedisConnectionInfo::default());
    Ok((user, password, with_tls(config, bare)?))
}

/// The plain-TCP address of `REDIS_URL` (`None` for TLS or a Unix socket).
pub(crate) fn plain_address(config: &RedisConfig) -> Option<(String, u16)> {
    match connection_info(config).ok()?.addr() {
        redis::ConnectionAddr::Tcp(host, port) => Some((host.clone(), *port)),
        _ => None,
    }
}

/// A client for `info`, trusting `REDIS_TLS_CA_FILE`'s CA when given.
fn with_tls(config: &RedisConfig, info: ConnectionInfo) -> RedisResult<Client> {
    match &config.tls_ca {
        Some(ca) => Client::build_with_tls(info, TlsCertificates { client_tls: None, root_cert: Some(ca.clone()) }),
        None => Client::open(info),
    }
}

fn manager_config(config: &RedisConfig) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.socket_timeout))
        .set_response_timeout(Some(config.socket_timeout))
        .set_number_of_retries(2)
        .set_max_delay(std::time::Duration::from_secs(2))
}

/// A multiplexed, self-reconnecting connection. Lazy: start-up does not fail
/// while Redis is still coming up; readiness reports it.
pub fn manager(config: &RedisConfig) -> RedisResult<ConnectionManager> {
    ConnectionManager::new_lazy_with_config(client(config)?, manager_config(config))
}

fn resp3_client(config: &RedisConfig) -> RedisResult<Client> {
    let info = connection_info(config)?;
    let settings = info.redis_settings().clone().set_protocol(redis::ProtocolVersion::RESP3);
    with_tls(config, info.set_redis_settings(settings))
}

/// A RESP3 connection whose pub/sub messages (and disconnections) go to
/// `sender`; the caller resubscribes after a disconnection.
pub fn subscriber(config: &RedisConfig, sender: impl AsyncPushSender) -> RedisResult<ConnectionManager> {
    ConnectionManager::new_lazy_with_config(resp3_client(config)?, manager_config(config).set_push_sender(sender))
}

/// Like [`subscriber`], but resubscribes to its channels by itself after a
/// reconnect. The worker's queues run on it: on RESP2 a single dropped
/// connection kills an apalis-redis pool, while this one reconnects.
pub fn subscriber_resubscribing(config: &RedisConfig, sender: impl AsyncPushSender) -> RedisResult<ConnectionManager> {
    let manager = manager_config(config).set_push_sender(sender).set_automatic_resubscription();
    ConnectionManager::new_lazy_with_config(resp3_client(config)?, manager)
}
