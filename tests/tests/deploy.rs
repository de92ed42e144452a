//! The deployment files: every Kubernetes manifest parses and its
//! cross-references hold (names, selectors, ports, probe paths, config
//! sources, secrets mounted as files), every variable it sets is one of
//! `.env.example`'s (a secret's `NAME_FILE` by its `NAME`); the
//! Prometheus rules are well-formed (and pass `promtool` where installed);
//! the Grafana dashboard is valid JSON over series `/metrics` exports.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn env_example_names() -> anyhow::Result<BTreeSet<String>> {
    let text = std::fs::read_to_string(root().join(".env.example"))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let l = l.trim_start_matches("# ").trim();
            let name = l.split(['=', ' ']).next()?;
            (!name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                .then(|| name.to_owned())
        })
        .collect())
}

/// Every document of every manifest, with the file it came from.
fn manifests() -> anyhow::Result<Vec<(String, Yaml)>> {
    let mut docs = Vec::new();
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(root().join("docker/k8s"))?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    files.sort();
    for file in files {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        anyhow::ensure!(name.ends_with(".yaml"), "{name}: manifests end in .yaml");
        let text = std::fs::read_to_string(&file)?;
        for doc in YamlLoader::load_from_str(&text).map_err(|e| anyhow::anyhow!("{name}: {e}"))? {
            if !doc.is_null() {
                docs.push((name.clone(), doc));
            }
        }
    }
    Ok(docs)
}

fn s<'a>(y: &'a Yaml, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(y, |y, k| Some(&y[*k])).and_then(Yaml::as_str)
}

fn labels(y: &Yaml) -> HashMap<String, String> {
    y.as_hash()
        .map(|h| h.iter().filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default()
}

fn of_kind<'a>(docs: &'a [(String, Yaml)], kind: &str) -> Vec<&'a Yaml> {
    docs.iter().filter(|(_, d)| s(d, &["kind"]) == Some(kind)).map(|(_, d)| d).collect()
}

/// Whether `.env.example` documents `var`: itself, or for a secret's
/// `NAME_FILE` (the file holding it), its `NAME`.
fn documented(env_names: &BTreeSet<String>, var: &str) -> bool {
    env_names.contains(var)
        || var
            .strip_suffix("_FILE")
            .is_some_and(|name| shared::config::SECRETS.contains(&name) && env_names.contains(name))
}

/// The keys of the Secret named `name`.
fn secret_keys<'a>(docs: &'a [(String, Yaml)], name: &str) -> BTreeSet<&'a str> {
    of_kind(docs, "Secret")
        .into_iter()
        .filter(|d| s(d, &["metadata", "name"]) == Some(name))
        .flat_map(|d| {
            let data = if d["data"].is_badvalue() { &d["stringData"] } else { &d["data"] };
            data.as_hash().into_iter().flatten().filter_map(|(k, _)| k.as_str())
        })
        .collect()
}

