//! What stands in front of each provider of the chain, shared by every
//! worker of the fleet through Redis (`shared::provider_state`): its circuit
//! breaker, its rate limit (requests and tokens), and its statistics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use shared::alerts::{Alert, Alerter, Severity};
use shared::config::{Config, EndpointConfig, ProviderPolicy};
use shared::events::Usage;
use shared::provider_state::ProviderKeys;
use shared::provider_state::circuit::{self, Admission, Outcome, Transition};
use shared::provider_state::rate_limit::{self, Budget, Slot};
use shared::provider_state::registry::Registered;
use shared::provider_state::stats::{self, RequestOutcome, RequestRecord};

use crate::metrics::ProviderMetrics;

use super::{ChatRequest, FailureKind, ProviderError, Purpose};

/// Tokens a reply is assumed to take until the provider reports them.
const COMPLETION_ESTIMATE: u32 = 512;
/// Evaluations (a JSON scorecard) are longer.
const EVALUATION_ESTIMATE: u32 = 1_024;
/// How long the fleet leaves a provider alone after it throttled without
/// saying for how long (Bedrock's `throttlingException` never does).
const THROTTLE_PAUSE: Duration = Duration::from_secs(1);
/// Longest sleep between looks at a full window: slots sent since the last
/// look may have moved its end closer.
const LOOK_AGAIN: Duration = Duration::from_millis(250);

/// One provider's circuit, rate limit and statistics.
pub struct Guard {
    name: String,
    model: String,
    conn: ConnectionManager,
    keys: ProviderKeys,
    budget: Budget,
    policy: ProviderPolicy,
    /// The longest a request may take to reach the provider: a slot counts
    /// from then at the latest, and a probe holds its turn that long.
    in_flight: Duration,
    /// One waiter per process asks Redis for a slot at a time, the others
    /// queue here in order: a full window is not polled by every task.
    waiters: tokio::sync::Mutex<()>,
    /// Where a circuit opening and a failover are reported.
    alerter: Alerter,
    /// This process's `ai_*` series.
    metrics: Arc<ProviderMetrics>,
}

impl Guard {
    /// The guard of `provider` with its `endpoint` settings (none for the
    /// scripted one: unlimited), under `config`'s policy, on `conn`.
    pub fn new(
        provider: &dyn super::ChatProvider,
        endpoint: Option<&EndpointConfig>,
        config: &Config,
        conn: ConnectionManager,
        metrics: Arc<ProviderMetrics>,
    ) -> Self {
        let policy = &config.worker.policy;
        let (rpm, tpm) = endpoint.map_or((None, None), |e| (e.rpm, e.tpm));
        let timeout = endpoint.map_or(Duration::from_secs(60), |e| e.timeout);
        metrics.provider(provider.name(), provider.model());
        Self {
            name: provider.name().to_owned(),
            model: provider.model().to_owned(),
            keys: ProviderKeys::new(&config.redis.key_prefix, provider.name()),
            budget: Budget::per_minute(policy.rate_window, rpm, tpm),
            policy: policy.clone(),
            // Connecting and waiting for headers each have the timeout.
            in_flight: timeout * 2 + Duration::from_secs(1),
            waiters: tokio::sync::Mutex::new(()),
            alerter: Alerter::for_config(config, conn.clone()),
            conn,
            metrics,
        }
    }

    /// Alerts (P3, once per provider and window) that calls moved past this
    /// provider to the next one.
    pub fn failed_over(&self, error: &str) {
        let alert = Alert {
            severity: Severity::P3,
            title: format!("AI provider {} failed over", self.name),
            service: format!("AI provider: {}", self.name),
            status: "Calls go to the next provider".into(),
            error: error.to_owned(),
            action: "Check the provider's status and quota; GET /api/v1/admin/providers shows the chain.".into(),
            condition: format!("failover:{}", self.name),
        };
        self.alerter.send_in_background(alert);
    }

    /// How the API sees this provider at `position` of the chain.
    pub fn registered(&self, position: usize) -> Registered {
        Registered {
            name: self.name.clone(),
            position,
            model: self.model.clone(),
            window_seconds: self.budget.window.as_secs(),
            requests_per_window: self.budget.requests,
            tokens_per_window: self.budget.tokens,
        }
    }

