//! The session WebSocket of SPEC §5.
//!
//! A socket follows its session on the relay first, then replays stored
//! events after the client's `after_seq` from PostgreSQL, then forwards live
//! events. It never sends a stream event whose `seq` it already sent, so the
//! overlap between replay and live delivery (and a job delivered twice)
//! reaches the client once.

use std::sync::atomic::Ordering;

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shared::domain::Role;
use shared::events::{Event, EventKind};
use shared::flow::FlowError;
use shared::ids::SessionId;
use tokio::sync::broadcast::error::RecvError;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::extract::{Path, Query};
use crate::openapi::{BadRequest, Forbidden, NotFound, RateLimited, Unauthorized, Unavailable};
use crate::relay::Relayed;
use crate::routes::RequestId;
use crate::routes::sessions::{answer_text, idempotency_key, visible_session};
use crate::state::AppState;

mod catch_up;
mod slots;
mod tickets;
use slots::{claim_connection_slot, refresh_connection_slot, release_connection_slot};
use tickets::{authenticate, check_origin, login_ended};

/// Close code of a socket whose login was ended (logout, password change,
/// account disabled): log in again. 4401 mirrors HTTP's 401.
pub const REVOKED: u16 = 4401;

/// The routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(connect)).routes(routes!(tickets::ticket))
}

#[derive(Deserialize)]
struct ConnectQuery {
    after_seq: Option<i64>,
    ticket: Option<String>,
}

#[utoipa::path(get, path = "/ws/sessions/{id}", tag = "sessions", params(("id" = uuid::Uuid, Path, description = "The session's id"), ("after_seq" = Option<i64>, Query, description = "Replay stored events after this seq"), ("ticket" = Option<String>, Query, description = "A ticket from POST /ws/tickets, for browsers")), responses(
        (status = 101, description = "Switching to the WebSocket protocol (README: events, frames, close codes)"),
        BadRequest, Unauthorized, Forbidden, NotFound, RateLimited, Unavailable), security(("bearer" = [])))]
async fn connect(
    State(state): State<AppState>,
    Path(session_id): Path<SessionId>,
    Query(query): Query<ConnectQuery>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(rejection) => {
            return ApiError::bad_request("not_a_websocket", rejection.body_text()).into_response();
        }
    };
    if let Err(e) = check_origin(&state, &headers) {
        return e.into_response();
    }
    let user = match authenticate(&state, &headers, query.ticket.as_deref(), session_id).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = visible_session(&state, &user, session_id).await {
        return e.into_response();
    }
    if query.after_seq.is_some_and(|s| s < 0) {
        return ApiError::bad_request("invalid_query", "after_seq: must be 0 or more").into_response();
    }
    let limit = state.config.api.ws_max_message_bytes;
    let accepted = Box::new(Accepted { state, user, session_id, after_seq: query.after_seq.unwrap_or(0), request_id });
    upgrade
        // Frames up to 4x the limit are read and refused with 1009; larger ones
        // are cut off by the protocol layer without being buffered.
        .max_message_size(limit.saturating_mul(4))
        .max_frame_size(limit.saturating_mul(4))
        // tungstenite's 128 KiB default read buffer, zero-filled up front,
        // was most of a socket's memory; a client's frames are small (a
        // larger one grows the buffer as it arrives), and every frame we
        // send is flushed at once.
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        // The closure is kept in the socket's task for its whole life: it
        // holds a box, and hands what it holds to the socket.
        .on_upgrade(move |ws| {
            let Accepted { state, user, session_id, after_seq, request_id } = *accepted;
            let span = tracing::info_span!("websocket", request_id = %request_id, user_id = %user.id, session_id = %session_id);
            tracing::Instrument::instrument(run(Socket { state, ws, user, session_id, last_sent: after_seq }), span)
        })
}

/// A handshake that passed its checks, until the upgrade completes.
struct Accepted {
    state: AppState,
    user: AuthUser,
    session_id: SessionId,
    after_seq: i64,
    request_id: String,
}

/// The initial read buffer of a socket (see the upgrade): a client's pongs,
/// pings and resumes fit, and so do most answers.
const READ_BUFFER: usize = 1024;

/// A client frame.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientFrame {
    Answer { text: String, client_msg_id: Option<String> },
    Ping,
    Resume { after_seq: i64 },
}

struct Socket {
    state: AppState,
    ws: WebSocket,
    user: AuthUser,
    session_id: SessionId,
    /// The highest stream `seq` sent.
    last_sent: i64,
}

