//! The boot path's service-mode endpoints (`crate::service`): `GET /service/tools.cpio` (the
//! initrd with sshd and busybox, built once from this server's files and kept in memory) and
//! `GET /boot/{mac}/host-key` (the node's stable ssh host key, private half), and
//! `GET /boot/{mac}/service` (`on` or `off`: the agent's poll, which leaves the node's boot
//! timeline alone, unlike fetching its boot script).
//!
//! The host key is served only to the address whose lease `mac` holds, and only while the
//! node is in service mode: anyone else on the boot network gets a 403 or 404. The tools are
//! public (Debian's own binaries).
//!
//! Not here: the script that names them (`super::ipxe::service_script`), routing (`serve`).

use super::discover::from_own_lease;
use crate::api::Api;
use crate::store::model::Mac;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The tools initrd, once built (a failed build is tried again on the next request, so that
/// installing sshd needs no restart).
static TOOLS: tokio::sync::OnceCell<Arc<Vec<u8>>> = tokio::sync::OnceCell::const_new();

fn plain(status: StatusCode, message: String) -> Response {
    (status, message).into_response()
}

/// `GET /service/tools.cpio`.
pub async fn tools() -> Response {
    let built = TOOLS
        .get_or_try_init(|| async {
            let job = tokio::task::spawn_blocking(|| {
                let files = crate::service::tools::files()?;
                crate::service::tools::build(&files)
            });
            match job.await {
                Ok(Ok(cpio)) => {
                    tracing::info!(bytes = cpio.len(), "built the service-mode initrd");
                    Ok(Arc::new(cpio))
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("the build stopped: {e}")),
            }
        })
        .await;
    match built {
        Ok(cpio) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            cpio.as_ref().clone(),
        )
            .into_response(),
        Err(why) => {
            tracing::error!(error = %why, "no service-mode initrd");
            plain(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"))
        }
    }
}

/// Why no host key was handed out (each a 404: nothing to give, not a refusal).
enum NoKey {
    NotANode,
    NotInService,
    NoNodeKey,
}

/// `GET /boot/{mac}/host-key`.
pub async fn host_key(api: Arc<Api>, mac: Mac, from: Option<Ipv4Addr>) -> Response {
    let key = from_own_lease(&api, mac, from, move |store, _| {
        store.read(|r| {
            let Some(node) = r.node_by_mac(mac)? else {
                return Ok(Err(NoKey::NotANode));
            };
            if !crate::service::is_on(r, &node.name)? {
                return Ok(Err(NoKey::NotInService));
            }
            Ok(match crate::exec::key::secret(r)? {
                Some(secret) => Ok(crate::service::hostkey::derive(&secret, &node.name)),
                None => Err(NoKey::NoNodeKey),
            })
        })
    })
    .await;
    match key {
        Ok(Ok(key)) => plain(StatusCode::OK, key.private),
        Ok(Err(why)) => plain(
            StatusCode::NOT_FOUND,
            match why {
                NoKey::NotANode => format!("{mac} is not a node\n"),
                NoKey::NotInService => format!("{mac} is not in service mode\n"),
                NoKey::NoNodeKey => {
                    "the pool has no node key yet (`drover exec` makes it)\n".into()
                }
            },
        ),
        Err(refused) => refused,
    }
}

/// `GET /boot/{mac}/service`: `on` while the node with `mac` is in service mode, else `off`.
pub async fn mode(api: Arc<Api>, mac: Mac, from: Option<Ipv4Addr>) -> Response {
    let on = from_own_lease(&api, mac, from, move |store, _| {
        let on = store.read(|r| match r.node_by_mac(mac)? {
            Some(node) => crate::service::is_on(r, &node.name),
            None => Ok(false),
        })?;
        Ok(on)
    })
    .await;
    match on {
        Ok(true) => plain(StatusCode::OK, "on\n".into()),
        Ok(false) => plain(StatusCode::OK, "off\n".into()),
        Err(refused) => refused,
    }
}
