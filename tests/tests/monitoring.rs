//! The monitoring files: the Prometheus rules are well-formed (and pass
//! `promtool` where installed) and carry the seed's thresholds over series
//! `/metrics` exports; the Grafana dashboard is valid JSON over those series.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The string at `path` in a YAML document.
fn s<'a>(y: &'a Yaml, path: &[&str]) -> Option<&'a str> {
    path.iter().fold(y, |y, k| &y[*k]).as_str()
}

/// Every metric family the processes export (api/src/metrics.rs,
/// worker/src/metrics.rs, shared/src/metrics.rs, the scheduler's ticks),
/// for the rules and the dashboard to use.
const EXPORTED: [&str; 28] = [
    "api_request_count",
    "api_request_duration_ms",
    "websocket_active_connections",
    "websocket_message_count",
    "websocket_disconnect_count",
    "auth_login_count",
    "auth_mfa_verification_count",
    "db_connection_pool_size",
    "db_connection_pool_in_use",
    "db_connection_pool_available",
    "interview_active_sessions",
    "interview_completion_rate",
    "redis_memory_used_bytes",
    "redis_memory_max_bytes",
    "queue_jobs",
    "queue_oldest_pending_age_seconds",
    "queue_workers",
    "jobs_total",
    "job_duration_seconds",
    "batch_runs_total",
    "scheduler_ticks_total",
    "ai_request_count",
    "ai_request_duration_ms",
    "ai_error_count",
    "ai_rate_limit_count",
    "ai_token_usage_total",
    "ai_estimated_cost_usd",
    "ai_circuit_open",
];

/// The metric names an expression uses (identifiers followed by `{`, `[` or
/// `)` that are series, not functions or labels).
fn series_in(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut word = String::new();
    let mut in_braces = false;
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if !word.is_empty() && !in_braces && (word.contains('_')) && c != '(' {
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| word.strip_suffix(s).filter(|f| EXPORTED.contains(f)))
                .unwrap_or(&word);
            out.insert(family.to_owned());
        }
        word.clear();
        match c {
            '{' => in_braces = true,
            '}' => in_braces = false,
            _ => {}
        }
    }
    out.retain(|w| !["humanize", "humanizePercentage", "humanizeDuration", "histogram_quantile"].contains(&w.as_str()));
    out
}

/// The fleet's state, exported alike by every API (or worker) instance.
const FLEET_STATE: [&str; 8] = [
    "queue_jobs",
    "queue_oldest_pending_age_seconds",
    "queue_workers",
    "ai_circuit_open",
    "interview_active_sessions",
    "interview_completion_rate",
    "redis_memory_used_bytes",
    "redis_memory_max_bytes",
];

/// How `expr` may aggregate: the fleet's state with `max` (every exporter
/// has the same value: `sum` would multiply it), what a process did with
/// `sum` (`max` would keep one process's share).
fn aggregates_rightly(expr: &str) -> Result<(), String> {
    let series = series_in(expr);
    let fleet = series.iter().any(|s| FLEET_STATE.contains(&s.as_str()));
    if fleet && (expr.contains("sum(") || expr.contains("sum by")) {
        return Err(format!("the fleet's state is summed: {expr}"));
    }
    if !fleet && (expr.contains("max(") || expr.contains("max by")) {
        return Err(format!("per-process series taken with max: {expr}"));
    }
    Ok(())
}

