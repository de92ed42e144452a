//! argon2id password hashes, computed off the async threads, a few at a time.
//!
//! Each hash takes 19 MiB (argon2's default memory cost) and a core for tens
//! of milliseconds: unbounded, a burst of logins would take gigabytes (seen
//! in the benchmark: 3.7 GB for 100 concurrent registrations and logins). At
//! most one hash per core runs; the rest wait their turn.

use std::sync::LazyLock;

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

static HASHING: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));

async fn bounded<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let _permit = HASHING.acquire().await.map_err(|e| e.to_string())?;
    tokio::task::spawn_blocking(work).await.map_err(|e| e.to_string())
}

/// Hashes a password (argon2id, default parameters, random salt).
pub async fn hash(password: String) -> Result<String, String> {
    bounded(move || {
        Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| e.to_string())
    })
    .await?
}

/// Whether `password` matches the stored hash. A malformed hash never matches.
pub async fn verify(password: String, stored: String) -> bool {
    bounded(move || {
        PasswordHash::new(&stored)
            .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}
