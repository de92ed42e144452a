//! Cron expressions as operators write them: the standard 5 fields (minute
//! hour day-of-month month day-of-week, Sunday = 0 or 7), or 6 with seconds
//! first. The `cron` crate numbers weekdays from Sunday = 1, so numeric
//! weekdays are rewritten as names before it parses them.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::Value;

use crate::config::Config;
use crate::db::DbError;
use crate::db::batch_runs::{self, BatchRun};
use crate::domain::Batch;

/// A parsed schedule, evaluated in a time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct CronSchedule {
    /// As configured.
    pub expression: String,
    schedule: cron::Schedule,
}

const WEEKDAYS: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];

impl CronSchedule {
    /// Parses `expression`; the error says what is wrong with it.
    pub fn parse(expression: &str) -> Result<Self, String> {
        let mut fields: Vec<String> = expression.split_whitespace().map(str::to_owned).collect();
        match fields.len() {
            5 => fields.insert(0, "0".into()),
            6 => {}
            n => {
                return Err(format!(
                    "{expression:?} has {n} fields; expected 5 (minute hour day-of-month month day-of-week) or 6 (seconds first)"
                ));
            }
        }
        fields[5] = weekday_names(&fields[5])?;
        let schedule: cron::Schedule =
            fields.join(" ").parse().map_err(|e| format!("{expression:?} is not a cron expression: {e}"))?;
        Ok(Self { expression: expression.to_owned(), schedule })
    }

    /// The first tick after `t`.
    pub fn next_after(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        self.schedule.after(&t.with_timezone(&tz)).next().map(|d| d.with_timezone(&Utc))
    }

    /// The last tick at or before `t`.
    pub fn last_until(&self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        let just_after = t + chrono::Duration::milliseconds(1);
        self.schedule.after(&just_after.with_timezone(&tz)).next_back().map(|d| d.with_timezone(&Utc))
    }
}

/// The day-of-week field with its numbers (0-7, Sunday = 0 or 7) as names;
/// step values (after `/`) stay numbers.
fn weekday_names(field: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut token = String::new();
    let mut in_step = false;
    let flush = |token: &mut String, out: &mut String, in_step: bool| -> Result<(), String> {
        if !token.is_empty() {
            if !in_step && let Ok(n) = token.parse::<usize>() {
                let name = WEEKDAYS.get(n).ok_or_else(|| format!("day of week {n} is not 0-7"))?;
                out.push_str(name);
            } else {
                out.push_str(token);
            }
            token.clear();
        }
        Ok(())
    };
    for c in field.chars() {
        if c.is_ascii_alphanumeric() {
            token.push(c);
            continue;
        }
        flush(&mut token, &mut out, in_step)?;
        in_step = c == '/';
        if c == ',' {
            in_step = false;
        }
        out.push(c);
    }
    flush(&mut token, &mut out, in_step)?;
    Ok(out)
}

/// What a batch run is asked to do (`batch_runs.params`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchParams {
    /// `analytics_aggregation`: the day (default yesterday); `monthly_report`:
    /// a day of the month to report (default the previous month).
    pub date: Option<NaiveDate>,
}

impl BatchParams {
    /// The parameters of a run of `batch` by hand; the error names the problem.
    pub fn for_batch(batch: Batch, date: Option<&str>) -> Result<Self, String> {
        let date = date.map(parse_date).transpose()?;
        if date.is_some() && !matches!(batch, Batch::AnalyticsAggregation | Batch::MonthlyReport) {
            return Err(format!("{batch} takes no date"));
        }
        Ok(Self { date })
    }

    /// Reads `{"date": "YYYY-MM-DD"}`; the error names the problem.
    pub fn from_json(value: &Value) -> Result<Self, String> {
        let Some(object) = value.as_object() else { return Err("params must be a JSON object".into()) };
        if let Some(key) = object.keys().find(|k| k.as_str() != "date") {
            return Err(format!("unknown parameter {key:?}; the only one is \"date\""));
        }
        let date = match object.get("date") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(parse_date(s)?),
            Some(other) => return Err(format!("date: expected \"YYYY-MM-DD\", got {other}")),
        };
        Ok(Self { date })
    }

    /// As stored.
    pub fn to_json(&self) -> Value {
        match self.date {
            Some(d) => serde_json::json!({ "date": d.format("%Y-%m-%d").to_string() }),
            None => serde_json::json!({}),
        }
    }
}

