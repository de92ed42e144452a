//! Domain values, parsed once at the boundary.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text stored in the database and sent over the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} {other:?}; expected one of: {}",
                        stringify!($name).to_lowercase(),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }
    };
}

text_enum!(
    /// What a user may do.
    Role {
        /// Takes interviews.
        Candidate = "candidate",
        /// Defines interviews and reads their evaluations.
        Recruiter = "recruiter",
        /// Everything, including operations.
        Admin = "admin",
    }
);

text_enum!(
    /// The language an interview is held in.
    Language {
        /// Japanese.
        Ja = "ja",
        /// English.
        En = "en",
    }
);

text_enum!(
    /// A session's life cycle.
    SessionStatus {
        /// Open for answers.
        Active = "active",
        /// Ended by the candidate, the recruiter, or `max_turns`.
        Completed = "completed",
        /// Idle past the session timeout or its duration.
        Expired = "expired",
        /// Left by the candidate.
        Abandoned = "abandoned",
    }
);

text_enum!(
    /// A turn's life cycle.
    TurnStatus {
        /// Stored and enqueued, not yet taken by a worker.
        Queued = "queued",
        /// A worker holds it.
        Running = "running",
        /// The interviewer's message is stored.
        Completed = "completed",
        /// Gave up after the retry budget, or a non-retryable error.
        Failed = "failed",
    }
);

text_enum!(
    /// An evaluation's life cycle.
    EvaluationStatus {
        /// Enqueued, not yet written.
        Pending = "pending",
        /// A worker holds it.
        Running = "running",
        /// The scorecard is stored.
        Completed = "completed",
        /// Gave up.
        Failed = "failed",
    }
);

text_enum!(
    /// The scheduled batches of SPEC §8.
    Batch {
        /// Sessions idle past `SESSION_TIMEOUT_MINUTES` become `expired`; their evaluation is enqueued.
        ExpiredSessionsCleanup = "expired_sessions_cleanup",
        /// Expired and long-revoked refresh tokens are deleted.
        TokenCleanup = "token_cleanup",
        /// A day's aggregates (`--date`, default yesterday).
        AnalyticsAggregation = "analytics_aggregation",
        /// The newest backup is present, fresh, non-empty and readable.
        BackupVerification = "backup_verification",
        /// Days until each configured host's TLS certificate expires.
        CertificateCheck = "certificate_check",
        /// The previous month from the daily aggregates.
        MonthlyReport = "monthly_report",
    }
);

impl Batch {
    /// The seed's schedule (standard 5-field cron, in `SCHEDULER_TIMEZONE`).
    pub fn default_cron(self) -> &'static str {
        match self {
            Batch::ExpiredSessionsCleanup => "0 * * * *",
            Batch::TokenCleanup => "0 2 * * *",
            Batch::AnalyticsAggregation => "0 3 * * *",
            Batch::BackupVerification => "0 4 * * *",
            Batch::CertificateCheck => "0 6 * * 1",
            Batch::MonthlyReport => "0 8 1 * *",
        }
    }

    /// The `<NAME>` of `BATCH_<NAME>_CRON` and `BATCH_<NAME>_ENABLED`.
    pub fn env_name(self) -> String {
        self.as_str().to_ascii_uppercase()
    }
}

text_enum!(
    /// A batch run's life cycle.
    BatchStatus {
        /// Recorded and enqueued.
        Queued = "queued",
        /// A worker runs it.
        Running = "running",
        /// Done.
        Succeeded = "succeeded",
        /// Gave up after the queue's retry policy.
        Failed = "failed",
    }
);

text_enum!(
    /// Why a batch ran.
    BatchTrigger {
        /// Its cron tick.
        Schedule = "schedule",
        /// A tick missed while no scheduler ran, at start-up.
        CatchUp = "catch_up",
        /// By hand: the CLI or the admin API.
        Manual = "manual",
    }
);

/// An email address, trimmed; compared case-insensitively by the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Parses a plausible address: one `@`, something on each side, a dot in the domain.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        let valid = raw.chars().count() <= 254
            && s.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && !domain.contains('@')
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !s.chars().any(char::is_whitespace)
            });
        if valid { Ok(Email(s.to_owned())) } else { Err(format!("{s:?} is not an email address")) }
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_and_name_the_choices() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(*role));
        }
        let err = "fr".parse::<Language>().expect_err("unknown");
        assert!(err.contains("ja, en"), "{err}");
    }

    #[test]
    fn emails() {
        assert!(Email::parse(" a@b.co ").is_ok());
        for bad in ["", "a", "a@b", "@b.co", "a@@b.co", "a b@c.de", "a@.b", "a@b."] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }
}
