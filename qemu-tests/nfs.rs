//! The Linux kernel NFSv4 client against drover's NFS server, in one QEMU VM: the VM boots
//! the lab kernel directly (no PXE) with an initramfs of busybox and the kernel's NFSv4
//! client modules (`lab/nfs-proto/base.cpio` from `scripts/lab-assets`) plus
//! `qemu-tests/nfs-client.sh` as /init, mounts drover's export `t` (read-write, root
//! squashed) as NFSv4.0, NFSv4.1 and NFSv4.2 and runs the same checks on each (the VM has no
//! `mount.nfs` helper: the kernel's own text mount takes 4.0 without `vers=`, while the
//! helper of nfs-utils asks for `vers=4.2` first, which is the 4.2 mount here): create, write, read
//! back after dropping caches, append and truncate, rename and remove, hard and symbolic
//! links, permissions (root squashed to nobody, nobody refused a 0600 file of uid 1000), a
//! 5 GiB sparse file, listing a 10,000-entry directory, 500 creates, four concurrent readers,
//! and fcntl byte-range locks between processes (a small static C program,
//! `qemu-tests/nfs-locktest.c`, built with gcc at test time). Then, with all three versions
//! mounted again and a file held open on each, the test crashes drover (SIGKILL) and starts
//! it again: the files written and closed (so committed) just before still read through the
//! opens the clients reclaim in the grace period, handles from before the crash still
//! resolve, and new files can be made. Each check prints a line on the serial
//! console; the test asserts every one, then looks at the files on the server's disk.
//!
//! Needs root, qemu-system-x86, gcc and `scripts/lab-assets`; fails with the command to run
//! otherwise. `DROVER_KEEP_TEMP=1` keeps the serial and server logs.

#[path = "../integration/common/mod.rs"]
mod common;
mod harness;

use common::*;
use harness::*;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The whole script under TCG: boot ~20 s, the checks a few minutes per version on a loaded
/// machine.
const RUN_TIMEOUT: Duration = Duration::from_secs(1800);
const CLIENT_IP: &str = "198.18.0.10/24";
const VERSIONS: [&str; 3] = ["4.0", "4.1", "4.2"];
const CHECKS: [&str; 15] = [
    "mount",
    "write-read",
    "append-truncate",
    "rename-remove",
    "links",
    "permissions",
    "sparse-5g",
    "bigdir-10000",
    "create-500",
    "concurrent-readers",
    "locks",
    "umount",
    "restart-open-file",
    "restart-old-handle",
    "restart-create",
];

struct Qemu {
    child: Child,
    _slot: harness::vm::Slot,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(1));
    }
}

/// base.cpio followed by a newc archive holding /init (the kernel unpacks both).
fn initrd(dir: &Path) -> std::path::PathBuf {
    let base = repo_root().join("lab/nfs-proto/base.cpio");
    require_file(&base, "run scripts/lab-assets (or scripts/setup)");
    require_cmd("cpio", "cpio");
    let stage = dir.join("init-stage");
    std::fs::create_dir_all(&stage).expect("stage dir");
    let init = stage.join("init");
    std::fs::copy(repo_root().join("qemu-tests/nfs-client.sh"), &init).expect("copy /init");
    run_ok(Command::new("chmod").arg("0755").arg(&init));
    let gcc = require_cmd("gcc", "gcc");
    run_ok(
        Command::new(gcc)
            .args(["-static", "-O2", "-o"])
            .arg(stage.join("locktest"))
            .arg(repo_root().join("qemu-tests/nfs-locktest.c")),
    );
    let extra = dir.join("init.cpio");
    let out = std::fs::File::create(&extra).expect("create init.cpio");
    let mut cpio = Command::new("cpio");
    cpio.args(["-o", "-H", "newc", "-R", "0:0", "--quiet"])
        .current_dir(&stage)
        .stdin(Stdio::piped())
        .stdout(out);
    let mut child = cpio.spawn().expect("run cpio");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("cpio stdin");
        stdin.write_all(b"init\nlocktest\n").expect("feed cpio");
    }
    assert!(child.wait().expect("cpio").success(), "cpio failed");
    let mut all = std::fs::read(&base).expect("read base.cpio");
    all.extend(std::fs::read(&extra).expect("read init.cpio"));
    let path = dir.join("nfs-test.initrd");
    std::fs::write(&path, all).expect("write the initrd");
    path
}