/// `YYYY-MM-DD`, a real day.
pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| format!("date: {s:?} is not a day in YYYY-MM-DD form"))
}

/// One batch as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct BatchOverview {
    /// The batch.
    pub name: Batch,
    /// `BATCH_<NAME>_ENABLED`.
    pub enabled: bool,
    /// `BATCH_<NAME>_CRON`.
    pub schedule: String,
    /// `SCHEDULER_TIMEZONE`.
    pub timezone: String,
    /// The next tick, when enabled.
    pub next_tick: Option<DateTime<Utc>>,
    /// The last runs, newest first.
    pub last_runs: Vec<BatchRun>,
}

/// Every batch with its schedule, next tick and last `runs` runs.
pub async fn overview(db: &crate::db::Db, config: &Config, runs: i64) -> Result<Vec<BatchOverview>, DbError> {
    let tz = config.scheduler.timezone;
    let mut out = Vec::with_capacity(config.scheduler.batches.len());
    for b in &config.scheduler.batches {
        out.push(BatchOverview {
            name: b.batch,
            enabled: b.enabled,
            schedule: b.schedule.expression.clone(),
            timezone: tz.name().to_owned(),
            next_tick: b.enabled.then(|| b.schedule.next_after(Utc::now(), tz)).flatten(),
            last_runs: batch_runs::recent(db, b.batch, runs).await?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone, Timelike, Weekday};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("date").with_timezone(&Utc)
    }

    #[test]
    fn the_seed_s_schedules_run_at_their_times_in_tokyo() {
        let tokyo = chrono_tz::Asia::Tokyo;
        // Monday 06:00 JST is Sunday 21:00 UTC.
        let monday = CronSchedule::parse("0 6 * * 1").expect("valid");
        let next = monday.next_after(at("2026-11-25T00:00:00Z"), tokyo).expect("a tick");
        let local = next.with_timezone(&tokyo);
        assert_eq!((local.weekday(), local.hour(), local.minute()), (Weekday::Mon, 6, 0));
        assert_eq!(next, at("2026-11-29T21:00:00Z"));
        let sunday = CronSchedule::parse("0 6 * * 0,7").expect("valid");
        assert_eq!(
            sunday.next_after(at("2026-11-25T00:00:00Z"), tokyo).map(|t| t.with_timezone(&tokyo).weekday()),
            Some(Weekday::Sun)
        );
        let weekdays = CronSchedule::parse("30 9 * * 1-5").expect("valid");
        let friday = tokyo.with_ymd_and_hms(2026, 11, 27, 10, 0, 0).single().expect("date").with_timezone(&Utc);
        let next = weekdays.next_after(friday, tokyo).expect("a tick").with_timezone(&tokyo);
        assert_eq!((next.weekday(), next.hour(), next.minute()), (Weekday::Mon, 9, 30));
        let monthly = CronSchedule::parse("0 8 1 * *").expect("valid");
        assert_eq!(monthly.last_until(at("2026-11-29T00:00:00Z"), tokyo), Some(at("2026-10-31T23:00:00Z")));
        // A tick exactly at `t` is the last one until `t`.
        let hourly = CronSchedule::parse("0 * * * *").expect("valid");
        assert_eq!(hourly.last_until(at("2026-11-29T05:00:00Z"), tokyo), Some(at("2026-11-29T05:00:00Z")));
        let every_second = CronSchedule::parse("* * * * * *").expect("valid");
        assert_eq!(every_second.next_after(at("2026-11-29T05:00:00Z"), tokyo), Some(at("2026-11-29T05:00:01Z")));
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        assert!(CronSchedule::parse("0 6 * *").expect_err("4 fields").contains("has 4 fields"));
        assert!(CronSchedule::parse("0 6 * * 9").expect_err("weekday").contains("day of week 9"));
        assert!(CronSchedule::parse("0 25 * * *").expect_err("hour").contains("not a cron expression"));
    }
}
