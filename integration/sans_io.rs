//! The house rule of STYLE.md §1, checked: pure modules (every `wire.rs` and `core.rs`, and
//! the others listed in [`PURE`]) do no I/O and read neither the clock nor the OS's
//! randomness. Time, randomness, identity and store snapshots are arguments.
//!
//! How: a small tokenizer drops comments, strings and `#[cfg(test)]` items (tests may use
//! temporary files and real time), then every `use` tree (groups, `self`, renames, globs) is
//! expanded into full paths and every path in the code is resolved through those imports,
//! `crate::`, `self::` and `super::`. A resolved path is refused if it reaches a forbidden
//! part of std or a forbidden crate ([`forbidden_external`]); a path into this crate must
//! land in another pure module or on an item of [`DATA_ITEMS`] (re-exports in `mod.rs`
//! files are followed). The self-tests at the end plant violations and check they are found.
//!
//! Not checked: macros from other crates that expand to I/O, or a value of an allowed type
//! whose method does I/O. The scanner is not a Rust parser; it is enough for our code and
//! errs on the side of reporting.

mod source;

use source::{imports_and_paths, module_of, src_dir, tokenize, without_tests, Import, Tree};
use std::collections::{BTreeSet, HashMap};

/// Pure modules with other names than `wire.rs`/`core.rs` (paths under `src/`), and why they
/// are pure.
const PURE: &[(&str, &str)] = &[
    ("nfs/xdr.rs", "XDR codec over byte slices"),
    (
        "nfs/cb.rs",
        "NFSv4 callback calls and replies over byte slices",
    ),
    (
        "store/addrs.rs",
        "an interval set of IPv4 addresses for the view's DHCP index",
    ),
    ("nfs/status.rs", "the NFSv4 status codes"),
    (
        "nfs/ops/mod.rs",
        "the COMPOUND pipeline: decoded ops against state and the Vfs",
    ),
    ("nfs/ops/attr.rs", "NFS op family: attributes"),
    ("nfs/ops/dir.rs", "NFS op family: directories"),
    ("nfs/ops/filehandle.rs", "NFS op family: filehandles"),
    ("nfs/ops/io.rs", "NFS op family: READ, WRITE, COMMIT"),
    ("nfs/ops/lock.rs", "NFS op family: byte-range locks"),
    ("nfs/ops/open.rs", "NFS op family: OPEN and CLOSE"),
    (
        "nfs/ops/session.rs",
        "NFS op family: sessions and client ids",
    ),
    ("discover/mod.rs", "discovery: module list only"),
    ("discover/lldp.rs", "LLDP frame decoder over byte slices"),
    (
        "lab/ra.rs",
        "the lab's router advertisement frame and checksum over byte slices",
    ),
    (
        "lab/switch.rs",
        "the lab switch's MAC learning and forwarding decision, time as an argument",
    ),
    (
        "lab/link.rs",
        "the lab switch's LLDP frame, link impairment decisions and delay line, time and \
         dice as arguments",
    ),
    (
        "discover/inventory.rs",
        "inventory parsing from /proc and /sys text, checks, duplicates",
    ),
    (
        "discover/rule.rs",
        "naming rules: parse and match a location",
    ),
    ("labels.rs", "the labels! macro: enums with stable names"),
    (
        "image/chunk.rs",
        "content-defined chunking and blob manifests over byte slices",
    ),
    (
        "swarm/tracker.rs",
        "the swarm tracker: holders per blob, answers on times and seeds passed in",
    ),
    (
        "swarm/schedule.rs",
        "which chunk from which source next, and the upload bucket on times passed in",
    ),
    (
        "image/tarindex.rs",
        "the rootfs tar index of `image mount`: bytes in through a read function, inodes out",
    ),
    (
        "image/usage.rs",
        "per-version store figures from chunk lists",
    ),
    (
        "image/recipe.rs",
        "image build recipes: TOML text to a validated recipe and back, apt sources and \
         dpkg status text",
    ),
    (
        "image/diff.rs",
        "image shell's change summary from two metadata snapshots",
    ),
    (
        "logsafe.rs",
        "escaping of client strings for logs: a Display wrapper",
    ),
    (
        "net/limit.rs",
        "per-address caps: counting slots, no sockets",
    ),
    (
        "net/ra_pace.rs",
        "RFC 4861 answer pacing on times passed in",
    ),
    (
        "cli/print.rs",
        "the CLI's one printer: typed data and now in, text out",
    ),
    (
        "nfs/rpc.rs",
        "ONC RPC record and call framing over byte slices",
    ),
    (
        "nfs/state.rs",
        "NFSv4 client, open and lock state tables on virtual time",
    ),
    (
        "nfs/vfs.rs",
        "the Vfs trait and its types: the boundary the core talks to",
    ),
    ("nfs/memvfs.rs", "an in-memory Vfs for the core's tests"),
    (
        "dhcp/share.rs",
        "which clients and addresses a pool member answers for; pure arithmetic",
    ),
    (
        "pool/membership.rs",
        "foca (SWIM) driven with time and seeded rngs passed in",
    ),
    (
        "pool/shares.rs",
        "recomputes DHCP shares from the roster and liveness",
    ),
    (
        "pool/peers.rs",
        "the live members announced to clients, from the roster",
    ),
    (
        "pool/floating.rs",
        "who holds the service address: a decision from inputs and now",
    ),
    (
        "pool/drain.rs",
        "the drain hand-over: roster rows, summaries and version vectors in, drains out",
    ),
    ("pool/summary.rs", "summary messages and their merge table"),
    (
        "pool/compact.rs",
        "which change-feed entries every live member has, from summaries and ages passed in",
    ),
    (
        "pool/report.rs",
        "replication exchange bookkeeping on times passed in",
    ),
    ("pool/show.rs", "renders a pool status as text"),
    (
        "pool/tick.rs",
        "the pool task's core: events, facts and now in, actions out",
    ),
    ("pool/frame.rs", "the pool port's messages and their bytes"),
    (
        "pool/seal.rs",
        "pool handshake, sessions and datagram sealing; nonces passed in",
    ),
    (
        "store/hlc.rs",
        "hybrid logical clock advanced with the wall time passed in",
    ),
    ("store/model.rs", "the stored records: plain data types"),
    ("http/range.rs", "HTTP Range header parsing"),
    ("http/ipxe.rs", "renders iPXE scripts from records"),
    (
        "agent/cmdline.rs",
        "parses the kernel command line given as a string",
    ),
    (
        "agent/script.rs",
        "reads an iPXE boot script given as a string (the storm simulator)",
    ),
    (
        "agent/files.rs",
        "renders the node's own files from boot parameters: strings in, strings out",
    ),
    (
        "service/hostkey.rs",
        "derives a node's ssh host key from a secret and a name given as bytes",
    ),
    (
        "usb/layout.rs",
        "the rescue stick's geometry, MBR bytes, boot config and write checks, from values",
    ),
    (
        "ipmi/crypto.rs",
        "RMCP+ key derivation, integrity and confidentiality over buffers",
    ),
    (
        "ipmi/sol.rs",
        "SOL packets, acknowledgements and resends on a time passed in",
    ),
    (
        "ipmi/sdr.rs",
        "SDR, sensor reading and SEL requests and answers over byte slices",
    ),
    (
        "redfish/health.rs",
        "Redfish Thermal, Power and log entry JSON read from byte slices",
    ),
];

