//! The pool port under hostile peers and eavesdroppers, through the real binary: two members
//! on loopback (distinct ports), `tcpdump` capturing their pool traffic (TCP and UDP) while
//! a node's BMC password and a user's password hash replicate from A to B.
//!
//! - The capture holds pool traffic, and neither secret appears in it, though both reach
//!   B's store (read back from its LMDB file, so the check could fail).
//! - Meanwhile a thread keeps more silent connections open to A's pool port than A has
//!   serving slots, from another loopback address: replication still happens.
//! - Connections whose first bytes claim a 32 MiB frame, each followed by 16 MiB, are closed
//!   after the handshake's fixed size: A's peak memory does not grow by their frames.
//!
//! A replayed recorded session is refused in `pool::replication`'s test (a recording proxy
//! in front of the real listener). Needs root (capture on `lo`) and tcpdump.

mod common;

use common::api::{cli_stdin, free_port, PASSWORD};
use common::Drover;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const BMC_PASSWORD: &str = "bmc-Secret-7f3a91";

fn pool_config(port: u16) -> String {
    common::config_only(
        &[],
        &format!("[pool]\naddress = \"127.0.0.1\"\nport = {port}\n"),
    )
}

/// A TCP connection to `to` from `from` (another loopback address than the members').
fn connect_from(from: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let local: SocketAddr = format!("{from}:0").parse().expect("an address");
    socket.bind(&local.into())?;
    socket.connect(&to.into())?;
    Ok(socket.into())
}

/// The `$argon2id$...` string in a store file (the user's hash), if any.
fn argon2_hash(store: &[u8]) -> Option<Vec<u8>> {
    let at = store.windows(10).position(|w| w == b"$argon2id$")?;
    let end = store[at..]
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || b"$=,+/".contains(b)))?;
    Some(store[at..at + end].to_vec())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Peak resident memory of a process, in KiB.
