//! The boot path's `GET /boot/{mac}/files`: the node's files from its file sets, rendered, and
//! its stable ssh host key pair (`crate::files::ops::for_node`), as a JSON array of
//! `crate::files::core::Delivered`. The agent fetches it at every boot.
//!
//! Served only to the address whose lease `mac` holds (the private host key and the admin's
//! files are in it): anyone else on the boot network gets a 403. A MAC that is no node gets
//! a 404.
//!
//! Not here: the sets themselves (`crate::files`), routing (`super::serve`).

use super::discover::from_own_lease;
use crate::api::Api;
use crate::store::model::Mac;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// `GET /boot/{mac}/files`.
pub async fn files(api: Arc<Api>, mac: Mac, from: Option<Ipv4Addr>) -> Response {
    let got = from_own_lease(&api, mac, from, move |store, _| {
        match store.read(|r| r.node_by_mac(mac))? {
            Some(node) => crate::files::ops::for_node(store, &node).map(Some),
            None => Ok(None),
        }
    })
    .await;
    match got {
        Ok(Some(files)) => Json(files).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, format!("{mac} is not a node\n")).into_response(),
        Err(refused) => refused,
    }
}
