//! The per-user WebSocket limit (`WS_MAX_CONNECTIONS_PER_USER`), held in
//! Redis so that it counts the user's connections on every API instance.

use shared::ids::UserId;

use crate::state::AppState;

fn connections_key(state: &AppState, user: UserId) -> String {
    format!("{}:ws-conns:{user}", state.config.redis.key_prefix)
}

fn slot_ttl_ms(state: &AppState) -> i64 {
    (state.config.api.ws_heartbeat * 3).as_millis() as i64
}

/// Counts the user's live connections across every API instance: a sorted
/// set of connection ids scored by expiry, renewed at each heartbeat, so a
/// crashed instance's connections lapse on their own.
pub(super) async fn claim_connection_slot(state: &AppState, user: UserId, conn_id: &str) -> redis::RedisResult<bool> {
    static SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(
            r"redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
              if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
              redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
              redis.call('PEXPIRE', KEYS[1], ARGV[5])
              return 1",
        )
    });
    let now = chrono::Utc::now().timestamp_millis();
    let ttl = slot_ttl_ms(state);
    let mut conn = state.redis.clone();
    let claimed: i64 = SCRIPT
        .key(connections_key(state, user))
        .arg(now)
        .arg(now + ttl)
        .arg(state.config.api.ws_max_connections_per_user)
        .arg(conn_id)
        .arg(ttl)
        .invoke_async(&mut conn)
        .await?;
    Ok(claimed == 1)
}

pub(super) async fn refresh_connection_slot(state: &AppState, user: UserId, conn_id: &str) {
    let expiry = chrono::Utc::now().timestamp_millis() + slot_ttl_ms(state);
    let mut conn = state.redis.clone();
    let key = connections_key(state, user);
    let _ = redis::pipe()
        .cmd("ZADD")
        .arg(&key)
        .arg("XX")
        .arg(expiry)
        .arg(conn_id)
        .cmd("PEXPIRE")
        .arg(&key)
        .arg(slot_ttl_ms(state))
        .query_async::<()>(&mut conn)
        .await;
}

pub(super) async fn release_connection_slot(state: &AppState, user: UserId, conn_id: &str) {
    let mut conn = state.redis.clone();
    let _ = redis::cmd("ZREM").arg(connections_key(state, user)).arg(conn_id).query_async::<()>(&mut conn).await;
}
