//! Node consoles over the API: `GET /nodes/{name}/console` upgrades to a WebSocket on the
//! node's shared console (`crate::ipmi::hub`), `GET /nodes/{name}/console/log` returns the
//! kept boots of its console log (`crate::ipmi::conlog`).
//!
//! WebSocket messages. Server to client: binary = serial output (first the backlog the
//! console showed before the client came); text = a JSON notice
//! `{"writer": bool, "notice": "..."}` (sent on joining and when the writer's seat is taken
//! over) or `{"ended": "why"}` before the server closes. Client to server: binary or text =
//! keystrokes, taken from the writer only (a reader gets a notice instead).
//!
//! Who writes: `?write=true` asks for the writer's seat (granted to the first operator who
//! asks; a viewer's request is seated read-only with a notice), `?force=true` takes it from
//! the current writer (operators only: a viewer gets 403). Browser sessions must send an
//! `Origin` naming this server (the WebSocket handshake carries no CSRF header, and cookies
//! go with requests from other ports of the same host).
//!
//! Not here: the console protocol (`crate::ipmi`), terminal emulation (the page's panel and
//! the CLI print the bytes as they come).

use super::error::ApiError;
use super::input::Query;
use super::{Api, Principal};
use crate::ipmi::hub::{Client, Frame, TypeError};
use crate::ipmi::seats::Want;
use crate::store::model::Role;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

type Q = axum::extract::Query<Vec<(String, String)>>;
type Res = Result<Response, ApiError>;

/// A `true`/`false` query parameter, false when absent.
fn flag(q: &mut Query, name: &str) -> Result<bool, ApiError> {
    match q.get(name).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(v) => Err(ApiError::bad(
            name,
            format!("{name}: {v:?} is not true or false"),
        )),
    }
}

/// Whether a browser's WebSocket handshake comes from a page of this server.
fn same_origin(headers: &HeaderMap) -> bool {
    let get = |h| headers.get(h).and_then(|v| v.to_str().ok());
    let (Some(origin), Some(host)) = (get(header::ORIGIN), get(header::HOST)) else {
        return false;
    };
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    authority == Some(host)
}

pub async fn attach(
    State(api): State<Arc<Api>>,
    axum::Extension(principal): axum::Extension<Principal>,
    Path(name): Path<String>,
    axum::extract::Query(q): Q,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Res {
    let mut q = Query::new(q);
    let write = flag(&mut q, "write")?;
    let force = flag(&mut q, "force")?;
    q.finish()?;
    // Checked after the query, so that bad input gets the API's own error either way.
    let ws = ws.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::UPGRADE_REQUIRED,
            None,
            format!("a console is a WebSocket: {e}"),
        )
    })?;
    if matches!(principal, Principal::Session { .. }) && !same_origin(&headers) {
        return Err(ApiError::forbidden(
            "a console WebSocket from a browser needs an Origin header naming this server",
        ));
    }
    let operator = principal.role() >= Role::Operator;
    if force && !operator {
        return Err(ApiError::forbidden(&format!(
            "{} has role {}; taking over a console needs operator",
            principal.who(),
            principal.role()
        )));
    }
    let want = match (write || force, force, operator) {
        (true, true, _) => Want::Force,
        (true, false, true) => Want::Write,
        _ => Want::Read,
    };
    let who = principal.who();
    let hub = api.hub.clone();
    let node = name.clone();
    let client = api
        .blocking(move |_| {
            hub.join(&node, want, &who).map_err(|e| {
                use crate::ipmi::hub::HubError as H;
                match e {
                    H::NoNode(_) => ApiError::not_found(e.to_string()),
                    H::NoBmc(..) | H::Redfish(_) => ApiError::bad("name", e.to_string()),
                    H::TooMany | H::Seats(_) => ApiError::new(
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        None,
                        e.to_string(),
                    ),
                    H::Store(_) | H::Log(_) | H::Thread(_) => ApiError::internal("console", e),
                }
            })
        })
        .await?;
    let notice = match (client.writer, want) {
        (true, _) => "you write to this console",
        (false, Want::Read) if write => "read-only: writing to a console needs the operator role",
        (false, Want::Read) => "read-only",
        (false, _) => "read-only: another client writes to this console (force takes over)",
    };
    let hello = json!({"writer": client.writer, "notice": notice}).to_string();
    Ok(ws
        .max_message_size(64 << 10)
        .on_upgrade(move |socket| relay(socket, client, hello, api.shutdown.clone()))
        .into_response())
}

