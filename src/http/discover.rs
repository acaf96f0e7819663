//! The boot path's discovery endpoints, for drover's agent in discovery mode on a machine
//! drover does not know: `POST /boot/{mac}/inventory` (the machine's [`Inventory`]; answers
//! its [`Standing`]) and `GET /boot/{mac}/standing` (the agent's poll until adopted), plus
//! the script such a machine gets when discovery is on.
//!
//! Unauthenticated like the rest of the boot path (the agent has no credentials), but
//! accepted only from the address whose lease the reporting MAC holds (else 403), and the
//! body is capped and checked ([`Inventory::check`]) before anything is stored.
//!
//! Not here: what a report does in the store (`crate::discover::adopt`), routing (`serve`).

use crate::api::Api;
use crate::discover::adopt::{self, Standing};
use crate::discover::inventory::Inventory;
use crate::logsafe::Escaped;
use crate::store::model::{Lease, Mac};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Largest inventory body: 64 disks and 64 NICs with LLDP neighbours fit easily.
pub const MAX_INVENTORY_BODY: usize = 64 * 1024;

/// The discovery script for unknown `mac`, when discovery is on (`None`: it is off, or the
/// store could not be read, which is logged).
pub async fn unknown_script(api: &Arc<Api>, mac: Mac, servers: &[String]) -> Option<String> {
    let store = api.store.clone();
    let image = tokio::task::spawn_blocking(move || adopt::discovery_image(&store)).await;
    match image {
        Ok(Ok(Some((image, cmdline)))) => {
            tracing::info!(%mac, %image, "unknown machine boots into discovery");
            Some(super::ipxe::discovery_script(&image, &cmdline, servers))
        }
        Ok(Ok(None)) => None,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read the discovery image");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "discovery image lookup failed");
            None
        }
    }
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, message).into_response()
}

/// Runs `f` on the blocking pool once `mac` is shown to report from its own leased address
/// (discovery reports, and the service-mode host key of `super::service`).
pub(super) async fn from_own_lease<R: Send + 'static>(
    api: &Arc<Api>,
    mac: Mac,
    from: Option<Ipv4Addr>,
    f: impl FnOnce(&crate::store::Store, Ipv4Addr) -> Result<R, crate::admin::AdminError>
        + Send
        + 'static,
) -> Result<R, Response> {
    let store = api.store.clone();
    let done = tokio::task::spawn_blocking(move || {
        let Some(ip) = from else {
            return Ok(None);
        };
        let lease = store.read(|r| r.get::<Lease>(&ip.to_string()))?;
        if !adopt::lease_allows(lease.as_ref(), mac, ip, crate::clock::unix_secs()) {
            return Ok(None);
        }
        f(&store, ip).map(Some)
    })
    .await;
    match done {
        Ok(Ok(Some(r))) => Ok(r),
        Ok(Ok(None)) => {
            tracing::warn!(%mac, from = ?from, "boot-path request refused: not from its lease");
            Err(refuse(
                StatusCode::FORBIDDEN,
                format!("reports of {mac} come from the address leased to it\n"),
            ))
        }
        Ok(Err(e)) => {
            Err(crate::api::error::ApiError::admin("discovered machine", e).into_response())
        }
        Err(e) => Err(crate::api::error::ApiError::internal("worker", e).into_response()),
    }
}

/// `POST /boot/{mac}/inventory`.
pub async fn post_inventory(
    api: Arc<Api>,
    mac: Mac,
    from: Option<Ipv4Addr>,
    body: &[u8],
) -> Response {
    if body.len() > MAX_INVENTORY_BODY {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "inventory too large\n".into(),
        );
    }
    let inventory: Inventory = match serde_json::from_slice(body) {
        Ok(i) => i,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("bad inventory: {e}\n")),
    };
    if let Err(e) = inventory.check() {
        return refuse(StatusCode::BAD_REQUEST, format!("bad inventory: {e}\n"));
    }
    let now_ms = crate::clock::unix_ms();
    let done = from_own_lease(&api, mac, from, move |store, ip| {
        adopt::report(store, mac, ip, now_ms, inventory)
    })
    .await;
    match done {
        Ok(standing) => {
            if let Standing::Adopted(node) = &standing {
                tracing::info!(%mac, node = %Escaped(node), "discovered machine adopted");
            } else {
                tracing::info!(%mac, "discovered machine waits to be adopted");
            }
            axum::Json(standing).into_response()
        }
        Err(refused) => refused,
    }
}

/// `GET /boot/{mac}/standing`.
pub async fn standing(api: Arc<Api>, mac: Mac, from: Option<Ipv4Addr>) -> Response {
    match from_own_lease(&api, mac, from, move |store, _| {
        adopt::standing_of(store, mac)
    })
    .await
    {
        Ok(standing) => axum::Json(standing).into_response(),
        Err(refused) => refused,
    }
}
