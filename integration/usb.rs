//! `drover usb build` and `drover usb write` through the real binary, read back with the
//! standard tools: sfdisk sees the MBR's two partitions, mtools the boot files and the
//! syslinux configuration, cpio the initramfs, and the ext4 superblock has the data label.
//! `usb write` copies onto a loop device and refuses files, character devices, mounted
//! disks and disks over the size limit.
//!
//! Needs the stick's tools (dosfstools, mtools, syslinux, syslinux-efi, fdisk, cpio:
//! `scripts/setup`) and `lab/usb/kernel` (`scripts/lab-assets`); the write tests need root
//! (loop devices). The boot itself is `qemu-tests/usb.rs`.

mod common;

use common::*;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

fn require_stick_tools() -> PathBuf {
    for (tool, package) in [
        ("mkfs.vfat", "dosfstools"),
        ("mcopy", "mtools"),
        ("syslinux", "syslinux"),
        ("sfdisk", "fdisk"),
        ("cpio", "cpio"),
        ("mkfs.ext4", "e2fsprogs"),
    ] {
        require_cmd(tool, package);
    }
    let kernel = repo_root().join("lab/usb/kernel");
    require_file(
        &kernel.join("lib/modules"),
        "run scripts/lab-assets (it makes lab/usb/kernel)",
    );
    kernel
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// `usb build` into `dir/stick.img` with `size` (a debug binary as `/init` needs ~190 MB);
/// returns the image path.
fn build(d: &Drover, dir: &TempDir, size: &str) -> PathBuf {
    let kernel = require_stick_tools();
    let out = dir.join("stick.img");
    d.cli_ok(&[
        "usb",
        "build",
        path(&out),
        "--size",
        size,
        "--kernel",
        path(&kernel),
        "--address",
        "198.18.0.2/24",
        "--gateway",
        "198.18.0.254",
    ]);
    out
}

/// The partitions sfdisk reads: (start sector, sectors, type, bootable).
fn partitions(img: &Path) -> Vec<(u64, u64, String, bool)> {
    let out = run_ok(Command::new("sfdisk").arg("--dump").arg(img));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("label: dos"), "not an MBR disk:\n{text}");
    text.lines()
        .filter(|l| l.contains(" : start="))
        .map(|l| {
            let get = |key: &str| {
                l.split(key)
                    .nth(1)
                    .and_then(|r| r.split(',').next())
                    .map(|v| v.trim().to_string())
                    .unwrap_or_else(|| panic!("no {key} in {l:?}"))
            };
            (
                get("start=").parse().unwrap(),
                get("size=").parse().unwrap(),
                get("type="),
                l.contains("bootable"),
            )
        })
        .collect()
}

