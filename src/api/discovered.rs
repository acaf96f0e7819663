//! The API of discovery: machines waiting to be adopted (`GET /discovered`, with `all=true`
//! the adopted ones too), adopting one (`POST /discovered/{name}/adopt`, name: the MAC), and
//! naming rules (`GET`/`POST /rules`, `DELETE /rules/{name}`, name: the rule text). Each
//! handler calls `crate::discover::adopt`, the functions the local CLI uses, on the blocking
//! pool.
//!
//! Not here: the agent's reports (the unauthenticated boot path, `crate::http::discover`).

use super::error::ApiError;
use super::input::{Fields, Query};
use super::Api;
use crate::discover::adopt;
use crate::store::model::Mac;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

type Q = axum::extract::Query<Vec<(String, String)>>;
type Res = Result<Response, ApiError>;

pub async fn list(State(api): State<Arc<Api>>, axum::extract::Query(q): Q) -> Res {
    let mut q = Query::new(q);
    let all = match q.get("all").as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => {
            return Err(ApiError::bad(
                "all",
                format!("all: {v:?} is not true or false"),
            ))
        }
    };
    q.finish()?;
    let list = api
        .blocking(move |store| {
            adopt::discovered(store, all).map_err(|e| ApiError::admin("discovered machine", e))
        })
        .await?;
    Ok(Json(list).into_response())
}

pub async fn adopt(
    State(api): State<Arc<Api>>,
    Path(mac): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let mac: Mac = mac
        .parse()
        .map_err(|e: crate::store::model::BadMac| ApiError::bad("mac", e.to_string()))?;
    let mut f = Fields::parse(&headers, &body)?;
    let name: String = f.required("name")?;
    let image: Option<String> = f.optional("image")?;
    let group: Option<String> = f.optional("group")?;
    f.finish()?;
    let now_ms = crate::clock::unix_ms();
    let node = api
        .blocking(move |store| {
            adopt::adopt(store, mac, &name, image, group, now_ms)
                .map_err(|e| ApiError::admin("discovered machine", e))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(node)).into_response())
}

pub async fn list_rules(State(api): State<Arc<Api>>, axum::extract::Query(q): Q) -> Res {
    let mut q = Query::new(q);
    let page = q.page()?;
    q.finish()?;
    let all = api
        .blocking(|store| adopt::rules(store).map_err(|e| ApiError::admin("rule", e)))
        .await?;
    Ok(Json(page.of(all)).into_response())
}

pub async fn add_rule(State(api): State<Arc<Api>>, headers: HeaderMap, body: Bytes) -> Res {
    let mut f = Fields::parse(&headers, &body)?;
    let text: String = f.required("rule")?;
    let group: Option<String> = f.optional("group")?;
    let image: Option<String> = f.optional("image")?;
    f.finish()?;
    let now_ms = crate::clock::unix_ms();
    let added = api
        .blocking(move |store| {
            adopt::add_rule(store, &text, group, image, now_ms)
                .map_err(|e| ApiError::admin("rule", e))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(added)).into_response())
}
