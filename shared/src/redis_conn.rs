//! Redis connections with the timeouts of `REDIS_SOCKET_TIMEOUT` (apalis-redis
//! would otherwise use a 500 ms response timeout that can kill a worker pool).

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisResult};

use crate::config::RedisConfig;

/// The client for `REDIS_URL`.
pub fn client(config: &RedisConfig) -> RedisResult<Client> {
    Client::open(config.url.as_str())
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

/// A RESP3 connection whose pub/sub messages (and disconnections) go to `sender`.
pub fn subscriber(
    config: &RedisConfig,
    sender: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
) -> RedisResult<ConnectionManager> {
    let info = redis::IntoConnectionInfo::into_connection_info(config.url.as_str())?;
    let settings = info.redis_settings().clone().set_protocol(redis::ProtocolVersion::RESP3);
    let info = info.set_redis_settings(settings);
    let client = Client::open(info)?;
    ConnectionManager::new_lazy_with_config(client, manager_config(config).set_push_sender(sender))
}
