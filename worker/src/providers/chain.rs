//! Failover: `AI_PROVIDER`, then each of `AI_FALLBACK_PROVIDERS`, in order.
//!
//! Each provider sits behind its [`Guard`]: an open circuit skips it, and a
//! call waits for a slot of its fleet-wide rate limit (at most
//! `AI_RATE_LIMIT_MAX_WAIT_MS`, else it skips it too). A retryable failure
//! (429, 5xx, timeout, broken connection) before any text is retried on the
//! same provider up to its `{P}_MAX_RETRIES`, after the backoff of
//! `JOB_BACKOFF_*` (full jitter; `Retry-After` wins) as long as that wait is
//! within `JOB_BACKOFF_MAX_MS`: a longer one moves on rather than hold a
//! worker slot. Then the call moves to the next provider; a stream that had
//! already produced text first yields [`Chunk::Reset`], so the client drops
//! the partial reply. A rejection (another 4xx) ends the call: the next
//! provider would be asked the same bad question. A reply withheld by a
//! content filter is not retried on its provider but goes to the next one. When the
//! last provider fails too, the error goes to the job's retry policy, which
//! starts the chain again after its backoff.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::BoxStream;
use shared::config::JobsConfig;
use shared::provider_state::registry::Registered;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::guard::Guard;
use super::{ChatProvider, ChatRequest, Chunk, FailureKind, ProviderError};

/// One provider of the chain.
pub struct Link {
    /// The provider.
    pub provider: Arc<dyn ChatProvider>,
    /// `{P}_MAX_RETRIES`.
    pub retries: u32,
    /// Its circuit, rate limit and statistics.
    pub guard: Guard,
}

/// Providers tried in order.
pub struct Chain {
    links: Arc<[Link]>,
    backoff: JobsConfig,
}

impl Chain {
    /// A chain of `links` (the first is the primary), backing off as
    /// `backoff` says between retries on one provider.
    pub fn new(links: Vec<Link>, backoff: JobsConfig) -> Self {
        Self { links: links.into(), backoff }
    }

    /// The chain as the API reports it.
    pub fn registered(&self) -> Vec<Registered> {
        self.links.iter().enumerate().map(|(i, link)| link.guard.registered(i)).collect()
    }
}

impl ChatProvider for Chain {
    fn name(&self) -> &str {
        self.links.first().map_or("chain", |l| l.provider.name())
    }

    fn model(&self) -> &str {
        self.links.first().map_or("", |l| l.provider.model())
    }

    fn prices(&self) -> (f64, f64) {
        self.links.first().map_or((0.0, 0.0), |l| l.provider.prices())
    }

    fn stream(&self, request: ChatRequest) -> BoxStream<'static, Result<Chunk, ProviderError>> {
        let (tx, rx) = mpsc::channel(32);
        // The call runs on its own task and stops when the stream is dropped
        // (the receiver closes); it books the call's outcome even after the
        // consumer has its last chunk. In the caller's span, so that its
        // retries and failovers log the job's request id.
        tokio::spawn(run(self.links.clone(), self.backoff.clone(), request, tx).in_current_span());
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed()
    }
}

type Sender = mpsc::Sender<Result<Chunk, ProviderError>>;

async fn run(links: Arc<[Link]>, backoff: JobsConfig, request: ChatRequest, tx: Sender) {
    let mut sent_text = false;
    let mut soonest: Option<Duration> = None;
    for (i, link) in links.iter().enumerate() {
        let mut retries = 0;
        let mut failure = loop {
            let span = call_span(link.provider.as_ref());
            let failure = match call(link, &request, &tx, &mut sent_text).instrument(span.clone()).await {
                Ok(()) => return,
                Err(failure) => failure,
            };
            span.record("error.type", failure.kind.as_str()).record("otel.status_code", "ERROR");
            let again = matches!(failure.kind, FailureKind::Fault | FailureKind::RateLimited);
            if again && !sent_text && retries < link.retries {
                retries += 1;
                let wait = crate::retry::delay(&backoff, retries, failure.retry_after);
                if wait <= backoff.backoff_max {
                    tracing::warn!(provider = %failure.provider, error = %failure.message, retry = retries, wait_ms = wait.as_millis() as u64, "provider failed; retrying it");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => continue,
                        () = tx.closed() => return,
                    }
                }
            }
            break failure;
        };
        if let Some(wait) = failure.retry_after {
            soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
        }
        if failure.kind == FailureKind::Rejected || i + 1 == links.len() {
            // The job retries when the first provider may take it again.
            failure.retry_after = soonest;
            let _ = tx.send(Err(failure)).await;
            return;
        }
        tracing::warn!(provider = %failure.provider, error = %failure.message, "provider failed; trying the next one");
        // Skipped calls were never sent, and a filtered reply is no outage.
        if !matches!(failure.kind, FailureKind::Skipped | FailureKind::Filtered) {
            link.guard.failed_over(&failure.message);
        }
        if std::mem::take(&mut sent_text) {
            let reason = format!("{} broke off ({}); the reply restarts", failure.provider, failure.message);
            if tx.send(Ok(Chunk::Reset { reason })).await.is_err() {
                return;
            }
        }
    }
}