enum Flow {
    Continue,
    Close,
}

// A socket's task lives as long as the socket: what it awaits only now and
// then (the database, Redis commands) is boxed, so the task holds the idle
// loop's futures and no more. The socket is used where the future captured
// it (an `async fn` would move its argument again, holding it twice).
#[expect(clippy::manual_async_fn, reason = "an async fn would hold the socket twice")]
fn run(mut socket: Socket) -> impl Future<Output = ()> + Send {
    async move {
        let conn_id = uuid::Uuid::new_v4().to_string();
        let (state, user) = (&socket.state, socket.user);
        match Box::pin(claim_connection_slot(state, user.id, &conn_id)).await {
            Ok(true) => {}
            Ok(false) => {
                let limit = socket.state.config.api.ws_max_connections_per_user;
                socket.close(close_code::POLICY, &format!("too many connections for this user (limit {limit})")).await;
                return;
            }
            Err(e) => {
                // Every client retries while Redis is away: one line per period.
                static UNAVAILABLE: shared::log_throttle::Throttle =
                    shared::log_throttle::Throttle::new(std::time::Duration::from_secs(30));
                if let Some(held_back) = UNAVAILABLE.allow() {
                    tracing::warn!(error = %e, held_back, "connection limit unavailable; refusing WebSockets until Redis answers");
                }
                socket.close(close_code::AGAIN, "try again later").await;
                return;
            }
        }
        socket.state.ws_active.fetch_add(1, Ordering::Relaxed);
        tracing::info!("websocket connected");
        socket.serve(&conn_id).await;
        let state = &socket.state;
        state.ws_active.fetch_sub(1, Ordering::Relaxed);
        state.metrics.ws_disconnect();
        Box::pin(release_connection_slot(state, user.id, &conn_id)).await;
        tracing::info!("websocket disconnected");
    }
}

impl Socket {
    async fn serve(&mut self, conn_id: &str) {
        let mut follow = match Box::pin(self.state.relay.follow(self.session_id)).await {
            Ok(f) => f,
            Err(e) => {
                static UNAVAILABLE: shared::log_throttle::Throttle =
                    shared::log_throttle::Throttle::new(std::time::Duration::from_secs(30));
                if let Some(held_back) = UNAVAILABLE.allow() {
                    tracing::warn!(error = %e, held_back, "cannot follow the session");
                }
                self.close(close_code::AGAIN, "event stream unavailable, reconnect").await;
                return;
            }
        };
        if Box::pin(self.send_state()).await.is_err() || Box::pin(self.replay()).await.is_err() {
            return;
        }
        let heartbeat = self.state.config.api.ws_heartbeat;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        let mut heard_since_ping = true;
        let shutdown = self.state.shutdown.clone();
        let mut revocations = self.state.relay.revocations();
        loop {
            tokio::select! {
                frame = self.ws.recv() => {
                    heard_since_ping = true;
                    match frame {
                        Some(Ok(message)) => {
                            self.state.metrics.ws_message(true);
                            if let Flow::Close = Box::pin(self.on_frame(message)).await {
                                return;
                            }
                        }
                        Some(Err(e)) => {
                            tracing::info!(error = %e, "websocket read failed");
                            self.close(close_code::SIZE, "message too large or malformed").await;
                            return;
                        }
                        None => return,
                    }
                }
                relayed = follow.receiver.recv() => {
                    let result = match relayed {
                        Ok(Relayed::Event { seq, json }) => self.forward(seq, &json).await,
                        Ok(Relayed::Resync) | Err(RecvError::Lagged(_)) => Box::pin(self.resync()).await,
                        Err(RecvError::Closed) => Err(()),
                    };
                    if result.is_err() {
                        return;
                    }
                }
                revoked = revocations.recv() => {
                    let ended = match revoked {
                        Ok(revocation) => {
                            revocation.ends(self.user.id, self.user.session).then(|| revocation.reason.as_str().to_owned())
                        }
                        Err(RecvError::Lagged(_)) => Box::pin(login_ended(&self.state, self.user)).await,
                        Err(RecvError::Closed) => Some("server shutting down".to_owned()),
                    };
                    if let Some(reason) = ended {
                        self.close(REVOKED, &format!("access revoked: {reason}")).await;
                        return;
                    }
                }
                _ = ticker.tick() => {
                    if !heard_since_ping {
                        self.close(close_code::AWAY, "missed pong").await;
                        return;
                    }
                    heard_since_ping = false;
                    if self.ws.send(Message::Ping(Default::default())).await.is_err() {
                        return;
                    }
                    Box::pin(refresh_connection_slot(&self.state, self.user.id, conn_id)).await;
                }
                _ = shutdown.cancelled() => {
                    self.close(close_code::AWAY, "server shutting down").await;
                    return;
                }
            }
        }
    }