#[test]
fn the_kubernetes_manifests_hold_together() -> anyhow::Result<()> {
    let docs = manifests()?;
    let env_names = env_example_names()?;
    for (file, d) in &docs {
        for key in ["apiVersion", "kind"] {
            anyhow::ensure!(s(d, &[key]).is_some(), "{file}: a document without {key}");
        }
        let name = s(d, &["metadata", "name"]);
        anyhow::ensure!(name.is_some(), "{file}: a {} without a name", s(d, &["kind"]).unwrap_or("?"));
        if s(d, &["kind"]) != Some("Namespace") {
            anyhow::ensure!(s(d, &["metadata", "namespace"]) == Some("ai-interviewer"), "{file}: {name:?} namespace");
        }
    }
    let deployments = of_kind(&docs, "Deployment");
    let deployment = |name: &str| deployments.iter().copied().find(|d| s(d, &["metadata", "name"]) == Some(name));
    let config_maps: BTreeSet<&str> =
        of_kind(&docs, "ConfigMap").iter().filter_map(|d| s(d, &["metadata", "name"])).collect();
    let secrets: BTreeSet<&str> = of_kind(&docs, "Secret").iter().filter_map(|d| s(d, &["metadata", "name"])).collect();
    let claims: BTreeSet<&str> =
        of_kind(&docs, "PersistentVolumeClaim").iter().filter_map(|d| s(d, &["metadata", "name"])).collect();

    // Every variable set is one .env.example documents.
    for cm in of_kind(&docs, "ConfigMap").into_iter().chain(of_kind(&docs, "Secret")) {
        let data = if cm["data"].is_badvalue() { &cm["stringData"] } else { &cm["data"] };
        for key in data.as_hash().into_iter().flatten().filter_map(|(k, _)| k.as_str()) {
            anyhow::ensure!(env_names.contains(key), "{key} is not in .env.example");
        }
    }

    // Workloads: selectors match templates, config sources and volumes exist, images are the Dockerfile's targets.
    let pod_templates: Vec<(&str, &Yaml)> = deployments
        .iter()
        .map(|d| (s(d, &["metadata", "name"]).unwrap_or(""), &d["spec"]["template"]))
        .chain(
            of_kind(&docs, "Job").iter().map(|j| (s(j, &["metadata", "name"]).unwrap_or(""), &j["spec"]["template"])),
        )
        .collect();
    for d in &deployments {
        let name = s(d, &["metadata", "name"]).unwrap_or("");
        let selector = labels(&d["spec"]["selector"]["matchLabels"]);
        let template = labels(&d["spec"]["template"]["metadata"]["labels"]);
        anyhow::ensure!(
            !selector.is_empty() && selector.iter().all(|(k, v)| template.get(k) == Some(v)),
            "{name}: selector ≠ template labels"
        );
    }
    for (name, t) in &pod_templates {
        for c in t["spec"]["containers"].as_vec().into_iter().flatten() {
            let image = s(c, &["image"]).unwrap_or("");
            anyhow::ensure!(
                ["ai-interviewer/api:", "ai-interviewer/worker:", "ai-interviewer/scheduler:"]
                    .iter()
                    .any(|p| image.starts_with(p)),
                "{name}: image {image:?} is not one the Dockerfile builds"
            );
            for source in c["envFrom"].as_vec().into_iter().flatten() {
                if let Some(cm) = s(source, &["configMapRef", "name"]) {
                    anyhow::ensure!(config_maps.contains(cm), "{name}: no ConfigMap {cm}");
                }
                // Secrets are files, not environment variables.
                anyhow::ensure!(source["secretRef"].is_badvalue(), "{name}: a Secret as environment variables");
            }
            for e in c["env"].as_vec().into_iter().flatten() {
                let var = s(e, &["name"]).unwrap_or("");
                anyhow::ensure!(documented(&env_names, var), "{name}: {var} is not in .env.example");
                anyhow::ensure!(
                    e["valueFrom"]["secretKeyRef"].is_badvalue(),
                    "{name}: {var} from a Secret as an environment variable"
                );
                // A secret's NAME_FILE points at a key of a Secret mounted in this container.
                let Some(secret_var) = var.strip_suffix("_FILE").filter(|v| shared::config::SECRETS.contains(v)) else {
                    continue;
                };
                let path = s(e, &["value"]).unwrap_or("");
                let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
                let mount = c["volumeMounts"]
                    .as_vec()
                    .into_iter()
                    .flatten()
                    .find(|m| s(m, &["mountPath"]).map(|p| p.trim_end_matches('/')) == Some(dir))
                    .ok_or_else(|| anyhow::anyhow!("{name}: {var}={path} is on no volume mount"))?;
                let volume_name = s(mount, &["name"]).unwrap_or("");
                let volume = t["spec"]["volumes"]
                    .as_vec()
                    .into_iter()
                    .flatten()
                    .find(|v| s(v, &["name"]) == Some(volume_name))
                    .ok_or_else(|| anyhow::anyhow!("{name}: no volume {volume_name}"))?;
                let secret = s(volume, &["secret", "secretName"])
                    .ok_or_else(|| anyhow::anyhow!("{name}: {var} is not on a secret volume"))?;
                anyhow::ensure!(secrets.contains(secret), "{name}: no Secret {secret}");
                let key = match volume["secret"]["items"].as_vec() {
                    Some(items) => items
                        .iter()
                        .find(|i| s(i, &["path"]) == Some(file))
                        .and_then(|i| s(i, &["key"]))
                        .ok_or_else(|| anyhow::anyhow!("{name}: {path} is not an item of {volume_name}"))?,
                    None => file,
                };
                anyhow::ensure!(secret_keys(&docs, secret).contains(key), "{name}: Secret {secret} has no key {key}");
                anyhow::ensure!(key == secret_var, "{name}: {var} reads the Secret's {key}");
            }
            // Probes point at a declared port and the health endpoints.
            let ports: Vec<(Option<&str>, i64)> = c["ports"]
                .as_vec()
                .into_iter()
                .flatten()
                .map(|p| (s(p, &["name"]), p["containerPort"].as_i64().unwrap_or(0)))
                .collect();
            for (probe, path) in [("livenessProbe", "/api/v1/health/live"), ("readinessProbe", "/api/v1/health/ready")]
            {
                if c[probe].is_badvalue() {
                    continue;
                }
                anyhow::ensure!(s(&c[probe], &["httpGet", "path"]) == Some(path), "{name}: {probe} path");
                let port = &c[probe]["httpGet"]["port"];
                let known = ports
                    .iter()
                    .any(|(n, p)| port.as_str().is_some_and(|x| Some(x) == *n) || port.as_i64() == Some(*p));
                anyhow::ensure!(known, "{name}: {probe} port {port:?} is not a container port");
            }
        }
        for v in t["spec"]["volumes"].as_vec().into_iter().flatten() {
            if let Some(claim) = s(v, &["persistentVolumeClaim", "claimName"]) {
                anyhow::ensure!(claims.contains(claim), "{name}: no PersistentVolumeClaim {claim}");
            }
        }
    }

    // The API: probes, its port 8001 (API_PORT), a Service onto it, the seed's HPA.
    let api = deployment("ai-interviewer-api").ok_or_else(|| anyhow::anyhow!("no api Deployment"))?;
    let api_container = &api["spec"]["template"]["spec"]["containers"][0];
    anyhow::ensure!(api_container["ports"][0]["containerPort"].as_i64() == Some(8001), "api listens on API_PORT 8001");
    anyhow::ensure!(!api_container["livenessProbe"].is_badvalue() && !api_container["readinessProbe"].is_badvalue());
    let api_labels = labels(&api["spec"]["template"]["metadata"]["labels"]);
    for svc in of_kind(&docs, "Service") {
        let selector = labels(&svc["spec"]["selector"]);
        let target = deployments
            .iter()
            .find(|d| {
                let l = labels(&d["spec"]["template"]["metadata"]["labels"]);
                !selector.is_empty() && selector.iter().all(|(k, v)| l.get(k) == Some(v))
            })
            .ok_or_else(|| anyhow::anyhow!("Service {:?} selects no Deployment", s(svc, &["metadata", "name"])))?;
        let names: Vec<&str> = target["spec"]["template"]["spec"]["containers"][0]["ports"]
            .as_vec()
            .into_iter()
            .flatten()
            .filter_map(|p| s(p, &["name"]))
            .collect();
        for p in svc["spec"]["ports"].as_vec().into_iter().flatten() {
            let t = s(p, &["targetPort"]).unwrap_or("");
            anyhow::ensure!(names.contains(&t), "Service targetPort {t} is not a named container port");
        }
    }
    let hpa = of_kind(&docs, "HorizontalPodAutoscaler");
    anyhow::ensure!(hpa.len() == 1, "one HPA (the api's)");
    let hpa = hpa[0];
    anyhow::ensure!(s(hpa, &["spec", "scaleTargetRef", "name"]) == Some("ai-interviewer-api"));
    anyhow::ensure!((hpa["spec"]["minReplicas"].as_i64(), hpa["spec"]["maxReplicas"].as_i64()) == (Some(3), Some(10)));
    let cpu =
        hpa["spec"]["metrics"].as_vec().into_iter().flatten().find(|m| s(m, &["resource", "name"]) == Some("cpu"));
    anyhow::ensure!(
        cpu.is_some_and(|m| m["resource"]["target"]["averageUtilization"].as_i64() == Some(70)),
        "CPU 70 % as in the seed"
    );

    // The workers call Bedrock with their IRSA role: a ServiceAccount of
    // theirs, annotated with it.
    let worker = deployment("ai-interviewer-worker").ok_or_else(|| anyhow::anyhow!("no worker Deployment"))?;
    let account = s(worker, &["spec", "template", "spec", "serviceAccountName"]).unwrap_or("");
    let accounts = of_kind(&docs, "ServiceAccount");
    let account = accounts
        .iter()
        .find(|a| s(a, &["metadata", "name"]) == Some(account))
        .ok_or_else(|| anyhow::anyhow!("the worker's ServiceAccount {account:?} is not declared"))?;
    let role = s(account, &["metadata", "annotations", "eks.amazonaws.com/role-arn"]).unwrap_or("");
    anyhow::ensure!(role.starts_with("arn:aws:iam::") && role.contains(":role/"), "IRSA role annotation: {role:?}");

    // The workers scale on the turns pending list; the scheduler runs twice.
    let scaled = of_kind(&docs, "ScaledObject");
    anyhow::ensure!(scaled.len() == 1);
    anyhow::ensure!(
        deployment(s(scaled[0], &["spec", "scaleTargetRef", "name"]).unwrap_or("")).is_some(),
        "ScaledObject targets a Deployment"
    );
    anyhow::ensure!(s(scaled[0], &["spec", "scaleTargetRef", "name"]) == Some("ai-interviewer-worker"));
    let trigger = &scaled[0]["spec"]["triggers"][0];
    anyhow::ensure!(s(trigger, &["type"]) == Some("redis"));
    anyhow::ensure!(
        s(trigger, &["metadata", "listName"]) == Some("aiv-turns:active"),
        "the turns pending list under REDIS_KEY_PREFIX aiv"
    );
    // Its Redis password from the Secret through a TriggerAuthentication
    // (the worker's is a file, which KEDA cannot read).
    let auth = s(trigger, &["authenticationRef", "name"]).unwrap_or("");
    let auth = of_kind(&docs, "TriggerAuthentication")
        .into_iter()
        .find(|a| s(a, &["metadata", "name"]) == Some(auth))
        .ok_or_else(|| anyhow::anyhow!("no TriggerAuthentication {auth:?} for the ScaledObject"))?;
    for target in auth["spec"]["secretTargetRef"].as_vec().into_iter().flatten() {
        let (secret, key) = (s(target, &["name"]).unwrap_or(""), s(target, &["key"]).unwrap_or(""));
        anyhow::ensure!(secret_keys(&docs, secret).contains(key), "TriggerAuthentication: no key {key} in {secret:?}");
    }
    anyhow::ensure!(
        auth["spec"]["secretTargetRef"]
            .as_vec()
            .into_iter()
            .flatten()
            .any(|t| s(t, &["parameter"]) == Some("password")),
        "the Redis password"
    );
    let scheduler = deployment("ai-interviewer-scheduler").ok_or_else(|| anyhow::anyhow!("no scheduler"))?;
    anyhow::ensure!(scheduler["spec"]["replicas"].as_i64() == Some(2));
    let worker = deployment("ai-interviewer-worker").ok_or_else(|| anyhow::anyhow!("no worker"))?;
    anyhow::ensure!(
        worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_i64() > Some(30),
        "longer than WORKER_SHUTDOWN_TIMEOUT_SECONDS"
    );

    // Disruption budgets cover the workloads.
    for pdb in of_kind(&docs, "PodDisruptionBudget") {
        let selector = labels(&pdb["spec"]["selector"]["matchLabels"]);
        anyhow::ensure!(
            deployments.iter().any(|d| {
                let l = labels(&d["spec"]["template"]["metadata"]["labels"]);
                selector.iter().all(|(k, v)| l.get(k) == Some(v))
            }),
            "PDB {:?} selects nothing",
            s(pdb, &["metadata", "name"])
        );
    }
    anyhow::ensure!(labels(&of_kind(&docs, "PodDisruptionBudget")[0]["spec"]["selector"]["matchLabels"]) == api_labels);
    Ok(())
}