#[test]
fn kernel_client_v40_v41_and_v42() {
    require_root();
    let assets = Assets::require();
    let lab = Lab::new("nfsk");
    let mut drover = Drover::new();
    drover.env(
        "DROVER_LOG",
        &std::env::var("DROVER_LOG").unwrap_or_else(|_| "info".into()),
    );
    // The export `t` (read-write, root squashed, open to all), with a 10,000-entry directory
    // made on the server side.
    let export = drover.scratch().join("export");
    let bigdir = export.join("bigdir");
    std::fs::create_dir_all(&bigdir).expect("bigdir");
    for i in 0..10_000 {
        std::fs::write(bigdir.join(format!("e{i:05}")), b"").expect("bigdir entry");
    }
    std::fs::set_permissions(&export, std::os::unix::fs::PermissionsExt::from_mode(0o777))
        .expect("chmod the export");
    drover.cli_ok(&[
        "nfs",
        "export",
        "add",
        "t",
        "--path",
        export.to_str().expect("utf-8 path"),
        "--clients",
        "198.18.0.0/24",
        "--rw",
    ]);
    let config = drover.scratch().join("nfs.toml");
    std::fs::write(
        &config,
        config_only(
            &[],
            "[nfs]\nenabled = true\ngrace-secs = 5\nlease-secs = 30\n",
        ),
    )
    .expect("config");
    let start_args = [
        "serve",
        "--config",
        config.to_str().expect("utf-8 path"),
        "--interface",
        BRIDGE,
    ];
    drover.start(Some(&lab.ns), &start_args);
    drover.wait_log("drover: ready", Duration::from_secs(30));

    let initrd = initrd(lab.dir.path());
    lab.ns.add_tap("tap0", BRIDGE);
    let serial = lab.dir.join("nfs-client.serial.log");
    let slot = harness::vm::Slot::acquire();
    let qemu = require_cmd("qemu-system-x86_64", "qemu-system-x86");
    let mut cmd = lab.ns.cmd(qemu);
    cmd.args(::drover::lab::qemu::base_args("nfs-client"))
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .args(["-m", "384", "-smp", "1"])
        .arg("-kernel")
        .arg(&assets.kernel)
        .arg("-initrd")
        .arg(&initrd)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 quiet panic=-1 nfstest.server={SERVER_IP} nfstest.ip={CLIENT_IP}"
        ))
        .args(["-netdev", "tap,id=n0,ifname=tap0,script=no,downscript=no"])
        .args([
            "-device",
            "virtio-net-pci,netdev=n0,mac=52:54:00:00:00:31,romfile=",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut vm = Qemu {
        child: cmd.spawn().expect("start QEMU"),
        _slot: slot,
    };
    // The script's checks, then it waits with files open while drover restarts.
    let ready = wait_until(RUN_TIMEOUT, || {
        let log = read_lossy(&serial);
        log.contains("NFSTEST-RESTART-READY")
            || log.contains("NFSTEST-END")
            || vm.child.try_wait().ok().flatten().is_some()
    });
    if ready && read_lossy(&serial).contains("NFSTEST-RESTART-READY") {
        // A crash, not a clean stop: what the client wrote and synced (stable WRITE or COMMIT)
        // before it must still be there afterwards.
        drover.crash();
        drover.start(Some(&lab.ns), &start_args);
        // The last run had clients, so this one opens with a grace period for their reclaims.
        drover.wait_log("NFS: grace period", Duration::from_secs(30));
    }
    let done = wait_until(RUN_TIMEOUT, || {
        read_lossy(&serial).contains("NFSTEST-END") || vm.child.try_wait().ok().flatten().is_some()
    });
    let log = read_lossy(&serial);
    let report = || {
        format!(
            "serial log:\n{}\n--- drover log:\n{}",
            tail(&log, 120),
            tail(&read_lossy(drover.log_path()), 60)
        )
    };
    assert!(
        done,
        "the VM did not finish in {RUN_TIMEOUT:?}\n{}",
        report()
    );
    // Console escape codes may precede a line's text.
    let lines: Vec<&str> = log
        .lines()
        .filter_map(|l| l.find("NFSTEST ").map(|i| &l[i..]))
        .collect();
    eprintln!("{}", lines.join("\n"));
    let mut failed = Vec::new();
    for v in VERSIONS {
        for c in CHECKS {
            let prefix = format!("NFSTEST {v} {c} ");
            match lines.iter().find(|l| l.starts_with(&prefix)) {
                Some(l) if l.ends_with(" OK") => {}
                Some(l) => failed.push(l.to_string()),
                None => failed.push(format!("{prefix}missing")),
            }
        }
    }
    assert!(
        log.contains("NFSTEST-END"),
        "the script did not finish\n{}",
        report()
    );
    assert!(failed.is_empty(), "failed: {failed:#?}\n{}", report());
    // What the clients wrote is on the server's disk.
    for v in VERSIONS {
        let written = std::fs::read_to_string(export.join(format!("written-by-{v}")))
            .unwrap_or_else(|e| panic!("written-by-{v} on the server: {e}"));
        assert_eq!(written, format!("from {v}\n"));
        let f = std::fs::read_to_string(export.join(format!("work-{v}/f"))).expect("f");
        assert_eq!(f, format!("hello from {v}\n"));
        let meta = std::fs::metadata(export.join(format!("work-{v}/shared/t"))).expect("t");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            meta.uid(),
            1000,
            "a file made by uid 1000 belongs to uid 1000"
        );
    }
    drop(vm);
}
