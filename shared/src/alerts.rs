//! Alerts to Slack (incoming webhook, the seed's blocks) and Microsoft Teams
//! (MessageCard), one condition at most once per `ALERT_DEDUP_MINUTES`
//! across the fleet (a Redis key per condition). The one sender of the
//! service: batches, and later the operator surface, go through it.

use std::time::Duration;

use chrono::Utc;
use redis::aio::ConnectionManager;
use serde_json::{Value, json};

use crate::config::AlertConfig;

/// The seed's severity levels (operations manual 3.2.1), and a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Outage or data-loss risk: at once.
    P1,
    /// A function limited or badly slowed: within an hour.
    P2,
    /// Partly degraded: within four hours.
    P3,
    /// A warning: next business day.
    P4,
    /// Not a problem: a report.
    Info,
}

impl Severity {
    fn header(self) -> &'static str {
        match self {
            Severity::P1 => "🚨 CRITICAL ALERT (P1)",
            Severity::P2 => "🔴 HIGH ALERT (P2)",
            Severity::P3 => "🟠 MEDIUM ALERT (P3)",
            Severity::P4 => "⚠️ LOW ALERT (P4)",
            Severity::Info => "📊 REPORT",
        }
    }

    fn short(self) -> &'static str {
        match self {
            Severity::P1 => "🚨 CRITICAL",
            Severity::P2 => "🔴 HIGH",
            Severity::P3 => "🟠 MEDIUM",
            Severity::P4 => "⚠️ LOW",
            Severity::Info => "📊 REPORT",
        }
    }

    /// Teams' `themeColor`.
    fn color(self) -> &'static str {
        match self {
            Severity::P1 => "D13438",
            Severity::P2 => "E81123",
            Severity::P3 => "F7630C",
            Severity::P4 => "FFB900",
            Severity::Info => "0078D4",
        }
    }

    /// `P1` … `P4`, `info`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::P1 => "P1",
            Severity::P2 => "P2",
            Severity::P3 => "P3",
            Severity::P4 => "P4",
            Severity::Info => "info",
        }
    }
}

/// One alert.
#[derive(Debug, Clone)]
pub struct Alert {
    /// How bad.
    pub severity: Severity,
    /// What happened, in a few words.
    pub title: String,
    /// Which part (`Scheduler: certificate_check`).
    pub service: String,
    /// Its state (`Expires in 5 days`).
    pub status: String,
    /// The details.
    pub error: String,
    /// What to do.
    pub action: String,
    /// The condition, for deduplication: the same condition alerts once per window.
    pub condition: String,
}

/// What happened to an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Posted to every configured channel.
    Sent,
    /// The same condition alerted within the window.
    Suppressed,
    /// No channel is configured: logged only.
    NoChannel,
}

/// Posting failed on some channel; the condition may alert again at once.
#[derive(Debug, thiserror::Error)]
#[error("alert not delivered: {0}")]
pub struct AlertError(pub String);

/// The sender.
#[derive(Clone)]
pub struct Alerter {
    http: reqwest::Client,
    config: AlertConfig,
    redis: ConnectionManager,
    prefix: String,
    environment: String,
    timezone: chrono_tz::Tz,
}

