//! The scheduler's cron table, what the batches check, and where alerts go.

use std::time::Duration;

use super::Vars;
use crate::domain::Batch;
use crate::schedule::CronSchedule;

/// The cron table of SPEC §8.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// `SCHEDULER_TIMEZONE` (default Asia/Tokyo: the seed's times are JST).
    pub timezone: chrono_tz::Tz,
    /// `SCHEDULER_CATCH_UP_HOURS`: a tick missed while no scheduler ran is
    /// caught up at start-up when it is at most this old.
    pub catch_up_window: Duration,
    /// Every batch, in [`Batch::ALL`] order.
    pub batches: Vec<BatchSchedule>,
}

/// One batch's schedule.
#[derive(Debug, Clone)]
pub struct BatchSchedule {
    /// The batch.
    pub batch: Batch,
    /// `BATCH_<NAME>_CRON` (default: the seed's).
    pub schedule: CronSchedule,
    /// `BATCH_<NAME>_ENABLED` (default true).
    pub enabled: bool,
}

/// What the batches work with.
#[derive(Debug, Clone)]
pub struct BatchSettings {
    /// `TOKEN_CLEANUP_REVOKED_DAYS`: revoked refresh tokens are kept this
    /// long (reuse of one revokes its family), then deleted.
    pub revoked_token_retention: Duration,
    /// `BACKUP_DIR`: where the database backups are; unset, the check alerts.
    pub backup_dir: Option<std::path::PathBuf>,
    /// `BACKUP_PATTERN`: the backups' file names (`*` and `?` wildcards).
    pub backup_pattern: String,
    /// `BACKUP_MAX_AGE_HOURS`: the newest backup must be younger.
    pub backup_max_age: Duration,
    /// `CERT_CHECK_HOSTS`: `host:port` (port 443 when left out), comma-separated.
    pub cert_hosts: Vec<(String, u16)>,
}

/// Alert channels.
#[derive(Clone)]
pub struct AlertConfig {
    /// `SLACK_WEBHOOK_URL`.
    pub slack_webhook: Option<String>,
    /// `TEAMS_WEBHOOK_URL`.
    pub teams_webhook: Option<String>,
    /// `ALERT_DEDUP_MINUTES`: one alert per condition within this window (0: every alert).
    pub dedup_window: Duration,
}

impl std::fmt::Debug for AlertConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Webhook URLs are credentials.
        f.debug_struct("AlertConfig")
            .field("slack_webhook", &self.slack_webhook.as_ref().map(|_| "<redacted>"))
            .field("teams_webhook", &self.teams_webhook.as_ref().map(|_| "<redacted>"))
            .field("dedup_window", &self.dedup_window)
            .finish()
    }
}

/// `SCHEDULER_*` and `BATCH_<NAME>_*`.
pub(super) fn scheduler(v: &mut Vars) -> SchedulerConfig {
    SchedulerConfig {
        timezone: {
            let name = v.string("SCHEDULER_TIMEZONE", "Asia/Tokyo");
            name.parse().unwrap_or_else(|_| {
                v.problem("SCHEDULER_TIMEZONE", format!("{name:?} is not an IANA time zone (e.g. Asia/Tokyo, UTC)"));
                chrono_tz::Asia::Tokyo
            })
        },
        catch_up_window: Duration::from_secs(3600 * v.ranged("SCHEDULER_CATCH_UP_HOURS", 24, 0, 24 * 62)),
        batches: Batch::ALL.iter().filter_map(|b| batch_schedule(v, *b)).collect(),
    }
}

/// What the batches check.
pub(super) fn batches(v: &mut Vars) -> BatchSettings {
    BatchSettings {
        revoked_token_retention: Duration::from_secs(86_400 * v.ranged("TOKEN_CLEANUP_REVOKED_DAYS", 30, 0, 3650)),
        backup_dir: v.get("BACKUP_DIR").map(std::path::PathBuf::from),
        backup_pattern: v.string("BACKUP_PATTERN", "*.dump"),
        backup_max_age: Duration::from_secs(3600 * v.ranged("BACKUP_MAX_AGE_HOURS", 26, 1, 24 * 365)),
        cert_hosts: cert_hosts(v),
    }
}

/// The webhooks and their deduplication.
pub(super) fn alerts(v: &mut Vars) -> AlertConfig {
    AlertConfig {
        slack_webhook: webhook(v, "SLACK_WEBHOOK_URL"),
        teams_webhook: webhook(v, "TEAMS_WEBHOOK_URL"),
        dedup_window: Duration::from_secs(60 * v.ranged("ALERT_DEDUP_MINUTES", 60, 0, 7 * 24 * 60)),
    }
}