/// Modules that look pure by name or role but are not, and why: kept here so the list above
/// is a decision, not an oversight. The test checks that each file still exists.
const NOT_PURE: &[(&str, &str)] = &[
    (
        "pool/sync.rs",
        "computes digests by reading the Store (heed)",
    ),
    (
        "pool/facts.rs",
        "gathers facts from the Store and the blob directory (std::fs)",
    ),
    (
        "pool/key.rs",
        "reads and writes the cluster key file, generates it from OsRng",
    ),
    ("pool/layers.rs", "ships NFS layers over TCP (tokio)"),
    ("pool/replication.rs", "the replication connections (tokio)"),
    ("pool/conn.rs", "one pool port connection (tokio)"),
    (
        "pool/status.rs",
        "the status types, and reading and writing the status file (std::fs)",
    ),
    (
        "store/view.rs",
        "loads itself from the Store (heed); its View type is data",
    ),
    (
        "nfs/ids.rs",
        "stamps object ids into files (xattrs) and seeds from OsRng",
    ),
    (
        "ipmi/cache.rs",
        "a session cache on Instant::now and live connections",
    ),
    (
        "ipmi/power.rs",
        "drives BMCs over the network with pacing sleeps",
    ),
];

/// Items of impure modules that pure modules may name: data types and pure functions, no
/// I/O in what the pure modules use of them. A crate path (without `crate::`) is allowed if it
/// starts with one of these.
const DATA_ITEMS: &[(&str, &str)] = &[
    ("overrides::Shown", "what `config show` prints: plain data"),
    (
        "overrides::Outcome",
        "what a settings change did: plain data",
    ),
    ("config::Scope", "a setting's scope: a plain enum"),
    (
        "service::TOOLS_NAME",
        "the service-mode initrd's file name: a string constant",
    ),
    (
        "service::TOOLS_PATH",
        "the service-mode initrd's URL path: a string constant",
    ),
    (
        "service::CMDLINE_FLAG",
        "the kernel argument of service mode: a string constant",
    ),
    ("config::Takes", "when a setting takes effect: a plain enum"),
    (
        "store::view::View",
        "a snapshot of the store, read by field",
    ),
    ("store::view::ImageRef", "part of View"),
    (
        "pool::key::ClusterKey",
        "key material; derives keys from bytes",
    ),
    (
        "pool::key::Rekey",
        "a next key and two times; its text form (save touches files, unused by pure code)",
    ),
    ("pool::status::Status", "pool status data"),
    ("pool::status::MemberStatus", "pool status data"),
    ("pool::status::MemberDetail", "pool status data"),
    ("pool::status::ServiceAddress", "pool status data"),
    ("pool::status::LayerCounts", "pool status data"),
    ("pool::sync::MAX_ROWS", "a named limit"),
    ("pool::sync::Digest", "a version vector: data"),
    ("store::replicate::Batch", "rows of one writer: data"),
    ("admin::NodeDetail", "what `node show` shows: data"),
    ("admin::GroupInfo", "what `group list` shows: data"),
    ("admin::BmcReach", "how a node's BMC is reached: data"),
    ("timeline::state", "a pure function of boot events and now"),
    (
        "net::ra::advertisement",
        "the RA message bytes from a MAC (the shell beside it sends them)",
    ),
    (
        "net::ra::is_solicitation",
        "a check over an ICMPv6 message's bytes",
    ),
    ("timeline::last_boot", "a pure function of boot events"),
    ("timeline::format_utc", "formats a time passed in"),
];