#[test]
fn every_secret_is_documented_with_its_file_form() -> anyhow::Result<()> {
    let env_names = env_example_names()?;
    let text = std::fs::read_to_string(root().join(".env.example"))?;
    let note = text.split("\n\n").find(|p| p.contains("NAME_FILE")).unwrap_or_default();
    for secret in shared::config::SECRETS {
        anyhow::ensure!(env_names.contains(*secret), "{secret} is not in .env.example");
        anyhow::ensure!(note.contains(secret), "{secret} is not in .env.example's list of secrets");
    }
    Ok(())
}

/// Every metric family `/metrics` exports (api/src/metrics.rs,
/// api/src/routes/metrics.rs), for the rules and the dashboard to use.
const EXPORTED: [&str; 27] = [
    "api_request_count",
    "api_request_duration_ms",
    "websocket_active_connections",
    "websocket_message_count",
    "websocket_disconnect_count",
    "auth_login_count",
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
    "job_count",
    "job_retries_total",
    "job_duration_ms",
    "batch_runs_total",
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
        }
    }
    Ok(())
}

#[test]
fn series_are_told_from_functions_labels_and_strings() {
    let found = series_in(
        r#"sum by (le) (rate(api_request_duration_ms_bucket{status=~"5.."}[5m])) / max(no_such_series) > 0.5"#,
    );
    assert_eq!(found, BTreeSet::from(["api_request_duration_ms".to_owned(), "no_such_series".to_owned()]));
}
