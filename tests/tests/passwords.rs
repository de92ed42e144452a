//! Password hashes (issue 15, memory in login bursts): hashes stored before
//! the hashing threads kept their own argon2 memory still verify, new ones
//! are standard argon2id PHC strings, and a burst of registrations and
//! logins leaves the API's memory where it was.

use std::time::Duration;

use api::auth::password;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tests::{Client, TestEnv, USER_PASSWORD};

/// `USER_PASSWORD` hashed by `Argon2::default().hash_password` (argon2 0.6),
/// as every stored hash was made before.
const STORED_BEFORE: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$9uS+54oqZy6JrwqB1LrDoA$PiC08zSb4TAA3Hw9hos3rUwD8mEPk2mrXC1yUX3ZUR4";
const PREFIX: &str = "$argon2id$v=19$m=19456,t=2,p=1$";

#[tokio::test]
async fn hashes_made_before_still_verify_and_new_ones_are_standard_argon2id() -> anyhow::Result<()> {
    assert!(password::verify(USER_PASSWORD.into(), STORED_BEFORE.into()).await);
    assert!(!password::verify("amber-walrus-juggles-43".into(), STORED_BEFORE.into()).await);

    let new = password::hash(USER_PASSWORD.into()).await.map_err(anyhow::Error::msg)?;
    assert!(new.starts_with(PREFIX), "{new}");
    assert!(password::verify(USER_PASSWORD.into(), new.clone()).await);
    assert!(!password::verify("amber-walrus-juggles-43".into(), new).await);

    // What an unknown email is checked against: the same parameters, and no password matches.
    let unknown = password::unknown_user_hash();
    assert!(unknown.starts_with(PREFIX), "{unknown}");
    assert!(!password::verify(USER_PASSWORD.into(), unknown).await);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_whose_hash_was_stored_before_logs_in() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let anon = api.client();
    anon.user("old@example.com", "candidate").await?;
    sqlx::query("UPDATE users SET password_hash = $1 WHERE email = $2")
        .bind(STORED_BEFORE)
        .bind("old@example.com")
        .execute(&env.db().await?)
        .await?;
    let tokens = anon.login("old@example.com", USER_PASSWORD).await?;
    assert!(tokens["access_token"].is_string(), "{tokens}");
    Ok(())
}

/// 100 candidates at once, each registering and logging in.
async fn burst(anon: &Client, tag: &str) -> anyhow::Result<()> {
    let mut tasks = FuturesUnordered::new();
    for i in 0..100 {
        let (anon, email) = (anon.clone(), format!("{tag}-{i}@example.com"));
        tasks.push(tokio::spawn(async move { anon.user(&email, "candidate").await.map(drop) }));
    }
    while let Some(done) = tasks.next().await {
        done??;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_registrations_and_logins_leaves_the_api_memory_bounded() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let port = tests::free_port()?.to_string();
    let api = env.spawn_process("api", &[("API_PORT", &port), ("LOG_LEVEL", "WARNING")])?;
    let anon = Client::new(&format!("http://127.0.0.1:{port}/api/v1"));
    anon.until_live(Duration::from_secs(60)).await?;
    let mb = |api: &tokio::process::Child| tests::process_memory_kb(api, "VmRSS:").map(|kb| kb as f64 / 1024.0);
    let before = mb(&api)?;

    burst(&anon, "first").await?;
    let after_one = mb(&api)?;
    burst(&anon, "second").await?;
    let after_two = mb(&api)?;
    eprintln!("api RSS: {before:.0} MB live, {after_one:.0} MB after one burst, {after_two:.0} MB after two");
    // Each 19 MiB argon2 buffer freed to malloc used to stay: 265 MB after one burst, 36 MB before.
    assert!(after_one <= 1.5 * before, "{before:.0} MB → {after_one:.0} MB");
    assert!(after_two <= after_one + 8.0, "a second burst grew it: {after_one:.0} MB → {after_two:.0} MB");
    Ok(())
}
