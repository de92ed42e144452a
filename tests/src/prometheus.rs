//! A strict reader of the Prometheus text exposition format (0.0.4), for
//! checking `/metrics`: every line is a comment, blank, or
//! `name{label="value",...} number`, and every sample's family was declared
//! with `# TYPE`.

use std::collections::{BTreeMap, HashSet};

/// One sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (with `_bucket`, `_sum`, `_count` for histograms).
    pub name: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses `text`; the error names the line that is wrong.
pub fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut typed: HashSet<String> = HashSet::new();
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if line.trim().is_empty() || line.starts_with("# HELP ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("line {n}: bad TYPE: {line}"));
            };
            if !valid_name(name) || !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(format!("line {n}: bad TYPE: {line}"));
            }
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with('#') {
            return Err(format!("line {n}: unknown comment: {line}"));
        }
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| format!("line {n}: no value: {line}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| format!("line {n}: bad value {v:?}"))?,
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').ok_or_else(|| format!("line {n}: unclosed labels: {line}"))?;
                (name, labels(body).map_err(|e| format!("line {n}: {e}: {line}"))?)
            }
        };
        if !valid_name(name) {
            return Err(format!("line {n}: bad metric name {name:?}"));
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        if !typed.contains(family) {
            return Err(format!("line {n}: {name} has no # TYPE"));
        }
        samples.push(Sample { name: name.to_owned(), labels, value });
    }
    Ok(samples)
}

fn labels(body: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").ok_or("label without =\"")?;
        if !valid_name(key) {
            return Err(format!("bad label name {key:?}"));
        }
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("dangling escape".into()),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        out.insert(key.to_owned(), value);
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    Ok(out)
}

/// The value of the sample `name` whose labels include `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).is_some_and(|x| x == v)))
        .map(|s| s.value)
}

/// The seed's names (operations manual 3.1) that Prometheus's naming lint
/// flags: counters without `_total`, durations in `_ms`. They stay as the
/// seed has them; every other family must pass the lint.
const SEED_NAMES: [&str; 11] = [
    "api_request_count",
    "api_request_duration_ms",
    "ai_request_count",
    "ai_request_duration_ms",
    "ai_error_count",
    "ai_rate_limit_count",
    "ai_estimated_cost_usd",
    "auth_login_count",
    "auth_mfa_verification_count",
    "websocket_message_count",
    "websocket_disconnect_count",
];

/// `promtool check metrics` over `text`: `Ok(true)` when it parses and its
/// only lint findings are the seed's names, `Ok(false)` when promtool is
/// not installed, `Err` naming what promtool found otherwise.
pub fn promtool_check(text: &str) -> Result<bool, String> {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("promtool: {e}")),
    };
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).map_err(|e| format!("promtool stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("promtool: {e}"))?;
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Exit 1: it could not parse; 3: lint findings only.
    match out.status.code() {
        Some(0) => return Ok(true),
        Some(3) => {}
        _ => return Err(format!("promtool could not parse the exposition ({}): {said}", out.status)),
    }
    let unexpected: Vec<&str> = said
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| {
            let family = l.split_whitespace().next().unwrap_or("");
            let seed_lint = l.ends_with("counter metrics should have \"_total\" suffix")
                || l.ends_with("non-histogram and non-summary metrics should not have \"_count\" suffix")
                || l.ends_with("metric names should not contain abbreviated units");
            !(SEED_NAMES.contains(&family) && seed_lint)
        })
        .collect();
    if unexpected.is_empty() { Ok(true) } else { Err(format!("promtool: {}", unexpected.join("\n"))) }
}

/// `GET url` (with `token` as the bearer token), parsed strictly.
pub async fn scrape(url: &str, token: Option<&str>) -> anyhow::Result<(String, Vec<Sample>)> {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    anyhow::ensure!(response.status() == 200, "{url}: {}", response.status());
    let text = response.text().await?;
    let samples = parse(&text).map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    Ok((text, samples))
}