fn vm_hwm(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[test]
fn secrets_do_not_cross_in_clear_and_strangers_hold_nothing() {
    common::require_root();
    let tcpdump = common::require_cmd("tcpdump", "tcpdump");
    let (pa, pb) = (free_port(), free_port());
    let a_pool: SocketAddr = format!("127.0.0.1:{pa}").parse().unwrap();

    let mut a = Drover::new();
    a.cli_ok(&["pool", "init"]);
    let key = a.state_dir().join("cluster.key");
    // The user whose password hash replicates.
    let (ok, out, err) = cli_stdin(&a, &["admin", "passwd"], &format!("{PASSWORD}\n"));
    assert!(ok, "{out}{err}");
    let mut b = Drover::new();
    b.cli_ok(&[
        "pool",
        "join",
        &a_pool.to_string(),
        "--key-file",
        key.to_str().unwrap(),
    ]);
    let pw = a.scratch().join("bmc-password");
    std::fs::write(&pw, format!("{BMC_PASSWORD}\n")).unwrap();
    a.cli_ok(&["node", "add", "n1", "--mac", "52:54:00:00:5e:01"]);
    a.cli_ok(&[
        "node",
        "set",
        "n1",
        "--bmc",
        "198.18.9.9",
        "--bmc-user",
        "admin",
        "--bmc-password-file",
        pw.to_str().unwrap(),
    ]);
    let a_store = std::fs::read(a.state_dir().join("store/data.mdb")).unwrap();
    let hash = argon2_hash(&a_store).expect("A's store holds the admin's password hash");
    assert!(contains(&a_store, BMC_PASSWORD.as_bytes()));

    // Capture everything on both members' pool ports.
    let capture = a.scratch().join("pool.pcap");
    let capture_log = a.scratch().join("tcpdump.log");
    let mut dump = std::process::Command::new(tcpdump)
        .args(["-i", "lo", "-n", "-U", "-s", "0", "-w"])
        .arg(&capture)
        .arg(format!("port {pa} or port {pb}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&capture_log).unwrap())
        .spawn()
        .expect("start tcpdump");
    let listening = common::wait_until(Duration::from_secs(10), || {
        common::read_lossy(&capture_log).contains("listening on")
    });
    assert!(listening, "tcpdump: {}", common::read_lossy(&capture_log));

    a.serve_with(None, "lo", &pool_config(pa));

    // Silent connections from another address, reopened as A closes them.
    let stop = Arc::new(AtomicBool::new(false));
    let keeper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            let mut opened = 0usize;
            while !stop.load(Ordering::Relaxed) {
                held.retain(|s| {
                    let _ = s.set_nonblocking(true);
                    let mut b = [0u8; 1];
                    // Open while a read would block; closed once it reads 0 or fails.
                    matches!((&*s).read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                });
                while held.len() < 40 {
                    match connect_from("127.0.0.3", a_pool) {
                        Ok(s) => {
                            held.push(s);
                            opened += 1;
                        }
                        Err(_) => break,
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            opened
        })
    };

    b.serve_with(None, "lo", &pool_config(pb));
    let b_store = b.state_dir().join("store/data.mdb");
    let replicated = common::wait_until(Duration::from_secs(30), || {
        let s = std::fs::read(&b_store).unwrap_or_default();
        contains(&s, BMC_PASSWORD.as_bytes()) && contains(&s, &hash)
    });
    assert!(
        replicated,
        "the secrets did not replicate to B while silent connections were held:\n{}",
        b.log_tail(20)
    );
    assert!(b.cli_ok(&["node", "list"]).contains("n1"));
    stop.store(true, Ordering::Relaxed);
    let opened = keeper.join().unwrap();
    assert!(opened >= 40, "only {opened} silent connections were opened");

    common::signal(dump.id(), "INT");
    let _ = dump.wait();
    let wire = std::fs::read(&capture).unwrap();
    eprintln!("captured {} bytes of pool traffic", wire.len());
    // Membership datagrams and the exchanges that carried the rows to B.
    assert!(
        wire.len() > 8 * 1024,
        "{}",
        common::read_lossy(&capture_log)
    );
    assert!(
        !contains(&wire, BMC_PASSWORD.as_bytes()),
        "the BMC password crossed the pool wire in clear"
    );
    assert!(
        !contains(&wire, &hash) && !contains(&wire, b"$argon2id$"),
        "a password hash crossed the pool wire in clear"
    );
    assert!(
        !contains(&wire, br#""name":"n1""#),
        "store rows crossed in clear"
    );

    // Frame headers claiming 32 MiB from peers without the key, each followed by 16 MiB.
    let pid = a.pid().unwrap();
    let before = vm_hwm(pid);
    let floods: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let Ok(mut s) = connect_from("127.0.0.4", a_pool) else {
                    return 0;
                };
                let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
                let mut sent = 0usize;
                if s.write_all(&(32u32 << 20).to_be_bytes()).is_ok() {
                    sent += 4;
                    let chunk = vec![0x5au8; 1 << 20];
                    for _ in 0..16 {
                        if s.write_all(&chunk).is_err() {
                            break;
                        }
                        sent += chunk.len();
                    }
                }
                sent
            })
        })
        .collect();
    let sent: Vec<usize> = floods.into_iter().map(|t| t.join().unwrap()).collect();
    let after = vm_hwm(pid);
    eprintln!("A's peak memory {before} KiB -> {after} KiB; bytes accepted per flood: {sent:?}");
    assert!(
        after < before + 32 * 1024,
        "8 unauthenticated 32 MiB frames grew A's peak memory from {before} to {after} KiB"
    );
    assert!(
        sent.iter().all(|&n| n < 16 << 20),
        "A read a whole 16 MiB body from a peer without the key: {sent:?}"
    );
}

/// `(address, state)` of the other members in `drover pool status --json`.
fn others(d: &Drover) -> Vec<(String, String)> {
    let out = d.cli(&["pool", "status", "--json"]);
    if !out.status.success() {
        return Vec::new();
    }
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    status["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    (
                        m["addr"].as_str().unwrap_or("").to_string(),
                        m["state"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn sees_alive(d: &Drover, addr: &str) -> bool {
    others(d).iter().any(|(a, s)| a == addr && s == "alive")
}

/// Three members on loopback (no root): A rekeys while C is stopped. A and B go on
/// replicating through the transition and after it, with the new key in both their key files;
/// C, back with only the old key, is refused by both.
#[test]
fn rekey_keeps_replication_going_and_then_refuses_the_old_key() {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let mut d: Vec<Drover> = (0..3).map(|_| Drover::new()).collect();
    d[0].cli_ok(&["pool", "init"]);
    let key_file = d[0].state_dir().join("cluster.key");
    let old_key = std::fs::read_to_string(&key_file).unwrap();
    for x in &d[1..] {
        x.cli_ok(&[
            "pool",
            "join",
            &addr(0),
            "--key-file",
            key_file.to_str().unwrap(),
        ]);
    }
    for (i, x) in d.iter_mut().enumerate() {
        x.serve_with(None, "lo", &pool_config(ports[i]));
    }
    let formed = common::wait_until(Duration::from_secs(30), || {
        (0..3).all(|i| {
            (0..3)
                .filter(|j| *j != i)
                .all(|j| sees_alive(&d[i], &addr(j)))
        })
    });
    assert!(formed, "the pool did not form:\n{}", d[0].log_tail(20));
    d[2].stop();

    let out = d[0].cli_ok(&["pool", "rekey", "--transition", "10"]);
    assert!(out.contains("new cluster key"), "{out}");
    let again = d[0].cli(&["pool", "rekey", "--transition", "10"]);
    assert!(!again.status.success(), "a second rekey during the first");
    // A write during the transition reaches B.
    d[0].cli_ok(&["node", "add", "during", "--mac", "52:54:00:00:5e:11"]);
    let has = |x: &Drover, name: &str| x.cli_ok(&["node", "list"]).contains(name);
    assert!(
        common::wait_until(Duration::from_secs(20), || has(&d[1], "during")),
        "{}",
        d[1].log_tail(20)
    );
    // The transition ends on both: the new key in both key files, no rekey pending.
    let b_key = d[1].state_dir().join("cluster.key");
    let done = common::wait_until(Duration::from_secs(30), || {
        let (a, b) = (
            std::fs::read_to_string(&key_file).unwrap_or_default(),
            std::fs::read_to_string(&b_key).unwrap_or_default(),
        );
        a != old_key && a == b && !d[0].state_dir().join("pool/rekey").exists()
    });
    assert!(done, "A:\n{}\nB:\n{}", d[0].log_tail(20), d[1].log_tail(20));
    assert!(d[1].log().contains("passed on a new cluster key"));
    // After it, replication goes on with the new key, both ways.
    d[1].cli_ok(&["node", "add", "after", "--mac", "52:54:00:00:5e:12"]);
    assert!(
        common::wait_until(Duration::from_secs(20), || has(&d[0], "after")),
        "{}",
        d[0].log_tail(20)
    );
    assert!(sees_alive(&d[0], &addr(1)) && sees_alive(&d[1], &addr(0)));

    // C comes back holding only the old key: refused by both, it stays alone and gets none
    // of the writes.
    d[2].serve_with(None, "lo", &pool_config(ports[2]));
    let refused = common::wait_until(Duration::from_secs(20), || {
        let out = d[0].cli(&["pool", "status"]);
        String::from_utf8_lossy(&out.stdout).contains("not signed with this pool's key")
    });
    assert!(refused, "{}", d[0].log_tail(20));
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !sees_alive(&d[2], &addr(0)) && !sees_alive(&d[2], &addr(1)),
        "{:?}",
        others(&d[2])
    );
    assert!(!sees_alive(&d[0], &addr(2)), "{:?}", others(&d[0]));
    assert!(!has(&d[2], "after"), "C replicated with the retired key");
}
