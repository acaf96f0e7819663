//! kill -9 storms through the real binary: nothing acknowledged on the wire is lost.
//!
//! DHCP: `drover serve` runs in a server namespace; a client namespace storms it with REQUESTs
//! from many clients (this test binary re-run there as a helper, printing every ACK it
//! receives). At a random moment the server is SIGKILLed; then every lease that was ACKed
//! before the kill must be in `drover lease list` (read from the store, as a restart would),
//! with the address and MAC of its ACK. Each round uses new clients and addresses, so a lease
//! from an earlier round cannot stand in for a lost one. [`ROUNDS`] rounds by default (CI),
//! `DROVER_CRASH_ROUNDS=N` for a longer run; the counts checked are printed.
//!
//! NFS: `drover serve` with NFS on loopback and a read-write export; a client opens one file
//! and writes numbered 16-byte records with stable (FILE_SYNC) WRITEs, each at its own
//! offset, until the server is SIGKILLed at a random moment. Every WRITE answered NFS4_OK
//! before the kill must be in the file afterwards, byte for byte. Same rounds as DHCP.
//!
//! Needs root and `ip` (iproute2); fails without them.

mod common;

use common::{require_root, Drover, Netns};
use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode};
use dhcproto::{Decodable, Encodable};
use rand::{RngExt, SeedableRng};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

/// Rounds (kills) by default.
const ROUNDS: usize = 50;
/// Clients storming in each round: a new one joins every [`JOIN_EVERY`], so ACKs (and
/// commits) stream through the whole window in which the kill lands.
const CLIENTS: u8 = 250;
const JOIN_EVERY: Duration = Duration::from_millis(4);

/// `(ip, mac)` of an ACK the helper received.
type Acked = (Ipv4Addr, String);

#[test]
fn acked_leases_survive_kill_9_during_a_request_storm() {
    require_root();
    let rounds = rounds();
    let server = Netns::new("crash-s");
    let client = Netns::new("crash-c");
    server.add_veth("crsrv0", &client, "crcli0");
    server.add_addr("crsrv0", "10.77.0.1/16");
    client.add_addr("crcli0", "10.77.0.2/16");
    let mut d = Drover::new();
    d.cli_ok(&[
        "network",
        "add",
        "storm",
        "--subnet",
        "10.77.0.0/16",
        "--range",
        "10.77.1.1-10.77.254.254",
    ]);
    assert!(
        rounds <= 250,
        "each round has its own third address octet: at most 250"
    );
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    eprintln!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let me = std::env::current_exe().expect("test binary path");
    let (mut checked, mut killed_with_pending) = (0usize, 0usize);
    let started = Instant::now();
    for round in 0..rounds {
        d.start(Some(&server), &["serve", "--interface", "crsrv0"]);
        wait_log_count(&mut d, "DHCP server listening", round + 1);
        // The kill lands somewhere in the storm: early (few commits) to late (many).
        let kill_after = Duration::from_millis(rng.random_range(50..900));
        let helper = client
            .cmd(&me)
            .args([
                "--ignored",
                "--exact",
                "storm_helper",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                "DROVER_CRASH_STORM",
                format!("crcli0:{round}:{}", kill_after.as_millis() + 400),
            )
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start the storm helper");
        std::thread::sleep(kill_after);
        d.crash();
        let out = helper.wait_with_output().expect("storm helper ends");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("storm done"), "storm helper failed:\n{text}");
        let acked: BTreeSet<Acked> = text
            .lines()
            .filter_map(|l| l.strip_prefix("ack "))
            .filter_map(|l| {
                let (ip, mac) = l.split_once(' ')?;
                Some((ip.parse().ok()?, mac.to_string()))
            })
            .collect();
        let list = d.cli_ok(&["lease", "list"]);
        let stored: BTreeSet<Acked> = list
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                Some((words.next()?.parse().ok()?, words.next()?.to_string()))
            })
            .collect();
        let lost: Vec<&Acked> = acked.difference(&stored).collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} of {} ACKed leases lost after kill -9 at {kill_after:?}: \
             {lost:?}\nlease list:\n{list}",
            lost.len(),
            acked.len()
        );
        checked += acked.len();
        killed_with_pending += usize::from(acked.len() < usize::from(CLIENTS));
    }
    eprintln!(
        "{rounds} kill -9 rounds in {:?}: {checked} ACKed leases checked, all present; \
         {killed_with_pending} kills landed before every client had its ACK",
        started.elapsed()
    );
    assert!(checked > 0, "no ACK was received in any round");
}

