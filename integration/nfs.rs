//! drover's NFSv4 server as a binary: libnfs's tools (`nfs-ls`, `nfs-cat`, `nfs-cp` from
//! `libnfs-utils`, speaking NFSv4 with `?version=4`) against `drover serve` in a network
//! namespace, raw RPC records that must be refused (wrong program, version, credential,
//! oversized and garbage records) without hurting the server, and `drover nfs clients`.
//!
//! libnfs 4.0 (Debian 12) fails NFSv4 writes of about 4 KB and more (LAB.md), so writes here
//! are small; the kernel client in a VM (`qemu-tests/nfs.rs`) covers large I/O.
//!
//! Needs root (namespaces), `libnfs-utils` and `python3`; fails with a clear message otherwise.

mod common;

use common::*;
use std::process::Output;
use std::time::Duration;

const SERVER: &str = "198.18.0.1";

struct Setup {
    drover: Drover,
    ns: Netns,
}

fn serve() -> Setup {
    require_root();
    require_cmd("nfs-ls", "libnfs-utils");
    require_cmd("python3", "python3");
    let ns = Netns::new("nfs");
    ns.add_bridge("br0", &format!("{SERVER}/24"));
    let mut drover = Drover::new();
    // A shared export, read-write for the namespace's network; root is squashed to nobody,
    // so the directory that libnfs (uid 0) writes into is open to everyone.
    let export = drover.scratch().join("export");
    std::fs::create_dir_all(export.join("sub")).expect("export dir");
    std::fs::set_permissions(
        export.join("sub"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    drover.cli_ok(&[
        "nfs",
        "export",
        "add",
        "t",
        "--path",
        export.to_str().expect("utf-8"),
        "--clients",
        "198.18.0.0/24",
        "--rw",
    ]);
    std::fs::write(export.join("sub/hello.txt"), b"hello over nfs\n").expect("file");
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(export.join("sub/big.bin"), &big).expect("big");
    let config = drover.scratch().join("nfs.toml");
    std::fs::write(
        &config,
        config_only(
            &[],
            "[nfs]\nenabled = true\ngrace-secs = 0\nlease-secs = 30\n",
        ),
    )
    .expect("config");
    drover.start(
        Some(&ns),
        &[
            "serve",
            "--config",
            config.to_str().expect("utf-8"),
            "--interface",
            "br0",
        ],
    );
    drover.wait_log("drover: ready", Duration::from_secs(30));
    Setup { drover, ns }
}

fn tool(s: &Setup, args: &[&str]) -> Output {
    s.ns.cmd(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args[0]))
}

/// A URL under the export `t`.
fn url(path: &str) -> String {
    format!("nfs://{SERVER}/t{path}?version=4")
}

#[test]
fn libnfs_lists_reads_and_writes() {
    let s = serve();
    let out = tool(&s, &["nfs-ls", &url("/")]);
    let listing = String::from_utf8_lossy(&out.stdout);
    let root = tool(&s, &["nfs-ls", &format!("nfs://{SERVER}/?version=4")]);
    assert!(
        String::from_utf8_lossy(&root.stdout).contains(" t"),
        "the pseudo-root shows the export: {root:?}"
    );
    assert!(
        out.status.success() && listing.contains("sub"),
        "nfs-ls: {listing} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // libnfs takes the URL's directory as the export to mount: files one level down.
    let out = tool(&s, &["nfs-cat", &url("/sub/hello.txt")]);
    assert!(out.status.success(), "nfs-cat: {:?}", out);
    assert_eq!(out.stdout, b"hello over nfs\n");
    let out = tool(&s, &["nfs-cat", &url("/sub/big.bin")]);
    assert!(out.status.success(), "nfs-cat big: {:?}", out.status);
    let want: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    assert!(
        out.stdout == want,
        "big.bin differs ({} bytes read)",
        out.stdout.len()
    );

    // A small write through nfs-cp lands on the server's disk.
    let local = s.drover.scratch().join("upload.txt");
    let data: String = (0..40).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&local, &data).expect("upload file");
    let out = tool(
        &s,
        &[
            "nfs-cp",
            local.to_str().expect("utf-8"),
            &url("/sub/upload.txt"),
        ],
    );
    assert!(out.status.success(), "nfs-cp: {:?}", out);
    let on_disk = std::fs::read_to_string(s.drover.scratch().join("export/sub/upload.txt"))
        .expect("uploaded file on disk");
    assert_eq!(on_disk, data);
    let out = tool(&s, &["nfs-ls", &url("/sub")]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("upload.txt"));

    // A missing file is an error, not a hang or a crash.
    let out = tool(&s, &["nfs-cat", &url("/sub/nope")]);
    assert!(!out.status.success());

    // The clients stay until their lease ends: `drover nfs clients` lists them.
    let listed = wait_until(Duration::from_secs(20), || {
        let out = s.drover.cli(&["nfs", "clients", "--json"]);
        String::from_utf8_lossy(&out.stdout).contains(SERVER)
    });
    assert!(listed, "drover nfs clients never listed the libnfs client");
    let out = s.drover.cli(&["nfs", "clients"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("ADDR") && table.contains(SERVER), "{table}");
}

/// Sends raw records over one TCP connection (from inside the namespace, with python3) and
/// returns each reply as hex, or "closed".
fn raw(s: &Setup, records: &[Vec<u8>]) -> Vec<String> {
    let hex: Vec<String> = records
        .iter()
        .map(|r| r.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    let script = format!(
        r#"
import socket, struct, sys
s = socket.create_connection(("{SERVER}", 2049), timeout=10)
for h in sys.argv[1:]:
    s.sendall(bytes.fromhex(h))
    try:
        head = b""
        while len(head) < 4:
            c = s.recv(4 - len(head))
            if not c: raise EOFError
            head += c
        n = struct.unpack(">I", head)[0] & 0x7fffffff
        body = b""
        while len(body) < n:
            c = s.recv(n - len(body))
            if not c: raise EOFError
            body += c
        print(body.hex())
    except (EOFError, ConnectionResetError, socket.timeout):
        print("closed")
        break
"#
    );
    let out =
        s.ns.cmd("python3")
            .arg("-c")
            .arg(script)
            .args(&hex)
            .output()
            .expect("python3");
    assert!(out.status.success(), "raw client: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn record(body: &[u8]) -> Vec<u8> {
    let mut r = (0x8000_0000u32 | body.len() as u32).to_be_bytes().to_vec();
    r.extend_from_slice(body);
    r
}

fn call(prog: u32, vers: u32, procedure: u32, flavor: u32) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [7u32, 0, 2, prog, vers, procedure, flavor, 0, 0, 0] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b
}

#[test]
fn refuses_bad_calls_and_survives_garbage() {
    let s = serve();
    let replies = raw(
        &s,
        &[
            record(&call(100003, 4, 0, 0)),
            record(&call(100003, 3, 0, 0)),
            record(&call(100005, 4, 0, 0)),
            record(&call(100003, 4, 0, 6)),
            record(&call(100003, 4, 9, 0)),
        ],
    );
    // xid 7, REPLY, then: accepted SUCCESS; PROG_MISMATCH 4..4; PROG_UNAVAIL; denied
    // AUTH_ERROR/AUTH_TOOWEAK; PROC_UNAVAIL.
    assert_eq!(
        replies[0],
        "000000070000000100000000000000000000000000000000"
    );
    assert_eq!(
        replies[1],
        [
            "00000007", "00000001", "00000000", "00000000", "00000000", "00000002", "00000004",
            "00000004"
        ]
        .concat()
    );
    assert_eq!(
        replies[2],
        "000000070000000100000000000000000000000000000001"
    );
    assert_eq!(replies[3], "0000000700000001000000010000000100000005");
    assert_eq!(
        replies[4],
        "000000070000000100000000000000000000000000000003"
    );
    // A fragment header announcing 2 GiB closes the connection at once.
    let replies = raw(&s, &[vec![0xff, 0xff, 0xff, 0xff]]);
    assert_eq!(replies, vec!["closed"]);
    // A COMPOUND whose arguments are cut short is GARBAGE_ARGS.
    let mut c = call(100003, 4, 1, 0);
    c.extend_from_slice(&[0, 0, 0, 9]);
    let replies = raw(&s, &[record(&c)]);
    assert_eq!(
        replies[0],
        "000000070000000100000000000000000000000000000004"
    );
    // The server still serves.
    let out = tool(&s, &["nfs-ls", &url("/")]);
    assert!(out.status.success(), "server hurt by garbage: {out:?}");
}
