//! argon2id password hashes, computed on a few threads of their own.
//!
//! Each hash takes 19 MiB (argon2's default memory cost) and a core for tens
//! of milliseconds. On tokio's blocking pool a burst of logins ran hundreds
//! at once, and each blocking thread's malloc arena kept its 19 MiB: the
//! benchmark saw 3.7 GB for 100 concurrent registrations and logins. Here one
//! thread per core hashes, and the others wait their turn in a queue.

use std::sync::{LazyLock, Mutex, mpsc};

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

static HASHERS: LazyLock<Mutex<mpsc::Sender<Job>>> = LazyLock::new(|| {
    let (sender, receiver) = mpsc::channel::<Job>();
    let receiver = std::sync::Arc::new(Mutex::new(receiver));
    for i in 0..std::thread::available_parallelism().map_or(2, |n| n.get()) {
        let receiver = receiver.clone();
        let spawned = std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
            loop {
                let job = match receiver.lock() {
                    Ok(queue) => queue.recv(),
                    Err(poisoned) => poisoned.into_inner().recv(),
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start a password hashing thread");
        }
    }
    Mutex::new(sender)
});

async fn on_hashers<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let (done, result) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = done.send(work());
    });
    HASHERS
        .lock()
        .map_err(|_| "password hashing is unavailable".to_owned())?
        .send(job)
        .map_err(|_| "password hashing is unavailable".to_owned())?;
    result.await.map_err(|_| "password hashing stopped".to_owned())
}

/// Hashes a password (argon2id, default parameters, random salt).
pub async fn hash(password: String) -> Result<String, String> {
    on_hashers(move || {
        Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| e.to_string())
    })
    .await?
}

/// Whether `password` matches the stored hash. A malformed hash never matches.
pub async fn verify(password: String, stored: String) -> bool {
    on_hashers(move || {
        PasswordHash::new(&stored)
            .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}
