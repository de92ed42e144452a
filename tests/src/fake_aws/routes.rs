//! The fake's two endpoints: ConverseStream and STS.

use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use axum::body::{Body, Bytes};
use axum::extract::{Path, State as Extract};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::event_stream::{event, exception};
use super::rules::{forced_tool, validate, validate_tools};
use super::{Converse, Key, Received, State, lock, sigv4, sts, usage_of};

type Shared = Arc<Mutex<State>>;

pub(super) fn router(state: Shared) -> axum::Router {
    axum::Router::new()
        .route("/model/{model}/converse-stream", post(converse_stream))
        .route("/", post(security_token_service))
        .route("/container-credentials", get(container_credentials))
        .with_state(state)
}

async fn converse_stream(
    Extract(state): Extract<Shared>,
    Path(model): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let reply = {
        let mut state = lock(&state);
        let authorized = authenticate(&state, &uri, &headers, &body);
        let refusal = authorized.as_ref().err().cloned().or_else(|| {
            validate(&json).and_then(|()| validate_tools(&json)).err().map(|m| (400, "ValidationException", m))
        });
        let forced_tool = forced_tool(&json);
        state.received.push(Received {
            at: Instant::now(),
            model,
            path: uri.path().to_owned(),
            authorization: header("authorization"),
            security_token: header("x-amz-security-token"),
            signed_with: authorized.ok().flatten(),
            refused: refusal.as_ref().map(|(status, kind, _)| (*status, (*kind).to_owned())),
            body: json,
        });
        match refusal {
            Some((status, kind, message)) => (Converse::Error { status, kind: kind.into(), message }, None),
            None => {
                let default = Converse::Stream(state.default_text.clone());
                (state.next.pop_front().unwrap_or(default), forced_tool)
            }
        }
    };
    answer(reply.0, reply.1.as_deref())
}

