//! The hashing threads and the argon2 memory each one keeps.

use std::sync::{Arc, LazyLock, Mutex, mpsc};

use argon2::password_hash::phc::{Output, ParamsString, Salt};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use tokio::sync::oneshot;

/// At most this many threads hash, however many cores: each keeps 19 MiB
/// resident, and four already make over a hundred hashes a second.
const MAX_THREADS: usize = 4;

/// The most memory a stored hash may ask for (argon2's `m`, in 1 KiB blocks):
/// three times the default, room for a future raise of the cost. A hash
/// asking more never matches rather than growing a thread's buffer further.
const MAX_BLOCKS: usize = 3 * Params::DEFAULT_M_COST as usize;

/// New hashes are argon2id, version 0x13, m=19456 KiB, t=2, p=1: the
/// crate's defaults, which every stored hash was made with.
const ALGORITHM: Algorithm = Algorithm::Argon2id;
const VERSION: Version = Version::V0x13;

fn argon2id() -> Argon2<'static> {
    Argon2::new(ALGORITHM, VERSION, Params::DEFAULT)
}

/// A hashing thread's argon2 working memory, allocated when the thread
/// starts and reused for every hash it makes.
pub(super) struct Memory(Vec<Block>);

impl Memory {
    /// What the default parameters need, touched now: the thread's share of
    /// resident memory from the start, not at a burst.
    fn for_default_params() -> Self {
        Memory(vec![Block::new(); Params::DEFAULT.block_count()])
    }

    /// The first `n` blocks, the buffer grown to hold them if it must.
    fn blocks(&mut self, n: usize) -> Option<&mut [Block]> {
        if n > MAX_BLOCKS {
            return None;
        }
        if self.0.len() < n {
            self.0.resize(n, Block::new());
        }
        self.0.get_mut(..n)
    }

    /// A new PHC string of `password` hashed by [`argon2id`] with a random
    /// salt: what `Argon2::default().hash_password` returns.
    pub(super) fn hash(&mut self, password: &[u8]) -> Result<String, String> {
        let argon2 = argon2id();
        let salt: [u8; argon2::RECOMMENDED_SALT_LEN] = rand::random();
        let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
        let blocks =
            self.blocks(argon2.params().block_count()).ok_or_else(|| "too little memory for argon2".to_owned())?;
        argon2.hash_password_into_with_memory(password, &salt, &mut output, blocks).map_err(|e| e.to_string())?;
        phc_string(&salt, &output)
    }

    /// Whether `password` matches the PHC string `stored`, computed with the
    /// algorithm, version and parameters written in it (as
    /// `PasswordVerifier::verify_password` does). Malformed never matches.
    pub(super) fn verify(&mut self, password: &[u8], stored: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(stored) else { return false };
        let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else { return false };
        let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else { return false };
        let Ok(version) = parsed.version.map_or(Ok(Version::default()), Version::try_from) else { return false };
        let Ok(params) = Params::try_from(&parsed) else { return false };
        let argon2 = Argon2::new(algorithm, version, params);
        let mut computed = [0u8; Output::MAX_LENGTH];
        let (Some(computed), Some(blocks)) =
            (computed.get_mut(..expected.len()), self.blocks(argon2.params().block_count()))
        else {
            return false;
        };
        argon2.hash_password_into_with_memory(password, salt, computed, blocks).is_ok()
            // Output's equality is constant-time.
            && Output::new(computed).is_ok_and(|computed| computed == *expected)
    }
}

/// The PHC string of an `output` of [`argon2id`] with `salt`.
pub(super) fn phc_string(salt: &[u8], output: &[u8]) -> Result<String, String> {
    let phc = PasswordHash {
        algorithm: ALGORITHM.ident(),
        version: Some(VERSION.into()),
        params: ParamsString::try_from(&Params::DEFAULT).map_err(|e| e.to_string())?,
        salt: Some(Salt::new(salt).map_err(|e| e.to_string())?),
        hash: Some(Output::new(output).map_err(|e| e.to_string())?),
    };
    Ok(phc.to_string())
}

type Job = Box<dyn FnOnce(&mut Memory) + Send>;

static QUEUE: LazyLock<Mutex<mpsc::Sender<Job>>> = LazyLock::new(|| {
    let (sender, receiver) = mpsc::channel::<Job>();
    let receiver = Arc::new(Mutex::new(receiver));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(MAX_THREADS);
    for i in 0..threads {
        let receiver = receiver.clone();
        let spawned = std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
            let mut memory = Memory::for_default_params();
            loop {
                let job = match receiver.lock() {
                    Ok(queue) => queue.recv(),
                    Err(poisoned) => poisoned.into_inner().recv(),
                };
                match job {
                    Ok(job) => job(&mut memory),
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

/// Runs `work` on the next free hashing thread, with that thread's memory.
pub(super) async fn run<T: Send + 'static>(work: impl FnOnce(&mut Memory) -> T + Send + 'static) -> Result<T, String> {
    let (done, result) = oneshot::channel();
    let job: Job = Box::new(move |memory| {
        let _ = done.send(work(memory));
    });
    QUEUE
        .lock()
        .map_err(|_| "password hashing is unavailable".to_owned())?
        .send(job)
        .map_err(|_| "password hashing is unavailable".to_owned())?;
    result.await.map_err(|_| "password hashing stopped".to_owned())
}

#[cfg(test)]
mod tests {
    use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

    use super::Memory;

    const PASSWORD: &[u8] = b"amber-walrus-juggles-42";

    #[test]
    fn hashes_are_interchangeable_with_the_argon2_crates_own() {
        let mut memory = Memory::for_default_params();
        let theirs = Argon2::default().hash_password(PASSWORD).expect("hashed").to_string();
        assert!(memory.verify(PASSWORD, &theirs));
        assert!(!memory.verify(b"amber-walrus-juggles-43", &theirs));

        let ours = memory.hash(PASSWORD).expect("hashed");
        let parsed = PasswordHash::new(&ours).expect("a PHC string");
        assert!(Argon2::default().verify_password(PASSWORD, &parsed).is_ok());
        assert_eq!(parsed.params, PasswordHash::new(&theirs).expect("a PHC string").params);
        assert_eq!(parsed.salt.map(|s| s.len()), Some(argon2::RECOMMENDED_SALT_LEN));
        assert_ne!(ours, memory.hash(PASSWORD).expect("hashed"), "a new salt each time");
    }

    #[test]
    fn malformed_or_too_costly_hashes_never_match() {
        let mut memory = Memory::for_default_params();
        let ours = memory.hash(PASSWORD).expect("hashed");
        for stored in [
            String::new(),
            "not a hash".into(),
            ours.replace("argon2id", "argon2x"),
            ours.replace("v=19", "v=20"),
            ours.rsplit_once('$').map(|(head, _)| head.to_owned()).unwrap_or_default(),
            // 4 GiB of memory asked for: refused before any is allocated.
            ours.replace("m=19456", "m=4194304"),
        ] {
            assert!(!memory.verify(PASSWORD, &stored), "{stored}");
        }
        assert_eq!(memory.0.len(), argon2::Params::DEFAULT.block_count(), "the buffer did not grow");
    }
}
