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

// ---------------------------------------------------------------------------------------------
// Hostile input over TCP on loopback: the export is open to 127.0.0.1 only, and the other
// loopback addresses (127.0.0.2, ...) play the clients outside it.

struct Loopback {
    drover: Drover,
    addr: std::net::SocketAddr,
    export: std::path::PathBuf,
}

/// `drover serve` on `lo` with NFS on a free port and the export `t` (read-write, root
/// squashed) open to 127.0.0.1/32, holding `hello.txt` and `secret` (0640 root:root).
fn serve_loopback() -> Loopback {
    require_root();
    let mut drover = Drover::new();
    let export = drover.scratch().join("export");
    std::fs::create_dir_all(&export).expect("export dir");
    std::fs::write(export.join("hello.txt"), b"hello\n").expect("file");
    let secret = export.join("secret");
    std::fs::write(&secret, b"root only\n").expect("secret");
    std::os::unix::fs::chown(&secret, Some(0), Some(0)).expect("chown");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o640))
        .expect("chmod");
    let path = export.to_str().expect("utf-8");
    drover.cli_ok(&[
        "nfs",
        "export",
        "add",
        "t",
        "--path",
        path,
        "--clients",
        "127.0.0.1/32",
        "--rw",
    ]);
    let port = common::api::free_port();
    drover.serve_with(
        None,
        "lo",
        &config_only(
            &[],
            &format!("[nfs]\nenabled = true\nport = {port}\ngrace-secs = 0\n"),
        ),
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    Loopback {
        drover,
        addr,
        export,
    }
}

/// The handle of `/t/NAME`, looked up from 127.0.0.1.
fn handle_of(s: &Loopback, name: &str) -> Vec<u8> {
    use common::nfs4::*;
    let mut c = Client::connect(s.addr, None).expect("connect");
    let r = c
        .compound(
            0,
            &Cred::user(1000, 1000, &[]),
            Ops::new().putrootfh().lookup("t").lookup(name).getfh(),
        )
        .expect("lookup");
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    r.body(OP_GETFH).to_vec()
}

/// A forged handle (one byte flipped anywhere, cut short) is BADHANDLE on PUTFH, and the
/// READ behind it never runs; a good handle from an address outside the export's clients is
/// STALE on PUTFH, and READ gets no file handle.
#[test]
fn forged_and_outside_handles_get_errors_on_putfh_and_read() {
    use common::nfs4::*;
    let s = serve_loopback();
    let fh = handle_of(&s, "hello.txt");
    let user = Cred::user(1000, 1000, &[]);
    let mut inside =
        Client::connect(s.addr, Some(std::net::Ipv4Addr::new(127, 0, 0, 1))).expect("connect");
    let r = inside
        .compound(0, &user, Ops::new().putfh(&fh).read(0, 100))
        .expect("read");
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    assert_eq!(r.body(OP_READ), b"hello\n");

    for i in 0..fh.len() {
        let mut bad = fh.clone();
        bad[i] ^= 0x5a;
        let r = inside
            .compound(0, &user, Ops::new().putfh(&bad).read(0, 100))
            .expect("forged read");
        assert_eq!(r.status, NFS4ERR_BADHANDLE, "byte {i} flipped: {r:?}");
        assert_eq!(r.results.len(), 1, "READ ran after a failed PUTFH: {r:?}");
    }
    let r = inside
        .compound(0, &user, Ops::new().putfh(&fh[..fh.len() - 1]).read(0, 100))
        .expect("short handle");
    assert_eq!(r.status, NFS4ERR_BADHANDLE, "{r:?}");

    let mut outside = Client::connect(s.addr, Some(std::net::Ipv4Addr::new(127, 0, 0, 2)))
        .expect("connect from 127.0.0.2");
    let r = outside
        .compound(0, &user, Ops::new().putfh(&fh).getfh().read(0, 100))
        .expect("replayed read");
    assert_eq!(r.status, NFS4ERR_STALE, "{r:?}");
    assert_eq!(r.results.len(), 1, "{r:?}");
    let r = outside
        .compound(0, &user, Ops::new().read(0, 100))
        .expect("read without a handle");
    assert_eq!(r.status, NFS4ERR_NOFILEHANDLE, "{r:?}");
    let r = outside
        .compound(0, &user, Ops::new().putrootfh().lookup("t"))
        .expect("lookup from outside");
    assert_eq!(
        r.status, NFS4ERR_NOENT,
        "the export is invisible outside: {r:?}"
    );
    // The server still answers its client.
    let r = inside
        .compound(0, &user, Ops::new().putfh(&fh).read(0, 100))
        .expect("read again");
    assert_eq!(r.status, NFS4_OK, "{r:?}");
}