/// Address types: the only part of `std::net` a pure module may use.
const NET_DATA: &[&str] = &[
    "IpAddr",
    "Ipv4Addr",
    "Ipv6Addr",
    "SocketAddr",
    "SocketAddrV4",
    "SocketAddrV6",
    "AddrParseError",
];

/// Identifiers that are OS randomness wherever they appear.
const RANDOM_IDENTS: &[&str] = &[
    "OsRng",
    "ThreadRng",
    "thread_rng",
    "from_entropy",
    "from_os_rng",
    "try_from_os_rng",
    "getrandom",
];

/// Crates a pure module never uses.
const IO_CRATES: &[&str] = &[
    "tokio",
    "tokio_util",
    "heed",
    "libc",
    "socket2",
    "nix",
    "mio",
    "axum",
    "hyper",
    "getrandom",
    "tracing_subscriber",
];

/// Why a resolved external path (std or another crate) is forbidden, if it is.
fn forbidden_external(path: &[String]) -> Option<&'static str> {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let (root, rest) = p.split_first()?;
    if IO_CRATES.contains(root) {
        return Some("an I/O crate");
    }
    if matches!(
        p.as_slice(),
        ["rand", "rng" | "thread_rng" | "random", ..] | ["rand" | "rand_core", "rngs", "OsRng", ..]
    ) {
        return Some("OS randomness");
    }
    if !matches!(*root, "std" | "core") {
        return None;
    }
    match rest {
        ["fs", ..] => Some("the file system"),
        ["net", item, ..] if !NET_DATA.contains(item) => Some("sockets"),
        ["os", ..] => Some("OS-specific I/O"),
        ["thread", ..] => Some("threads and sleeping"),
        ["process", ..] | ["env", ..] => Some("the process's environment"),
        ["io", "stdin" | "stdout" | "stderr" | "Stdin" | "Stdout" | "Stderr", ..] => {
            Some("standard I/O")
        }
        ["time", "Instant" | "SystemTime", "now" | "elapsed", ..] => Some("a clock read"),
        _ => None,
    }
}

