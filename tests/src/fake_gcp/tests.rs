//! The fake checked against what Google documents, over real HTTP.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::oauth::JWT_BEARER;
use super::*;

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// The claims a correct client sends.
fn claims(fake: &FakeGcp) -> Value {
    json!({ "iss": fake.client_email(), "scope": CLOUD_PLATFORM, "aud": format!("{}/token", fake.origin),
        "iat": now(), "exp": now() + 3600 })
}

fn header() -> Value {
    json!({ "alg": "RS256", "typ": "JWT" })
}

/// Posts the JWT bearer grant form; returns status and JSON body.
async fn exchange(fake: &FakeGcp, grant_type: &str, assertion: &str) -> (u16, Value) {
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", grant_type)
        .append_pair("assertion", assertion)
        .finish();
    let response = reqwest::Client::new()
        .post(format!("{}/token", fake.origin))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("token endpoint");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn service_account_token(fake: &FakeGcp) -> String {
    let jwt = fake.sign_jwt(&header(), &claims(fake)).expect("jwt");
    let (status, body) = exchange(fake, JWT_BEARER, &jwt).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().expect("access_token").to_owned()
}

async fn chat(fake: &FakeGcp, authorization: Option<&str>, body: Value) -> reqwest::Response {
    let mut request =
        reqwest::Client::new().post(format!("{}/chat/completions", fake.vertex_endpoint("p1", "us-central1")));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.json(&body).send().await.expect("chat endpoint")
}

fn streaming(model: &str) -> Value {
    json!({ "model": model, "messages": [{ "role": "user", "content": "Hi" }], "stream": true,
        "stream_options": { "include_usage": true } })
}

/// The `data:` payloads of an event stream.
fn events(body: &str) -> Vec<String> {
    body.split("\n\n").filter_map(|e| e.strip_prefix("data: ")).map(str::to_owned).collect()
}

#[tokio::test]
async fn a_signed_jwt_buys_a_token_that_streams_a_reply_with_usage() {
    let fake = FakeGcp::start("Tell me about Rust ownership.").await.expect("fake");
    let token = service_account_token(&fake).await;
    assert!(token.starts_with("ya29.fake-sa-"));
    let issued = fake.tokens_issued();
    assert_eq!((issued.len(), issued[0].via, issued[0].lifetime), (1, Via::ServiceAccount, Duration::from_secs(3600)));

    let response = chat(&fake, Some(&format!("Bearer {token}")), streaming("google/gemini-2.0-flash-001")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = events(&response.text().await.expect("body"));
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> =
        events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).expect("json")).collect();
    let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Tell me about Rust ownership.");
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == "stop"));
    let (prompt, completion) = usage_of(&text);
    let usage = &chunks.last().expect("usage chunk")["usage"];
    assert_eq!(usage["prompt_tokens"], prompt);
    assert_eq!(usage["total_tokens"], prompt + completion);
    assert_eq!(fake.received()[0].outcome, Outcome::Accepted);
}

