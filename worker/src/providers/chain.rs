//! Failover: `AI_PROVIDER`, then each of `AI_FALLBACK_PROVIDERS`, in order.
//!
//! A retryable failure (429, 5xx, timeout, broken connection, a stream that
//! breaks off) moves the call to the next provider; a stream that had
//! already produced text first yields [`Chunk::Reset`], so the client drops
//! the partial reply. A failure that is not retryable (another 4xx) ends the
//! call: the next provider would be asked the same bad question. When the
//! last provider fails too, the error goes to the job's retry policy, which
//! starts the chain again after its backoff.
//!
//! Not built yet (the providers issue): per-provider retry budgets
//! (`{P}_MAX_RETRIES`), rate limits, and the circuit breaker that skips a
//! provider that keeps failing.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;

use super::{ChatProvider, ChatRequest, Chunk, ProviderError};

/// Providers tried in order.
pub struct Chain {
    providers: Vec<Arc<dyn ChatProvider>>,
}

impl Chain {
    /// A chain of `providers` (the first is the primary).
    pub fn new(providers: Vec<Arc<dyn ChatProvider>>) -> Self {
        Self { providers }
    }
}

struct Attempt {
    providers: Vec<Arc<dyn ChatProvider>>,
    request: ChatRequest,
    next: usize,
    current: Option<BoxStream<'static, Result<Chunk, ProviderError>>>,
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
            request,
            next: 0,
            current: None,
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