/// One broken rule.
#[derive(Debug)]
struct Violation {
    line: usize,
    what: String,
}

/// Checks the source of the pure module at `rel` (under `src/`) against the rule.
fn check_source(tree: &Tree, pure: &BTreeSet<String>, rel: &str, source: &str) -> Vec<Violation> {
    let toks = without_tests(tokenize(source));
    let (imports, paths) = imports_and_paths(&toks);
    let me = module_of(rel);
    let mut out = Vec::new();
    let aliases: HashMap<&str, &Import> = imports
        .iter()
        .filter_map(|imp| Some((imp.name.as_deref()?, imp)))
        .collect();
    let globs: Vec<&Import> = imports.iter().filter(|i| i.name.is_none()).collect();

    for imp in &imports {
        let shown = imp.path.join("::");
        check_path(tree, pure, &me, &imp.path, imp.name.is_none(), &mut |why| {
            out.push(Violation {
                line: imp.line,
                what: format!("`use {shown}`: {why}"),
            })
        });
    }
    for p in &paths {
        let first = p.segs[0].as_str();
        if RANDOM_IDENTS.contains(&first)
            || p.segs.iter().any(|s| RANDOM_IDENTS.contains(&s.as_str()))
        {
            out.push(Violation {
                line: p.line,
                what: format!("`{}`: OS randomness", p.segs.join("::")),
            });
            continue;
        }
        if p.method {
            if p.segs.len() == 1 && first == "elapsed" {
                out.push(Violation {
                    line: p.line,
                    what: "`.elapsed()`: a clock read (Instant/SystemTime)".into(),
                });
            }
            continue;
        }
        let mut candidates: Vec<(Vec<String>, String)> = Vec::new();
        if let Some(imp) = aliases.get(first) {
            let mut full = imp.path.clone();
            full.extend(p.segs[1..].iter().cloned());
            candidates.push((full, format!(" (`{first}` imported at line {})", imp.line)));
        } else if matches!(first, "crate" | "self" | "super") || p.segs.len() > 1 {
            candidates.push((p.segs.clone(), String::new()));
        }
        if !aliases.contains_key(first) && !matches!(first, "crate" | "self" | "super") {
            // Names a glob may bring in: only external globs are followed per name (a crate
            // glob is checked once, as its import).
            for g in &globs {
                if !matches!(g.path[0].as_str(), "crate" | "self" | "super") {
                    let mut full = g.path.clone();
                    full.extend(p.segs.iter().cloned());
                    candidates.push((full, format!(" (glob imported at line {})", g.line)));
                }
            }
        }
        for (full, via) in candidates {
            let shown = p.segs.join("::");
            check_path(tree, pure, &me, &full, false, &mut |why| {
                out.push(Violation {
                    line: p.line,
                    what: format!("`{shown}`{via}: {why}"),
                })
            });
        }
    }
    out
}