/// Relays between one WebSocket and its console seat until either ends or the server stops.
async fn relay(mut socket: WebSocket, mut client: Client, hello: String, stop: CancellationToken) {
    if socket.send(Message::Text(hello.into())).await.is_err() {
        return;
    }
    let backlog = std::mem::take(&mut client.backlog);
    if !backlog.is_empty() && socket.send(Message::Binary(backlog.into())).await.is_err() {
        return;
    }
    let mut told_read_only = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            frame = client.frames.recv() => {
                let msg = match frame {
                    Ok(Frame::Output(bytes)) => Message::Binary(bytes.to_vec().into()),
                    Ok(Frame::Ended(why)) => {
                        let ended = json!({"ended": why}).to_string();
                        let _ = socket.send(Message::Text(ended.into())).await;
                        let _ = socket.send(Message::Close(None)).await;
                        return;
                    }
                    Err(RecvError::Lagged(n)) => {
                        let lost = format!("this client fell behind: {n} output chunks lost");
                        Message::Text(json!({"writer": client.is_writer(), "notice": lost})
                            .to_string().into())
                    }
                    Err(RecvError::Closed) => return,
                };
                if socket.send(msg).await.is_err() {
                    return;
                }
            }
            Some(text) = client.notices.recv() => {
                let msg = json!({"writer": client.is_writer(), "notice": text}).to_string();
                if socket.send(Message::Text(msg.into())).await.is_err() {
                    return;
                }
            }
            msg = socket.recv() => {
                let keys = match msg {
                    Some(Ok(Message::Binary(b))) => b.to_vec(),
                    Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                };
                match client.type_in(&keys) {
                    Ok(()) => {}
                    Err(TypeError::ReadOnly) if told_read_only => {}
                    Err(e) => {
                        told_read_only |= e == TypeError::ReadOnly;
                        let msg = json!({"writer": client.is_writer(), "notice": e.to_string()});
                        if socket.send(Message::Text(msg.to_string().into())).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

/// `GET /nodes/{name}/console/log[?all=true]`: the last boot's console output, or every
/// boot kept, as `{"node": ..., "boots": [{"boot_ms": ..., "text": ...}]}` (text: the bytes
/// as UTF-8, invalid sequences replaced).
pub async fn log(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    axum::extract::Query(q): Q,
) -> Res {
    let mut q = Query::new(q);
    let all = flag(&mut q, "all")?;
    q.finish()?;
    let state = api.hub.state_dir().to_path_buf();
    let node = name.clone();
    let boots = api
        .blocking(move |store| {
            if store
                .read(|r| r.get::<crate::store::model::Node>(&node))?
                .is_none()
            {
                return Err(ApiError::not_found(format!("no node {node:?}")));
            }
            crate::ipmi::conlog::read(&state, &node)
                .map_err(|e| ApiError::internal("console log", e))
        })
        .await?;
    let keep = if all { boots.len() } else { 1 };
    let shown: Vec<serde_json::Value> = boots[boots.len().saturating_sub(keep)..]
        .iter()
        .map(|b| json!({"boot_ms": b.boot_ms, "text": String::from_utf8_lossy(&b.bytes)}))
        .collect();
    Ok(Json(json!({"node": name, "boots": shown})).into_response())
}
