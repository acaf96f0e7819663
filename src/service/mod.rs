//! Service mode: a node that stays in drover's initramfs for repair instead of starting its
//! image. `drover node set NODE --service` turns it on, `--no-service` off; the node's next
//! boot script then carries `drover.service=1` and a second initrd with an ssh server
//! ([`tools`]), and the agent (`crate::agent::service`) brings up the network, mounts the
//! image read-only under `/image`, starts sshd with the node's stable host key ([`hostkey`])
//! and the pool's node key, and reboots once the mode is off again.
//!
//! The mode is a replicated setting per node ([`setting_name`]), written in the same
//! transaction as the node's other changes (`admin::set_node`) and removed with the node.
//!
//! Not here: the boot script (`crate::http::ipxe`), the HTTP handlers (`crate::http::service`),
//! what the agent does (`crate::agent::service`).

pub mod hostkey;
pub mod tools;

use crate::store::model::Setting;
use crate::store::{Reader, StoreError, Writer};

/// The kernel argument that tells the agent to stay in service mode.
pub const CMDLINE_FLAG: &str = "drover.service=1";
/// Where the boot path serves the ssh server's initrd.
pub const TOOLS_PATH: &str = "/service/tools.cpio";
/// The initrd's name on the kernel line (UEFI kernels find initrds by name, see LAB.md).
pub const TOOLS_NAME: &str = "tools.cpio";

/// The setting that holds a node's service mode (`true`; absent: off).
pub fn setting_name(node: &str) -> String {
    format!("service-mode-{node}")
}

/// Whether `node` is in service mode.
pub fn is_on(r: &Reader<'_>, node: &str) -> Result<bool, StoreError> {
    Ok(r.get::<Setting>(&setting_name(node))?
        .is_some_and(|s| s.value == serde_json::Value::Bool(true)))
}

/// Turns `node`'s service mode on or off (the caller checks that the node exists).
pub fn set(w: &mut Writer<'_, '_>, node: &str, on: bool) -> Result<(), StoreError> {
    let name = setting_name(node);
    if on {
        w.put(&Setting {
            name,
            value: serde_json::Value::Bool(true),
        })
    } else {
        w.delete::<Setting>(&name).map(|_| ())
    }
}