/// Resolves `path` (as written in module `me`) and reports why it is forbidden.
fn check_path(
    tree: &Tree,
    pure: &BTreeSet<String>,
    me: &[String],
    path: &[String],
    glob: bool,
    report: &mut dyn FnMut(String),
) {
    if let Some(r) = path.iter().find(|s| RANDOM_IDENTS.contains(&s.as_str())) {
        report(format!("{r} is OS randomness"));
        return;
    }
    let Some(crate_path) = tree.resolve(me, path) else {
        if let Some(why) = forbidden_external(path) {
            report(format!("{} is {why}", path.join("::")));
        }
        return;
    };
    // A path into this crate lands in a pure module or on a listed data item.
    let (file, item) = tree.locate(&crate_path);
    let data = |segs: &[String]| {
        let joined = segs.join("::");
        DATA_ITEMS
            .iter()
            .any(|(d, _)| joined == *d || joined.starts_with(&format!("{d}::")))
    };
    // A module named as a whole (`use crate::timeline;`) does nothing by itself; each path
    // through it is checked where it is used. A glob brings in names unseen: checked here.
    let whole_module = module_of(&file) == item && !glob;
    if !whole_module && !pure.contains(&file) && !data(&crate_path) && !data(&item) {
        report(format!(
            "crate::{} is in src/{file}, which is not a pure module (nor a listed data item)",
            item.join("::")
        ));
    }
}

/// Every pure module: each `wire.rs` and `core.rs`, and [`PURE`].
fn pure_modules(tree: &Tree) -> BTreeSet<String> {
    tree.modules
        .values()
        .filter(|f| f.ends_with("/wire.rs") || f.ends_with("/core.rs"))
        .cloned()
        .chain(PURE.iter().map(|(f, _)| f.to_string()))
        .collect()
}