/// `Ok(Some(key))` for a valid signature, `Ok(None)` for the accepted
/// bearer; else the refusal AWS would send.
fn authenticate(state: &State, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Option<String>, sigv4::Refusal> {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if let Some(token) = authorization.strip_prefix("Bearer ") {
        return match &state.bearer {
            Some(key) if key == token => Ok(None),
            _ => Err((
                403,
                "UnrecognizedClientException",
                "Invalid API Key format: Must start with pre-defined prefix".into(),
            )),
        };
    }
    let request = sigv4::Request { method: "POST", path: uri.path(), query: uri.query(), headers, body };
    let now = SystemTime::now();
    let signed =
        sigv4::verify(&request, &state.region, "bedrock", now, |id| state.keys.get(id).map(|k| k.secret.clone()))?;
    let key: &Key = state
        .keys
        .get(&signed.access_key_id)
        .ok_or_else(|| (403, "UnrecognizedClientException", "unknown key".to_owned()))?;
    if let Some(expected) = &key.session_token {
        let sent = headers.get("x-amz-security-token").and_then(|v| v.to_str().ok());
        if sent != Some(expected.as_str()) {
            return Err((
                403,
                "UnrecognizedClientException",
                "The security token included in the request is invalid.".into(),
            ));
        }
    }
    if key.expires.is_some_and(|at| at <= now) {
        return Err((403, "ExpiredTokenException", "The security token included in the request is expired".into()));
    }
    Ok(Some(signed.access_key_id))
}

fn first_half(text: &str) -> &str {
    let mut end = text.len() / 2;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` as `messageStart`, `contentBlockDelta`s of a few characters and,
/// when finished, `contentBlockStop`.
fn text_frames(text: &str, finished: bool) -> Vec<Vec<u8>> {
    let mut frames = vec![event("messageStart", &json!({ "role": "assistant" }))];
    let chars: Vec<char> = text.chars().collect();
    for piece in chars.chunks(8) {
        let delta: String = piece.iter().collect();
        frames.push(event(
            "contentBlockDelta",
            &json!({ "contentBlockIndex": 0, "delta": { "text": delta }, "p": "abcd" }),
        ));
    }
    if finished {
        frames.push(event("contentBlockStop", &json!({ "contentBlockIndex": 0 })));
    }
    frames
}

/// `input` (the tool's input, JSON text) as a `toolUse` block of the tool
/// `name`: `contentBlockStart` with the tool's id and name, `contentBlockDelta`s
/// of `toolUse.input` pieces, `contentBlockStop`.
fn tool_frames(name: &str, input: &str) -> Vec<Vec<u8>> {
    let start =
        json!({ "contentBlockIndex": 0, "start": { "toolUse": { "toolUseId": "tooluse_fake0001", "name": name } } });
    let mut frames = vec![event("messageStart", &json!({ "role": "assistant" })), event("contentBlockStart", &start)];
    let chars: Vec<char> = input.chars().collect();
    for piece in chars.chunks(8) {
        let delta: String = piece.iter().collect();
        frames.push(event(
            "contentBlockDelta",
            &json!({ "contentBlockIndex": 0, "delta": { "toolUse": { "input": delta } }, "p": "abcd" }),
        ));
    }
    frames.push(event("contentBlockStop", &json!({ "contentBlockIndex": 0 })));
    frames
}

fn ending(text: &str, reason: &str) -> Vec<Vec<u8>> {
    let (input, output) = usage_of(text);
    vec![
        event("messageStop", &json!({ "stopReason": reason })),
        event(
            "metadata",
            &json!({ "usage": { "inputTokens": input, "outputTokens": output, "totalTokens": input + output }, "metrics": { "latencyMs": 12 } }),
        ),
    ]
}

/// The frames of `reply`; with a forced tool, the reply is its input.
fn answer(reply: Converse, tool: Option<&str>) -> Response {
    let frames = match reply {
        Converse::Stream(text) => match tool {
            Some(name) => [tool_frames(name, &text), ending(&text, "tool_use")].concat(),
            None => [text_frames(&text, true), ending(&text, "end_turn")].concat(),
        },
        Converse::Stopped { text, reason } => [text_frames(&text, true), ending(&text, &reason)].concat(),
        Converse::Exception { text, kind } => {
            let mut frames = text_frames(first_half(&text), false);
            frames.push(exception(&kind, &format!("{kind} from the fake")));
            frames
        }
        Converse::CutBeforeStop(text) => text_frames(first_half(&text), false),
        Converse::CutMidFrame(text) => {
            let mut frames = text_frames(first_half(&text), false);
            let next = event("contentBlockDelta", &json!({ "contentBlockIndex": 0, "delta": { "text": "lost" } }));
            frames.push(next[..next.len() / 2].to_vec());
            frames
        }
        Converse::BadCrc(text) => {
            let mut frames = text_frames(first_half(&text), false);
            let mut bad =
                event("contentBlockDelta", &json!({ "contentBlockIndex": 0, "delta": { "text": "garbled" } }));
            let last = bad.len() - 1;
            bad[last] ^= 0xFF;
            frames.push(bad);
            frames
        }
        Converse::Error { status, kind, message } => return error(status, &kind, &message),
    };
    // Each frame in two chunks: the client must reassemble frames across reads.
    let chunks: Vec<Result<Bytes, std::io::Error>> = frames
        .into_iter()
        .flat_map(|f| {
            let (a, b) = f.split_at(f.len() / 2);
            [Ok(Bytes::copy_from_slice(a)), Ok(Bytes::copy_from_slice(b))]
        })
        .collect();
    Response::builder()
        .header("content-type", "application/vnd.amazon.eventstream")
        .header("x-amzn-requestid", "fake-bedrock-request")
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// A JSON error as Bedrock's REST API sends it.
fn error(status: u16, kind: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-amzn-errortype", format!("{kind}:http://internal.amazon.com/coral/com.amazon.coral.service/"))
        .header("x-amzn-requestid", "fake-bedrock-request")
        .body(Body::from(json!({ "message": message }).to_string()))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn security_token_service(Extract(state): Extract<Shared>, body: String) -> Response {
    let fields = sts::form(&body);
    let mut state = lock(&state);
    let serial = state.issued.len() as u64 + 1;
    let xml = |status: u16, body: String| {
        Response::builder()
            .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .header("content-type", "text/xml")
            .body(Body::from(body))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    };
    match sts::assume(state.role.as_ref(), &fields, serial) {
        Ok(issued) => {
            let Some(role) = state.role.clone() else { return xml(500, String::new()) };
            let body = sts::response(&issued, &role);
            remember(&mut state, &issued);
            xml(200, body)
        }
        Err((status, body)) => xml(status, body),
    }
}

/// The container endpoint as ECS documents it: the `Authorization` header
/// it was given, answered with the task role's credentials in JSON.
async fn container_credentials(Extract(state): Extract<Shared>, headers: HeaderMap) -> Response {
    let mut state = lock(&state);
    let Some((token, lifetime)) = state.container.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(token.as_str()) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({ "message": "invalid authorization token" })))
            .into_response();
    }
    let serial = state.issued.len() as u64 + 1;
    let issued = sts::Issued {
        access_key_id: format!("ASIACONTAINER{serial:07}"),
        secret_access_key: format!("fake-container-secret-{serial}"),
        session_token: format!("IQoJcontainer{serial}"),
        expires: SystemTime::now() + lifetime,
    };
    remember(&mut state, &issued);
    let expiration = chrono::DateTime::<chrono::Utc>::from(issued.expires).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    axum::Json(json!({
        "AccessKeyId": issued.access_key_id, "SecretAccessKey": issued.secret_access_key,
        "Token": issued.session_token, "Expiration": expiration,
        "RoleArn": "arn:aws:iam::123456789012:role/ai-interviewer-worker"
    }))
    .into_response()
}

/// Credentials issued are accepted by ConverseStream until they expire.
fn remember(state: &mut State, issued: &sts::Issued) {
    state.issued.push((Instant::now(), issued.access_key_id.clone()));
    let key = Key {
        secret: issued.secret_access_key.clone(),
        session_token: Some(issued.session_token.clone()),
        expires: Some(issued.expires),
    };
    state.keys.insert(issued.access_key_id.clone(), key);
}