/// Root squash covers gid 0, as the primary and as a supplementary group: a non-root uid
/// with gid 0 does not read a 0640 root:root file. `--no-root-squash` lets root read it.
#[test]
fn gid_0_is_squashed_with_root() {
    use common::nfs4::*;
    let s = serve_loopback();
    let fh = handle_of(&s, "secret");
    let mut c = Client::connect(s.addr, None).expect("connect");
    for cred in [
        Cred::user(1000, 0, &[]),
        Cred::user(1000, 1000, &[0]),
        Cred::user(0, 0, &[0]),
    ] {
        let r = c
            .compound(0, &cred, Ops::new().putfh(&fh).read(0, 100))
            .expect("read");
        assert_eq!(r.status, NFS4ERR_ACCESS, "{cred:?}: {r:?}");
    }
    // The same directory as a second export without root squash.
    let path = s.export.to_str().expect("utf-8");
    s.drover.cli_ok(&[
        "nfs",
        "export",
        "add",
        "t2",
        "--path",
        path,
        "--clients",
        "127.0.0.1/32",
        "--no-root-squash",
    ]);
    let list = s.drover.cli_ok(&["nfs", "export", "list"]);
    assert!(
        list.contains("none") && list.contains("root->65534:65534"),
        "{list}"
    );
    let read_as_root = || {
        let mut c = Client::connect(s.addr, None).expect("connect");
        c.compound(
            0,
            &Cred::user(0, 0, &[]),
            Ops::new()
                .putrootfh()
                .lookup("t2")
                .lookup("secret")
                .read(0, 100),
        )
        .expect("read as root")
    };
    // The server reads the store at most once a second.
    let ok = wait_until(Duration::from_secs(10), || read_as_root().status == NFS4_OK);
    assert!(
        ok,
        "root reads through --no-root-squash: {:?}",
        read_as_root()
    );
    assert_eq!(read_as_root().body(OP_READ), b"root only\n");
}

/// One address making client records by the hundred gets RESOURCE once its share is full;
/// another address still gets its record.
#[test]
fn a_flood_of_client_records_hurts_only_its_sender() {
    use common::nfs4::*;
    let s = serve_loopback();
    let root = Cred::user(0, 0, &[]);
    let mut flood =
        Client::connect(s.addr, Some(std::net::Ipv4Addr::new(127, 0, 0, 3))).expect("connect");
    let mut refused = 0;
    for i in 0..200 {
        let r = flood
            .compound(0, &root, Ops::new().setclientid(&format!("flood-{i}")))
            .expect("setclientid");
        match r.status {
            NFS4_OK => {
                let b = r.body(OP_SETCLIENTID);
                let id = u64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
                let verifier: [u8; 8] = b[8..].try_into().expect("8 bytes");
                let r = flood
                    .compound(0, &root, Ops::new().setclientid_confirm(id, verifier))
                    .expect("confirm");
                assert_eq!(r.status, NFS4_OK, "{r:?}");
            }
            NFS4ERR_RESOURCE => refused += 1,
            other => panic!("record {i}: status {other}"),
        }
    }
    assert!(refused >= 150, "only {refused} of 200 records refused");
    let mut node = Client::connect(s.addr, None).expect("connect");
    let r = node
        .compound(0, &root, Ops::new().setclientid("a-node"))
        .expect("setclientid");
    assert_eq!(
        r.status, NFS4_OK,
        "a legitimate client after the flood: {r:?}"
    );
}

/// A file of the export owned by uid 1000 (the tests' user), with `data` at `offset`.
fn user_file(s: &Loopback, name: &str, len: u64, offset: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let path = s.export.join(name);
    let f = std::fs::File::create(&path).expect("create");
    f.set_len(len).expect("size");
    f.write_all_at(data, offset).expect("write");
    std::os::unix::fs::chown(&path, Some(1000), Some(1000)).expect("chown");
}

