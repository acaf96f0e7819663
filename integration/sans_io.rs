//! The house rule of STYLE.md §1, checked: protocol `wire.rs` and `core.rs` files never use
//! tokio, heed, sockets or the clock. Time, randomness and store snapshots are arguments.

use std::path::{Path, PathBuf};

const FORBIDDEN: &[&str] = &[
    "tokio::",
    "heed::",
    "Instant::now",
    "SystemTime::now",
    "std::net::UdpSocket",
    "std::net::TcpStream",
    "std::net::TcpListener",
    "std::fs::",
    "std::thread::sleep",
];

/// Sans-IO modules with other names: NFS's XDR, RPC framing, state tables, statuses and the
/// operations of its COMPOUND pipeline.
const SANS_IO_EXTRA: &[&str] = &[
    "nfs/xdr.rs",
    "nfs/rpc.rs",
    "nfs/state.rs",
    "nfs/status.rs",
    "nfs/ops/mod.rs",
    "nfs/ops/attr.rs",
    "nfs/ops/dir.rs",
    "nfs/ops/filehandle.rs",
    "nfs/ops/io.rs",
    "nfs/ops/lock.rs",
    "nfs/ops/open.rs",
    "nfs/ops/session.rs",
];

fn sans_io_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            sans_io_files(&path, out);
        } else if matches!(
            path.file_name().and_then(|n| n.to_str()),
            Some("wire.rs" | "core.rs")
        ) || SANS_IO_EXTRA.iter().any(|e| path.ends_with(e))
        {
            out.push(path);
        }
    }
}

#[test]
fn wire_and_core_modules_do_no_io() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sans_io_files(&src, &mut files);
    assert!(
        files.len() >= 2,
        "expected the DHCP and TFTP wire/core modules under src/, found {files:?}"
    );
    let mut violations = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read source");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for bad in FORBIDDEN {
                if code.contains(bad) {
                    violations.push(format!("{}:{}: uses {bad}", f.display(), n + 1));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "sans-IO rule broken:\n{}",
        violations.join("\n")
    );
}