/// Rounds from `DROVER_CRASH_ROUNDS`, or [`ROUNDS`].
fn rounds() -> usize {
    std::env::var("DROVER_CRASH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(ROUNDS)
}

/// A random generator whose seed is printed, so a failing round can be replayed in thought.
fn rng() -> rand::rngs::StdRng {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    eprintln!("seed {seed}");
    rand::rngs::StdRng::seed_from_u64(seed)
}

/// Bytes of one record: round, sequence number, and their complement as a check.
const RECORD: u64 = 16;
/// Records one round may write at most (its share of the file).
const PER_ROUND: u64 = 1 << 16;

fn record(round: u64, seq: u64) -> [u8; RECORD as usize] {
    let mut r = [0u8; RECORD as usize];
    r[..4].copy_from_slice(&(round as u32).to_be_bytes());
    r[4..8].copy_from_slice(&(seq as u32).to_be_bytes());
    r[8..].copy_from_slice(&(!((round << 32) | seq)).to_be_bytes());
    r
}

#[test]
fn stable_nfs_writes_survive_kill_9() {
    use common::nfs4::{Client, Cred, NFS4_OK, OP_OPEN};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    require_root();
    let rounds = rounds() as u64;
    let mut d = Drover::new();
    let export = d.scratch().join("export");
    std::fs::create_dir_all(&export).expect("export dir");
    let file = export.join("log.bin");
    std::fs::write(&file, b"").expect("file");
    std::os::unix::fs::chown(&file, Some(1000), Some(1000)).expect("chown");
    // Test paths have no spaces.
    let add = format!(
        "nfs export add t --path {} --clients 127.0.0.1/32 --rw",
        export.display()
    );
    d.cli_ok(&add.split(' ').collect::<Vec<_>>());
    let port = common::api::free_port();
    let config = d.scratch().join("drover.toml");
    std::fs::write(
        &config,
        common::config_only(
            &[],
            &format!("[nfs]\nenabled = true\nport = {port}\ngrace-secs = 0\n"),
        ),
    )
    .expect("config");
    let server = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let user = Cred::user(1000, 1000, &[]);
    let mut rng = rng();
    let (mut checked, started) = (0u64, Instant::now());
    for round in 0..rounds {
        let args = ["serve", "--interface", "lo", "--config"];
        d.start(
            None,
            &[&args[..], &[config.to_str().expect("utf-8")]].concat(),
        );
        wait_log_count(&mut d, "drover: ready", round as usize + 1);
        let acked = Arc::new(AtomicU64::new(0));
        let writer = {
            let (acked, user) = (acked.clone(), user.clone());
            std::thread::spawn(move || -> Result<(), String> {
                let mut c = Client::connect(server, None).map_err(|e| e.to_string())?;
                let mut sess = c
                    .session(1, &format!("crash-{round}"))
                    .map_err(|e| e.to_string())?;
                let r = sess
                    .try_compound(&mut c, &user, |o| {
                        o.putrootfh().lookup("t").open("w", 2, 0, "log.bin", false)
                    })
                    .map_err(|e| e.to_string())?;
                if r.status != NFS4_OK {
                    return Err(format!("OPEN: {r:?}"));
                }
                let mut sid: [u8; 16] = r.body(OP_OPEN).try_into().map_err(|_| "stateid")?;
                sid[..4].fill(0);
                for seq in 0..PER_ROUND {
                    let at = (round * PER_ROUND + seq) * RECORD;
                    let data = record(round, seq);
                    // An error here is the kill: whatever was answered before it counts.
                    let Ok(r) = sess.try_compound(&mut c, &user, |o| {
                        o.putrootfh()
                            .lookup("t")
                            .lookup("log.bin")
                            .write_as(&sid, at, &data)
                    }) else {
                        return Ok(());
                    };
                    if r.status != NFS4_OK {
                        return Err(format!("WRITE {seq}: {r:?}"));
                    }
                    acked.store(seq + 1, Ordering::SeqCst);
                }
                Ok(())
            })
        };
        std::thread::sleep(Duration::from_millis(rng.random_range(50..600)));
        d.crash();
        let outcome = writer.join().expect("writer thread");
        let n = acked.load(Ordering::SeqCst);
        assert!(outcome.is_ok(), "round {round}: {outcome:?}");
        let bytes = std::fs::read(&file).expect("read the file");
        for seq in 0..n {
            let at = ((round * PER_ROUND + seq) * RECORD) as usize;
            assert_eq!(
                bytes.get(at..at + RECORD as usize),
                Some(&record(round, seq)[..]),
                "round {round}: acknowledged stable WRITE {seq} of {n} lost after kill -9"
            );
        }
        checked += n;
    }
    eprintln!(
        "{rounds} kill -9 rounds in {:?}: {checked} acknowledged stable WRITEs checked, all \
         present",
        started.elapsed()
    );
    assert!(checked > 0, "no WRITE was acknowledged in any round");
}

/// Waits until `needle` has been logged `n` times (the log grows across restarts).
fn wait_log_count(d: &mut Drover, needle: &str, n: usize) {
    let ok = common::wait_until(Duration::from_secs(20), || {
        d.log().matches(needle).count() >= n
    });
    assert!(ok, "drover did not log {needle:?}:\n{}", d.log_tail(30));
}

/// Runs inside the client namespace, started by the test: `IFACE:ROUND:MILLIS` in
/// `DROVER_CRASH_STORM`. Sends REQUESTs for up to [`CLIENTS`] new clients of round `ROUND`
/// (one more every [`JOIN_EVERY`]), each until its ACK, for `MILLIS` ms, and prints
/// `ack IP MAC` for each first ACK. Does nothing when run directly.
#[test]
#[ignore = "helper, run by the storm test inside a namespace"]
fn storm_helper() {
    let Ok(job) = std::env::var("DROVER_CRASH_STORM") else {
        return;
    };
    let mut parts = job.split(':');
    let (Some(iface), Some(round), Some(millis)) = (parts.next(), parts.next(), parts.next())
    else {
        panic!("bad job {job:?}");
    };
    let round: u8 = round.parse().expect("round number");
    let millis: u64 = millis.parse().expect("milliseconds");
    let socket = client_socket(iface);
    let requests: Vec<Vec<u8>> = (0..CLIENTS)
        .map(|i| request(round, i).to_vec().expect("encode REQUEST"))
        .collect();
    let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
    let start = Instant::now();
    let deadline = start + Duration::from_millis(millis);
    let mut acked = BTreeSet::new();
    let mut buf = vec![0u8; 1500];
    while Instant::now() < deadline {
        let joined = (start.elapsed().as_millis() / JOIN_EVERY.as_millis()) as usize + 1;
        for (i, r) in requests.iter().enumerate().take(joined) {
            if !acked.contains(&(i as u8)) {
                let _ = socket.send_to(r, to);
            }
        }
        let pause = Instant::now() + Duration::from_millis(10);
        while Instant::now() < pause {
            let Ok(n) = socket.recv(&mut buf) else {
                continue;
            };
            let Ok(reply) = Message::from_bytes(&buf[..n]) else {
                continue;
            };
            let (xid_round, i) = ((reply.xid() >> 8) as u8, reply.xid() as u8);
            let ours = reply.xid() >> 16 == 0xc7a5 && xid_round == round && i < CLIENTS;
            if ours && reply.opts().msg_type() == Some(MessageType::Ack) && acked.insert(i) {
                println!("ack {} {}", reply.yiaddr(), mac(round, i));
            }
        }
    }
    println!("storm done");
}

/// Client `i` of round `round`: its own MAC, xid and address.
fn request(round: u8, i: u8) -> Message {
    let mut m = Message::default();
    m.set_opcode(Opcode::BootRequest)
        .set_xid(0xc7a5_0000 | (u32::from(round) << 8) | u32::from(i))
        .set_flags(Flags::default().set_broadcast())
        .set_chaddr(&[0x52, 0x54, 0x01, 0x00, round, i]);
    let opts = m.opts_mut();
    opts.insert(DhcpOption::MessageType(MessageType::Request));
    opts.insert(DhcpOption::RequestedIpAddress(Ipv4Addr::new(
        10,
        77,
        round.wrapping_add(1),
        i + 1,
    )));
    m
}

fn mac(round: u8, i: u8) -> String {
    format!("52:54:01:00:{round:02x}:{i:02x}")
}

/// A broadcast socket on port 68 bound to `iface`, with a short read timeout.
fn client_socket(iface: &str) -> UdpSocket {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)
        .expect("UDP socket");
    s.set_broadcast(true).expect("SO_BROADCAST");
    s.bind_device(Some(iface.as_bytes()))
        .expect("SO_BINDTODEVICE");
    s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68).into())
        .expect("bind port 68");
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(Duration::from_millis(2)))
        .expect("read timeout");
    s
}