#[tokio::test]
async fn the_token_endpoint_refuses_what_google_refuses() {
    let fake = FakeGcp::start("x").await.expect("fake");
    let good = fake.sign_jwt(&header(), &claims(&fake)).expect("jwt");
    // One character of the signature changed (well inside it: no padding bits).
    let at = good.rfind('.').expect("signature") + 10;
    let swapped = if &good[at..=at] == "A" { "B" } else { "A" };
    let tampered = format!("{}{swapped}{}", &good[..at], &good[at + 1..]);
    let with = |patch: Value| {
        let mut c = claims(&fake);
        for (k, v) in patch.as_object().expect("object") {
            c[k] = v.clone();
        }
        fake.sign_jwt(&header(), &c).expect("jwt")
    };
    let cases = [
        (JWT_BEARER, tampered, "invalid_grant", "signature does not verify"),
        (JWT_BEARER, with(json!({ "aud": "https://oauth2.googleapis.com/token" })), "invalid_grant", "aud"),
        (JWT_BEARER, with(json!({ "iat": now() - 7200, "exp": now() - 3600 })), "invalid_grant", "now"),
        (JWT_BEARER, with(json!({ "exp": now() + 7200 })), "invalid_grant", "exp - iat = 7200"),
        (JWT_BEARER, with(json!({ "iat": "soon" })), "invalid_grant", "not a number"),
        (JWT_BEARER, with(json!({ "iss": "someone@else.iam.gserviceaccount.com" })), "invalid_grant", "iss"),
        (JWT_BEARER, with(json!({ "scope": "" })), "invalid_scope", "scope"),
        (JWT_BEARER, with(json!({ "sub": "user@example.com" })), "unauthorized_client", "sub"),
        (JWT_BEARER, fake.sign_jwt(&json!({ "alg": "HS256" }), &claims(&fake)).expect("jwt"), "invalid_grant", "alg"),
        ("client_credentials", good.clone(), "unsupported_grant_type", "grant_type"),
    ];
    for (grant_type, assertion, error, _) in &cases {
        let (status, body) = exchange(&fake, grant_type, assertion).await;
        assert_eq!((status, body["error"].as_str()), (400, Some(*error)), "{body}");
        assert!(body["error_description"].is_string());
    }
    let requests = fake.token_requests();
    assert_eq!(requests.len(), cases.len());
    for (request, (_, _, error, why)) in requests.iter().zip(&cases) {
        let Outcome::Refused { status: 400, reason } = &request.outcome else { panic!("{request:?}") };
        assert!(reason.starts_with(error) && reason.contains(why), "{reason}");
        assert!(request.token.is_none());
    }
    assert!(fake.tokens_issued().is_empty());
    // With the key's kid, and exactly an hour long, it is accepted.
    let path = write_key(&fake);
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("key file")).expect("json");
    let _ = std::fs::remove_file(&path);
    let kid = file["private_key_id"].clone();
    let jwt = fake.sign_jwt(&json!({ "alg": "RS256", "typ": "JWT", "kid": kid }), &claims(&fake)).expect("jwt");
    assert_eq!(exchange(&fake, JWT_BEARER, &jwt).await.0, 200);
}

fn write_key(fake: &FakeGcp) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("fake-gcp-key-{}.json", random_hex()));
    fake.write_service_account_key(&path).expect("key file");
    path
}

#[tokio::test]
async fn the_key_file_points_at_the_fake() {
    let fake = FakeGcp::start("x").await.expect("fake");
    let path = write_key(&fake);
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    let _ = std::fs::remove_file(&path);
    assert_eq!(file["type"], "service_account");
    assert_eq!(file["token_uri"], format!("{}/token", fake.origin));
    assert_eq!(file["client_email"], fake.client_email());
    assert_eq!(file["universe_domain"], "googleapis.com");
}

async fn metadata(fake: &FakeGcp, path: &str, flavor: bool) -> reqwest::Response {
    let mut request = reqwest::Client::new().get(format!("http://{}{path}", fake.metadata_host()));
    if flavor {
        request = request.header("Metadata-Flavor", "Google");
    }
    request.send().await.expect("metadata server")
}

const MDS_TOKEN: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

#[tokio::test]
async fn the_metadata_server_wants_its_header_and_issues_a_new_token_each_call() {
    let fake = FakeGcp::start("x").await.expect("fake");
    let refused = metadata(&fake, MDS_TOKEN, false).await;
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.headers()["metadata-flavor"], "Google");
    fake.set_token_lifetime(Duration::from_millis(2500));
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let response = metadata(&fake, MDS_TOKEN, true).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["metadata-flavor"], "Google");
        let body: Value = response.json().await.expect("json");
        assert_eq!((body["expires_in"].as_u64(), body["token_type"].as_str()), (Some(2), Some("Bearer")));
        tokens.push(body["access_token"].as_str().expect("token").to_owned());
    }
    assert_ne!(tokens[0], tokens[1]);
    assert!(tokens[0].starts_with("ya29.fake-mds-"));
    let requests = fake.token_requests();
    assert_eq!(requests.len(), 3);
    assert!(matches!(&requests[0].outcome, Outcome::Refused { status: 403, .. }));
    assert_eq!(
        metadata(&fake, "/computeMetadata/v1/project/project-id", true).await.text().await.ok().as_deref(),
        Some(PROJECT_ID)
    );
    assert_eq!(metadata(&fake, "/", false).await.status(), 200);
    assert_eq!(metadata(&fake, "/computeMetadata/v1/instance/nothing", true).await.status(), 404);
}