#[test]
fn the_alert_rules_carry_the_seed_s_thresholds_over_exported_series() -> anyhow::Result<()> {
    let path = root().join("docker/prometheus/alerts.yml");
    let text = std::fs::read_to_string(&path)?;
    let doc = YamlLoader::load_from_str(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let groups = doc[0]["groups"].as_vec().ok_or_else(|| anyhow::anyhow!("no groups"))?;
    let mut names = BTreeSet::new();
    let mut rules = 0;
    for g in groups {
        anyhow::ensure!(s(g, &["name"]).is_some(), "a group without a name");
        for r in g["rules"].as_vec().into_iter().flatten() {
            rules += 1;
            let alert = s(r, &["alert"]).ok_or_else(|| anyhow::anyhow!("a rule without alert"))?;
            let expr = s(r, &["expr"]).ok_or_else(|| anyhow::anyhow!("{alert}: no expr"))?;
            anyhow::ensure!(
                ["P1", "P2", "P3", "P4"].contains(&s(r, &["labels", "severity"]).unwrap_or("")),
                "{alert}: severity"
            );
            anyhow::ensure!(s(r, &["annotations", "summary"]).is_some(), "{alert}: summary");
            if let Some(f) = s(r, &["for"]) {
                anyhow::ensure!(f.ends_with('m') || f.ends_with('s'), "{alert}: for {f}");
            }
            anyhow::ensure!(expr.matches('(').count() == expr.matches(')').count(), "{alert}: parentheses");
            for series in series_in(expr) {
                anyhow::ensure!(EXPORTED.contains(&series.as_str()), "{alert}: {series} is not exported");
            }
            aggregates_rightly(expr).map_err(|e| anyhow::anyhow!("{alert}: {e}"))?;
            names.insert(alert.to_owned());
        }
    }
    for needed in [
        "ApiLatencyP95",
        "ApiLatencyP99",
        "ApiErrorRate",
        "DbConnectionPoolUse",
        "RedisMemoryUse",
        "WebSocketConnections",
        "AiLatencyP95",
        "AiErrorRate",
        "QueueDepth",
        "QueueOldestPending",
        "DeadJobsGrowing",
    ] {
        anyhow::ensure!(names.contains(needed), "{needed} is missing");
    }
    // The seed's four levels for API p95: 1000 / 2000 / 3000 / 5000 ms.
    for threshold in ["> 1000", "> 2000", "> 3000", "> 5000"] {
        anyhow::ensure!(
            text.contains(&format!("rate(api_request_duration_ms_bucket[5m]))) {threshold}")),
            "p95 {threshold}"
        );
    }
    // promtool, where the Debian prometheus package is installed (scripts/test installs it).
    match std::process::Command::new("promtool").arg("check").arg("rules").arg(&path).output() {
        Ok(out) => anyhow::ensure!(out.status.success(), "promtool: {}", String::from_utf8_lossy(&out.stdout)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("promtool is not installed: structural checks only")
        }
        Err(e) => return Err(e.into()),
    }
    anyhow::ensure!(rules >= 30);
    Ok(())
}

#[test]
fn the_grafana_dashboard_plots_exported_series() -> anyhow::Result<()> {
    let text = std::fs::read_to_string(root().join("docker/grafana/ai-interviewer.json"))?;
    let dash: serde_json::Value = serde_json::from_str(&text)?;
    let panels = dash["panels"].as_array().ok_or_else(|| anyhow::anyhow!("no panels"))?;
    anyhow::ensure!(panels.len() >= 15);
    for p in panels {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or("");
            for series in series_in(expr) {
                anyhow::ensure!(EXPORTED.contains(&series.as_str()), "{}: {series}", p["title"]);
            }
            aggregates_rightly(expr).map_err(|e| anyhow::anyhow!("{}: {e}", p["title"]))?;
        }
    }
    Ok(())
}

#[test]
fn summing_the_fleet_s_state_or_maxing_a_process_s_counter_is_refused() {
    assert!(aggregates_rightly("sum(queue_jobs{state=\"pending\"})").is_err());
    assert!(aggregates_rightly("max by (queue) (rate(jobs_total[5m]))").is_err());
    assert!(aggregates_rightly("max by (queue) (queue_jobs{state=\"pending\"}) > 1000").is_ok());
    assert!(aggregates_rightly("sum by (queue) (rate(jobs_total[5m]))").is_ok());
}

#[test]
fn series_are_told_from_functions_labels_and_strings() {
    let found = series_in(
        r#"sum by (le) (rate(api_request_duration_ms_bucket{status=~"5.."}[5m])) / max(no_such_series) > 0.5"#,
    );
    assert_eq!(found, BTreeSet::from(["api_request_duration_ms".to_owned(), "no_such_series".to_owned()]));
}
