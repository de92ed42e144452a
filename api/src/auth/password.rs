//! The password policy, and argon2id password hashes computed on a few
//! threads of their own.
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

/// A hash with the default parameters of a random password nobody knows:
/// what a login with an unknown email is verified against, so that it takes
/// as long as a wrong password.
pub fn unknown_user_hash() -> String {
    static HASH: LazyLock<String> = LazyLock::new(|| {
        let secret: [u8; 32] = rand::random();
        Argon2::default().hash_password(&secret).map(|h| h.to_string()).unwrap_or_default()
    });
    HASH.clone()
}

/// Shortest password accepted (ASVS 5.0 V6.2.1).
pub const MIN_CHARS: usize = 8;
/// Longest (ASVS asks at least 64).
pub const MAX_CHARS: usize = 256;

/// Checks a new password against the policy (ASVS 5.0 V6.2): 8 to 256
/// characters, no composition rules, and not guessable: zxcvbn's estimate
/// (common and breached passwords, words, names, keyboard patterns, dates,
/// repeats, the user's own email) must reach 3 of 4, about 10^8 guesses.
/// `Err` says which rule failed, for the message naming the field.
pub async fn check_policy(password: &str, email: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if !(MIN_CHARS..=MAX_CHARS).contains(&chars) {
        return Err(format!("must be {MIN_CHARS} to {MAX_CHARS} characters (got {chars})"));
    }
    let (password, email) = (password.to_owned(), email.to_owned());
    let verdict = tokio::task::spawn_blocking(move || {
        let local = email.split('@').next().unwrap_or_default().to_owned();
        let estimate = zxcvbn::zxcvbn(&password, &[email.as_str(), local.as_str()]);
        if estimate.score() >= zxcvbn::Score::Three {
            return Ok(());
        }
        let mut why = String::from("too easy to guess");
        if let Some(feedback) = estimate.feedback() {
            if let Some(warning) = feedback.warning() {
                why.push_str(&format!(": {warning}"));
            }
            for suggestion in feedback.suggestions() {
                why.push_str(&format!(" {suggestion}"));
            }
        }
        Err(why)
    })
    .await;
    verdict.unwrap_or_else(|_| Err("could not be checked".into()))
}

#[cfg(test)]
mod tests {
    use super::check_policy;

    #[tokio::test]
    async fn common_short_and_personal_passwords_are_refused_with_the_rule() {
        let refused = |r: Result<(), String>| r.expect_err("refused");
        assert!(refused(check_policy("short1!", "a@example.com").await).contains("8 to 256 characters"));
        assert!(refused(check_policy(&"x".repeat(257), "a@example.com").await).contains("8 to 256"));
        for weak in ["password123", "qwertyuiop", "iloveyou2024", "aaaaaaaaaaaa", "P@ssw0rd!", "12345678"] {
            assert!(refused(check_policy(weak, "a@example.com").await).contains("too easy to guess"), "{weak}");
        }
        // Their own email is a poor password.
        assert!(refused(check_policy("yamada.hanako1", "yamada.hanako1@example.com").await).contains("too easy"));
    }

    #[tokio::test]
    async fn long_or_random_passwords_pass_without_composition_rules() {
        for strong in [
            "amber-walrus-juggles-42",
            "correct horse battery staple",
            "tq8vz2mw0kfj",
            "すもももももももものうち庭には",
        ] {
            assert_eq!(check_policy(strong, "a@example.com").await, Ok(()), "{strong}");
        }
    }
}
