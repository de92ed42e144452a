//! PostgreSQL wire protocol (v3) message framing, read as it streams by:
//! only each message's type and length are kept, its body is skipped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::count;

/// The request codes of untyped start-up packets that a second start-up
/// packet follows.
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;

/// A stream of length-prefixed messages: the header being read, then the
/// body bytes still to skip.
struct Framing {
    header: Vec<u8>,
    skip: usize,
}

impl Framing {
    fn new() -> Framing {
        Framing { header: Vec::with_capacity(8), skip: 0 }
    }

    /// Feeds `bytes`; calls `on_header` with each complete header of
    /// `header_len(…)` bytes, which returns how many body bytes follow.
    fn feed(&mut self, mut bytes: &[u8], header_len: impl Fn() -> usize, mut on_header: impl FnMut(&[u8]) -> usize) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let want = header_len() - self.header.len();
            let n = want.min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() == header_len() {
                self.skip = on_header(&self.header);
                self.header.clear();
            }
        }
    }
}

fn be_u32(bytes: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(b)
}

/// What the client sends: untyped start-up packets, then typed messages.
pub struct Frontend {
    framing: Framing,
    starting: bool,
    ssl_asked: Arc<AtomicBool>,
    /// Whether anything was sent since the last Sync or Query: a Sync
    /// with nothing before it only asks whether the connection is alive
    /// (sqlx's ping when a pool hands a connection out).
    pending: bool,
}

impl Frontend {
    /// A parser that raises `ssl_asked` when the client sends an SSLRequest.
    pub fn new(ssl_asked: Arc<AtomicBool>) -> Frontend {
        Frontend { framing: Framing::new(), starting: true, ssl_asked, pending: false }
    }

    /// Counts the messages in `bytes`.
    pub fn feed(&mut self, bytes: &[u8], seen: &mut BTreeMap<String, u64>) {
        let starting = std::cell::Cell::new(self.starting);
        let pending = std::cell::Cell::new(self.pending);
        let ssl_asked = &self.ssl_asked;
        self.framing.feed(
            bytes,
            || if starting.get() { 8 } else { 5 },
            |header| {
                if starting.get() {
                    // Length (itself included), then the request code.
                    let code = be_u32(&header[4..]);
                    if code == SSL_REQUEST || code == GSSENC_REQUEST {
                        ssl_asked.store(true, Ordering::SeqCst);
                        count(seen, "SSLRequest");
                    } else {
                        count(seen, "Startup");
                        starting.set(false);
                    }
                    (be_u32(header) as usize).saturating_sub(8)
                } else {
                    let name = frontend_name(header[0]);
                    count(seen, name);
                    match name {
                        "Sync" if !pending.get() => count(seen, "Sync alone"),
                        "Sync" | "Query" => {}
                        _ => pending.set(true),
                    }
                    if matches!(name, "Sync" | "Query") {
                        pending.set(false);
                    }
                    (be_u32(&header[1..]) as usize).saturating_sub(4)
                }
            },
        );
        self.starting = starting.get();
        self.pending = pending.get();
    }
}

/// What the server sends: typed messages (after the one-byte answer to an
/// SSLRequest).
pub struct Backend {
    framing: Framing,
    ssl_asked: Arc<AtomicBool>,
}

impl Backend {
    /// A parser that skips the SSLRequest's answer when `ssl_asked` is raised.
    pub fn new(ssl_asked: Arc<AtomicBool>) -> Backend {
        Backend { framing: Framing::new(), ssl_asked }
    }

    /// Counts the messages of interest in `bytes`.
    pub fn feed(&mut self, mut bytes: &[u8], seen: &mut BTreeMap<String, u64>) {
        if !bytes.is_empty() && self.framing.header.is_empty() && self.ssl_asked.swap(false, Ordering::SeqCst) {
            bytes = &bytes[1..];
        }
        self.framing.feed(
            bytes,
            || 5,
            |header| {
                let name = match header[0] {
                    b'Z' => Some("ReadyForQuery"),
                    b'C' => Some("CommandComplete"),
                    b'E' => Some("ErrorResponse"),
                    b'D' => Some("DataRow"),
                    _ => None,
                };
                if let Some(name) = name {
                    count(seen, name);
                }
                (be_u32(&header[1..]) as usize).saturating_sub(4)
            },
        );
    }
}

fn frontend_name(kind: u8) -> &'static str {
    match kind {
        b'Q' => "Query",
        b'P' => "Parse",
        b'B' => "Bind",
        b'E' => "Execute",
        b'S' => "Sync",
        b'D' => "Describe",
        b'C' => "Close",
        b'H' => "Flush",
        b'X' => "Terminate",
        b'p' => "Password",
        b'd' => "CopyData",
        b'c' => "CopyDone",
        b'f' => "CopyFail",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn frontend_messages_are_counted_across_reads() {
        let mut stream = Vec::new();
        let startup = b"\0\x03\0\0user\0aiv\0\0";
        stream.extend_from_slice(&(startup.len() as u32 + 4).to_be_bytes());
        stream.extend_from_slice(startup);
        stream.extend(typed(b'P', b"\0SELECT 1\0\0\0"));
        stream.extend(typed(b'B', b"\0\0\0\0\0\0\0\0"));
        stream.extend(typed(b'E', b"\0\0\0\0\0"));
        stream.extend(typed(b'S', b""));
        stream.extend(typed(b'Q', b"BEGIN\0"));
        stream.extend(typed(b'S', b""));
        let mut parser = Frontend::new(Arc::default());
        let mut seen = BTreeMap::new();
        // One byte at a time: no message may depend on a read's boundaries.
        for b in &stream {
            parser.feed(std::slice::from_ref(b), &mut seen);
        }
        let names: Vec<(&str, u64)> = seen.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        assert_eq!(
            names,
            [("Bind", 1), ("Execute", 1), ("Parse", 1), ("Query", 1), ("Startup", 1), ("Sync", 2), ("Sync alone", 1)]
        );
    }

    #[test]
    fn the_answer_to_an_ssl_request_is_skipped() {
        let asked = Arc::new(AtomicBool::new(false));
        let (mut front, mut back) = (Frontend::new(asked.clone()), Backend::new(asked));
        let mut seen = BTreeMap::new();
        front.feed(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], &mut seen);
        let mut reply = vec![b'N'];
        reply.extend(typed(b'R', &[0, 0, 0, 0]));
        reply.extend(typed(b'Z', b"I"));
        back.feed(&reply, &mut seen);
        assert_eq!(seen.get("SSLRequest"), Some(&1));
        assert_eq!(seen.get("ReadyForQuery"), Some(&1));
    }
}
