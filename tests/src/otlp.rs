//! An OTLP/HTTP trace receiver: `POST /v1/traces` with an
//! `ExportTraceServiceRequest` in protobuf (`application/x-protobuf`),
//! decoded here from the wire format and the field numbers of
//! opentelemetry-proto's `trace/v1/trace.proto` and `common/v1/common.proto`
//! (nothing shared with the exporter's code); answers an empty
//! `ExportTraceServiceResponse`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyValue {
    /// `string_value` (1).
    Str(String),
    /// `bool_value` (2).
    Bool(bool),
    /// `int_value` (3).
    Int(i64),
    /// `double_value` (4).
    Double(f64),
    /// `array_value` (5).
    Array(Vec<AnyValue>),
    /// What this receiver does not read (kvlist, bytes).
    Other,
}

/// One span as exported.
#[derive(Debug, Clone)]
pub struct Span {
    /// The resource's `service.name`.
    pub service: String,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits, empty for a root span.
    pub parent_span_id: String,
    /// Its name.
    pub name: String,
    /// `SpanKind`: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i64,
    /// Its attributes.
    pub attributes: BTreeMap<String, AnyValue>,
    /// `Status.code`: 0 unset, 1 ok, 2 error.
    pub status_code: i64,
}

impl Span {
    /// A string attribute.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self.attributes.get(key) {
            Some(AnyValue::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// An integer attribute.
    pub fn int(&self, key: &str) -> Option<i64> {
        match self.attributes.get(key) {
            Some(AnyValue::Int(i)) => Some(*i),
            _ => None,
        }
    }
}

/// The running receiver.
#[derive(Clone)]
pub struct OtlpReceiver {
    /// `http://127.0.0.1:{port}`: an `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub endpoint: String,
    spans: Arc<Mutex<Vec<Span>>>,
    /// Requests that did not decode, with why.
    rejected: Arc<Mutex<Vec<String>>>,
}

impl OtlpReceiver {
    /// Starts on a free port.
    pub async fn start() -> anyhow::Result<OtlpReceiver> {
        Self::start_on("127.0.0.1:0").await
    }

    /// Starts on `addr`.
    pub async fn start_on(addr: &str) -> anyhow::Result<OtlpReceiver> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let local: SocketAddr = listener.local_addr()?;
        let receiver =
            OtlpReceiver { endpoint: format!("http://{local}"), spans: Arc::default(), rejected: Arc::default() };
        let app = axum::Router::new().route("/v1/traces", post(export)).with_state(receiver.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(receiver)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Requests that could not be decoded.
    pub fn rejected(&self) -> Vec<String> {
        self.rejected.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

async fn export(
    State(receiver): State<OtlpReceiver>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, Vec<u8>) {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let decoded = if content_type != "application/x-protobuf" {
        Err(format!("content-type {content_type:?}"))
    } else {
        decode_request(&body)
    };
    let mut answer = HeaderMap::new();
    answer.insert("content-type", axum::http::HeaderValue::from_static("application/x-protobuf"));
    match decoded {
        Ok(spans) => {
            if let Ok(mut all) = receiver.spans.lock() {
                all.extend(spans);
            }
            (StatusCode::OK, answer, Vec::new())
        }
        Err(why) => {
            if let Ok(mut rejected) = receiver.rejected.lock() {
                rejected.push(why);
            }
            (StatusCode::BAD_REQUEST, answer, Vec::new())
        }
    }
}

/// A protobuf field: its number and value.
enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    /// Read past (span flags).
    Fixed32,
}

/// The fields of one message, in order.
fn fields(mut buf: &[u8]) -> Result<Vec<(u64, Value<'_>)>, String> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let key = varint(&mut buf)?;
        let (number, wire) = (key >> 3, key & 7);
        let value = match wire {
            0 => Value::Varint(varint(&mut buf)?),
            1 => Value::Fixed64(u64::from_le_bytes(take(&mut buf, 8)?.try_into().map_err(|_| "fixed64")?)),
            2 => {
                let len = usize::try_from(varint(&mut buf)?).map_err(|_| "length")?;
                Value::Bytes(take(&mut buf, len)?)
            }
            5 => {
                take(&mut buf, 4)?;
                Value::Fixed32
            }
            other => return Err(format!("wire type {other} of field {number}")),
        };
        out.push((number, value));
    }
    Ok(out)
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if buf.len() < n {
        return Err(format!("{n} bytes wanted, {} left", buf.len()));
    }
    let (head, rest) = buf.split_at(n);
    *buf = rest;
    Ok(head)
}

fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *take(buf, 1)?.first().ok_or("varint")?;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint too long".into())
}

fn bytes<'a>(v: &Value<'a>) -> Result<&'a [u8], String> {
    match v {
        Value::Bytes(b) => Ok(b),
        _ => Err("a length-delimited field expected".into()),
    }
}