/// The span of one provider call; with tracing on, it carries the
/// OpenTelemetry GenAI semantic conventions' attributes (the usage is
/// recorded when the reply ends).
fn call_span(provider: &dyn ChatProvider) -> tracing::Span {
    let empty = tracing::field::Empty;
    let span = tracing::info_span!("provider call", provider = provider.name(), otel.name = empty,
        otel.kind = empty, otel.status_code = empty, gen_ai.operation.name = empty, gen_ai.system = empty,
        gen_ai.provider.name = empty, gen_ai.request.model = empty, gen_ai.usage.input_tokens = empty,
        gen_ai.usage.output_tokens = empty, error.type = empty);
    if shared::telemetry::traces::enabled() {
        // `gen_ai.provider.name` values of the conventions; `gen_ai.system` is its older name.
        let system = match provider.name() {
            "azure_openai" => "azure.ai.openai",
            "gcp_vertex" => "gcp.vertex_ai",
            "aws_bedrock" => "aws.bedrock",
            "openai_compatible" => "openai",
            other => other,
        };
        span.record("otel.name", format!("chat {}", provider.model()))
            .record("otel.kind", "client")
            .record("gen_ai.operation.name", "chat")
            .record("gen_ai.system", system)
            .record("gen_ai.provider.name", system)
            .record("gen_ai.request.model", provider.model());
    }
    span
}

/// One request to `link`'s provider, its chunks forwarded to `tx`. `Ok` once
/// the reply is complete (or nobody listens any more).
async fn call(link: &Link, request: &ChatRequest, tx: &Sender, sent_text: &mut bool) -> Result<(), ProviderError> {
    let guard = &link.guard;
    // Nobody listening any more (the job was handed back): no wait, no request, no slot.
    tokio::select! {
        admitted = guard.admit() => admitted?,
        () = tx.closed() => return Ok(()),
    }
    let slot = tokio::select! {
        slot = guard.acquire(request) => slot?,
        () = tx.closed() => return Ok(()),
    };
    let start = Instant::now();
    let mut stream = link.provider.stream(request.clone());
    let mut first = true;
    let failure = loop {
        let item = tokio::select! {
            item = stream.next() => item,
            () = tx.closed() => return Ok(()),
        };
        if std::mem::take(&mut first) {
            guard.sent(slot.as_ref());
        }
        match item {
            Some(Ok(Chunk::Done { usage, by })) => {
                tracing::Span::current()
                    .record("gen_ai.usage.input_tokens", usage.prompt_tokens)
                    .record("gen_ai.usage.output_tokens", usage.completion_tokens);
                let cost = super::cost(by.prices, usage);
                let _ = tx.send(Ok(Chunk::Done { usage, by })).await;
                guard.finished(slot, Ok((usage, cost)), start.elapsed()).await;
                return Ok(());
            }
            Some(Ok(chunk)) => {
                *sent_text |= matches!(chunk, Chunk::Delta(_));
                if tx.send(Ok(chunk)).await.is_err() {
                    return Ok(());
                }
            }
            Some(Err(e)) => break e,
            // Providers end with Done or an error; an end without either is
            // a broken stream too.
            None => {
                break ProviderError::new(
                    link.provider.name(),
                    FailureKind::Fault,
                    "the stream ended without finishing",
                );
            }
        }
    };
    guard.finished(slot, Err(&failure), start.elapsed()).await;
    Err(failure)
}
