//! A small boot storm through the real binary: 20 simulated nodes (`drover agent simulate`,
//! the agent minus the kernel parts) boot at once from one drover member. Every node must get
//! its own address, its boot script, the kernel, the initramfs and the whole image (byte
//! counts equal to what the member serves), and its boot events must reach the store up to
//! `ready`; the member's lease table must agree with what the nodes were given.
//!
//! Layout: a server namespace with the bridge `stbr` (198.18.0.1/24) running `drover serve
//! --interface stbr`, and one namespace per node whose `eth0` (MAC 52:54:5a:00:00:KK) is a
//! veth into the bridge. Links are not shaped here (`bench/storm.sh` shapes them).
//!
//! Needs root, `ip` (iproute2) and `curl`.

mod common;

use common::{require_cmd, require_root, run_ok, wait_until, Drover, Netns};
use std::collections::BTreeSet;
use std::time::Duration;

const NODES: usize = 20;
/// Image size: big enough that the downloads overlap.
const IMAGE_FILES: usize = 4;
const IMAGE_FILE_BYTES: usize = 1 << 20;

fn mac(i: usize) -> String {
    format!("52:54:5a:00:00:{i:02x}")
}

/// `Content-Length` of `path` on the member, asked from inside its namespace.
fn served_size(server: &Netns, path: &str) -> u64 {
    let out = run_ok(
        server
            .cmd("curl")
            .args(["-sfI".to_string(), format!("http://198.18.0.1{path}")]),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no Content-Length for {path}"))
}

#[test]
fn twenty_nodes_boot_at_once_from_one_member() {
    require_root();
    require_cmd("ip", "iproute2");
    require_cmd("curl", "curl");
    let server = Netns::new("storms");
    server.add_bridge("stbr", "198.18.0.1/24");
    let mut drover = Drover::new();
    // 100 addresses for 20 nodes: the range is not what is tested.
    let network = "network add lab --subnet 198.18.0.0/24 --range 198.18.0.100-198.18.0.199";
    drover.cli_ok(&network.split(' ').collect::<Vec<_>>());
    let root = drover.scratch().join("rootfs");
    std::fs::create_dir_all(root.join("sbin")).unwrap();
    std::fs::write(root.join("sbin/init"), "#!/bin/sh\n").unwrap();
    for f in 0..IMAGE_FILES {
        // Incompressible and distinct: a pseudo-random sequence per file.
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ f as u64;
        let data: Vec<u8> = (0..IMAGE_FILE_BYTES)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(root.join(format!("f{f}")), data).unwrap();
    }
    let kernel = drover.scratch().join("vmlinuz");
    std::fs::write(&kernel, vec![7u8; 100_000]).unwrap();
    let (kernel, root) = (kernel.to_str().unwrap(), root.to_str().unwrap());
    drover.cli_ok(&[
        "image", "add", "storm", "--kernel", kernel, "--rootfs", root,
    ]);
    let csv = drover.scratch().join("nodes.csv");
    let mut text = String::from("name,mac,ip,image,group\n");
    for i in 1..=NODES {
        text.push_str(&format!("n{i},{},,storm,\n", mac(i)));
    }
    std::fs::write(&csv, text).unwrap();
    drover.cli_ok(&["node", "import", csv.to_str().unwrap()]);
    drover.start(Some(&server), &["serve", "--interface", "stbr"]);
    drover.wait_log("drover: ready", Duration::from_secs(30));
    let rootfs = served_size(&server, "/images/storm/rootfs.tar");
    let initramfs = served_size(&server, "/images/storm/initramfs");

    let nodes: Vec<Netns> = (1..=NODES)
        .map(|i| {
            let ns = Netns::new("stormn");
            server.add_veth_to_bridge(&format!("stn{i}"), "stbr", &ns, "eth0");
            ns.ip(&["link", "set", "eth0", "address", &mac(i)]);
            ns
        })
        .collect();
    let out = |i: usize| drover.scratch().join(format!("n{i}.json"));
    let pids: Vec<u32> = nodes
        .iter()
        .enumerate()
        .map(|(k, ns)| {
            let mut cmd = ns.cmd(drover.bin());
            cmd.args(["agent", "simulate", "--iface", "eth0"]);
            let log = drover.scratch().join(format!("n{}.log", k + 1));
            cmd.stdout(std::fs::File::create(out(k + 1)).unwrap())
                .stderr(std::fs::File::create(log).unwrap());
            ns.spawn(cmd)
        })
        .collect();
    let done = wait_until(Duration::from_secs(600), || {
        nodes.iter().zip(&pids).all(|(ns, &p)| !ns.running(p))
    });
    assert!(done, "not every simulated node finished within 600 s");

    let mut addrs = BTreeSet::new();
    for i in 1..=NODES {
        let text = std::fs::read_to_string(out(i)).unwrap();
        let log = std::fs::read_to_string(drover.scratch().join(format!("n{i}.log")));
        let report: serde_json::Value = serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("n{i}: no report ({e}); its log: {log:?}"));
        assert_eq!(report["node"], format!("n{i}"), "{report}");
        assert_eq!(report["mac"], mac(i), "{report}");
        assert!(report["script_bytes"].as_u64().unwrap() > 0, "{report}");
        assert_eq!(report["kernel_bytes"], 100_000, "{report}");
        assert_eq!(report["initrd_bytes"], initramfs, "{report}");
        assert_eq!(report["image_bytes"], rootfs, "{report}");
        // sbin, sbin/init and the files (and the directories tar lists).
        assert!(
            report["image_entries"].as_u64().unwrap() > IMAGE_FILES as u64,
            "{report}"
        );
        let ip = report["ip"].as_str().unwrap().to_string();
        assert!(
            addrs.insert(ip.clone()),
            "n{i} got {ip}, which another node has"
        );
        let events = drover.cli_ok(&["node", "events", &format!("n{i}")]);
        for stage in [
            "dhcp", "script", "kernel", "initrd", "agent", "rootfs", "ready",
        ] {
            assert!(
                events
                    .lines()
                    .any(|l| l.split_whitespace().nth(3) == Some(stage)),
                "n{i}: no {stage} event:\n{events}"
            );
        }
    }
    let leases = drover.cli_ok(&["lease", "list"]);
    for i in 1..=NODES {
        let line = leases
            .lines()
            .find(|l| l.contains(&mac(i)))
            .unwrap_or_else(|| panic!("no lease for n{i}:\n{leases}"));
        let ip = line.split_whitespace().next().unwrap();
        assert!(
            addrs.contains(ip),
            "lease {line:?} is not an address a node reported"
        );
    }
    assert_eq!(
        leases.lines().filter(|l| l.starts_with("198.18.")).count(),
        NODES,
        "{leases}"
    );
}
