//! `backup_verification`: the newest file in `BACKUP_DIR` matching
//! `BACKUP_PATTERN` is present, younger than `BACKUP_MAX_AGE_HOURS`,
//! non-empty, and readable by `pg_restore --list` (a custom-format dump's
//! table of contents); otherwise a P2 alert.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use shared::alerts::{Alert, Severity};

use super::{BatchError, Context};

/// How long `pg_restore --list` may take.
const RESTORE_LIST_TIMEOUT: Duration = Duration::from_secs(300);

/// A verified backup.
struct Verified {
    file: PathBuf,
    size: u64,
    age: Duration,
    entries: usize,
}

/// Checks the newest backup; a problem is alerted and reported in the counts.
pub async fn verify(ctx: &Context, now: DateTime<Utc>) -> Result<Value, BatchError> {
    let settings = &ctx.config.batches;
    match check(settings.backup_dir.as_deref(), &settings.backup_pattern, settings.backup_max_age, now).await {
        Ok(v) => Ok(json!({
            "healthy": true,
            "file": v.file.display().to_string(),
            "size_bytes": v.size,
            "age_hours": (v.age.as_secs_f64() / 3600.0 * 10.0).round() / 10.0,
            "toc_entries": v.entries,
        })),
        Err(problem) => {
            let alert = Alert {
                severity: Severity::P2,
                title: "Backup verification failed".into(),
                service: "Scheduler: backup_verification".into(),
                status: "No usable backup".into(),
                error: problem.clone(),
                action: "Check the backup job and BACKUP_DIR; take a fresh pg_dump -Fc and verify it with pg_restore --list."
                    .into(),
                condition: "backup_verification".into(),
            };
            let sent = super::alert(ctx, alert).await;
            Ok(json!({ "healthy": false, "problem": problem, "alert": sent }))
        }
    }
}

async fn check(dir: Option<&Path>, pattern: &str, max_age: Duration, now: DateTime<Utc>) -> Result<Verified, String> {
    let dir = dir.ok_or("BACKUP_DIR is not set")?;
    let mut entries = tokio::fs::read_dir(dir).await.map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut newest: Option<(SystemTime, PathBuf, u64)> = None;
    while let Some(entry) = entries.next_entry().await.map_err(|e| format!("{}: {e}", dir.display()))? {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(meta) = entry.metadata().await else { continue };
        if !meta.is_file() || !matches_pattern(pattern, &name) {
            continue;
        }
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        if newest.as_ref().is_none_or(|(t, ..)| modified > *t) {
            newest = Some((modified, entry.path(), meta.len()));
        }
    }
    let (modified, file, size) = newest.ok_or_else(|| format!("no file matching {pattern:?} in {}", dir.display()))?;
    let age = SystemTime::from(now).duration_since(modified).unwrap_or(Duration::ZERO);
    if size == 0 {
        return Err(format!("{} is empty", file.display()));
    }
    if age > max_age {
        return Err(format!(
            "the newest backup, {}, is {:.1} hours old (limit {} hours)",
            file.display(),
            age.as_secs_f64() / 3600.0,
            max_age.as_secs() / 3600
        ));
    }
    let output = tokio::time::timeout(
        RESTORE_LIST_TIMEOUT,
        tokio::process::Command::new("pg_restore").arg("--list").arg(&file).kill_on_drop(true).output(),
    )
    .await
    .map_err(|_| format!("pg_restore --list {} took over {} s", file.display(), RESTORE_LIST_TIMEOUT.as_secs()))?
    .map_err(|e| format!("pg_restore could not be run: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = stderr.lines().next().unwrap_or("no message").trim().to_owned();
        return Err(format!("pg_restore cannot read {}: {reason}", file.display()));
    }
    let entries =
        String::from_utf8_lossy(&output.stdout).lines().filter(|l| !l.trim().is_empty() && !l.starts_with(';')).count();
    Ok(Verified { file, size, age, entries })
}

/// A shell-style wildcard: `*` any run of characters, `?` one.
pub fn matches_pattern(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches_pattern;

    #[test]
    fn wildcards_match_as_in_a_shell() {
        assert!(matches_pattern("*.dump", "ai_interviewer_2026-11-29.dump"));
        assert!(matches_pattern("ai_*_2026-??-??.dump", "ai_interviewer_2026-11-29.dump"));
        assert!(!matches_pattern("*.dump", "notes.txt"));
        assert!(!matches_pattern("*.dump", "x.dump.tmp"));
        assert!(matches_pattern("*", ""));
        assert!(!matches_pattern("?", ""));
    }
}
