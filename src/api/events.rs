//! `GET /api/v1/events`: the store's change feed as server-sent events, so the page updates
//! without reloading.
//!
//! Each stream polls the feed's last sequence every [`POLL`] (a short LMDB read) and, when it
//! moved, sends one `change` event whose data is a JSON array of `{seq, table, key, deleted}`
//! (user records are left out). At most [`super::MAX_EVENT_STREAMS`] streams are open at once;
//! every stream ends when its session does (logout, idle timeout) and when the server shuts
//! down, so it never holds up a graceful shutdown.

use super::error::ApiError;
use super::{Api, Principal};
use crate::store::{Change, Store, Table};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// How often a stream looks for new changes.
const POLL: Duration = Duration::from_millis(300);
/// Changes sent in one event at most; a stream that falls further behind catches up over
/// several events.
const BATCH: usize = 512;

struct Stream {
    api: Arc<Api>,
    principal: Principal,
    seq: u64,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

fn changes_after(store: &Store, seq: u64) -> Result<(u64, Vec<Change>), ApiError> {
    Ok(store.read(|r| {
        let last = r.last_seq()?;
        if last <= seq {
            return Ok::<_, crate::store::StoreError>((last, Vec::new()));
        }
        Ok((last, r.changes_since(seq, BATCH)?))
    })?)
}

pub async fn stream(
    State(api): State<Arc<Api>>,
    axum::Extension(principal): axum::Extension<Principal>,
) -> Result<Response, ApiError> {
    let permit = api.event_streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            None,
            "too many event streams open",
        )
    })?;
    let seq = api.blocking(|store| Ok(store.last_seq()?)).await?;
    let start = Stream {
        api,
        principal,
        seq,
        _permit: permit,
    };
    let events = futures_util::stream::unfold(start, |mut st| async move {
        loop {
            tokio::select! {
                _ = st.api.shutdown.cancelled() => return None,
                _ = tokio::time::sleep(POLL) => {}
            }
            // A stream ends with its session (logout, idle timeout) or a revoked token.
            let (api, principal) = (st.api.clone(), st.principal.clone());
            let valid = tokio::task::spawn_blocking(move || api.still_valid(&principal)).await;
            if !valid.unwrap_or(false) {
                return None;
            }
            let seq = st.seq;
            let Ok((_, changes)) = st
                .api
                .blocking(move |store| changes_after(store, seq))
                .await
            else {
                return None;
            };
            let Some(last) = changes.last() else {
                continue;
            };
            st.seq = last.seq;
            let shown: Vec<&Change> = changes.iter().filter(|c| c.table != Table::Users).collect();
            if shown.is_empty() {
                continue;
            }
            let data = serde_json::to_string(&shown).unwrap_or_else(|_| "[]".into());
            let event = Event::default().event("change").data(data);
            return Some((Ok::<_, Infallible>(event), st));
        }
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}