    fn skipped(&self, message: String, wait: Duration) -> ProviderError {
        ProviderError { retry_after: Some(wait), ..ProviderError::new(&self.name, FailureKind::Skipped, message) }
    }

    /// Whether the circuit lets a call through; an open one skips the
    /// provider. While the provider's throttling pauses the fleet, the call
    /// waits it out if that is within `AI_RATE_LIMIT_MAX_WAIT_MS`, else skips
    /// the provider too. Without Redis the circuit is taken as closed: the
    /// limiter (which does fail closed) still guards the provider.
    pub async fn admit(&self) -> Result<(), ProviderError> {
        let deadline = Instant::now() + self.policy.rate_max_wait;
        loop {
            let wait = match circuit::admit(&mut self.conn.clone(), &self.keys, self.in_flight).await {
                Ok(Admission::Go) => return Ok(()),
                Ok(Admission::Probe) => {
                    tracing::info!(provider = %self.name, "circuit cool-down over; probing");
                    return Ok(());
                }
                Ok(Admission::Skip(wait)) => {
                    return Err(self.skipped(format!("circuit open for {}ms more", wait.as_millis()), wait));
                }
                Ok(Admission::Wait(wait)) => wait,
                Err(e) => {
                    tracing::warn!(provider = %self.name, error = %e, "circuit state unreadable; treating it as closed");
                    return Ok(());
                }
            };
            if Instant::now() + wait > deadline {
                let message = format!("throttled by the provider for {}ms more", wait.as_millis());
                return Err(self.skipped(message, wait));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// A slot for `request` within the fleet's limit, waiting at most
    /// `AI_RATE_LIMIT_MAX_WAIT_MS`; `None` when the provider is unlimited.
    /// Without Redis nothing is sent: the limit cannot be proven.
    pub async fn acquire(&self, request: &ChatRequest) -> Result<Option<Slot>, ProviderError> {
        if !self.budget.is_limited() {
            return Ok(None);
        }
        let tokens = estimate_tokens(request);
        let deadline = Instant::now() + self.policy.rate_max_wait;
        let unavailable =
            |e: redis::RedisError| self.skipped(format!("rate limiter unavailable: {e}"), Duration::from_secs(1));
        let Ok(_turn) = tokio::time::timeout_at(deadline.into(), self.waiters.lock()).await else {
            self.count_hold().await;
            return Err(self.skipped("rate limit: too many calls waiting".into(), self.policy.rate_max_wait));
        };
        let mut held = false;
        loop {
            let mut conn = self.conn.clone();
            match rate_limit::try_acquire(&mut conn, &self.keys, &self.budget, tokens, self.in_flight)
                .await
                .map_err(unavailable)?
            {
                Ok(slot) => return Ok(Some(slot)),
                Err(wait) => {
                    if !held {
                        held = true;
                        self.count_hold().await;
                    }
                    if Instant::now() + wait > deadline {
                        return Err(self.skipped(format!("rate limit reached for {}ms more", wait.as_millis()), wait));
                    }
                    tokio::time::sleep(wait.min(LOOK_AGAIN)).await;
                }
            }
        }
    }

    async fn count_hold(&self) {
        self.metrics.limiter_hold(&self.name, &self.model);
        if let Err(e) = stats::record_limiter_hold(&mut self.conn.clone(), &self.keys).await {
            tracing::warn!(provider = %self.name, error = %e, "could not count a rate-limit hold");
        }
    }

    /// The request of `slot` reached the provider (its first answer came):
    /// the slot's window starts now. In the background: it does not hold up
    /// the reply, and starting the window later only errs on the safe side.
    pub fn sent(&self, slot: Option<&Slot>) {
        let Some(slot) = slot.cloned() else { return };
        let (mut conn, keys, budget, name) = (self.conn.clone(), self.keys.clone(), self.budget, self.name.clone());
        let marked = async move {
            if let Err(e) = rate_limit::sent(&mut conn, &keys, &budget, &slot).await {
                tracing::warn!(provider = %name, error = %e, "rate-limit slot not marked sent; it expires later");
            }
        };
        tokio::spawn(tracing::Instrument::in_current_span(marked));
    }

    /// Books a finished request: its real tokens against the limit, its
    /// outcome in the circuit, and the statistics.
    pub async fn finished(&self, slot: Option<Slot>, result: Result<(Usage, f64), &ProviderError>, took: Duration) {
        let mut conn = self.conn.clone();
        let (record, outcome, error) = match result {
            Ok((usage, cost_usd)) => {
                let tokens = (usage.prompt_tokens.max(0) as u32, usage.completion_tokens.max(0) as u32);
                if let Some(slot) = &slot
                    && let Err(e) = rate_limit::settle(&mut conn, &self.keys, slot, tokens.0 + tokens.1).await
                {
                    tracing::warn!(provider = %self.name, error = %e, "token use not corrected");
                }
                let record = RequestRecord {
                    outcome: RequestOutcome::Ok,
                    duration: took,
                    tokens,
                    cost_usd,
                    estimated: usage.estimated,
                };
                (record, Some(Outcome::Success), String::new())
            }
            Err(e) => {
                let (outcome, circuit) = match e.kind {
                    FailureKind::RateLimited => {
                        // The provider's limit is the account's: the whole fleet pauses.
                        let pause = e.retry_after.unwrap_or(THROTTLE_PAUSE);
                        if let Err(e) = circuit::pause(&mut conn, &self.keys, pause).await {
                            tracing::warn!(provider = %self.name, error = %e, "throttling pause not shared");
                        }
                        (RequestOutcome::RateLimited, None)
                    }
                    FailureKind::Fault => (RequestOutcome::Error, Some(Outcome::Fault)),
                    FailureKind::Rejected | FailureKind::Filtered | FailureKind::Skipped => {
                        (RequestOutcome::Error, None)
                    }
                };
                let record = RequestRecord { outcome, duration: took, tokens: (0, 0), cost_usd: 0.0, estimated: false };
                (record, circuit, e.message.clone())
            }
        };
        if let Some(outcome) = outcome {
            let p = &self.policy;
            match circuit::record(&mut conn, &self.keys, outcome, p.circuit_failures, p.circuit_cooldown, &error).await
            {
                Ok(Transition::Opened) => {
                    tracing::error!(
                        provider = %self.name, error = %error, cooldown_s = p.circuit_cooldown.as_secs(),
                        "circuit opened: the provider is skipped until a probe succeeds"
                    );
                    let alert = Alert {
                        severity: Severity::P2,
                        title: format!("AI provider {} circuit opened", self.name),
                        service: format!("AI provider: {}", self.name),
                        status: format!("Skipped for {} s, then probed", p.circuit_cooldown.as_secs()),
                        error: error.clone(),
                        action:
                            "Check the provider's status page and credentials; the fallbacks take the calls meanwhile."
                                .into(),
                        condition: format!("circuit_open:{}", self.name),
                    };
                    self.alerter.send_in_background(alert);
                }
                Ok(Transition::Closed) => tracing::info!(provider = %self.name, "probe succeeded; circuit closed"),
                Ok(Transition::None) => {}
                Err(e) => tracing::warn!(provider = %self.name, error = %e, "circuit not updated"),
            }
        }
        self.metrics.request(&self.name, &self.model, &record);
        if let Err(e) = stats::record(&mut conn, &self.keys, &record).await {
            tracing::warn!(provider = %self.name, error = %e, "statistics not recorded");
        }
    }
}

/// Prompt tokens (UTF-8 bytes / 3: about right for Japanese, generous for
/// English) plus the reply's expected length. Corrected after the call.
fn estimate_tokens(request: &ChatRequest) -> u32 {
    let prompt: usize = request.messages.iter().map(|m| m.content.len()).sum();
    let reply = match request.purpose {
        Purpose::Evaluation => EVALUATION_ESTIMATE,
        Purpose::Turn { .. } => COMPLETION_ESTIMATE,
    };
    (prompt / 3) as u32 + reply
}
