//! A lab: a network namespace with bridge `br0` (198.18.0.1/24), one tap per VM, a scratch
//! directory, and the guest assets that `scripts/lab-assets` builds into `lab/`.

use super::vm::{Firmware, Medium, Vm, VmSpec};
use crate::common::{repo_root, require_cmd, require_file, Netns, TempDir};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

pub const BRIDGE: &str = "br0";
pub const SERVER_IP: &str = "198.18.0.1";
pub const SERVER_CIDR: &str = "198.18.0.1/24";

/// Paths of the guest assets in `lab/` (made by `scripts/lab-assets`).
pub struct Assets {
    pub kernel: PathBuf,
    pub marker_initrd: PathBuf,
    pub ramroot: PathBuf,
    /// A root holding `lib/modules/KVER/` with the NIC drivers.
    pub modules: PathBuf,
    pub kver: String,
}

impl Assets {
    /// The assets, or a panic naming the script that makes them.
    pub fn require() -> Assets {
        let lab = repo_root().join("lab");
        let a = Assets {
            kernel: lab.join("kernel/vmlinuz"),
            marker_initrd: lab.join("images/marker/initrd.cpio"),
            ramroot: lab.join("images/ramroot/rootfs"),
            modules: lab.join("kernel/modules"),
            kver: std::fs::read_to_string(lab.join("kernel/version"))
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        let how = "run scripts/lab-assets (or scripts/setup)";
        require_file(&a.kernel, how);
        require_file(&a.marker_initrd, how);
        require_file(&a.ramroot.join("sbin/init"), how);
        require_file(&a.modules, how);
        a
    }
}

/// One lab namespace. Declare it before the servers and VMs that use it, so that they are
/// dropped (killed) first.
pub struct Lab {
    pub ns: Netns,
    pub dir: TempDir,
    next_tap: AtomicU32,
}

impl Lab {
    pub fn new(tag: &str) -> Lab {
        require_cmd("qemu-system-x86_64", "qemu-system-x86");
        let ns = Netns::new(tag);
        ns.add_bridge(BRIDGE, SERVER_CIDR);
        Lab {
            ns,
            dir: TempDir::new(tag),
            next_tap: AtomicU32::new(0),
        }
    }

    /// Starts a VM on a new tap of the bridge. `mac` like "52:54:00:00:00:11".
    pub fn vm(&self, name: &str, firmware: Firmware, mac: &str) -> Vm {
        let tap = self.new_tap();
        Vm::start(
            self.ns.name(),
            self.dir.path(),
            &VmSpec {
                name,
                firmware,
                mac,
                tap: &tap,
                memory_mib: 256,
            },
        )
    }

    /// Starts a VM on a new tap that boots from `stick` (a raw disk image on USB), with
    /// `memory_mib` of RAM.
    pub fn vm_with_stick(
        &self,
        name: &str,
        firmware: Firmware,
        mac: &str,
        stick: &std::path::Path,
        memory_mib: u32,
    ) -> Vm {
        self.vm_from(name, firmware, mac, &Medium::Stick(stick), memory_mib)
    }

    /// Starts a VM on a new tap that boots from `medium`, with `memory_mib` of RAM.
    pub fn vm_from(
        &self,
        name: &str,
        firmware: Firmware,
        mac: &str,
        medium: &Medium,
        memory_mib: u32,
    ) -> Vm {
        let tap = self.new_tap();
        let spec = VmSpec {
            name,
            firmware,
            mac,
            tap: &tap,
            memory_mib,
        };
        Vm::start_from(self.ns.name(), self.dir.path(), &spec, medium)
    }

    fn new_tap(&self) -> String {
        let tap = format!("tap{}", self.next_tap.fetch_add(1, Ordering::Relaxed));
        self.ns.add_tap(&tap, BRIDGE);
        tap
    }
}
