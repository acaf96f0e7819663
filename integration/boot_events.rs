//! Boot events from the services, through the real binary and real clients: busybox `udhcpc`
//! playing a node's PXE and iPXE firmware, then `curl` fetching iPXE firmware over TFTP and
//! HTTP from the address it was given. `drover node events` must show the DHCP offer and the
//! firmware fetch as the start of the node's boot, and nothing for a client that is not
//! network-boot firmware.
//!
//! Layout: a server namespace with `bsrv0` (198.18.0.1/24) running `drover serve --interface
//! bsrv0` with its default services, a client namespace with the veth peer `bcli0`, whose MAC
//! and address are set to play each node.
//!
//! Needs root, `ip` (iproute2), `udhcpc` (Debian package `udhcpc`) and `curl`.

mod common;

use common::{require_cmd, require_root, run_ok, wait_until, Drover, Netns};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const N1_MAC: &str = "52:54:00:00:00:01";
const N1_IP: &str = "198.18.0.10";
const N2_MAC: &str = "52:54:00:00:00:02";

struct Lab {
    drover: Drover,
    client: Netns,
    // Dropped after drover, which runs in it.
    _server: Netns,
    udhcpc: PathBuf,
    curl: PathBuf,
}

impl Lab {
    fn new() -> Lab {
        require_root();
        require_cmd("ip", "iproute2");
        let udhcpc = require_cmd("udhcpc", "udhcpc");
        let curl = require_cmd("curl", "curl");
        let server = Netns::new("bevs");
        let client = Netns::new("bevc");
        server.add_veth("bsrv0", &client, "bcli0");
        server.add_addr("bsrv0", "198.18.0.1/24");
        let mut drover = Drover::new();
        drover.env("DROVER_LOG", "drover=debug");
        drover.cli_ok(&[
            "network",
            "add",
            "lab",
            "--subnet",
            "198.18.0.0/24",
            "--range",
            "198.18.0.100-198.18.0.199",
        ]);
        drover.cli_ok(&["node", "add", "n1", "--mac", N1_MAC, "--ip", N1_IP]);
        // n2 boots an image (its kernel need not be real: nothing here runs it).
        let kernel = drover.scratch().join("vmlinuz");
        std::fs::write(&kernel, b"not a kernel").unwrap();
        let kernel = kernel.to_str().expect("temp paths are UTF-8").to_string();
        drover.cli_ok(&["image", "add", "tiny", "--kernel", &kernel]);
        drover.cli_ok(&["node", "add", "n2", "--mac", N2_MAC, "--image", "tiny"]);
        drover.start(Some(&server), &["serve", "--interface", "bsrv0"]);
        drover.wait_log("drover: ready", Duration::from_secs(20));
        Lab {
            drover,
            client,
            _server: server,
            udhcpc,
            curl,
        }
    }

    /// Plays `mac` and asks for an address with udhcpc's `extra` options; returns the address.
    fn dhcp(&self, mac: &str, extra: &[&str]) -> String {
        self.client.ip(&["addr", "flush", "dev", "bcli0"]);
        self.client.ip(&["link", "set", "bcli0", "down"]);
        self.client.ip(&["link", "set", "bcli0", "address", mac]);
        self.client.ip(&["link", "set", "bcli0", "up"]);
        let script = self.drover.scratch().join("udhcpc.sh");
        let dump = self.drover.scratch().join("ip");
        std::fs::write(
            &script,
            "#!/bin/sh\n[ \"$1\" = bound ] && echo \"$ip\" > \"$DHCP_DUMP\"\nexit 0\n",
        )
        .unwrap();
        run_ok(Command::new("chmod").arg("755").arg(&script));
        let _ = std::fs::remove_file(&dump);
        let out = self
            .client
            .cmd(&self.udhcpc)
            .args([
                "-i", "bcli0", "-n", "-q", "-f", "-t", "6", "-T", "1", "-A", "1", "-s",
            ])
            .arg(&script)
            .args(extra)
            .env("DHCP_DUMP", &dump)
            .output()
            .expect("run udhcpc");
        let ip = std::fs::read_to_string(&dump).unwrap_or_else(|_| {
            panic!(
                "udhcpc {mac} {extra:?} got no lease ({}):\n{}\ndrover log:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.drover.log_tail(40)
            )
        });
        let ip = ip.trim().to_string();
        self.client
            .ip(&["addr", "add", &format!("{ip}/24"), "dev", "bcli0"]);
        ip
    }

