//! The recruiter's rubric: an interview's own criteria, validated on create,
//! returned with it, scored by the evaluation (and nothing else), with the
//! weighted overall score; asked for as structured output on each provider
//! kind, the request's shape checked by the fake of that provider.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};
use tests::fake_aws::{Converse, FakeAws};
use tests::fake_llm::{FakeLlm, Reply};
use tests::{ApiHandle, Client, TestEnv, is};

const WAIT: Duration = Duration::from_secs(20);
const REPLY: &str = "Thank you. How would you make a job queue survive a crash of its workers?";

/// The recruiter's rubric: two weighted criteria and one without a weight.
fn criteria() -> Value {
    json!([
        { "name": "system_design", "description": "Designs services that survive failures.", "weight": 3 },
        { "name": "Rust", "description": "Writes idiomatic, safe Rust.", "weight": 1.5 },
        { "name": "collaboration", "description": "Explains trade-offs to the team." }
    ])
}

/// A scorecard on [`criteria`].
const SCORECARD: &str = r#"{"scores":{"system_design":4,"Rust":5,"collaboration":2},"summary":"Strong design, clear Rust.","recommendation":"hire"}"#;

fn interview_body(criteria: Option<Value>) -> Value {
    let mut body = json!({
        "title": "Backend interview", "position": "Backend Engineer", "language": "en",
        "topics": ["Rust", "PostgreSQL"], "max_turns": 1, "duration_minutes": 30
    });
    if let Some(criteria) = criteria {
        body["criteria"] = criteria;
    }
    body
}

/// An interview on [`criteria`] with one answer, answered and ended; the
/// evaluation as the recruiter reads it once finished, and the
/// `evaluation.completed` event.
async fn evaluated(api: &ApiHandle) -> anyhow::Result<(Value, Value)> {
    let anon = api.client();
    let recruiter = anon.user("r@example.com", "recruiter").await?;
    let candidate = anon.user("c@example.com", "candidate").await?;
    let created = recruiter.post("/interviews", interview_body(Some(criteria()))).await?;
    anyhow::ensure!(created.status == 201, "{created:?}");
    let interview = created.body["id"].as_str().context("id")?;
    let session = candidate.start_session(interview).await?;
    let mut ws = candidate.ws(&session, None).await?;
    ws.until(WAIT, |e| is(e, "turn.completed")).await?;
    ws.answer(1, WAIT).await?;
    let event = ws.until(WAIT, |e| is(e, "evaluation.completed")).await?;
    let evaluation = recruiter.get(&format!("/sessions/{session}/evaluation")).await?.body;
    Ok((evaluation, event))
}

