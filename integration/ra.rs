//! IPv6 router advertisements of the real binary under a router-solicitation flood
//! (issue 15): answers are paced as RFC 4861 §6.2.6 asks, at most one multicast
//! advertisement per 3 s, however many solicitations arrive.
//!
//! `drover serve` runs on bridge `br0` in a network namespace with only RA enabled and a long
//! periodic interval, so every advertisement after the first is an answer. A Python helper on
//! the bridge's other veth end (`br0k1`) sends solicitations and counts the advertisements it
//! sees. Needs root and `python3`.

mod common;

use std::time::Duration;

/// Sends `count` solicitations `gap` seconds apart on `br0k1`, listens `listen` seconds in
/// all, prints the number of advertisements seen.
const HELPER: &str = r#"
import socket, sys, time
count, gap, listen = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"br0k1")
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
s.settimeout(0.05)
index = socket.if_nametoindex("br0k1")
start, sent, seen = time.time(), 0, 0
while time.time() - start < listen:
    if sent < count and time.time() - start >= sent * gap:
        s.sendto(bytes([133, 0, 0, 0, 0, 0, 0, 0]), ("ff02::2", 0, 0, index))
        sent += 1
    try:
        data = s.recv(1500)
        if data[:1] == bytes([134]):
            seen += 1
    except socket.timeout:
        pass
print(seen)
"#;

#[test]
fn a_solicitation_flood_gets_paced_answers() {
    common::require_cmd("python3", "python3");
    let ns = common::Netns::new("ra-pace");
    ns.add_bridge("br0", "198.18.0.1/24");
    let mut d = common::Drover::new();
    d.serve_with(
        Some(&ns),
        "br0",
        &common::config_only(&["ra"], "[ra]\ninterval = 3600\n"),
    );
    // Let the first (periodic) advertisement go out before counting.
    std::thread::sleep(Duration::from_millis(500));
    // 40 solicitations over 2 s, counted for 4.5 s: with the first advertisement at
    // start-up, one answer is due 3 s after it, the rest are merged into it.
    let out = ns
        .cmd("python3")
        .args(["-c", HELPER, "40", "0.05", "4.5"])
        .output()
        .expect("run python3");
    let text = String::from_utf8_lossy(&out.stdout);
    let seen: u32 = text.trim().parse().unwrap_or_else(|_| {
        panic!(
            "helper failed: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        (1..=2).contains(&seen),
        "{seen} advertisements for 40 solicitations in 4.5 s\n{}",
        d.log_tail(20)
    );
}