#[test]
fn pure_modules_do_no_io() {
    let tree = Tree::load(&src_dir());
    let pure = pure_modules(&tree);
    for (f, _) in PURE.iter().chain(NOT_PURE) {
        assert!(
            tree.modules.values().any(|m| m == f),
            "src/{f} is listed in sans_io.rs but does not exist"
        );
    }
    assert!(
        pure.len() >= 30,
        "expected every wire/core module, found {pure:?}"
    );
    let mut violations = Vec::new();
    for f in &pure {
        let text = std::fs::read_to_string(tree.src.join(f)).expect("read source");
        for v in check_source(&tree, &pure, f, &text) {
            violations.push(format!("src/{f}:{}: {}", v.line, v.what));
        }
    }
    assert!(
        violations.is_empty(),
        "sans-IO rule broken:\n{}",
        violations.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Self-tests: planted violations are found, innocent code is not.

/// Violations of `snippet` as if it were `src/dhcp/core.rs`.
fn planted(snippet: &str) -> Vec<String> {
    let tree = Tree::load(&src_dir());
    let pure = pure_modules(&tree);
    check_source(&tree, &pure, "dhcp/core.rs", snippet)
        .into_iter()
        .map(|v| format!("{}: {}", v.line, v.what))
        .collect()
}

#[test]
fn planted_imports_are_caught() {
    for snippet in [
        "use std::fs;",
        "use std::fs::File;",
        "use std::{fs};",
        "use std::{fs, net::UdpSocket};",
        "use std::{io, net::{Ipv4Addr, UdpSocket}};",
        "use std::fs as f;",
        "use ::std::fs;",
        "use std::net::UdpSocket;",
        "use std::net::*;\nfn f() { let _ = UdpSocket::bind(\"0.0.0.0:0\"); }",
        "use std::thread::sleep;",
        "use std::thread;",
        "use tokio::net::UdpSocket;",
        "use tokio;",
        "use heed::Env;",
        "use libc::c_int;",
        "use std::time::Instant;\nfn f() { let t = Instant::now(); }",
        "use std::time::{Duration, SystemTime};\nfn f() { SystemTime::now(); }",
        "use std::time::Instant as Clock;\nfn f() { Clock::now(); }",
        "use std::time;\nfn f() { time::Instant::now(); }",
        "use std::time::*;\nfn f() { Instant::now(); }",
        "use rand_core::OsRng;",
        "use rand::rngs::OsRng;",
        "use super::serve::Stats;",
        "use super::serve;\nfn f() { serve::run(); }",
        "use crate::dhcp::serve::run;",
        "use crate::store::Store;",
        "use crate::store::*;",
        "use crate::image::Blobs;",
        "use super::{wire, serve};\nfn f() { serve::Stats::default(); }",
        "use crate::{store::{self, Store}};",
    ] {
        assert!(!planted(snippet).is_empty(), "not caught: {snippet}");
    }
}

#[test]
fn planted_paths_are_caught() {
    for snippet in [
        "fn f() { let t = std::time::Instant::now(); }",
        "fn f() { std::time::SystemTime::now(); }",
        "fn f() { ::std::fs::read(\"x\"); }",
        "use std::fs;\nfn f() { fs::read(\"x\"); }",
        "fn f() { std::thread::sleep(d); }",
        "fn f() { let s = std::net::UdpSocket::bind(a); }",
        "fn f() { let r = OsRng; }",
        "fn f() { let r = StdRng::from_entropy(); }",
        "fn f() { let r = StdRng::from_os_rng(); }",
        "fn f() { let r = rand::rng(); }",
        "fn f() { let r = rand::thread_rng(); }",
        "fn f() { getrandom::fill(&mut b); }",
        "fn f() { tokio::spawn(x); }",
        "fn f() { heed::EnvOpenOptions::new(); }",
        "fn f() { unsafe { libc::close(3) }; }",
        "fn f() { let x = crate::dhcp::serve::Stats::default(); }",
        "fn f() { super::serve::run(); }",
        "fn f(t: Instant) -> Duration { t.elapsed() }",
        "fn f() { std::process::exit(1); }",
        "fn f() { std::env::var(\"X\"); }",
    ] {
        assert!(!planted(snippet).is_empty(), "not caught: {snippet}");
    }
}

#[test]
fn innocent_code_passes() {
    for snippet in [
        "use std::net::{Ipv4Addr, SocketAddrV4};",
        "use std::time::Duration;",
        "use std::collections::HashMap;",
        "use std::io::{self, Read};",
        "use super::wire::{Reply, Request};",
        "use super::share::Share;",
        "use crate::dhcp::Share;",
        "use crate::store::model::{Lease, Mac};",
        "use crate::store::View;",
        "use crate::store::Version;",
        "use rand::rngs::StdRng;\nfn f() { StdRng::seed_from_u64(1); }",
        "// use std::fs;\nfn f() {}",
        "/* std::fs::read(\"x\") /* nested */ tokio::spawn */ fn f() {}",
        "fn f() -> &'static str { \"std::fs::read and Instant::now()\" }",
        "fn f() -> &'static str { r#\"use std::fs; \"OsRng\"\"# }",
        "fn f(now: u64) -> char { let c = '\"'; let d = '\\''; c }",
        "fn f<'a>(x: &'a str) -> &'a str { x }",
        "#[cfg(test)]\nmod tests {\n use std::fs;\n fn t() { std::time::Instant::now(); }\n}",
        "fn f(now: std::time::Duration) {}",
        "pub(crate) fn f() {}\npub(super) struct S;\npub(in crate::dhcp) struct T;",
        "pub(crate) use super::wire::Reply;",
    ] {
        let found = planted(snippet);
        assert!(found.is_empty(), "false alarm on {snippet:?}: {found:?}");
    }
}

#[test]
fn violations_name_the_line_and_the_import() {
    let found = planted("use std::time::Instant as Clock;\n\nfn f() {\n    Clock::now();\n}\n");
    assert_eq!(
        found,
        ["4: `Clock::now` (`Clock` imported at line 1): std::time::Instant::now is a clock read"]
    );
}