fn text(v: &Value<'_>) -> Result<String, String> {
    String::from_utf8(bytes(v)?.to_vec()).map_err(|e| e.to_string())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }`
fn decode_request(body: &[u8]) -> Result<Vec<Span>, String> {
    let mut spans = Vec::new();
    for (n, v) in fields(body)? {
        if n != 1 {
            continue;
        }
        // ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
        let mut service = String::new();
        let mut scopes = Vec::new();
        for (n, v) in fields(bytes(&v)?)? {
            match n {
                1 => {
                    // Resource { repeated KeyValue attributes = 1; }
                    for (n, kv) in fields(bytes(&v)?)? {
                        if n == 1
                            && let (key, AnyValue::Str(value)) = key_value(bytes(&kv)?)?
                            && key == "service.name"
                        {
                            service = value;
                        }
                    }
                }
                2 => scopes.push(bytes(&v)?),
                _ => {}
            }
        }
        for scope in scopes {
            // ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; }
            for (n, v) in fields(scope)? {
                if n == 2 {
                    spans.push(span(bytes(&v)?, &service)?);
                }
            }
        }
    }
    Ok(spans)
}

/// `Span`: trace_id 1, span_id 2, parent_span_id 4, name 5, kind 6,
/// attributes 9, status 15 (`Status { code = 3 }`).
fn span(buf: &[u8], service: &str) -> Result<Span, String> {
    let mut span = Span {
        service: service.to_owned(),
        trace_id: String::new(),
        span_id: String::new(),
        parent_span_id: String::new(),
        name: String::new(),
        kind: 0,
        attributes: BTreeMap::new(),
        status_code: 0,
    };
    for (n, v) in fields(buf)? {
        match (n, &v) {
            (1, _) => span.trace_id = hex(bytes(&v)?),
            (2, _) => span.span_id = hex(bytes(&v)?),
            (4, _) => span.parent_span_id = hex(bytes(&v)?),
            (5, _) => span.name = text(&v)?,
            (6, Value::Varint(k)) => span.kind = *k as i64,
            (9, _) => {
                let (key, value) = key_value(bytes(&v)?)?;
                span.attributes.insert(key, value);
            }
            (15, _) => {
                for (n, v) in fields(bytes(&v)?)? {
                    if let (3, Value::Varint(code)) = (n, v) {
                        span.status_code = code as i64;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(span)
}

/// `KeyValue { string key = 1; AnyValue value = 2; }`
fn key_value(buf: &[u8]) -> Result<(String, AnyValue), String> {
    let (mut key, mut value) = (String::new(), AnyValue::Other);
    for (n, v) in fields(buf)? {
        match n {
            1 => key = text(&v)?,
            2 => value = any_value(bytes(&v)?)?,
            _ => {}
        }
    }
    Ok((key, value))
}

/// `AnyValue`: string 1, bool 2, int 3, double 4, array 5 (`ArrayValue { repeated AnyValue values = 1; }`).
fn any_value(buf: &[u8]) -> Result<AnyValue, String> {
    let mut out = AnyValue::Other;
    for (n, v) in fields(buf)? {
        out = match (n, v) {
            (1, v) => AnyValue::Str(text(&v)?),
            (2, Value::Varint(b)) => AnyValue::Bool(b != 0),
            (3, Value::Varint(i)) => AnyValue::Int(i as i64),
            (4, Value::Fixed64(d)) => AnyValue::Double(f64::from_bits(d)),
            (5, v) => AnyValue::Array(
                fields(bytes(&v)?)?
                    .iter()
                    .filter(|(n, _)| *n == 1)
                    .map(|(_, v)| any_value(bytes(v)?))
                    .collect::<Result<_, _>>()?,
            ),
            _ => AnyValue::Other,
        };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hand_encoded_request_decodes() {
        // KeyValue { key: "gen_ai.usage.input_tokens", value: { int_value: 300 } }
        let mut kv = vec![0x0a, 25];
        kv.extend_from_slice(b"gen_ai.usage.input_tokens");
        kv.extend_from_slice(&[0x12, 3, 0x18, 0xac, 0x02]);
        let mut span = vec![0x0a, 16];
        span.extend_from_slice(&[0xab; 16]);
        span.extend_from_slice(&[0x12, 8]);
        span.extend_from_slice(&[0x01; 8]);
        span.extend_from_slice(&[0x2a, 4]);
        span.extend_from_slice(b"chat");
        span.extend_from_slice(&[0x30, 3, 0x4a, kv.len() as u8]);
        span.extend_from_slice(&kv);
        let scope = [&[0x12, span.len() as u8][..], &span].concat();
        let resource_spans = [&[0x12, scope.len() as u8][..], &scope].concat();
        let request = [&[0x0a, resource_spans.len() as u8][..], &resource_spans].concat();
        let spans = decode_request(&request).expect("decodes");
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].trace_id, "ab".repeat(16));
        assert_eq!(spans[0].span_id, "01".repeat(8));
        assert_eq!((spans[0].name.as_str(), spans[0].kind), ("chat", 3));
        assert_eq!(spans[0].int("gen_ai.usage.input_tokens"), Some(300));
        assert!(decode_request(&[0x0a, 5, 1]).is_err(), "truncated");
    }
}