    /// Fetches `url` with curl from the client namespace; panics unless it succeeds.
    /// Returns the size fetched.
    fn fetch(&self, url: &str, out: &Path) -> u64 {
        let result = self
            .client
            .cmd(&self.curl)
            .args(["-sS", "--max-time", "30", "-o"])
            .arg(out)
            .arg(url)
            .output()
            .expect("run curl");
        assert!(
            result.status.success(),
            "curl {url} failed: {}\ndrover log:\n{}",
            String::from_utf8_lossy(&result.stderr),
            self.drover.log_tail(40)
        );
        std::fs::metadata(out).map(|m| m.len()).unwrap_or(0)
    }

    /// `drover node events NAME` once it shows `want` events (they are written in the
    /// background); panics with what it shows otherwise.
    fn events(&self, name: &str, want: usize) -> String {
        let mut shown = String::new();
        let enough = wait_until(Duration::from_secs(10), || {
            shown = self.drover.cli_ok(&["node", "events", name]);
            // A header line, the column titles, then one line per event.
            shown.lines().count() >= 2 + want
        });
        assert!(enough, "{name} has fewer than {want} events:\n{shown}");
        shown
    }
}

fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn dhcp_offers_and_firmware_fetches_start_a_boot() {
    let lab = Lab::new();
    let scratch = lab.drover.scratch().to_path_buf();

    // n1's OS asking for an address (no PXE options) is not a boot step.
    assert_eq!(lab.dhcp(N1_MAC, &[]), N1_IP);
    // n1's BIOS PXE ROM: the offer, then undionly.kpxe over TFTP from its reserved address.
    let pxe = ["-x", "0x5d:0000", "-V", "PXEClient:Arch:00000:UNDI:002001"];
    assert_eq!(lab.dhcp(N1_MAC, &pxe), N1_IP);
    let size = lab.fetch(
        "tftp://198.18.0.1/undionly.kpxe",
        &scratch.join("undionly.kpxe"),
    );
    assert!(size > 10_000, "undionly.kpxe is only {size} bytes");
    let events = lab.events("n1", 2);
    assert!(events.starts_with("n1: booting"), "{events}");
    let dhcp = lines_with(&events, " dhcp ");
    assert_eq!(
        dhcp.len(),
        1,
        "one offer to firmware, none to the OS:\n{events}"
    );
    assert!(
        dhcp[0].contains(&format!("offer {N1_IP} to PXE, boot file undionly.kpxe")),
        "{events}"
    );
    let firmware = lines_with(&events, " firmware ");
    assert_eq!(firmware.len(), 1, "{events}");
    assert!(
        firmware[0].contains("tftp") && firmware[0].contains("undionly.kpxe"),
        "{events}"
    );

    // n2 has no reservation: iPXE's offer, then EFI firmware over HTTP from its leased
    // address (node found through the lease).
    let ipxe = ["-x", "0x4d:69505845", "-x", "0x5d:0007"];
    let ip = lab.dhcp(N2_MAC, &ipxe);
    assert_eq!(ip, "198.18.0.100");
    let size = lab.fetch(
        "http://198.18.0.1/firmware/ipxe.efi",
        &scratch.join("ipxe.efi"),
    );
    assert!(size > 10_000, "ipxe.efi is only {size} bytes");
    let events = lab.events("n2", 2);
    let dhcp = lines_with(&events, " dhcp ");
    assert_eq!(dhcp.len(), 1, "{events}");
    assert!(
        dhcp[0].contains(&format!(
            "offer {ip} to iPXE, boot file http://198.18.0.1/boot/{N2_MAC}"
        )),
        "{events}"
    );
    let firmware = lines_with(&events, " firmware ");
    assert_eq!(firmware.len(), 1, "{events}");
    assert!(
        firmware[0].contains("http") && firmware[0].contains("ipxe.efi"),
        "{events}"
    );
    // n1's timeline did not change: n2's fetches are not n1's.
    assert_eq!(lines_with(&lab.events("n1", 2), " firmware ").len(), 1);

    // The boot goes on with the script: it joins the boot that the offer started.
    let _ = lab.fetch(
        &format!("http://198.18.0.1/boot/{N2_MAC}"),
        &scratch.join("script"),
    );
    let events = lab.events("n2", 3);
    assert_eq!(lines_with(&events, " script ").len(), 1, "{events}");
    assert_eq!(lines_with(&events, " dhcp ").len(), 1, "{events}");
}