/// The scorecard the structured request asks for: the schema's criteria.
fn asked_criteria(schema: &Value) -> Value {
    schema["properties"]["scores"]["required"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_criteria_are_refused_naming_the_field_and_nothing_is_created() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let recruiter: Client = api.client().user("r@example.com", "recruiter").await?;
    let description = "d";
    let eleven: Vec<Value> = (0..11).map(|i| json!({ "name": format!("c{i}"), "description": description })).collect();
    let cases = [
        (json!([]), "criteria"),
        (Value::Array(eleven), "criteria"),
        (
            json!([{ "name": "design", "description": description }, { "name": "Design", "description": description }]),
            "criteria[1].name",
        ),
        (json!([{ "name": " ", "description": description }]), "criteria[0].name"),
        (json!([{ "name": "design", "description": "" }]), "criteria[0].description"),
        (json!([{ "name": "design", "description": description, "weight": 0 }]), "criteria[0].weight"),
        (json!([{ "name": "design", "description": description, "weight": "heavy" }]), "criteria[0].weight"),
        (json!([{ "name": "design" }]), "description"),
        (json!([{ "name": "design", "description": description, "wieght": 2 }]), "wieght"),
        (json!("design"), "criteria"),
    ];
    for (bad, field) in cases {
        let r = recruiter.post("/interviews", interview_body(Some(bad.clone()))).await?;
        let message = r.body["error"]["message"].as_str().unwrap_or_default();
        assert_eq!(r.status, 422, "{bad}: {r:?}");
        assert!(message.contains(field), "{bad}: the message names {field}: {message}");
    }
    let listed = recruiter.get("/interviews").await?;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(0), "nothing was created");
    // Without criteria: the four default ones; with: exactly those, trimmed.
    let default = recruiter.post("/interviews", interview_body(None)).await?;
    let names: Vec<&str> =
        default.body["criteria"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["communication", "technical_depth", "problem_solving", "engagement"]);
    // A row written without the API (a fixture, a migration's old rows) gets the same four.
    let db = env.db().await?;
    let owner: uuid::Uuid = sqlx::query_scalar("SELECT owner_id FROM interviews").fetch_one(&db).await?;
    let raw: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO interviews (id, owner_id, title, position, language, topics, max_turns, duration_minutes)
         VALUES (gen_random_uuid(), $1, 't', 'p', 'en', '[\"a\"]', 1, 30) RETURNING id",
    )
    .bind(owner)
    .fetch_one(&db)
    .await?;
    let read = recruiter.get(&format!("/interviews/{raw}")).await?;
    assert_eq!(read.body["criteria"], default.body["criteria"], "the column's default is the API's");
    let own = recruiter.post("/interviews", interview_body(Some(criteria()))).await?;
    assert_eq!(own.status, 201, "{own:?}");
    let read = recruiter.get(&format!("/interviews/{}", own.body["id"].as_str().context("id")?)).await?;
    assert_eq!(
        read.body["criteria"],
        json!([
            { "name": "system_design", "description": "Designs services that survive failures.", "weight": 3.0 },
            { "name": "Rust", "description": "Writes idiomatic, safe Rust.", "weight": 1.5 },
            { "name": "collaboration", "description": "Explains trade-offs to the team.", "weight": null }
        ])
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scripted_interviewer_scores_exactly_the_interview_s_criteria() -> anyhow::Result<()> {
    let env = TestEnv::new().await?;
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (evaluation, event) = evaluated(&api).await?;
    assert_eq!(evaluation["status"], "completed", "{evaluation}");
    let scores = evaluation["scores"].as_object().context("scores")?;
    let mut names: Vec<&str> = scores.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["Rust", "collaboration", "system_design"]);
    let score = |name: &str| scores[name].as_f64().unwrap_or(0.0);
    let weighted = (3.0 * score("system_design") + 1.5 * score("Rust") + score("collaboration")) / 5.5;
    let overall = evaluation["overall_score"].as_f64().context("overall_score")?;
    assert!((overall - (weighted * 100.0).round() / 100.0).abs() < 1e-9, "{overall} vs {weighted}");
    assert_eq!((&event["scores"], &event["overall_score"]), (&evaluation["scores"], &evaluation["overall_score"]));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openai_compatible_and_azure_are_asked_for_a_strict_json_schema() -> anyhow::Result<()> {
    for (kind, version) in [("openai_compatible", None), ("azure_openai", None), ("azure_openai", Some("2024-10-21"))] {
        let fake = FakeLlm::start(REPLY).await?;
        for reply in [REPLY, REPLY, SCORECARD] {
            fake.then(Reply::Stream(reply.into()));
        }
        let mut env = TestEnv::new().await?;
        match kind {
            "openai_compatible" => env.use_fake_llm(&fake),
            _ => env
                .set("AI_PROVIDER", "azure_openai")
                .set("AZURE_OPENAI_ENDPOINT", &fake.origin)
                .set("AZURE_OPENAI_API_KEY", "azure-key")
                .set("AZURE_OPENAI_DEPLOYMENT", "interviewer"),
        };
        if let Some(version) = version {
            env.set("AZURE_OPENAI_API_VERSION", version);
        }
        let api = env.start_api().await?;
        let _worker = env.start_worker().await?;
        let (evaluation, _) = evaluated(&api).await?;
        assert_eq!(evaluation["scores"], json!({ "system_design": 4, "Rust": 5, "collaboration": 2 }), "{kind}");
        // (3 × 4 + 1.5 × 5 + 1 × 2) / 5.5 = 3.909…
        assert_eq!(evaluation["overall_score"], json!(3.91), "{kind}");
        let received = fake.received();
        let format = &received[2].body["response_format"];
        assert_eq!(format["type"], "json_schema", "{kind} {version:?}: {format}");
        assert_eq!(format["json_schema"]["strict"], true);
        assert_eq!(asked_criteria(&format["json_schema"]["schema"]), json!(["system_design", "Rust", "collaboration"]));
        assert_eq!(received[1].body.get("response_format"), None, "a turn is plain text");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_azure_api_version_before_json_schemas_is_asked_for_a_json_object() -> anyhow::Result<()> {
    let fake = FakeLlm::start(REPLY).await?;
    for reply in [REPLY, REPLY, SCORECARD] {
        fake.then(Reply::Stream(reply.into()));
    }
    let mut env = TestEnv::new().await?;
    env.set("AI_PROVIDER", "azure_openai")
        .set("AZURE_OPENAI_ENDPOINT", &fake.origin)
        .set("AZURE_OPENAI_API_KEY", "azure-key")
        .set("AZURE_OPENAI_DEPLOYMENT", "interviewer")
        .set("AZURE_OPENAI_API_VERSION", "2024-06-01");
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (evaluation, _) = evaluated(&api).await?;
    assert_eq!(evaluation["status"], "completed", "{evaluation}");
    let received = fake.received();
    assert_eq!(received[2].body["response_format"], json!({ "type": "json_object" }));
    let system = received[2].body["messages"][0]["content"].as_str().unwrap_or_default();
    for criterion in ["system_design: Designs services that survive failures.", "Rust: Writes idiomatic, safe Rust."] {
        assert!(system.contains(criterion), "the instructions name each criterion: {system}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bedrock_is_asked_through_a_forced_tool_and_a_wrong_card_is_corrected_once() -> anyhow::Result<()> {
    const KEY_ID: &str = "AKIAFAKEBEDROCK00002";
    const SECRET: &str = "fake/Secret+Key/for/the/rubric/tests000";
    let fake = FakeAws::start("us-east-1", REPLY).await?;
    fake.accept_keys(KEY_ID, SECRET);
    let missing = SCORECARD.replace(r#""collaboration":2"#, r#""teamwork":2"#);
    for reply in [REPLY, REPLY, missing.as_str(), SCORECARD] {
        fake.then(Converse::Stream(reply.into()));
    }
    let mut env = TestEnv::new().await?;
    env.set("AI_PROVIDER", "aws_bedrock")
        .set("AWS_REGION", "us-east-1")
        .set("BEDROCK_ENDPOINT", &fake.origin)
        .set("BEDROCK_TIMEOUT", "5")
        .set("AWS_ACCESS_KEY_ID", KEY_ID)
        .set("AWS_SECRET_ACCESS_KEY", SECRET);
    let api = env.start_api().await?;
    let _worker = env.start_worker().await?;
    let (evaluation, _) = evaluated(&api).await?;
    assert_eq!(evaluation["scores"], json!({ "system_design": 4, "Rust": 5, "collaboration": 2 }), "{evaluation}");
    let received = fake.received();
    assert_eq!(received.len(), 4, "two turns, the evaluation and its one correction");
    assert!(received.iter().all(|r| r.refused.is_none()), "every request passed Converse's rules");
    let tools = &received[2].body["toolConfig"];
    assert_eq!(tools["toolChoice"], json!({ "tool": { "name": "scorecard" } }), "{tools}");
    let schema = &tools["tools"][0]["toolSpec"]["inputSchema"]["json"];
    assert_eq!(asked_criteria(schema), json!(["system_design", "Rust", "collaboration"]));
    assert_eq!(received[1].body.get("toolConfig"), None, "a turn is plain text");
    let correction = received[3].body["messages"].as_array().and_then(|m| m.last()).cloned().unwrap_or_default();
    let text = correction["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("scores.collaboration: missing"), "the reason is sent back: {text}");
    Ok(())
}