/// NFSv4.2 (RFC 7862) over a session: SEEK to data and holes, ALLOCATE, DEALLOCATE,
/// READ_PLUS, a synchronous intra-server COPY, CLONE (done, or NOTSUPP where the file
/// system has no reflinks), NOTSUPP for the operations not built, and minor version 3
/// refused.
#[test]
fn nfs42_seek_allocate_read_plus_copy_clone() {
    use common::nfs4::*;
    let s = serve_loopback();
    const MIB: u64 = 1 << 20;
    user_file(&s, "sparse.bin", 3 * MIB, MIB, &[7; 4096]);
    user_file(&s, "alloc.bin", 0, 0, b"");
    user_file(&s, "punch.bin", 0, 0, &[0xaa; 8192]);
    user_file(&s, "copy.txt", 0, 0, b"");
    user_file(&s, "clone.bin", 0, 0, b"");
    user_file(&s, "clsrc.bin", 0, 0, &[3; 65536]);
    let user = Cred::user(1000, 1000, &[]);
    let mut c = Client::connect(s.addr, None).expect("connect");
    let mut sess = c.session(2, "nfs42-test").expect("4.2 session");
    let mut call = |c: &mut Client, build: &dyn Fn(Ops) -> Ops| sess.compound(c, &user, build);
    let file = |o: Ops, name: &str| o.putrootfh().lookup("t").lookup(name);
    let seek = |o: Ops, offset: u64, data: bool| {
        o.with(OP_SEEK, |a| {
            a.u32(0);
            a.fixed(&[0; 12]);
            a.u64(offset);
            a.u32(if data { 0 } else { 1 });
        })
    };
    let seek_res = |r: &Reply| {
        let b = r.body(OP_SEEK);
        (
            u32::from_be_bytes(b[..4].try_into().unwrap()) != 0,
            u64::from_be_bytes(b[4..].try_into().unwrap()),
        )
    };

    // SEEK: data at 1 MiB (or at 0 on a file system without holes), a hole after it, and
    // nothing past the end.
    let r = call(&mut c, &|o| seek(file(o, "sparse.bin"), 0, true));
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let (eof, at) = seek_res(&r);
    assert!(!eof && (at == MIB || at == 0), "data at {at}");
    let r = call(&mut c, &|o| seek(file(o, "sparse.bin"), MIB, false));
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let (_, hole) = seek_res(&r);
    assert!(hole >= MIB + 4096, "hole at {hole}");
    let r = call(&mut c, &|o| seek(file(o, "sparse.bin"), 4 * MIB, true));
    assert_eq!(r.status, NFS4ERR_NXIO, "{r:?}");

    // ALLOCATE grows the file; DEALLOCATE makes a range read as zeros, size kept.
    let range = |o: Ops, op: u32, offset: u64, len: u64| {
        o.with(op, |a| {
            a.u32(0);
            a.fixed(&[0; 12]);
            a.u64(offset);
            a.u64(len);
        })
    };
    let r = call(&mut c, &|o| {
        range(file(o, "alloc.bin"), OP_ALLOCATE, 0, 65536)
    });
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let meta = std::fs::metadata(s.export.join("alloc.bin")).expect("alloc.bin");
    assert_eq!(meta.len(), 65536);
    let r = call(&mut c, &|o| {
        range(file(o, "punch.bin"), OP_DEALLOCATE, 0, 4096)
    });
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let punched = std::fs::read(s.export.join("punch.bin")).expect("punch.bin");
    assert_eq!(punched.len(), 8192);
    assert!(punched[..4096].iter().all(|&b| b == 0) && punched[4096..].iter().all(|&b| b == 0xaa));

    // READ_PLUS: the data as one segment.
    let r = call(&mut c, &|o| {
        file(o, "hello.txt").with(OP_READ_PLUS, |a| {
            a.u32(0);
            a.fixed(&[0; 12]);
            a.u64(0);
            a.u32(100);
        })
    });
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    assert_eq!(r.body(OP_READ_PLUS), b"hello\n");
    assert!(r.results.last().is_some_and(|x| x.eof));

    // COPY of the whole source (count 0) from the saved to the current file, synchronously.
    let two = |o: Ops, op: u32, count: u64, sync: bool| {
        o.with(op, |a| {
            for _ in 0..2 {
                a.u32(0);
                a.fixed(&[0; 12]);
            }
            a.u64(0);
            a.u64(0);
            a.u64(count);
            if op == OP_COPY {
                a.u32(1);
                a.u32(u32::from(sync));
                a.u32(0); // no source servers: intra-server
            }
        })
    };
    let r = call(&mut c, &|o| {
        two(
            file(file(o, "hello.txt").savefh(), "copy.txt"),
            OP_COPY,
            0,
            true,
        )
    });
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let b = r.body(OP_COPY);
    assert_eq!(
        u64::from_be_bytes(b[4..12].try_into().unwrap()),
        6,
        "bytes copied"
    );
    assert_eq!(
        std::fs::read(s.export.join("copy.txt")).expect("copy.txt"),
        b"hello\n"
    );
    // CLONE: done where the file system shares blocks, else NOTSUPP.
    let r = call(&mut c, &|o| {
        two(
            file(file(o, "clsrc.bin").savefh(), "clone.bin"),
            OP_CLONE,
            65536,
            true,
        )
    });
    match r.status {
        NFS4_OK => assert_eq!(
            std::fs::read(s.export.join("clone.bin")).expect("clone.bin"),
            vec![3; 65536]
        ),
        NFS4ERR_NOTSUPP => {}
        other => panic!("CLONE: {other} {r:?}"),
    }

    // An operation of 4.2 that is not built; a minor version beyond 4.2.
    let r = call(&mut c, &|o| {
        file(o, "hello.txt").with(OP_OFFLOAD_STATUS, |a| {
            a.u32(0);
            a.fixed(&[0; 12]);
        })
    });
    assert_eq!(r.status, NFS4ERR_NOTSUPP, "{r:?}");
    let r = c
        .compound(3, &user, Ops::new().putrootfh())
        .expect("minor 3");
    assert_eq!(r.status, NFS4ERR_MINOR_VERS_MISMATCH, "{r:?}");
}