fn mtools(tool: &str, img: &Path, offset: u64, args: &[&str]) -> String {
    let out = run_ok(
        Command::new(tool)
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(format!("{}@@{offset}", img.display()))
            .args(args),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn build_lays_out_both_boot_paths_and_the_data_partition() {
    let d = Drover::new();
    let dir = TempDir::new("usb-build");
    let img = build(&d, &dir, "256M");
    assert_eq!(std::fs::metadata(&img).unwrap().len(), 256 << 20);

    let parts = partitions(&img);
    assert_eq!(parts.len(), 2, "{parts:?}");
    let (esp_start, esp_len, esp_type, esp_boot) = parts[0].clone();
    let (data_start, data_len, data_type, data_boot) = parts[1].clone();
    assert_eq!((esp_start, esp_type.as_str(), esp_boot), (2048, "ef", true));
    assert_eq!((data_type.as_str(), data_boot), ("83", false));
    assert_eq!(data_start, esp_start + esp_len);
    assert_eq!((data_start + data_len) * 512, 256 << 20);

    // The ESP: UEFI's loader, BIOS's ldlinux.sys, one configuration in both places.
    let esp = esp_start * 512;
    let efi = mtools("mdir", &img, esp, &["-b", "::/EFI/BOOT"]);
    for f in ["BOOTX64.EFI", "ldlinux.e64", "syslinux.cfg"] {
        assert!(efi.contains(f), "no /EFI/BOOT/{f}:\n{efi}");
    }
    // ldlinux.sys is hidden and system: -a lists it.
    let bios = mtools("mdir", &img, esp, &["-a", "-b", "::/syslinux"]);
    assert!(bios.contains("ldlinux.sys"), "no ldlinux.sys:\n{bios}");
    let cfg = mtools("mtype", &img, esp, &["::/syslinux/syslinux.cfg"]);
    assert_eq!(
        cfg,
        mtools("mtype", &img, esp, &["::/EFI/BOOT/syslinux.cfg"])
    );
    for word in [
        "drover.mode=appliance",
        "drover.address=198.18.0.2/24",
        "drover.gw=198.18.0.254",
        "drover.data=DROVER-DATA",
        "KERNEL /vmlinuz",
        "INITRD /initrd.img",
    ] {
        assert!(cfg.contains(word), "syslinux.cfg lacks {word}:\n{cfg}");
    }

    // The initramfs: drover as /init, the load list, the drivers to reach the stick.
    let initrd = dir.join("initrd.img");
    mtools("mcopy", &img, esp, &["::/initrd.img", path(&initrd)]);
    let listing = run_ok(
        Command::new("cpio")
            .args(["-t", "--quiet", "-F"])
            .arg(&initrd),
    );
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(listing.lines().any(|l| l == "init"), "no /init");
    assert!(listing.lines().any(|l| l == "etc/drover/modules"));
    for m in [
        "/ext4.ko",
        "/usb-storage.ko",
        "/xhci-pci.ko",
        "/virtio_net.ko",
    ] {
        assert!(listing.contains(m), "the initramfs lacks {m}");
    }
    let init = mtools("mdir", &img, esp, &["-b", "::/"]);
    assert!(init.contains("vmlinuz"), "no kernel on the ESP:\n{init}");

    // The data partition is ext4 with the label the appliance looks for.
    let mut f = std::fs::File::open(&img).unwrap();
    let mut sb = [0u8; 0x88];
    f.seek(SeekFrom::Start(data_start * 512 + 1024)).unwrap();
    f.read_exact(&mut sb).unwrap();
    assert_eq!(&sb[0x38..0x3a], &[0x53, 0xef], "no ext4 superblock");
    assert_eq!(&sb[0x78..0x83], b"DROVER-DATA");
}

#[test]
fn build_refuses_a_size_too_small_and_a_missing_kernel() {
    let kernel = require_stick_tools();
    let d = Drover::new();
    let dir = TempDir::new("usb-refuse");
    let out = d.cli(&[
        "usb",
        "build",
        path(&dir.join("s.img")),
        "--size",
        "32M",
        "--kernel",
        path(&kernel),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("too small"), "{err}");
    let out = d.cli(&[
        "usb",
        "build",
        path(&dir.join("s.img")),
        "--kernel",
        path(dir.path()),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no kernel in") && err.contains("--kernel"),
        "{err}"
    );
    let out = d.cli(&[
        "usb",
        "build",
        path(&dir.join("s.img")),
        "--kernel",
        path(&kernel),
        "--image",
        "ghost",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no image ghost"),
        "{err}"
    );
    assert!(!dir.join("s.img").exists(), "a failed build left an image");
}

/// A loop device over a sparse file of `size` bytes; detached on drop.
struct Loop {
    dev: String,
}

impl Loop {
    fn new(file: &Path, size: u64) -> Loop {
        let f = std::fs::File::create(file).unwrap();
        f.set_len(size).unwrap();
        let out = run_ok(Command::new("losetup").args(["-f", "--show"]).arg(file));
        Loop {
            dev: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        // Only the mounted one is mounted; the others' "not mounted" is noise.
        let _ = Command::new("umount")
            .arg(&self.dev)
            .stderr(std::process::Stdio::null())
            .status();
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

#[test]
fn write_copies_to_a_disk_and_refuses_the_wrong_targets() {
    require_root();
    require_cmd("losetup", "mount");
    let d = Drover::new();
    let dir = TempDir::new("usb-write");
    let img = build(&d, &dir, "256M");

    // A regular file and a character device are not disks.
    for target in [dir.join("not-a-disk"), PathBuf::from("/dev/null")] {
        std::fs::write(dir.join("not-a-disk"), b"x").unwrap();
        let out = d.cli(&["usb", "write", path(&img), path(&target), "--force"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("is not a block device"),
            "{target:?}: {err}"
        );
    }

    // A "disk" of 300 GiB (sparse) is refused unless forced.
    let big = Loop::new(&dir.join("big.disk"), 300 << 30);
    let out = d.cli(&["usb", "write", path(&img), &big.dev]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--force"), "{err}");
    d.cli_ok(&["usb", "write", path(&img), &big.dev, "--force"]);
    drop(big);

    // A stick-sized disk is written whole.
    let stick_file = dir.join("stick.disk");
    let stick = Loop::new(&stick_file, 320 << 20);
    let out = d.cli_ok(&["usb", "write", path(&img), &stick.dev]);
    assert!(out.contains("synced"), "{out}");
    let written = std::fs::read(&stick_file).unwrap();
    let image = std::fs::read(&img).unwrap();
    assert!(
        written[..image.len()] == image[..],
        "the disk does not hold the image"
    );

    // A mounted disk is refused, even forced.
    let fs_disk = Loop::new(&dir.join("mounted.disk"), 128 << 20);
    run_ok(Command::new("mkfs.ext4").args(["-q", &fs_disk.dev]));
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .arg(&fs_disk.dev)
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(mounted.success(), "cannot mount {} here", fs_disk.dev);
    let out = d.cli(&["usb", "write", path(&img), &fs_disk.dev, "--force"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("is in use") && err.contains("mounted on"),
        "{err}"
    );
}
