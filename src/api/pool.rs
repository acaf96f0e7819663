//! `GET /api/v1/pool`: the pool as this member sees it — members, health, what each serves,
//! replication lag — in the same form as `drover pool status --json` (the pool task's
//! status file, `pool::status::Status`; `pool::report` defines the terms).
//!
//! `POST /api/v1/pool/members/{id}/mark-dead`: `drover pool mark-dead` (`pool::setup`).
//! `POST /api/v1/pool/members/{id}/drain` and `.../undrain`: `drover pool drain|undrain`.
//!
//! Not here: the rest of changing the pool (`drover pool init|join|leave|forget` are
//! CLI-only: they handle the cluster key, which the API never shows or takes).

use super::error::ApiError;
use super::Api;
use crate::pool::key::ClusterKey;
use crate::pool::setup::{self, SetupError};
use crate::pool::status as ps;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use std::sync::Arc;

pub async fn status(State(api): State<Arc<Api>>) -> Result<Json<ps::Status>, ApiError> {
    let dir = api.state_dir.clone();
    let status = tokio::task::spawn_blocking(move || {
        match ClusterKey::load_state(&dir) {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(ApiError::not_found(
                    "not in a pool (drover pool init, or drover pool join)",
                ))
            }
            Err(e) => return Err(ApiError::internal("the cluster key", e)),
        }
        ps::read_status(&dir).map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "no pool status yet: the pool task writes it within seconds of finding the key",
            )
        })
    })
    .await
    .map_err(|e| ApiError::internal("worker", e))??;
    Ok(Json(status))
}

/// `drover pool mark-dead ID` through the API: the same checks (refused while this member sees
/// the member alive or suspect).
pub async fn mark_dead(
    State(api): State<Arc<Api>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let dir = api.state_dir.clone();
    let now_ms = crate::clock::unix_ms();
    let id = api
        .blocking(move |store| {
            setup::mark_dead(store, &dir, &id, now_ms).map_err(|e| {
                let (code, field) = match &e {
                    SetupError::BadId(_) => (StatusCode::BAD_REQUEST, Some("id")),
                    SetupError::ThisMember => (StatusCode::BAD_REQUEST, None),
                    SetupError::NotOnRoster(_) => (StatusCode::NOT_FOUND, None),
                    SetupError::Reachable { .. } => (StatusCode::CONFLICT, None),
                    SetupError::NoKey(_) | SetupError::NotInPool(_) => {
                        (StatusCode::NOT_FOUND, None)
                    }
                    _ => (StatusCode::SERVICE_UNAVAILABLE, None),
                };
                ApiError::new(code, field, e.to_string())
            })
        })
        .await?;
    Ok(Json(serde_json::json!({ "id": format!("{id:016x}") })))
}

/// `drover pool drain ID` through the API.
pub async fn drain(
    State(api): State<Arc<Api>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_drain(api, id, true).await
}

/// `drover pool undrain ID` through the API.
pub async fn undrain(
    State(api): State<Arc<Api>>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_drain(api, id, false).await
}

async fn set_drain(
    api: Arc<Api>,
    id: String,
    drained: bool,
) -> Result<Json<serde_json::Value>, ApiError> {
    let now_ms = crate::clock::unix_ms();
    let id = api
        .blocking(move |store| {
            setup::drain(store, &id, drained, now_ms).map_err(|e| {
                let (code, field) = match &e {
                    SetupError::BadId(_) => (StatusCode::BAD_REQUEST, Some("id")),
                    SetupError::NotOnRoster(_) => (StatusCode::NOT_FOUND, None),
                    SetupError::Witness(_) => (StatusCode::CONFLICT, None),
                    _ => (StatusCode::SERVICE_UNAVAILABLE, None),
                };
                ApiError::new(code, field, e.to_string())
            })
        })
        .await?;
    Ok(Json(serde_json::json!({ "id": format!("{id:016x}") })))
}
