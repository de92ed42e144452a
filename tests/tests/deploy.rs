//! The deployment files: every Kubernetes manifest parses and its
//! cross-references hold (names, selectors, ports, probe paths, config
//! sources, secrets mounted as files), every variable it sets is one of
//! `.env.example`'s (a secret's `NAME_FILE` by its `NAME`). The monitoring
//! files have their own tests (`monitoring.rs`).

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

    // The workers scale on the turns queue's pending jobs, the fleet gauge
    // taken with max (tests/tests/prometheus_server.rs runs the query).
    let scaled = of_kind(&docs, "ScaledObject");
    anyhow::ensure!(scaled.len() == 1);
    anyhow::ensure!(
        deployment(s(scaled[0], &["spec", "scaleTargetRef", "name"]).unwrap_or("")).is_some(),
        "ScaledObject targets a Deployment"
    );
    anyhow::ensure!(s(scaled[0], &["spec", "scaleTargetRef", "name"]) == Some("ai-interviewer-worker"));
    let trigger = &scaled[0]["spec"]["triggers"][0];
    anyhow::ensure!(s(trigger, &["type"]) == Some("prometheus"));
    anyhow::ensure!(
        s(trigger, &["metadata", "query"]) == Some(r#"max(queue_jobs{queue="turns",state="pending"})"#),
        "the turns queue's pending jobs, max over the API pods"
    );
    // Every component's pods are scraped where it listens.
    for (name, port) in
        [("ai-interviewer-api", "8001"), ("ai-interviewer-worker", "9091"), ("ai-interviewer-scheduler", "9092")]
    {
        let d = deployment(name).ok_or_else(|| anyhow::anyhow!("no {name}"))?;
        let annotations = &d["spec"]["template"]["metadata"]["annotations"];
        anyhow::ensure!(s(annotations, &["prometheus.io/scrape"]) == Some("true"), "{name} is scraped");
        anyhow::ensure!(s(annotations, &["prometheus.io/port"]) == Some(port), "{name} on {port}");
    }
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