    async fn on_frame(&mut self, message: Message) -> Flow {
        let text = match message {
            Message::Text(text) => text,
            Message::Binary(_) => {
                return self.error("unsupported_frame", "binary frames are not supported; send JSON text").await;
            }
            Message::Ping(_) | Message::Pong(_) => return Flow::Continue,
            Message::Close(_) => return Flow::Close,
        };
        let limit = self.state.config.api.ws_max_message_bytes;
        if text.len() > limit {
            self.close(close_code::SIZE, &format!("message larger than {limit} bytes")).await;
            return Flow::Close;
        }
        let frame: ClientFrame = match serde_json::from_str(text.as_str()) {
            Ok(f) => f,
            Err(e) => {
                return self.error("invalid_frame", &format!("invalid frame: {e}")).await;
            }
        };
        match frame {
            ClientFrame::Ping => self.send_local(EventKind::Pong).await,
            ClientFrame::Resume { after_seq } if after_seq < 0 => {
                self.error("invalid_frame", "after_seq: must be 0 or more").await
            }
            ClientFrame::Resume { after_seq } => {
                self.last_sent = after_seq;
                if self.replay().await.is_err() { Flow::Close } else { Flow::Continue }
            }
            ClientFrame::Answer { text, client_msg_id } => self.answer(text, client_msg_id).await,
        }
    }

    async fn answer(&mut self, text: String, client_msg_id: Option<String>) -> Flow {
        if let Err(e) = answer_text(&self.state, &text) {
            return self.error("validation_error", &e).await;
        }
        if let Some(Err(e)) = client_msg_id.as_deref().map(idempotency_key) {
            return self.error("validation_error", &format!("client_msg_id: {e}")).await;
        }
        if self.user.role != Role::Candidate {
            return self.error("forbidden", "only the session's candidate may answer").await;
        }
        let request_id = shared::new_request_id();
        // Each answer is a request of its own: its own id, and a new trace.
        let span = tracing::info_span!(parent: None, "websocket answer", otel.kind = tracing::field::Empty,
            request_id = %request_id, user_id = %self.user.id, session_id = %self.session_id, trace_id = tracing::field::Empty);
        if shared::telemetry::traces::enabled() {
            span.record("otel.kind", "server");
            shared::telemetry::traces::continue_trace(&span, None);
        }
        let submitted =
            self.state.core.submit_answer(self.session_id, self.user.id, &text, client_msg_id.as_deref(), &request_id);
        let result = tracing::Instrument::instrument(submitted, span).await;
        match result {
            Ok(accepted) => {
                self.send_local(EventKind::AnswerAccepted {
                    turn_id: accepted.turn_id,
                    number: accepted.number,
                    client_msg_id,
                    duplicate: !accepted.created,
                })
                .await
            }
            Err(FlowError::Db(e)) => {
                let ApiError { code, message, .. } = ApiError::from(e);
                self.error(code, &message).await
            }
            Err(e) => {
                let ApiError { code, message, .. } = ApiError::from(e);
                self.error(code, &message).await
            }
        }
    }

    async fn forward(&mut self, seq: i64, json: &str) -> Result<(), ()> {
        if seq <= self.last_sent {
            return Ok(());
        }
        self.last_sent = seq;
        self.state.metrics.ws_message(false);
        self.ws.send(Message::Text(Utf8Bytes::from(json))).await.map_err(|_| ())
    }

    /// Sends a per-socket event; its `seq` is the socket's position.
    async fn send_local(&mut self, kind: EventKind) -> Flow {
        let event = Event { seq: self.last_sent, session_id: self.session_id, kind };
        let Ok(json) = serde_json::to_string(&event) else {
            return Flow::Close;
        };
        self.state.metrics.ws_message(false);
        match self.ws.send(Message::Text(json.into())).await {
            Ok(()) => Flow::Continue,
            Err(_) => Flow::Close,
        }
    }

    async fn error(&mut self, code: &str, message: &str) -> Flow {
        self.send_local(EventKind::Error { code: code.to_owned(), message: message.to_owned() }).await
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame { code, reason: Utf8Bytes::from(reason) };
        let _ = self.ws.send(Message::Close(Some(frame))).await;
    }
}

#[cfg(test)]
mod tests;
