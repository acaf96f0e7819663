//! The rescue stick: `drover usb build` makes a disk image that boots drover in appliance
//! mode on BIOS and UEFI machines, and `drover usb write` puts it on a USB stick.
//!
//! `build` needs no root and no loop device. Data flow:
//!
//! 1. check the tools (dosfstools, mtools, syslinux, syslinux-efi, e2fsprogs) and name the
//!    Debian package of each one missing;
//! 2. find the kernel in a root directory laid out as the kernel package installs it
//!    (`boot/vmlinuz-KVER`, `lib/modules/KVER/`): the host's own (`/`, the default) or an
//!    unpacked `linux-image-*` package;
//! 3. write drover's initramfs: this binary as `/init` (it runs
//!    [`crate::agent::appliance`] when the command line says `drover.mode=appliance`), the
//!    NIC, disk, USB storage and ext4 modules with their dependencies, and the load list;
//! 4. make the FAT boot partition in a file of its own with `mkfs.vfat`, copy the kernel,
//!    the initramfs, `syslinux.efi` as `/EFI/BOOT/BOOTX64.EFI` and the configuration into it
//!    with mtools, and install syslinux's BIOS loader with `syslinux --install` (the mtools
//!    installer: no mount);
//! 5. write the image: the MBR ([`layout::Layout::mbr`], syslinux's `mbr.bin` as its code),
//!    the ext4 data partition made in place by `mkfs.ext4 -E offset=` (from a directory that
//!    holds the images given with `--image`, see [`copy`]), the boot partition copied at its
//!    offset; fsync, then rename onto the output path.
//!
//! `write` checks the target ([`layout::check_target`]: a block device, nothing on it
//! mounted or used as swap, not bigger than [`layout::MAX_WRITE_TARGET`] unless forced),
//! opens it exclusively (the kernel refuses `O_EXCL` on a device in use), copies and fsyncs.
//!
//! Not here: GPT, Secure Boot (syslinux.efi is not signed), a DHCP client for the
//! appliance's own address, `pool join` from the stick.

pub mod copy;
pub mod layout;

