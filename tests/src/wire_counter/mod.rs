//! A counting TCP proxy: put between one process and its PostgreSQL or
//! Redis, it forwards every byte unchanged and counts bytes each way and
//! the protocol messages in them (PostgreSQL frontend messages and what the
//! server answered; Redis commands by name and pub/sub messages pushed).
//! `bench_costs` gives each process its own proxy, so the counts are that
//! process's alone, whatever else the shared servers are doing.

mod pg;
pub mod report;
mod resp;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The protocol spoken through a proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The PostgreSQL wire protocol, without TLS (`sslmode=disable`).
    Postgres,
    /// RESP2 or RESP3, without TLS.
    Redis,
}

/// What went through a proxy so far (or between two snapshots).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Bytes from the clients to the server.
    pub to_server: u64,
    /// Bytes from the server to the clients.
    pub to_client: u64,
    /// Client messages by name: PostgreSQL message types (`Parse`, `Bind`,
    /// `Execute`, `Sync`, `Query`, …) or Redis commands (`EVALSHA`,
    /// `PUBLISH events` for a session channel, `PUBLISH other` …).
    pub sent: BTreeMap<String, u64>,
    /// Server messages of interest by name: `ReadyForQuery` (one per round
    /// trip), `CommandComplete` (one per statement run), `ErrorResponse`;
    /// Redis pub/sub `message`s delivered.
    pub received: BTreeMap<String, u64>,
    /// Connections opened through the proxy.
    pub connections: u64,
}

impl Counts {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        let minus = |now: &BTreeMap<String, u64>, then: &BTreeMap<String, u64>| {
            now.iter()
                .map(|(k, v)| (k.clone(), v.saturating_sub(then.get(k).copied().unwrap_or(0))))
                .filter(|(_, v)| *v > 0)
                .collect()
        };
        Counts {
            to_server: self.to_server.saturating_sub(earlier.to_server),
            to_client: self.to_client.saturating_sub(earlier.to_client),
            sent: minus(&self.sent, &earlier.sent),
            received: minus(&self.received, &earlier.received),
            connections: self.connections.saturating_sub(earlier.connections),
        }
    }

    /// A client message count (0 when none was seen).
    pub fn sent(&self, name: &str) -> u64 {
        self.sent.get(name).copied().unwrap_or(0)
    }

    /// A server message count (0 when none was seen).
    pub fn received(&self, name: &str) -> u64 {
        self.received.get(name).copied().unwrap_or(0)
    }
}

/// A running proxy; stops accepting when dropped (open connections end
/// with their processes).
pub struct WireCounter {
    /// Where clients connect instead of the server.
    pub addr: SocketAddr,
    counts: Arc<Mutex<Counts>>,
    accept: JoinHandle<()>,
}

impl Drop for WireCounter {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl WireCounter {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub async fn start(protocol: Protocol, upstream: SocketAddr) -> anyhow::Result<WireCounter> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Mutex::new(Counts::default()));
        let shared = counts.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counts = shared.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        lock(&counts).connections += 1;
                        relay(protocol, client, server, counts).await;
                    }
                });
            }
        });
        Ok(WireCounter { addr, counts, accept })
    }

    /// The counts so far.
    pub fn snapshot(&self) -> Counts {
        lock(&self.counts).clone()
    }
}

fn lock(counts: &Mutex<Counts>) -> std::sync::MutexGuard<'_, Counts> {
    counts.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Which way bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToServer,
    ToClient,
}

/// Reads one direction's bytes and names the messages in them.
enum Parser {
    PgFrontend(pg::Frontend),
    PgBackend(pg::Backend),
    RespCommands(resp::Commands),
    RespReplies(resp::Replies),
}

impl Parser {
    fn feed(&mut self, bytes: &[u8], seen: &mut BTreeMap<String, u64>) {
        match self {
            Parser::PgFrontend(p) => p.feed(bytes, seen),
            Parser::PgBackend(p) => p.feed(bytes, seen),
            Parser::RespCommands(p) => p.feed(bytes, seen),
            Parser::RespReplies(p) => p.feed(bytes, seen),
        }
    }
}

async fn relay(protocol: Protocol, client: TcpStream, server: TcpStream, counts: Arc<Mutex<Counts>>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let (up, down) = match protocol {
        Protocol::Postgres => {
            // The server answers an SSLRequest with one untyped byte.
            let ssl_asked = Arc::new(AtomicBool::new(false));
            (Parser::PgFrontend(pg::Frontend::new(ssl_asked.clone())), Parser::PgBackend(pg::Backend::new(ssl_asked)))
        }
        Protocol::Redis => {
            (Parser::RespCommands(resp::Commands::default()), Parser::RespReplies(resp::Replies::default()))
        }
    };
    let to_server = pump(client_read, server_write, up, Direction::ToServer, counts.clone());
    let to_client = pump(server_read, client_write, down, Direction::ToClient, counts);
    tokio::join!(to_server, to_client);
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut parser: Parser,
    direction: Direction,
    counts: Arc<Mutex<Counts>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = BTreeMap::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let bytes = &buf[..n];
        parser.feed(bytes, &mut seen);
        {
            let mut guard = lock(&counts);
            let counts = &mut *guard;
            let (total, names) = match direction {
                Direction::ToServer => (&mut counts.to_server, &mut counts.sent),
                Direction::ToClient => (&mut counts.to_client, &mut counts.received),
            };
            *total += n as u64;
            for (name, count) in std::mem::take(&mut seen) {
                *names.entry(name).or_insert(0) += count;
            }
        }
        if to.write_all(bytes).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Adds one to `name`'s count.
fn count(seen: &mut BTreeMap<String, u64>, name: &str) {
    match seen.get_mut(name) {
        Some(n) => *n += 1,
        None => {
            seen.insert(name.to_owned(), 1);
        }
    }
}