/// `None` (with the problem recorded, so start-up stops) when the
/// expression does not parse.
fn batch_schedule(v: &mut Vars, batch: Batch) -> Option<BatchSchedule> {
    let variable = format!("BATCH_{}_CRON", batch.env_name());
    let expression = v.string(&variable, batch.default_cron());
    let enabled = v.flag(&format!("BATCH_{}_ENABLED", batch.env_name()), true);
    match CronSchedule::parse(&expression) {
        Ok(schedule) => Some(BatchSchedule { batch, schedule, enabled }),
        Err(e) => {
            v.problem(&variable, e);
            None
        }
    }
}

fn cert_hosts(v: &mut Vars) -> Vec<(String, u16)> {
    let mut hosts = Vec::new();
    for item in v.list("CERT_CHECK_HOSTS") {
        let (host, port) = match item.rsplit_once(':') {
            Some((host, port)) => match port.parse::<u16>() {
                Ok(port) if port > 0 => (host.to_owned(), port),
                _ => {
                    v.problem("CERT_CHECK_HOSTS", format!("{item:?}: {port:?} is not a port"));
                    continue;
                }
            },
            None => (item.clone(), 443),
        };
        if host.is_empty() {
            v.problem("CERT_CHECK_HOSTS", format!("{item:?} has no host"));
            continue;
        }
        hosts.push((host, port));
    }
    hosts
}

fn webhook(v: &mut Vars, variable: &str) -> Option<String> {
    let url = v.get(variable)?.to_owned();
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        v.problem(variable, "must be an http(s) URL");
        return None;
    }
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::super::Component;
    use super::super::tests::load;
    use crate::domain::Batch;

    #[test]
    fn the_cron_table_and_batch_settings_are_read_and_bad_values_are_named() {
        let c = load(&[("DATABASE_URL", "postgres://x/y")], Component::Scheduler).expect("defaults");
        assert_eq!(c.scheduler.timezone, chrono_tz::Asia::Tokyo);
        assert_eq!(c.scheduler.batches.len(), Batch::ALL.len(), "every default schedule parses");
        assert!(c.scheduler.batches.iter().all(|b| b.enabled && b.schedule.expression == b.batch.default_cron()));
        let c = load(
            &[
                ("DATABASE_URL", "postgres://x/y"),
                ("BATCH_TOKEN_CLEANUP_CRON", "*/5 * * * * *"),
                ("BATCH_MONTHLY_REPORT_ENABLED", "false"),
                ("CERT_CHECK_HOSTS", "api.example.com, 127.0.0.1:8443"),
                ("SCHEDULER_TIMEZONE", "UTC"),
            ],
            Component::Scheduler,
        )
        .expect("valid");
        assert_eq!(c.scheduler.timezone, chrono_tz::UTC);
        let token = c.scheduler.batches.iter().find(|b| b.batch == Batch::TokenCleanup).expect("token_cleanup");
        assert_eq!(token.schedule.expression, "*/5 * * * * *");
        assert!(!c.scheduler.batches.iter().any(|b| b.batch == Batch::MonthlyReport && b.enabled));
        assert_eq!(c.batches.cert_hosts, [("api.example.com".to_owned(), 443), ("127.0.0.1".to_owned(), 8443)]);
        let err = load(
            &[
                ("DATABASE_URL", "postgres://x/y"),
                ("BATCH_CERTIFICATE_CHECK_CRON", "every monday"),
                ("SCHEDULER_TIMEZONE", "Mars/Olympus"),
                ("CERT_CHECK_HOSTS", "host:http"),
                ("SLACK_WEBHOOK_URL", "hooks.slack.com/x"),
                ("BATCH_TOKEN_CLEANUP_ENABLED", "maybe"),
            ],
            Component::Scheduler,
        )
        .expect_err("bad values")
        .to_string();
        for name in [
            "BATCH_CERTIFICATE_CHECK_CRON: \"every monday\" has 2 fields",
            "SCHEDULER_TIMEZONE: \"Mars/Olympus\" is not an IANA time zone",
            "CERT_CHECK_HOSTS: \"host:http\"",
            "SLACK_WEBHOOK_URL: must be an http(s) URL",
            "BATCH_TOKEN_CLEANUP_ENABLED: expected true or false",
        ] {
            assert!(err.contains(name), "{name} in {err}");
        }
    }
}
