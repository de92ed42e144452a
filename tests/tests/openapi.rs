//! The OpenAPI document (issue 13): generated from the handlers, it lists
//! every route the router has and nothing else, with the statuses each can
//! answer; Swagger UI is served from our own assets.

use std::time::Duration;

use serde_json::{Value, json};
use tests::fake_llm::FakeLlm;
use tests::openapi::documented;
use tests::{TestEnv, USER_PASSWORD, is};

const WAIT: Duration = Duration::from_secs(20);

/// The document's operations: (path, method).
fn operations(document: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            out.push((path.clone(), method.clone()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_document_lists_every_route_and_each_route_is_in_it() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let http = reqwest::Client::new();
    let document: Value = http.get(format!("http://{}/api/v1/openapi.json", api.addr)).send().await?.json().await?;
    assert!(document["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", document["openapi"]);
    let operations = operations(&document);
    assert!(operations.len() >= 30, "{operations:?}");
    // Operation ids name one operation each (clients generate methods from them).
    let mut ids: Vec<&str> =
        operations.iter().filter_map(|(p, m)| document["paths"][p][m]["operationId"].as_str()).collect();
    assert_eq!(ids.len(), operations.len(), "an operation without an id");
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), before, "operation ids repeat: {ids:?}");

    // Each documented operation reaches a handler: never the router's
    // fallback ("route not found").
    for (path, method) in &operations {
        let concrete = path
            .replace("{id}", "00000000-0000-7000-8000-000000000000")
            .replace("{queue}", "turns")
            .replace("{name}", "token_cleanup");
        let url = format!("http://{}{concrete}", api.addr);
        let r = http.request(method.to_uppercase().parse()?, &url).send().await?;
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        let fallback = status == 404 && body["error"]["message"] == "route not found";
        assert!(!fallback, "{method} {path} is documented but not routed");
    }

    // And the router has no route the document lacks: every route is
    // registered through `routes!` (which documents it), but the admin page's.
    let mut stray = Vec::new();
    for dir in ["../api/src", "../api/src/routes", "../api/src/ws", "../api/src/auth"] {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            for line in text.lines().filter(|l| l.contains(".route(") && !l.contains("admin_page::")) {
                stray.push(format!("{}: {}", path.display(), line.trim()));
            }
        }
    }
    assert!(stray.is_empty(), "routes outside the document: {stray:?}");

    // The statuses: every operation under the prefix but health's can be
    // refused by the rate limit (429) and by a dependency away (503), and
    // every error is the one error schema.
    for (path, method) in &operations {
        let responses = &document["paths"][path][method]["responses"];
        let codes: Vec<&String> = responses.as_object().into_iter().flatten().map(|(c, _)| c).collect();
        if path.contains("/health") || path == "/metrics" {
            continue;
        }
        for required in ["401", "429", "503"] {
            assert!(codes.iter().any(|c| *c == required), "{method} {path} lacks {required}: {codes:?}");
        }
        for (code, response) in responses.as_object().into_iter().flatten() {
            if code.starts_with('4') || code.starts_with('5') {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(schema, "#/components/schemas/ErrorBody", "{method} {path} {code}");
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_docs_page_and_its_assets_are_served_by_us() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let page = reqwest::get(format!("http://{}/api/v1/docs/", api.addr)).await?;
    assert_eq!(page.status(), 200);
    let html = page.text().await?;
    assert!(html.contains("swagger-ui"), "{html}");
    for asset in ["swagger-ui.css", "swagger-ui-bundle.js", "swagger-initializer.js"] {
        let r = reqwest::get(format!("http://{}/api/v1/docs/{asset}", api.addr)).await?;
        assert_eq!(r.status(), 200, "{asset}");
        let text = r.text().await?;
        if asset == "swagger-initializer.js" {
            assert!(text.contains("/api/v1/openapi.json"), "the UI loads our document: {text}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_docs_page_renders_in_chromium_without_the_network() -> anyhow::Result<()> {
    let browser_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    anyhow::ensure!(
        std::path::Path::new(&chromium).exists() && browser_dir.join("node_modules/playwright-core").exists(),
        "Chromium ({chromium}) or tests/browser/node_modules is missing: scripts/test installs both"
    );
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("docs-page.png");
    let run = tokio::process::Command::new("node")
        .arg(browser_dir.join("docs_page.mjs"))
        .arg(format!("http://{}", api.addr))
        .arg(&screenshot)
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), run).await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout} {}", String::from_utf8_lossy(&out.stderr));
    let words: Vec<&str> = stdout.split_whitespace().collect();
    let (operations, external): (usize, usize) = match words.as_slice() {
        ["operations", n, "external", m] => (n.parse()?, m.parse()?),
        _ => anyhow::bail!("unexpected output: {stdout}"),
    };
    assert!(operations >= 30, "{operations} operations rendered");
    assert_eq!(external, 0, "the page asked for something outside the API");
    assert!(screenshot.exists());
    Ok(())
}

/// What a client reads on its way through an interview is what the document
/// says it reads: each answer held to its schema, field by field.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_answers_a_client_reads_fit_their_documented_schemas() -> anyhow::Result<()> {
    let fake = FakeLlm::start("Tell me about a queue you built.").await?;
    let mut env = TestEnv::new().await?;
    env.use_fake_llm(&fake);
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let anon = api.client();
    let document = anon.get("/openapi.json").await?.body;

    documented(&document, "get", "/health/live", &anon.get("/health/live").await?)?;
    let credentials = json!({ "email": "c@example.com", "password": USER_PASSWORD });
    let registered = anon.post("/auth/register", credentials.clone()).await?;
    assert_eq!(registered.status, 201, "{registered:?}");
    documented(&document, "post", "/auth/register", &registered)?;
    let tokens = anon.post("/auth/login", credentials).await?;
    assert_eq!(tokens.status, 200, "{tokens:?}");
    documented(&document, "post", "/auth/login", &tokens)?;
    let candidate = anon.with_token(tokens.body["access_token"].as_str().unwrap_or_default());

    let interview = anon.user("r@example.com", "recruiter").await?.interview("en", 5).await?;
    let session = candidate.start_session(&interview).await?;
    let mut ws = candidate.ws(&session, None).await?;
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    let ticket = candidate.post("/ws/tickets", json!({ "session_id": session })).await?;
    assert_eq!(ticket.status, 200, "{ticket:?}");
    documented(&document, "post", "/ws/tickets", &ticket)?;
    let answer = candidate.post(&format!("/sessions/{session}/turns"), json!({ "text": "A Redis list." })).await?;
    assert_eq!(answer.status, 202, "{answer:?}");
    documented(&document, "post", "/sessions/{id}/turns", &answer)?;
    let ended = candidate.post(&format!("/sessions/{session}/end"), json!({})).await?;
    assert_eq!(ended.status, 202, "{ended:?}");
    documented(&document, "post", "/sessions/{id}/end", &ended)?;
    let read = candidate.get(&format!("/sessions/{session}")).await?;
    documented(&document, "get", "/sessions/{id}", &read)?;
    Ok(())
}
