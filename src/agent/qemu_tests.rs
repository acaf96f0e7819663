//! Lab test: boot a real Debian kernel in QEMU (TCG) with drover's initramfs and a busybox
//! rootfs served over HTTP, and check that the image's `/sbin/init` runs with the node's files.
//!
//! Ignored by default (needs qemu-system-x86, busybox-static, python3, depmod, an unpacked
//! `linux-image-*-amd64` .deb and a built `drover` binary). Run it with
//!
//! ```text
//! cargo build && DROVER_TEST_KERNEL=/tmp/k/x \
//!   cargo test --lib -- --ignored --nocapture agent::qemu_tests
//! ```
//!
//! `DROVER_TEST_KERNEL` is the directory a kernel .deb was extracted into (`boot/vmlinuz-*`,
//! `lib/modules/<kver>/`); `DROVER_TEST_KEEP=1` keeps the work directory.

use crate::image::{initramfs, rootfs};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Modules the test rootfs carries (the NIC drivers QEMU offers and their dependencies).
const TEST_MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_pci_modern_dev",
    "virtio_pci_legacy_dev",
    "virtio_pci",
    "failover",
    "net_failover",
    "virtio_net",
    "e1000",
    "e1000e",
];

const INIT: &str = r#"#!/bin/sh
echo "RAMROOT-OK $(hostname) $(tr '\n' ' ' < /etc/drover/node.env)"
echo "RAMROOT-UPTIME $(cut -d' ' -f1 /proc/uptime)"
echo "RAMROOT-ROUTE $(ip route | tr '\n' ';')"
poweroff -f
"#;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            find_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Builds the busybox rootfs under `root` with the test modules for kernel `kver`.
fn make_rootfs(root: &Path, kernel: &Path, kver: &str) {
    for d in [
        "bin", "sbin", "etc", "proc", "sys", "dev", "run", "tmp", "root",
    ] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = Command::new("/bin/busybox")
        .arg("--list-full")
        .output()
        .unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        let name = applet.rsplit('/').next().unwrap();
        if name == "busybox" || applet.starts_with("sbin/init") || applet.contains("linuxrc") {
            continue;
        }
        let path = root.join(applet);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let _ = symlink("/bin/busybox", &path);
    }
    fs::write(root.join("sbin/init"), INIT).unwrap();
    fs::set_permissions(root.join("sbin/init"), fs::Permissions::from_mode(0o755)).unwrap();

    let src = kernel.join("lib/modules").join(kver);
    let dst = root.join("lib/modules").join(kver);
    let mut all = Vec::new();
    find_files(&src.join("kernel"), &mut all);
    for m in TEST_MODULES {
        let file = all
            .iter()
            .find(|p| {
                initramfs::module_name(&p.to_string_lossy()).replace('-', "_") == *m
                    && initramfs::is_module_file(&p.to_string_lossy())
            })
            .unwrap_or_else(|| panic!("module {m} not in {}", src.display()));
        let to = dst.join(file.strip_prefix(&src).unwrap());
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(file, &to).unwrap();
    }
    for f in [
        "modules.order",
        "modules.builtin",
        "modules.builtin.modinfo",
    ] {
        if src.join(f).exists() {
            fs::copy(src.join(f), dst.join(f)).unwrap();
        }
    }
    let st = Command::new("depmod")
        .args(["-b", &root.to_string_lossy(), kver])
        .status()
        .unwrap();
    assert!(st.success(), "depmod failed");
}