impl Alerter {
    /// A sender on `redis` under `prefix`, naming `environment` and giving
    /// times in `timezone`.
    pub fn new(
        config: AlertConfig,
        redis: ConnectionManager,
        prefix: &str,
        environment: &str,
        timezone: chrono_tz::Tz,
    ) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
        Self { http, config, redis, prefix: prefix.to_owned(), environment: environment.to_owned(), timezone }
    }

    /// The sender `config` describes (its channels, prefix, environment and
    /// time zone), on `redis`.
    pub fn for_config(config: &crate::config::Config, redis: ConnectionManager) -> Self {
        Self::new(
            config.alerts.clone(),
            redis,
            &config.redis.key_prefix,
            &config.app.environment,
            config.scheduler.timezone,
        )
    }

    /// Sends `alert` in the background, for callers on a hot path (a
    /// failover, the end of a job) that must not wait for a webhook.
    /// Failures are logged.
    pub fn send_in_background(&self, alert: Alert) {
        let alerter = self.clone();
        tokio::spawn(async move {
            if let Err(e) = alerter.send(&alert).await {
                tracing::warn!(error = %e, condition = %alert.condition, "alert not delivered");
            }
        });
    }

    /// Sends `alert` unless its condition alerted within the window.
    pub async fn send(&self, alert: &Alert) -> Result<Delivery, AlertError> {
        tracing::warn!(severity = alert.severity.as_str(), condition = %alert.condition, title = %alert.title, error = %alert.error, "alert");
        let targets: Vec<(&str, &String, Value)> = [
            self.config.slack_webhook.as_ref().map(|url| ("slack", url, self.slack(alert))),
            self.config.teams_webhook.as_ref().map(|url| ("teams", url, self.teams(alert))),
        ]
        .into_iter()
        .flatten()
        .collect();
        if targets.is_empty() {
            return Ok(Delivery::NoChannel);
        }
        let key = format!("{}:alert:{}", self.prefix, alert.condition);
        let window = self.config.dedup_window.as_secs();
        // A window of 0 sends every alert.
        if window > 0 {
            let fresh: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(Utc::now().to_rfc3339())
                .arg("NX")
                .arg("EX")
                .arg(window)
                .query_async(&mut self.redis.clone())
                .await
                .map_err(|e| AlertError(format!("deduplication key: {e}")))?;
            if fresh.is_none() {
                return Ok(Delivery::Suppressed);
            }
        }
        let mut failures = Vec::new();
        for (channel, url, body) in targets {
            match self.http.post(url).json(&body).send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => failures.push(format!("{channel}: HTTP {}", r.status())),
                // reqwest's error names the URL, and a webhook's URL is its key.
                Err(e) => failures.push(format!("{channel}: {}", crate::error_chain(&e.without_url()))),
            }
        }
        if failures.is_empty() {
            return Ok(Delivery::Sent);
        }
        // Not delivered everywhere: the next attempt may send it again.
        let _: Result<(), _> = redis::cmd("DEL").arg(&key).query_async(&mut self.redis.clone()).await;
        Err(AlertError(failures.join("; ")))
    }

    fn environment(&self) -> String {
        let mut chars = self.environment.chars();
        chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
    }

    /// The seed's Slack format (operations manual 3.3.3).
    pub fn slack(&self, alert: &Alert) -> Value {
        let time = Utc::now().with_timezone(&self.timezone).format("%Y-%m-%d %H:%M:%S %Z").to_string();
        json!({
            "text": format!("{}: {}", alert.severity.short(), alert.title),
            "blocks": [
                { "type": "header", "text": { "type": "plain_text", "text": alert.severity.header() } },
                { "type": "section", "fields": [
                    { "type": "mrkdwn", "text": format!("*Service:*\n{}", alert.service) },
                    { "type": "mrkdwn", "text": format!("*Status:*\n{}", alert.status) },
                    { "type": "mrkdwn", "text": format!("*Environment:*\n{}", self.environment()) },
                    { "type": "mrkdwn", "text": format!("*Time:*\n{time}") },
                ] },
                { "type": "section", "text": { "type": "mrkdwn", "text": format!("*Error:* {}", alert.error) } },
                { "type": "section", "text": { "type": "mrkdwn", "text": format!("*Action Required:* {}", alert.action) } },
            ]
        })
    }

    /// The seed's Teams MessageCard (operations manual 3.3.2).
    pub fn teams(&self, alert: &Alert) -> Value {
        json!({
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": alert.title,
            "themeColor": alert.severity.color(),
            "title": format!("{}: {}", alert.severity.header(), alert.title),
            "sections": [{
                "activityTitle": alert.service,
                "text": alert.error,
                "facts": [
                    { "name": "Status:", "value": alert.status },
                    { "name": "Environment:", "value": self.environment() },
                    { "name": "Timestamp:", "value": Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string() },
                    { "name": "Action Required:", "value": alert.action },
                ]
            }]
        })
    }
}

#[cfg(test)]
mod tests {

    #[tokio::test]
    async fn a_failed_delivery_does_not_name_the_webhook_url() {
        // A closed port: the request fails before any answer.
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
        let url = format!("http://127.0.0.1:{}/services/T0/B0/webhook-key", port.unwrap_or(9));
        let e = reqwest::Client::new().post(&url).send().await.expect_err("nothing listens");
        assert!(e.to_string().contains("webhook-key"), "reqwest names the URL: {e}");
        let told = crate::error_chain(&e.without_url());
        assert!(!told.contains("webhook-key") && told.contains("error sending request"), "{told}");
    }
}
