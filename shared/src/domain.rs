//! Domain values, parsed once at the boundary.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! text_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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

/// An email address, trimmed; compared case-insensitively by the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Parses a plausible address: one `@`, something on each side, a dot in the domain.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
        let valid = s.len() <= 254
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