fn boot(work: &Path, vmlinuz: &Path, initrd: &Path, port: u16, nic: &str) -> (bool, String) {
    let log = work.join(format!("console-{nic}.log"));
    let _ = fs::remove_file(&log);
    let append = format!(
        "console=ttyS0 drover.server=http://10.0.2.2:{port} drover.image=x drover.node=n1 \
         drover.mac=52:54:00:12:34:56 drover.ip=10.0.2.15 drover.netmask=255.255.255.0 \
         drover.gw=10.0.2.2 drover.dns=10.0.2.3 drover.domain=lab"
    );
    let started = Instant::now();
    let qemu = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "tcg",
            "-m",
            "512",
            "-nodefaults",
            "-nographic",
            "-no-reboot",
        ])
        .args(["-serial", &format!("file:{}", log.display())])
        .args(["-kernel", &vmlinuz.to_string_lossy()])
        .args(["-initrd", &initrd.to_string_lossy()])
        .args(["-append", &append])
        .args(["-netdev", "user,id=n0"])
        .args(["-device", &format!("{nic},netdev=n0,mac=52:54:00:12:34:56")])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut qemu = Kill(qemu);
    let deadline = Duration::from_secs(180);
    let mut exited = false;
    while started.elapsed() < deadline {
        if qemu.0.try_wait().unwrap().is_some() {
            exited = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = fs::read_to_string(&log).unwrap_or_default();
    println!(
        "--- {nic}: qemu {} after {:.1}s (wall clock) ---",
        if exited { "exited" } else { "killed" },
        started.elapsed().as_secs_f64()
    );
    for line in text.lines() {
        if line.contains("drover-agent") || line.contains("RAMROOT") {
            println!("{line}");
        }
    }
    (text.contains("RAMROOT-OK n1 "), text)
}

#[test]
#[ignore = "lab test: needs QEMU, busybox-static and an unpacked Debian kernel"]
fn ram_root_boots_in_qemu() {
    let kernel = PathBuf::from(std::env::var("DROVER_TEST_KERNEL").unwrap_or("/tmp/k/x".into()));
    let boot_dir = kernel.join("boot");
    let vmlinuz = fs::read_dir(&boot_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vmlinuz-")
        })
        .expect("no boot/vmlinuz-* in DROVER_TEST_KERNEL");
    let kver = vmlinuz.file_name().unwrap().to_string_lossy()["vmlinuz-".len()..].to_string();
    // target/<triple>/debug/deps/drover-HASH -> target/<triple>/debug/drover
    let exe = std::env::current_exe().unwrap();
    let agent = exe.parent().unwrap().parent().unwrap().join("drover");
    assert!(
        agent.exists(),
        "{}: run `cargo build` first",
        agent.display()
    );

    let work = std::env::temp_dir().join(format!("drover-qemu-agent-{}", std::process::id()));
    let _ = fs::remove_dir_all(&work);
    let root = work.join("root");
    make_rootfs(&root, &kernel, &kver);

    let www = work.join("www");
    fs::create_dir_all(www.join("images/x")).unwrap();
    let tar_path = www.join("images/x/rootfs.tar");
    let t = Instant::now();
    rootfs::pack_dir(&root, fs::File::create(&tar_path).unwrap()).unwrap();
    rootfs::check_tar(&tar_path).unwrap();
    let initrd = work.join("initramfs.cpio");
    let mut out = std::io::BufWriter::new(fs::File::create(&initrd).unwrap());
    let report = initramfs::build(&agent, &tar_path, &mut out).unwrap();
    out.flush().unwrap();
    println!(
        "rootfs.tar {} bytes, initramfs {report} (built in {:.2}s)",
        fs::metadata(&tar_path).unwrap().len(),
        t.elapsed().as_secs_f64()
    );

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let _http = Kill(
        Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let nics = std::env::var("DROVER_TEST_NICS").unwrap_or("virtio-net-pci,e1000".into());
    let mut failures = Vec::new();
    for nic in nics.split(',') {
        let (ok, _) = boot(&work, &vmlinuz, &initrd, port, nic);
        if !ok {
            failures.push(nic.to_string());
        }
    }
    if std::env::var_os("DROVER_TEST_KEEP").is_none() && failures.is_empty() {
        let _ = fs::remove_dir_all(&work);
    } else {
        println!("work directory kept: {}", work.display());
    }
    assert!(
        failures.is_empty(),
        "no RAMROOT-OK marker with {failures:?}"
    );
}

/// Builds an initramfs from any rootfs tar (`DROVER_TEST_ROOTFS_TAR`, e.g. a whole Debian
/// module tree after `depmod -b`) and prints what went in.
#[test]
#[ignore = "needs DROVER_TEST_ROOTFS_TAR"]
fn initramfs_from_a_real_rootfs_tar() {
    let tar =
        PathBuf::from(std::env::var("DROVER_TEST_ROOTFS_TAR").expect("DROVER_TEST_ROOTFS_TAR"));
    let t = Instant::now();
    let report = initramfs::build(Path::new("/bin/busybox"), &tar, std::io::sink()).unwrap();
    println!("built in {:.2}s: {report}", t.elapsed().as_secs_f64());
    for k in &report.kernels {
        for m in &k.modules {
            println!("{} {m}", k.kver);
        }
    }
    assert!(!report.kernels.is_empty());
}
