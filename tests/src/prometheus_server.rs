//! A real Prometheus (Debian's `prometheus` package, which `scripts/test`
//! installs) scraping the test's processes every second, with the shipped
//! alert rules loaded, their `for:` shortened to a second.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

/// The running server; killed on drop.
pub struct Prometheus {
    /// `http://127.0.0.1:{port}`.
    pub url: String,
    _child: tokio::process::Child,
    _dir: TempDir,
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether the binary is installed (`scripts/test` installs it).
pub fn installed() -> bool {
    std::process::Command::new("prometheus").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// The shipped rules with every `for:` set to `1s`.
pub fn shortened_rules() -> anyhow::Result<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docker/prometheus/alerts.yml");
    let rules = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    Ok(rules
        .lines()
        .map(|l| match l.split_once("for: ") {
            Some((indent, _)) if indent.trim().is_empty() => format!("{indent}for: 1s"),
            _ => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

impl Prometheus {
    /// Starts on a free port, scraping `jobs` (job name, `host:port`
    /// targets) every second and evaluating `rules` every second.
    pub async fn start(jobs: &[(&str, Vec<String>)], rules: &str) -> anyhow::Result<Prometheus> {
        let dir = std::env::temp_dir().join(format!("aiv-prometheus-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir)?;
        let dir = TempDir(dir);
        std::fs::write(dir.0.join("alerts.yml"), rules)?;
        let mut config = format!(
            "global: {{ scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s }}\nrule_files: [\"{}\"]\nscrape_configs:\n",
            dir.0.join("alerts.yml").display()
        );
        for (job, targets) in jobs {
            let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs: [{{ targets: [{}] }}]\n",
                targets.join(", ")
            ));
        }
        std::fs::write(dir.0.join("prometheus.yml"), config)?;
        let port = crate::free_port()?;
        let child = tokio::process::Command::new("prometheus")
            .arg(format!("--config.file={}", dir.0.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.0.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting prometheus")?;
        let prometheus = Prometheus { url: format!("http://127.0.0.1:{port}"), _child: child, _dir: dir };
        crate::eventually(Duration::from_secs(30), || async {
            let ready = reqwest::get(format!("{}/-/ready", prometheus.url)).await;
            Ok(ready.ok().filter(|r| r.status() == 200).map(|_| ()))
        })
        .await
        .context("prometheus did not get ready")?;
        Ok(prometheus)
    }

    /// The instant vector of `promql`: each series' labels and value.
    pub async fn query(&self, promql: &str) -> anyhow::Result<Vec<(Value, f64)>> {
        let url = format!("{}/api/v1/query", self.url);
        let body: Value = reqwest::Client::new().get(url).query(&[("query", promql)]).send().await?.json().await?;
        anyhow::ensure!(body["status"] == "success", "{promql}: {body}");
        let result = body["data"]["result"].as_array().cloned().unwrap_or_default();
        result
            .into_iter()
            .map(|r| {
                let value = r["value"][1].as_str().context("a sample value")?.parse::<f64>()?;
                Ok((r["metric"].clone(), value))
            })
            .collect()
    }

    /// The single value of `promql`, if it has one.
    pub async fn scalar(&self, promql: &str) -> anyhow::Result<Option<f64>> {
        let result = self.query(promql).await?;
        Ok(match result.as_slice() {
            [(_, v)] => Some(*v),
            _ => None,
        })
    }

    /// Waits until `promql` is `want`.
    pub async fn until(&self, promql: &str, want: f64, limit: Duration) -> anyhow::Result<()> {
        let reached = crate::eventually(limit, || async {
            Ok(self.scalar(promql).await?.filter(|v| (v - want).abs() < 1e-9).map(|_| ()))
        })
        .await;
        if reached.is_err() {
            anyhow::bail!("{promql} is {:?}, not {want}", self.query(promql).await?);
        }
        Ok(())
    }

    /// The alerts firing now: their names.
    pub async fn firing(&self) -> anyhow::Result<Vec<String>> {
        let body: Value = reqwest::get(format!("{}/api/v1/alerts", self.url)).await?.json().await?;
        Ok(body["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["state"] == "firing")
            .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_owned))
            .collect())
    }
}
