//! `/api/v1/config`: the appliance's settings kept in the store (`crate::overrides`), read
//! by every logged-in user and changed by admins, checked by the same parser as
//! `drover check-config`. A refused change answers 400 with the key as the field.
//!
//! A change's keys and values go into its audit record (`AuditDetail`, which the role
//! middleware appends to the method and path).
//!
//! Not here: applying a change (the running server follows the store, `crate::serve`).

use super::error::ApiError;
use super::input::{Fields, Query};
use super::{Api, AuditDetail};
use crate::overrides::{self, Change, OverrideError};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

/// Changes at most one request makes (the file has fewer than a hundred keys).
const MAX_CHANGES: usize = 200;

/// Characters of a change's keys and values the audit log keeps.
const MAX_AUDIT_DETAIL: usize = 512;

/// `text` cut to `max` characters.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

fn error(e: OverrideError) -> ApiError {
    match (e.key().map(str::to_string), &e) {
        (_, OverrideError::Store(_) | OverrideError::Base { .. }) => {
            ApiError::internal("settings", e)
        }
        (Some(key), _) => ApiError::bad(&key, e.to_string()),
        (None, _) => ApiError::bad("changes", e.to_string()),
    }
}

/// `GET /config`: every key with its value and source, and the saved keys that wait for a
/// restart of this server (no query parameters).
pub async fn show(
    State(api): State<Arc<Api>>,
    axum::extract::Query(q): axum::extract::Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    Query::new(q).finish()?;
    let dir = api.state_dir.clone();
    let mut shown = api
        .blocking(move |store| overrides::show(store, &dir).map_err(error))
        .await?;
    shown.restart_pending = overrides::restart_pending(&api.restart_values, &shown);
    Ok(Json(shown).into_response())
}

/// `POST /config` `{"changes": [{"key": K, "value": V or null}]}`: sets (or with null
/// removes) the keys at once; answers what each change did and when it takes effect.
pub async fn change(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut f = Fields::parse(&headers, &body)?;
    let changes: Vec<Change> = f.required("changes")?;
    f.finish()?;
    if changes.is_empty() || changes.len() > MAX_CHANGES {
        return Err(ApiError::bad(
            "changes",
            format!("expected 1 to {MAX_CHANGES} changes"),
        ));
    }
    let detail: Vec<String> = changes
        .iter()
        .map(|c| match &c.value {
            Some(v) => format!("{}={v}", c.key),
            None => format!("unset {}", c.key),
        })
        .collect();
    let dir = api.state_dir.clone();
    let outcomes = api
        .blocking(move |store| overrides::change(store, &dir, &changes).map_err(error))
        .await?;
    let mut resp = Json(serde_json::json!({ "outcomes": outcomes })).into_response();
    // The audit log says which keys changed to what (no setting holds a secret).
    let detail = AuditDetail(cut(&detail.join(" "), MAX_AUDIT_DETAIL));
    resp.extensions_mut().insert(detail);
    Ok(resp)
}