/// Share reservations (RFC 8881 §9.7, RFC 7530 §9.9): an open's deny mode refuses other
/// open-owners' OPENs (before an UNCHECKED create could truncate the file) and READ and
/// WRITE without an open (the anonymous stateid; the bypass stateid for writes only).
#[test]
fn share_reservations_bind_opens_reads_and_writes() {
    use common::nfs4::*;
    let s = serve_loopback();
    user_file(&s, "shared.txt", 0, 0, b"keep me\n");
    user_file(&s, "private.txt", 0, 0, b"mine\n");
    let user = Cred::user(1000, 1000, &[]);
    let mut c = Client::connect(s.addr, None).expect("connect");
    let mut sess = c.session(1, "share-test").expect("4.1 session");
    let mut call = |c: &mut Client, build: &dyn Fn(Ops) -> Ops| {
        sess.compound(c, &user, |o| build(o.putrootfh().lookup("t")))
    };
    const READ: u32 = 1;
    const WRITE: u32 = 2;
    const BOTH: u32 = 3;
    // Owner a: read and write, denying writes to others.
    let r = call(&mut c, &|o| o.open("a", BOTH, WRITE, "shared.txt", false));
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let mut a_sid: [u8; 16] = r.body(OP_OPEN).try_into().expect("stateid");
    // Seqid 0: whatever the open's current one is (4.1), as a's second OPEN moves it on.
    a_sid[..4].fill(0);
    for (owner, access, deny, truncate, want) in [
        ("b", WRITE, 0, false, NFS4ERR_SHARE_DENIED),
        ("b", WRITE, 0, true, NFS4ERR_SHARE_DENIED),
        ("b", READ, 0, true, NFS4ERR_INVAL),
        ("b", READ, 0, false, NFS4_OK),
        ("c", READ, READ, false, NFS4ERR_SHARE_DENIED),
        ("a", WRITE, 0, false, NFS4_OK),
    ] {
        let r = call(&mut c, &|o| {
            o.open(owner, access, deny, "shared.txt", truncate)
        });
        assert_eq!(
            r.status, want,
            "{owner} {access}/{deny} truncate {truncate}: {r:?}"
        );
    }
    assert_eq!(
        std::fs::read(s.export.join("shared.txt")).expect("shared.txt"),
        b"keep me\n",
        "a refused OPEN truncated the file"
    );
    let file = |o: Ops| o.lookup("shared.txt");
    let r = call(&mut c, &|o| file(o).write_as(&ANONYMOUS, 0, b"x"));
    assert_eq!(r.status, NFS4ERR_LOCKED, "{r:?}");
    let r = call(&mut c, &|o| file(o).write_as(&BYPASS, 0, b"x"));
    assert_eq!(r.status, NFS4ERR_LOCKED, "{r:?}");
    let r = call(&mut c, &|o| file(o).read_as(&ANONYMOUS, 0, 100));
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let r = call(&mut c, &|o| file(o).write_as(&a_sid, 0, b"K"));
    assert_eq!(r.status, NFS4_OK, "the denying open itself writes: {r:?}");

    // Deny read: reads without an open are refused, the bypass stateid reads.
    let r = call(&mut c, &|o| o.open("a", READ, READ, "private.txt", false));
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let private = |o: Ops| o.lookup("private.txt");
    let r = call(&mut c, &|o| private(o).read_as(&ANONYMOUS, 0, 100));
    assert_eq!(r.status, NFS4ERR_LOCKED, "{r:?}");
    let r = call(&mut c, &|o| private(o).read_as(&BYPASS, 0, 100));
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    assert_eq!(r.body(OP_READ), b"mine\n");
}
