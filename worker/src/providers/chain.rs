//! Failover: `AI_PROVIDER`, then each of `AI_FALLBACK_PROVIDERS`, in order.
//!
//! A retryable failure (429, 5xx, timeout, broken connection) before any text
//! is retried on the same provider up to its `{P}_MAX_RETRIES`, after the
//! backoff of `JOB_BACKOFF_*` (full jitter; `Retry-After` wins) as long as
//! that wait is within `JOB_BACKOFF_MAX_MS`: a longer one moves on rather than
//! hold a worker slot. Then the call moves to the next provider; a stream that had
//! already produced text first yields [`Chunk::Reset`], so the client drops
//! the partial reply. A failure that is not retryable (another 4xx) ends the
//! call: the next provider would be asked the same bad question. When the
//! last provider fails too, the error goes to the job's retry policy, which
//! starts the chain again after its backoff.
//!
//! Not built yet (the providers issue): rate limits, and the circuit breaker
//! that skips a provider that keeps failing.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;

use shared::config::JobsConfig;

use super::{ChatProvider, ChatRequest, Chunk, ProviderError};

/// Providers tried in order, each with its retry budget.
pub struct Chain {
    providers: Vec<Arc<dyn ChatProvider>>,
    budgets: Vec<u32>,
    backoff: JobsConfig,
}

impl Chain {
    /// A chain of `(provider, max_retries)` (the first is the primary),
    /// backing off as `backoff` says between retries on one provider.
    pub fn new(providers: Vec<(Arc<dyn ChatProvider>, u32)>, backoff: JobsConfig) -> Self {
        let (providers, budgets) = providers.into_iter().unzip();
        Self { providers, budgets, backoff }
    }
}

struct Attempt {
    providers: Vec<Arc<dyn ChatProvider>>,
    budgets: Vec<u32>,
    backoff: JobsConfig,
    request: ChatRequest,
    next: usize,
    current: Option<BoxStream<'static, Result<Chunk, ProviderError>>>,
    retries: u32,
    sent_text: bool,
    reset: Option<String>,
}

impl ChatProvider for Chain {
    fn name(&self) -> &str {
        self.providers.first().map_or("chain", |p| p.name())
    }

    fn model(&self) -> &str {
        self.providers.first().map_or("", |p| p.model())
    }

    fn prices(&self) -> (f64, f64) {
        self.providers.first().map_or((0.0, 0.0), |p| p.prices())
    }

    fn stream(&self, request: ChatRequest) -> BoxStream<'static, Result<Chunk, ProviderError>> {
        let attempt = Attempt {
            providers: self.providers.clone(),
            budgets: self.budgets.clone(),
            backoff: self.backoff.clone(),
            request,
            next: 0,
            current: None,
            retries: 0,
            sent_text: false,
            reset: None,
        };
        futures::stream::unfold(Some(attempt), |state| async move {
            let mut a = state?;
            loop {
                if let Some(reason) = a.reset.take() {
                    return Some((Ok(Chunk::Reset { reason }), Some(a)));
                }
                let Some(stream) = a.current.as_mut() else {
                    let provider = a.providers.get(a.next)?.clone();
                    a.next += 1;
                    a.retries = 0;
                    a.current = Some(provider.stream(a.request.clone()));
                    continue;
                };
                let failure = match stream.next().await {
                    Some(Ok(chunk)) => {
                        if matches!(&chunk, Chunk::Delta(_)) {
                            a.sent_text = true;
                        }
                        let done = matches!(&chunk, Chunk::Done { .. });
                        return Some((Ok(chunk), (!done).then_some(a)));
                    }
                    Some(Err(e)) => e,
                    // Providers end with Done or an error; an end without
                    // either is a broken stream too.
                    None => ProviderError {
                        provider: a.providers.get(a.next.saturating_sub(1)).map(|p| p.name().to_owned()).unwrap_or_default(),
                        message: "the stream ended without finishing".into(),
                        retryable: true,
                        retry_after: None,
                    },
                };
                let budget = a.budgets.get(a.next.saturating_sub(1)).copied().unwrap_or(0);
                if failure.retryable && !a.sent_text && a.retries < budget {
                    a.retries += 1;
                    let wait = crate::retry::delay(&a.backoff, a.retries, failure.retry_after);
                    if wait <= a.backoff.backoff_max {
                        tracing::warn!(provider = %failure.provider, error = %failure.message, retry = a.retries, wait_ms = wait.as_millis() as u64, "provider failed; retrying it");
                        tokio::time::sleep(wait).await;
                        let provider = a.providers[a.next - 1].clone();
                        a.current = Some(provider.stream(a.request.clone()));
                        continue;
                    }
                }
                if !(failure.retryable && a.next < a.providers.len()) {
                    return Some((Err(failure), None));
                }
                tracing::warn!(provider = %failure.provider, error = %failure.message, "provider failed; trying the next one");
                a.current = None;
                if std::mem::take(&mut a.sent_text) {
                    a.reset = Some(format!("{} broke off ({}); the reply restarts", failure.provider, failure.message));
                }
            }
        })
        .boxed()
    }
}