use crate::image::initramfs::{self, CpioWriter};
use layout::Layout;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Drivers the appliance needs beyond the NICs ([`initramfs::NIC_MODULES`]): disks (SATA,
/// IDE, virtio, NVMe), USB host controllers and USB storage (the stick itself), and ext4 for
/// the data partition. `crc32c_generic` is ext4's checksum, a soft dependency that
/// `modules.dep` does not list.
pub const STORAGE_MODULES: &[&str] = &[
    "ahci",
    "ata_piix",
    "sd_mod",
    "virtio_blk",
    "virtio_scsi",
    "nvme",
    "xhci_pci",
    "ehci_pci",
    "uhci_hcd",
    "ohci_pci",
    "usb_storage",
    "uas",
    "crc32c_generic",
    "ext4",
];

/// A tool `build` runs, and the Debian package that has it.
const TOOLS: &[(&str, &str)] = &[
    ("mkfs.vfat", "dosfstools"),
    ("mmd", "mtools"),
    ("mcopy", "mtools"),
    ("syslinux", "syslinux"),
    ("mkfs.ext4", "e2fsprogs"),
];
/// Files from syslinux's packages.
const MBR_CODE: &str = "/usr/lib/syslinux/mbr/mbr.bin";
const EFI_LOADER: &str = "/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi";
const EFI_LDLINUX: &str = "/usr/lib/syslinux/modules/efi64/ldlinux.e64";
const FILES: &[(&str, &str)] = &[
    (MBR_CODE, "syslinux-common"),
    (EFI_LOADER, "syslinux-efi"),
    (EFI_LDLINUX, "syslinux-common"),
];
/// Where BIOS syslinux keeps `ldlinux.sys` and reads its configuration.
const BIOS_DIR: &str = "syslinux";
/// The copy size of `write`.
const WRITE_BLOCK: usize = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum UsbError {
    #[error(
        "missing {}: install the Debian packages {} (scripts/setup does)",
        .0.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(", "),
        {
            let mut p: Vec<&str> = .0.iter().map(|(_, p)| p.as_str()).collect();
            p.dedup();
            p.join(" ")
        }
    )]
    MissingTools(Vec<(String, String)>),
    #[error(
        "no kernel in {root}: expected boot/vmlinuz-KVER and lib/modules/KVER/modules.dep \
         (give --kernel DIR: a root where a linux-image package is installed or unpacked with \
         `dpkg-deb -x` and `depmod -b DIR KVER` run)"
    )]
    NoKernel { root: PathBuf },
    #[error("{root} has kernels {}; pick one with --kernel-version", .found.join(", "))]
    SeveralKernels { root: PathBuf, found: Vec<String> },
    #[error(transparent)]
    Layout(#[from] layout::LayoutError),
    #[error(transparent)]
    Mbr(#[from] layout::MbrError),
    #[error(transparent)]
    Initramfs(#[from] initramfs::InitramfsError),
    #[error("{tool} failed ({status}): {stderr}")]
    Tool {
        tool: String,
        status: String,
        stderr: String,
    },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Copy(#[from] copy::CopyError),
    #[error("{path} {refusal}")]
    Refused {
        path: PathBuf,
        refusal: layout::Refusal,
    },
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> UsbError + '_ {
    move |source| UsbError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What `usb build` is asked to make.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub out: PathBuf,
    pub size: u64,
    /// A root with `boot/vmlinuz-KVER` and `lib/modules/KVER/`.
    pub kernel_root: PathBuf,
    pub kernel_version: Option<String>,
    pub address: (Ipv4Addr, u8),
    pub gateway: Option<Ipv4Addr>,
    /// `console=` values, the last one getting the appliance's own output.
    pub consoles: Vec<String>,
    /// The binary that becomes `/init` (static; this one).
    pub agent: PathBuf,
    /// The state directory images are copied from, and their names.
    pub state_dir: PathBuf,
    pub images: Vec<String>,
}

/// What went onto the stick.
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub layout: Layout,
    pub kver: String,
    pub modules: usize,
    pub initramfs_bytes: u64,
    pub cmdline: String,
    pub images: Vec<String>,
}

/// Builds the stick image; see the module docs.
pub fn build(opts: &BuildOptions) -> Result<BuildReport, UsbError> {
    check_tools()?;
    let kver = find_kernel(&opts.kernel_root, opts.kernel_version.as_deref())?;
    let vmlinuz = opts.kernel_root.join(format!("boot/vmlinuz-{kver}"));
    let work = WorkDir::new(&opts.out)?;

    let initrd = work.path.join(layout::INITRD_FILE);
    let modules = write_initramfs(&opts.agent, &opts.kernel_root, &kver, &initrd)?;
    let initramfs_bytes = fs::metadata(&initrd).map_err(io_at(&initrd))?.len();
    let kernel_bytes = fs::metadata(&vmlinuz).map_err(io_at(&vmlinuz))?.len();

    let data = work.path.join("data");
    fs::create_dir(&data).map_err(io_at(&data))?;
    let data_bytes = copy::images(&opts.state_dir, &opts.images, &data)?;

    let boot_bytes = kernel_bytes + initramfs_bytes + efi_loader_bytes()?;
    let layout = Layout::plan(opts.size, boot_bytes, data_bytes + data_bytes / 4)?;
    let cmdline = layout::cmdline(opts.address, opts.gateway, &opts.consoles);

    let esp = work.path.join("esp.img");
    make_esp(&esp, &layout, &vmlinuz, &initrd, &cmdline, &work.path)?;

    let tmp = work.path.join("stick.img");
    let mut img = File::create(&tmp).map_err(io_at(&tmp))?;
    img.set_len(layout.total).map_err(io_at(&tmp))?;
    let code = fs::read(MBR_CODE).map_err(io_at(Path::new(MBR_CODE)))?;
    // The disk signature only tells disks apart; derive it from the contents so that the
    // same inputs give the same image.
    let sig = blake3::hash(cmdline.as_bytes()).as_bytes()[..4]
        .iter()
        .fold(0u32, |a, b| a << 8 | u32::from(*b));
    img.write_all(&layout.mbr(&code, sig)?)
        .map_err(io_at(&tmp))?;
    drop(img);
    run(Command::new("mkfs.ext4")
        .args(["-F", "-q", "-L", layout::DATA_LABEL, "-E"])
        .arg(format!("offset={}", layout.data_start))
        .arg("-d")
        .arg(&data)
        .arg(&tmp)
        .arg(format!("{}k", layout.data_len / 1024)))?;
    let mut img = fs::OpenOptions::new()
        .write(true)
        .open(&tmp)
        .map_err(io_at(&tmp))?;
    img.seek(SeekFrom::Start(layout.esp_start))
        .map_err(io_at(&tmp))?;
    io::copy(&mut File::open(&esp).map_err(io_at(&esp))?, &mut img).map_err(io_at(&tmp))?;
    img.sync_all().map_err(io_at(&tmp))?;
    drop(img);
    fs::rename(&tmp, &opts.out).map_err(io_at(&opts.out))?;
    if let Some(dir) = opts.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_at(dir))?;
    }
    Ok(BuildReport {
        layout,
        kver,
        modules,
        initramfs_bytes,
        cmdline,
        images: opts.images.clone(),
    })
}

