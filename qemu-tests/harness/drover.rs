//! A lab with drover serving on its bridge: `drover --state-dir DIR serve --interface br0` in
//! the namespace, images and nodes added through the CLI against the same state directory.

use super::lab::{Assets, Lab, BRIDGE, SERVER_IP};
use super::vm::{Firmware, Vm};
use crate::common::Drover;
use std::time::Duration;

/// How long `drover serve` may take to log that it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Fields drop in declaration order: drover is stopped before the namespace goes.
pub struct DroverLab {
    pub drover: Drover,
    pub lab: Lab,
    pub assets: Assets,
}

impl DroverLab {
    pub fn new(tag: &str) -> DroverLab {
        let assets = Assets::require();
        let lab = Lab::new(tag);
        let mut drover = Drover::new();
        let log = std::env::var("DROVER_LOG").unwrap_or_else(|_| "info".into());
        drover.env("DROVER_LOG", &log);
        DroverLab {
            drover,
            lab,
            assets,
        }
    }

    /// `drover image add marker --kernel lab/kernel/vmlinuz --initrd
    /// lab/images/marker/initrd.cpio --cmdline "console=ttyS0"`.
    pub fn add_marker_image(&self) {
        self.drover.cli_ok(&[
            "image",
            "add",
            "marker",
            "--kernel",
            path(&self.assets.kernel),
            "--initrd",
            path(&self.assets.marker_initrd),
            "--cmdline",
            "console=ttyS0",
        ]);
    }

    /// `drover image add ramroot --kernel lab/kernel/vmlinuz --rootfs
    /// lab/images/ramroot/rootfs --cmdline "console=ttyS0"`.
    pub fn add_ramroot_image(&self) {
        self.drover.cli_ok(&[
            "image",
            "add",
            "ramroot",
            "--kernel",
            path(&self.assets.kernel),
            "--rootfs",
            path(&self.assets.ramroot),
            "--cmdline",
            "console=ttyS0",
        ]);
    }

    /// `drover node add NAME --mac MAC --ip IP --image IMAGE`.
    pub fn add_node(&self, name: &str, mac: &str, ip: &str, image: &str) {
        self.drover.cli_ok(&[
            "node", "add", name, "--mac", mac, "--ip", ip, "--image", image,
        ]);
    }

    /// Starts `drover serve --interface br0` in the lab and waits until it logs that it is
    /// ready.
    pub fn serve(&mut self) {
        self.drover
            .start(Some(&self.lab.ns), &["serve", "--interface", BRIDGE]);
        self.drover.wait_log("drover: ready", READY_TIMEOUT);
    }

    /// A new API token named `name` (`drover token create`).
    pub fn token(&self, name: &str) -> String {
        self.drover
            .cli_ok(&["token", "create", "--name", name])
            .split_whitespace()
            .last()
            .expect("a token")
            .to_string()
    }

    /// drover's `/metrics` text, fetched with `token` from inside the lab.
    pub fn metrics(&self, token: &str) -> String {
        let out = self
            .lab
            .ns
            .cmd("curl")
            .args(["-sS", "-H"])
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!("http://{SERVER_IP}/metrics"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a VM whose failure report includes drover's log.
    pub fn boot(&self, name: &str, firmware: Firmware, mac: &str) -> Vm {
        let mut vm = self.lab.vm(name, firmware, mac);
        vm.show_on_failure("drover log", self.drover.log_path());
        vm
    }
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("lab paths are UTF-8")
}
