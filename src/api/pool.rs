//! `GET /api/v1/pool`: the pool as this member sees it — members, health, what each serves,
//! replication lag — in the same form as `drover pool status --json` (the pool task's
//! status file, `pool::status::Status`; `pool::report` defines the terms).
//!
//! Not here: changing the pool (`drover pool init|join|leave|forget` are CLI-only: they
//! handle the cluster key, which the API never shows or takes).

use super::error::ApiError;
use super::Api;
use crate::pool::key::ClusterKey;
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
