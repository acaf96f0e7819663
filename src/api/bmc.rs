//! `GET /bmc/sensors` and `GET /bmc/sel` with `target=` (repeated: nodes, groups, ranges):
//! the member reads each node's BMC (`crate::ipmi::sensors`, IPMI or Redfish as the records
//! say) with the BMC credentials in the store and answers `{"items": [...], "failed": N}`,
//! one item per node as `drover bmc sensors|sel --json` prints them. A failed node is an
//! item with `ok: false` and its class, not an HTTP error.
//!
//! Not here: clearing the event log, thresholds, caching readings.

use super::error::ApiError;
use super::Api;
use crate::ipmi::power::TargetError;
use crate::ipmi::sensors::{self, What};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;

type Q = axum::extract::Query<Vec<(String, String)>>;
type Res = Result<Response, ApiError>;

pub async fn sensors(State(api): State<Arc<Api>>, axum::extract::Query(q): Q) -> Res {
    read(api, What::Sensors, q).await
}

pub async fn sel(State(api): State<Arc<Api>>, axum::extract::Query(q): Q) -> Res {
    read(api, What::Sel, q).await
}

async fn read(api: Arc<Api>, what: What, q: Vec<(String, String)>) -> Res {
    let mut targets = Vec::new();
    for (k, v) in q {
        if k != "target" {
            return Err(ApiError::bad(&k, format!("unknown query parameter {k:?}")));
        }
        targets.push(v);
    }
    if targets.is_empty() {
        return Err(ApiError::bad(
            "target",
            "target: give at least one node or group",
        ));
    }
    let dial = api.power.dial.clone();
    let parallel = api.power.max_sessions.max(1);
    let items = api
        .blocking(move |store| {
            let jobs = store
                .read(|r| crate::ipmi::power::resolve(r, &targets))
                .map_err(|e| match e {
                    TargetError::Store(e) => ApiError::from(e),
                    other => ApiError::bad("target", format!("target: {other}")),
                })?;
            Ok(sensors::report(&sensors::read_all(
                &jobs, &dial, what, parallel,
            )))
        })
        .await?;
    let failed = items.iter().filter(|i| i["ok"] != true).count();
    Ok(Json(json!({"items": items, "failed": failed})).into_response())
}
