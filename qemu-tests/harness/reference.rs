//! The reference boot server: dnsmasq (DHCP + TFTP) + python's `http.server` + a minimal IPv6
//! router advertisement, tuned as LAB.md measured (no ping probe, `no-pxedhcp`, an RA without
//! M/O flags so iPXE does not wait for IPv6).
//!
//! It proves the harness and the lab assets without drover (STYLE.md: every suite is first
//! proven against a reference server), and it is the yardstick for drover's boot times.

use super::lab::{Assets, Lab, BRIDGE, SERVER_IP};
use super::vm::Vm;
use crate::common::{read_lossy, repo_root, require_cmd, tail, wait_until, Netns};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Sends an RA (no flags, router lifetime 0, no prefix) on the interface every 500 ms: enough
/// for iPXE to stop waiting for IPv6 autoconfiguration, without giving anyone an address.
const RA_PY: &str = r#"
import socket, struct, sys, time
idx = socket.if_nametoindex(sys.argv[1])
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
ra = struct.pack('!BBHBBHII', 134, 0, 0, 64, 0, 0, 0, 0)
print('ra: sending on', sys.argv[1], flush=True)
while True:
    try:
        s.sendto(ra, ('ff02::1', 0, 0, idx))
    except OSError as e:
        print('ra:', e, flush=True)
    time.sleep(0.5)
"#;

pub struct Reference<'a> {
    ns: &'a Netns,
    pub dir: PathBuf,
    pub dnsmasq_log: PathBuf,
    pub http_log: PathBuf,
    pids: Vec<u32>,
}

impl<'a> Reference<'a> {
    /// Starts dnsmasq, the HTTP server and the RA sender in the lab. Every iPXE client gets
    /// `boot.ipxe`, which boots the marker image with `drover.node=<node>`.
    pub fn start(lab: &'a Lab, assets: &Assets, node: &str) -> Reference<'a> {
        let dnsmasq = require_cmd("dnsmasq", "dnsmasq-base");
        let python = require_cmd("python3", "python3");
        let dir = lab.dir.join("reference");
        let tftp = dir.join("tftp");
        let www = dir.join("www");
        for d in [&tftp, &www] {
            std::fs::create_dir_all(d).expect("create the reference dirs");
        }
        // iPXE for firmware that is not iPXE already (the embedded copies drover serves).
        for f in ["undionly.kpxe", "ipxe.efi", "snponly.efi"] {
            let src = repo_root().join("firmware/ipxe").join(f);
            let src = if src.is_file() {
                src
            } else {
                Path::new("/usr/lib/ipxe").join(f)
            };
            let _ = std::fs::copy(&src, tftp.join(f));
        }
        std::fs::copy(&assets.kernel, www.join("vmlinuz")).expect("copy the kernel");
        std::fs::copy(&assets.marker_initrd, www.join("initrd.cpio")).expect("copy the initrd");
        // `initrd=` on the kernel line: UEFI kernels find their initrd only that way (LAB.md).
        std::fs::write(
            www.join("boot.ipxe"),
            format!(
                "#!ipxe\n\
                 kernel http://{SERVER_IP}/vmlinuz initrd=initrd.cpio console=ttyS0 panic=-1 \
                 drover.node={node}\n\
                 initrd http://{SERVER_IP}/initrd.cpio\n\
                 boot\n"
            ),
        )
        .expect("write boot.ipxe");
        std::fs::write(dir.join("ra.py"), RA_PY).expect("write ra.py");

        let dnsmasq_log = dir.join("dnsmasq.log");
        let http_log = dir.join("http.log");
        let ra_log = dir.join("ra.log");
        let ns = &lab.ns;
        let mut pids = Vec::new();

        let mut c = ns.cmd(&dnsmasq);
        c.args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--bind-interfaces",
            "--log-dhcp",
            "--log-facility=-",
            "--no-ping",
            "--dhcp-authoritative",
            "--pid-file=",
            "--user=root",
            "--group=root",
        ])
        .arg(format!("--interface={BRIDGE}"))
        .arg("--dhcp-range=198.18.0.100,198.18.0.199,255.255.255.0,1h")
        .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
        .arg("--enable-tftp")
        .arg(format!("--tftp-root={}", tftp.display()))
        .arg("--dhcp-userclass=set:ipxe,iPXE")
        .arg("--dhcp-match=set:efi64,option:client-arch,7")
        .arg("--dhcp-match=set:efi64,option:client-arch,9")
        .arg("--dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe")
        .arg("--dhcp-boot=tag:!ipxe,tag:efi64,snponly.efi")
        .arg(format!("--dhcp-boot=tag:ipxe,http://{SERVER_IP}/boot.ipxe"))
        // iPXE: no-pxedhcp, do not wait for ProxyDHCP offers.
        .arg("--dhcp-option=tag:ipxe,encap:175,176,1b");
        pids.push(ns.spawn_logged(c, &dnsmasq_log));

        let mut c = ns.cmd(&python);
        c.args([
            "-u",
            "-m",
            "http.server",
            "80",
            "--bind",
            SERVER_IP,
            "--directory",
        ])
        .arg(&www);
        pids.push(ns.spawn_logged(c, &http_log));

        let mut c = ns.cmd(&python);
        c.arg("-u").arg(dir.join("ra.py")).arg(BRIDGE);
        pids.push(ns.spawn_logged(c, &ra_log));

        let r = Reference {
            ns,
            dir,
            dnsmasq_log,
            http_log,
            pids,
        };
        let ready = wait_until(Duration::from_secs(10), || {
            read_lossy(&r.dnsmasq_log).contains("DHCP, IP range")
                && read_lossy(&r.http_log).contains("Serving HTTP")
        });
        if !ready {
            panic!(
                "reference servers did not start:\n---- dnsmasq ----\n{}\n---- http ----\n{}",
                tail(&read_lossy(&r.dnsmasq_log), 30),
                tail(&read_lossy(&r.http_log), 30)
            );
        }
        r
    }

    /// Makes the VM's failure report include the reference servers' logs.
    pub fn show_logs(&self, vm: &mut Vm) {
        vm.show_on_failure("dnsmasq", &self.dnsmasq_log);
        vm.show_on_failure("http.server", &self.http_log);
    }
}

impl Drop for Reference<'_> {
    fn drop(&mut self) {
        for pid in &self.pids {
            self.ns.kill(*pid);
        }
    }
}
