//! The API of file sets (`crate::files`): `GET /files`, `GET /files/{name}`, `POST
//! /files/{name}` (add or replace one file; the set is made if new), `DELETE /files/{name}`
//! (the set, or with `?path=P` one file), `POST /files/{name}/assign` and `.../unassign`
//! (`{"image"|"group"|"node": NAME}`). Each handler calls `crate::files::ops`, the functions
//! the local CLI uses, on the blocking pool.
//!
//! Not here: delivery to nodes (the boot path, `crate::http::files`; `files sync` is local).

use super::error::ApiError;
use super::input::{Fields, Query};
use super::Api;
use crate::files::core::{Assignment, Content, SetFile};
use crate::files::ops;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;

type Q = axum::extract::Query<Vec<(String, String)>>;
type Res = Result<Response, ApiError>;

const KIND: &str = "file set";

fn admin(e: crate::admin::AdminError) -> ApiError {
    ApiError::admin(KIND, e)
}

pub async fn list(State(api): State<Arc<Api>>, axum::extract::Query(q): Q) -> Res {
    let mut q = Query::new(q);
    let page = q.page()?;
    q.finish()?;
    let all = api
        .blocking(|store| ops::list(store).map_err(admin))
        .await?;
    Ok(Json(page.of(all)).into_response())
}

pub async fn get(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Res {
    let set = api
        .blocking(move |store| ops::show(store, &name).map_err(admin))
        .await?;
    Ok(Json(set).into_response())
}

pub async fn add_file(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let mut f = Fields::parse(&headers, &body)?;
    let file = SetFile {
        path: f.required("path")?,
        mode: f.optional("mode")?.unwrap_or(0o644),
        uid: f.optional("uid")?.unwrap_or(0),
        gid: f.optional("gid")?.unwrap_or(0),
        content: f.required::<Content>("content")?,
    };
    f.finish()?;
    let set = api
        .blocking(move |store| ops::add_file(store, &name, file).map_err(admin))
        .await?;
    Ok((StatusCode::CREATED, Json(set)).into_response())
}

pub async fn remove(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    axum::extract::Query(q): Q,
) -> Res {
    let mut q = Query::new(q);
    let path = q.get("path");
    q.finish()?;
    api.blocking(move |store| ops::remove(store, &name, path.as_deref()).map_err(admin))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /files/{name}/assign` (`ON`) and `POST /files/{name}/unassign`.
pub async fn assignment<const ON: bool>(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let mut f = Fields::parse(&headers, &body)?;
    let to = match (
        f.optional::<String>("image")?,
        f.optional::<String>("group")?,
        f.optional::<String>("node")?,
    ) {
        (Some(i), None, None) => Assignment::Image(i),
        (None, Some(g), None) => Assignment::Group(g),
        (None, None, Some(n)) => Assignment::Node(n),
        _ => {
            return Err(ApiError::bad(
                "image",
                "give exactly one of image, group, node",
            ))
        }
    };
    f.finish()?;
    let set = api
        .blocking(move |store| ops::assign(store, &name, to, ON).map_err(admin))
        .await?;
    Ok(Json(set).into_response())
}