/// A scratch directory beside the output (same file system, so the image is renamed into
/// place), removed when dropped.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn new(out: &Path) -> Result<WorkDir, UsbError> {
        let name = out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "stick".into());
        let path = out.with_file_name(format!(".{name}.build-{}", std::process::id()));
        fs::create_dir_all(&path).map_err(io_at(&path))?;
        Ok(WorkDir { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // Best effort: a leftover scratch directory is named after the output.
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn check_tools() -> Result<(), UsbError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .collect();
    let mut missing = Vec::new();
    for (tool, package) in TOOLS {
        if !dirs.iter().any(|d| d.join(tool).is_file()) {
            missing.push((tool.to_string(), package.to_string()));
        }
    }
    for (file, package) in FILES {
        if !Path::new(file).is_file() {
            missing.push((file.to_string(), package.to_string()));
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(UsbError::MissingTools(missing))
    }
}

/// The kernel release in `root`: the one asked for, else the only one, else the running
/// kernel's if it is among them.
fn find_kernel(root: &Path, wanted: Option<&str>) -> Result<String, UsbError> {
    let modules = root.join("lib/modules");
    let mut found: Vec<String> = fs::read_dir(&modules)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|k| {
                    root.join(format!("boot/vmlinuz-{k}")).is_file()
                        && modules.join(k).join("modules.dep").is_file()
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    let no_kernel = || UsbError::NoKernel {
        root: root.to_path_buf(),
    };
    if let Some(w) = wanted {
        return found.into_iter().find(|k| k == w).ok_or_else(no_kernel);
    }
    match found.len() {
        0 => Err(no_kernel()),
        1 => Ok(found.remove(0)),
        _ => {
            let running = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
            match found.iter().find(|k| **k == running.trim()) {
                Some(k) => Ok(k.clone()),
                None => Err(UsbError::SeveralKernels {
                    root: root.to_path_buf(),
                    found,
                }),
            }
        }
    }
}

/// Writes the appliance's initramfs; returns how many modules went in.
fn write_initramfs(agent: &Path, root: &Path, kver: &str, out: &Path) -> Result<usize, UsbError> {
    let dir = root.join("lib/modules").join(kver);
    let dep_path = dir.join("modules.dep");
    let dep = fs::read_to_string(&dep_path).map_err(io_at(&dep_path))?;
    let deps = initramfs::parse_modules_dep(kver, &dep)?;
    let wanted: Vec<&str> = initramfs::NIC_MODULES
        .iter()
        .chain(STORAGE_MODULES)
        .copied()
        .collect();
    let order = initramfs::resolve(&deps, &wanted);

    let file = File::create(out).map_err(io_at(out))?;
    let mut cpio = CpioWriter::new(BufWriter::new(file));
    initramfs::write_base(&mut cpio, agent)?;
    let w = |e| UsbError::Io {
        path: out.to_path_buf(),
        source: e,
    };
    for d in ["tmp", "var", "var/lib", "var/lib/drover"] {
        cpio.dir(d, 0o755).map_err(w)?;
    }
    let mut dirs = std::collections::BTreeSet::new();
    for m in &order {
        let mut parent = Path::new(m).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(p.to_string_lossy().into_owned());
            parent = p.parent();
        }
    }
    cpio.dir(&format!("lib/modules/{kver}"), 0o755).map_err(w)?;
    for d in &dirs {
        cpio.dir(&format!("lib/modules/{kver}/{d}"), 0o755)
            .map_err(w)?;
    }
    let mut list = String::new();
    for m in &order {
        let src = dir.join(m);
        let f = File::open(&src).map_err(io_at(&src))?;
        let len = f.metadata().map_err(io_at(&src))?.len();
        cpio.file(
            &format!("lib/modules/{kver}/{m}"),
            0o644,
            len,
            &mut io::BufReader::new(f),
        )
        .map_err(|e| match e {
            initramfs::CopyError::Read(e) => io_at(&src)(e),
            initramfs::CopyError::Write(e) => w(e),
        })?;
        list.push_str(&format!("{kver} {m}\n"));
    }
    cpio.file(
        initramfs::MODULE_LIST,
        0o644,
        list.len() as u64,
        &mut io::Cursor::new(list.as_bytes()),
    )
    .map_err(|e| match e {
        initramfs::CopyError::Read(e) | initramfs::CopyError::Write(e) => w(e),
    })?;
    cpio.finish().map_err(w)?;
    Ok(order.len())
}

fn efi_loader_bytes() -> Result<u64, UsbError> {
    let mut n = 0;
    for f in [EFI_LOADER, EFI_LDLINUX] {
        n += fs::metadata(f).map_err(io_at(Path::new(f)))?.len();
    }
    Ok(n)
}

/// Makes the FAT boot partition in `esp` with everything both firmwares need.
fn make_esp(
    esp: &Path,
    layout: &Layout,
    vmlinuz: &Path,
    initrd: &Path,
    cmdline: &str,
    work: &Path,
) -> Result<(), UsbError> {
    // -h: the hidden sectors before the partition, which the boot sector uses to find
    // ldlinux.sys on the disk under BIOS.
    run(Command::new("mkfs.vfat")
        .args(["-C", "-n", layout::BOOT_LABEL, "-h"])
        .arg((layout.esp_start / layout::SECTOR).to_string())
        .arg(esp)
        .arg((layout.esp_len / 1024).to_string()))?;
    let cfg = work.join("syslinux.cfg");
    fs::write(&cfg, layout::syslinux_cfg(cmdline)).map_err(io_at(&cfg))?;
    let img = esp.as_os_str();
    run(Command::new("mmd")
        .arg("-i")
        .arg(img)
        .args(["::/EFI", "::/EFI/BOOT"])
        .arg(format!("::/{BIOS_DIR}")))?;
    let copies: [(&Path, String); 6] = [
        (vmlinuz, format!("::/{}", layout::KERNEL_FILE)),
        (initrd, format!("::/{}", layout::INITRD_FILE)),
        (Path::new(EFI_LOADER), "::/EFI/BOOT/BOOTX64.EFI".into()),
        (Path::new(EFI_LDLINUX), "::/EFI/BOOT/ldlinux.e64".into()),
        (&cfg, "::/EFI/BOOT/syslinux.cfg".into()),
        (&cfg, format!("::/{BIOS_DIR}/syslinux.cfg")),
    ];
    for (src, dst) in copies {
        run(Command::new("mcopy").arg("-i").arg(img).arg(src).arg(dst))?;
    }
    run(Command::new("syslinux")
        .args(["--install", "--directory"])
        .arg(format!("/{BIOS_DIR}"))
        .arg(esp))
}

/// Runs a tool; its failure carries its stderr.
fn run(cmd: &mut Command) -> Result<(), UsbError> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    // mtools refuses images whose geometry it does not like unless told not to check.
    cmd.env("MTOOLS_SKIP_CHECK", "1");
    let out = cmd.output().map_err(|source| UsbError::Io {
        path: PathBuf::from(&tool),
        source,
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(UsbError::Tool {
        tool,
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

/// What `write` did.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub bytes: u64,
    pub target_size: u64,
}

/// Writes `image` to the block device `target` (see the module docs for the checks).
pub fn write(image: &Path, target: &Path, force: bool) -> Result<Written, UsbError> {
    let mut src = File::open(image).map_err(io_at(image))?;
    let image_len = src.metadata().map_err(io_at(image))?.len();
    let facts = target_facts(target)?;
    layout::check_target(&facts, image_len, force).map_err(|refusal| UsbError::Refused {
        path: target.to_path_buf(),
        refusal,
    })?;
    // O_EXCL on a block device: the kernel refuses it while the device is mounted or held,
    // closing the gap between the check above and the write.
    let mut dst = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_EXCL)
        .open(target)
        .map_err(io_at(target))?;
    let mut buf = vec![0u8; WRITE_BLOCK];
    let mut bytes = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_at(image)(e)),
        };
        dst.write_all(&buf[..n]).map_err(io_at(target))?;
        bytes += n as u64;
    }
    dst.sync_all().map_err(io_at(target))?;
    Ok(Written {
        bytes,
        target_size: facts.size,
    })
}

/// The target's type, size and what of it is in use.
fn target_facts(target: &Path) -> Result<layout::Target, UsbError> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(target).map_err(io_at(target))?;
    if !meta.file_type().is_block_device() {
        return Ok(layout::Target {
            is_block_device: false,
            mounted: Vec::new(),
            size: meta.len(),
        });
    }
    let size = File::open(target)
        .and_then(|mut f| f.seek(SeekFrom::End(0)))
        .map_err(io_at(target))?;
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    // The device and its partitions, as `MAJOR:MINOR` and as names.
    let mut devs = vec![format!("{major}:{minor}")];
    let mut names = Vec::new();
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    if let Ok(name) = fs::canonicalize(&sys) {
        if let Some(n) = name.file_name() {
            names.push(n.to_string_lossy().into_owned());
        }
        for e in fs::read_dir(&name).into_iter().flatten().flatten() {
            if e.path().join("partition").is_file() {
                if let Ok(dev) = fs::read_to_string(e.path().join("dev")) {
                    devs.push(dev.trim().to_string());
                }
                names.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    let mut mounted = Vec::new();
    // mountinfo: `ID PARENT MAJOR:MINOR ROOT MOUNTPOINT ...`
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for line in mountinfo.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() > 4 && devs.iter().any(|d| d == f[2]) {
            mounted.push(format!("{} mounted on {}", f[2], f[4]));
        }
    }
    let swaps = fs::read_to_string("/proc/swaps").unwrap_or_default();
    for line in swaps.lines().skip(1) {
        if let Some(dev) = line.split_whitespace().next() {
            if names.iter().any(|n| dev == format!("/dev/{n}")) {
                mounted.push(format!("{dev} is swap"));
            }
        }
    }
    // A device held by device-mapper, RAID or LVM has holders.
    for n in &names {
        let holders = Path::new("/sys/class/block").join(n).join("holders");
        for h in fs::read_dir(holders).into_iter().flatten().flatten() {
            mounted.push(format!(
                "{n} is held by {}",
                h.file_name().to_string_lossy()
            ));
        }
    }
    Ok(layout::Target {
        is_block_device: true,
        mounted,
        size,
    })
}
