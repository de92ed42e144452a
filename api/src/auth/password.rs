//! The password policy, and argon2id password hashes computed on a few
//! threads of their own, each with a working memory it keeps.
//!
//! A hash takes 19 MiB (argon2's default memory cost) and a core for tens of
//! milliseconds. One thread per core (at most four) hashes; other hashes wait
//! their turn in a queue. Each thread allocates its 19 MiB of argon2 blocks
//! when it starts and reuses them for every hash and verification: hashing
//! holds threads × 19 MiB, no more however long the burst, and no less after.
//! The policy's guessability check runs on the same threads, so a burst of
//! registrations starts no thread (and no malloc arena) per request.
//!
//! Why not let argon2 allocate per hash: glibc served the first 19 MiB with
//! `mmap` and gave it back, which raised its mmap threshold above 19 MiB, so
//! the later buffers came from malloc arenas, which kept them once freed:
//! 100 registrations and logins took the API (debug build) from 36 MB to
//! 265–437 MB, arena heaps holding three freed buffers each (52 MB with the
//! threshold pinned by `MALLOC_MMAP_THRESHOLD_`). Now: 72 MB → 85 MB, and a
//! second burst adds under 1 MB. Before the threads, tokio's blocking pool
//! hashed hundreds at once: 3.7 GB for 100 logins.

mod hashers;

use std::sync::LazyLock;

/// Hashes a password (argon2id, default parameters, random salt) into a
/// standard PHC string.
pub async fn hash(password: String) -> Result<String, String> {
    hashers::run(move |memory| memory.hash(password.as_bytes())).await?
}

/// Whether `password` matches the stored hash. A malformed hash never matches.
pub async fn verify(password: String, stored: String) -> bool {
    hashers::run(move |memory| memory.verify(password.as_bytes(), &stored)).await.unwrap_or(false)
}

/// A hash with the default parameters whose output is random: no password
/// matches it, and checking one costs a full argon2 run. What a login with an
/// unknown email is verified against, so that it takes as long as a wrong
/// password.
pub fn unknown_user_hash() -> String {
    static HASH: LazyLock<String> = LazyLock::new(|| {
        let (salt, output): ([u8; argon2::RECOMMENDED_SALT_LEN], [u8; argon2::Params::DEFAULT_OUTPUT_LEN]) =
            rand::random();
        hashers::phc_string(&salt, &output).unwrap_or_default()
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
    // On the hashing threads rather than tokio's blocking pool: a burst of
    // registrations would start a thread (and a malloc arena) for each.
    let verdict = hashers::run(move |_| {
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