#[tokio::test]
async fn expired_revoked_unknown_and_missing_tokens_get_401_and_narrow_scopes_403() {
    let fake = FakeGcp::start("x").await.expect("fake");
    let body = streaming("google/gemini-2.0-flash-001");
    fake.set_token_lifetime(Duration::from_millis(300));
    let short = service_account_token(&fake).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let expired = chat(&fake, Some(&format!("Bearer {short}")), body.clone()).await;
    assert_eq!(expired.status(), 401);
    assert!(expired.headers().contains_key("www-authenticate"));
    let error: Value = expired.json().await.expect("json");
    assert_eq!(error["error"]["status"], "UNAUTHENTICATED");
    assert_eq!(error["error"]["details"][0]["reason"], "ACCESS_TOKEN_EXPIRED");
    assert!(
        error["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Request had invalid authentication credentials."))
    );

    fake.set_token_lifetime(Duration::from_secs(3600));
    let live = service_account_token(&fake).await;
    assert_eq!(chat(&fake, Some(&format!("Bearer {live}")), body.clone()).await.status(), 200);
    fake.revoke_tokens();
    assert_eq!(chat(&fake, Some(&format!("Bearer {live}")), body.clone()).await.status(), 401);
    assert_eq!(chat(&fake, Some("Bearer ya29.never-issued"), body.clone()).await.status(), 401);
    let missing: Value = chat(&fake, None, body.clone()).await.json().await.expect("json");
    assert_eq!(missing["error"]["details"][0]["reason"], "CREDENTIALS_MISSING");
    let fresh = service_account_token(&fake).await;
    assert_eq!(chat(&fake, Some(&format!("Bearer {fresh}")), body.clone()).await.status(), 200);

    let path = format!("{MDS_TOKEN}?scopes=https://www.googleapis.com/auth/devstorage.read_only");
    let narrow: Value = metadata(&fake, &path, true).await.json().await.expect("json");
    let narrow = narrow["access_token"].as_str().expect("token");
    assert_eq!(chat(&fake, Some(&format!("Bearer {narrow}")), body).await.status(), 403);
    let refused: Vec<u16> = fake
        .received()
        .iter()
        .filter_map(|r| match r.outcome {
            Outcome::Refused { status, .. } => Some(status),
            _ => None,
        })
        .collect();
    assert_eq!(refused, [401, 401, 401, 401, 403]);
}

#[tokio::test]
async fn models_and_response_formats_are_checked_and_scripted_replies_follow() {
    let fake = FakeGcp::start("{\"ok\":true}").await.expect("fake");
    let auth = format!("Bearer {}", service_account_token(&fake).await);
    assert_eq!(chat(&fake, Some(&auth), streaming("gemini-2.0-flash")).await.status(), 400);
    let other = chat(&fake, Some(&auth), streaming("openai/gpt-4o")).await;
    assert_eq!(other.status(), 404);
    assert_eq!(other.json::<Value>().await.expect("json")["error"]["status"], "NOT_FOUND");
    let mut body = streaming("google/gemini-2.0-flash");
    body["response_format"] = json!({ "type": "xml" });
    assert_eq!(chat(&fake, Some(&auth), body.clone()).await.status(), 400);
    body["response_format"] = json!({ "type": "json_schema", "json_schema": { "name": "scorecard" } });
    assert_eq!(chat(&fake, Some(&auth), body.clone()).await.status(), 400);
    body["response_format"] = json!({ "type": "json_schema", "json_schema": { "name": "scorecard", "schema": { "type": "object" }, "strict": true } });
    fake.then(VertexReply::Status { status: 429, body: "{}".into(), retry_after: Some("3".into()) });
    let limited = chat(&fake, Some(&auth), body.clone()).await;
    assert_eq!((limited.status().as_u16(), limited.headers()["retry-after"].to_str().ok()), (429, Some("3")));
    body["stream"] = json!(false);
    let plain: Value = chat(&fake, Some(&auth), body).await.json().await.expect("json");
    assert_eq!(plain["choices"][0]["message"]["content"], "{\"ok\":true}");
    assert_eq!(plain["object"], "chat.completion");
    let outcomes: Vec<Outcome> = fake.received().into_iter().map(|r| r.outcome).collect();
    assert!(matches!(
        outcomes[..4],
        [
            Outcome::Refused { status: 400, .. },
            Outcome::Refused { status: 404, .. },
            Outcome::Refused { status: 400, .. },
            Outcome::Refused { status: 400, .. }
        ]
    ));
    assert_eq!(outcomes[4..], [Outcome::Scripted { status: 429 }, Outcome::Accepted]);
}
