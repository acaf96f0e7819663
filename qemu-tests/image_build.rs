//! A Debian image made by `drover image build` boots nodes (issue 16): one build, from a
//! recipe whose `/sbin/init` prints a marker line (the image's version file, the root's
//! filesystem type) and powers off, is shared by every boot here:
//! - the node boots it from RAM with the kernel of the image's own `/boot` (no `--kernel`),
//!   then from NFS (`image set --root nfs`);
//! - `image shell` writes the version file; the node's next boot shows the new version;
//! - `image rollback` to version 1; the next boot shows the old one.
//!
//! The recipe names Debian's cloud kernel (virtio and NFSv4 as modules, a third of the size
//! of `linux-image-amd64`'s ~400 MB of modules). The VM has 1024 MiB: the tree is ~300 MB and
//! a RAM root holds it all in tmpfs (256 MiB, the lab's default, is too little).
//!
//! Needs root, what `scripts/setup` installs (mmdebstrap or debootstrap among it), the lab
//! assets, and the Debian mirror of the machine's apt sources. A release binary (the agent's
//! initramfs must fit the VM). Four boots and a bootstrap.

#[path = "../integration/common/mod.rs"]
mod common;
mod harness;

use common::*;
use harness::*;
use std::time::Duration;

/// The Debian kernel and systemd-less init under TCG, plus the root's download or mount.
const BOOT_TIMEOUT: Duration = Duration::from_secs(420);
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);
const MEMORY_MIB: u32 = 1024;
const NODE: (&str, &str, &str) = ("n1", "52:54:00:00:16:01", "198.18.0.61");
const NFS_CONFIG: &str = "[nfs]\nenabled = true\n";

/// The image's init: one marker line, then power off (the image has no systemd).
const INIT: &str = r#"#!/bin/sh
mount -t proc proc /proc 2>/dev/null
version=$(cat /etc/drover-version 2>/dev/null || echo none)
root=$(awk '$2 == "/" { t = $3 } END { print t }' /proc/mounts)
echo "DROVER-BUILT-IMAGE version=$version root=$root kernel=$(uname -r)" > /dev/console
sync
echo o > /proc/sysrq-trigger
sleep 30
"#;

fn recipe() -> String {
    format!(
        "suite = \"bookworm\"\nkernel = \"linux-image-cloud-amd64\"\n\
         commands = [\"echo base > /etc/drover-version\"]\n\n\
         [[files]]\npath = \"/sbin/init\"\nmode = 0o755\ncontent = {INIT:?}\n"
    )
}

/// One boot of the node: its marker line, after which the VM powers off.
fn boot(d: &DroverLab, vm_name: &str) -> String {
    let mut vm = d.lab.vm_from(
        vm_name,
        Firmware::Bios,
        NODE.1,
        &Medium::Network,
        MEMORY_MIB,
    );
    vm.show_on_failure("drover log", d.drover.log_path());
    let line = vm.wait_line("DROVER-BUILT-IMAGE", BOOT_TIMEOUT);
    vm.wait_exit(EXIT_TIMEOUT);
    vm.print_phases();
    eprintln!("{vm_name}: {line}");
    line
}

#[test]
#[ignore = "long: a Debian bootstrap and four boots of a 300 MB image; run by scripts/test --long"]
fn built_image_boots_from_ram_and_nfs_and_follows_shell_and_rollback() {
    require_root();
    let mut d = DroverLab::new("ibuild");
    let recipe_file = d.drover.scratch().join("recipe.toml");
    std::fs::write(&recipe_file, recipe()).unwrap();
    let started = std::time::Instant::now();
    d.drover.cli_ok(&[
        "image",
        "build",
        "deb",
        "--recipe",
        recipe_file.to_str().unwrap(),
        "--cmdline",
        "console=ttyS0 no_timer_check",
    ]);
    eprintln!("image build took {:?}", started.elapsed());
    d.add_node(NODE.0, NODE.1, NODE.2, "deb");
    d.drover.serve_with(Some(&d.lab.ns), BRIDGE, NFS_CONFIG);

    let ram = boot(&d, "ram");
    assert_eq!(field(&ram, "version"), Some("base"), "{ram}");
    assert_ne!(field(&ram, "root"), Some("nfs4"), "{ram}");
    let kernel = field(&ram, "kernel").unwrap_or_default().to_string();
    assert!(
        kernel.ends_with("-cloud-amd64"),
        "not the image's kernel: {ram}"
    );

    d.drover.cli_ok(&["image", "set", "deb", "--root", "nfs"]);
    let nfs = boot(&d, "nfs");
    assert_eq!(field(&nfs, "version"), Some("base"), "{nfs}");
    assert_eq!(field(&nfs, "root"), Some("nfs4"), "{nfs}");

    let edit = "echo edited > /etc/drover-version";
    let out = d
        .drover
        .cli_ok(&["image", "shell", "deb", "--", "sh", "-c", edit]);
    assert!(out.contains("1 changed"), "{out}");
    assert!(out.contains("version 2"), "{out}");
    let edited = boot(&d, "edited");
    assert_eq!(field(&edited, "version"), Some("edited"), "{edited}");

    d.drover.cli_ok(&["image", "rollback", "deb", "1"]);
    let back = boot(&d, "rolled-back");
    assert_eq!(field(&back, "version"), Some("base"), "{back}");
    assert_eq!(field(&back, "kernel"), Some(kernel.as_str()), "{back}");
}
