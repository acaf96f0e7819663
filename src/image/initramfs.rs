//! drover's node initramfs: an uncompressed newc cpio whose `/init` is the drover binary
//! itself (which runs [`crate::agent::run`] as PID 1).
//!
//! Data flow: [`build`] reads the image's rootfs tar twice. The first pass finds, per kernel
//! version under `lib/modules/<kver>/` (or `usr/lib/modules/`), the `modules.dep` and the
//! module files; from those it picks the common NIC drivers ([`NIC_MODULES`]) and the NFSv4
//! client ([`NFS_MODULES`], for NFS-root boots; it goes into every initramfs, since a node or
//! the image can switch to NFS root later without a new import) that exist as modules and
//! resolves their dependencies, dependencies first, the way dracut does. The
//! second pass copies exactly those module files into the cpio. The archive holds:
//!
//! - `/init` (the agent binary, 0755), `/dev/console` (char 5,1, so the kernel can give init a
//!   console before devtmpfs is mounted), and the directories `/dev /proc /sys /run /newroot
//!   /etc/drover /lib/modules`;
//! - `/lib/modules/<kver>/<path>` for every selected module (`.ko`, `.ko.xz`, `.ko.zst`,
//!   stored as they are: the agent asks the kernel to decompress);
//! - `/etc/drover/modules`: the load order, one `KVER PATH` line per module (PATH relative to
//!   `/lib/modules/KVER`), dependencies first. The agent loads the lines whose KVER equals the
//!   running kernel's release. The file is always written (empty without modules): the
//!   agent also takes its presence as the sign that it runs from drover's initramfs.
//!
//! Everything is deterministic (inode numbers count up, mtimes are 0), so the same agent and
//! rootfs give the same bytes.
//!
//! Not here: compression of the cpio, firmware files, storage drivers, running `depmod` (a
//! rootfs with modules but no `modules.dep` is refused with the command to run), modprobe's
//! soft dependencies and aliases (the NIC list names modules, not hardware IDs).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// Network drivers put into the initramfs when the image's kernel has them as modules.
/// `virtio_pci` is the PCI transport `virtio_net` needs (a soft dependency, not in
/// `modules.dep`).
pub const NIC_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_net",
    "e1000",
    "e1000e",
    "igb",
    "igc",
    "ixgbe",
    "i40e",
    "ice",
    "tg3",
    "bnx2",
    "bnxt_en",
    "r8169",
    "vmxnet3",
    "mlx4_en",
    "mlx5_core",
];

/// The NFSv4 client (its dependencies, such as `nfs`, `sunrpc`, `lockd`, `fscache` and
/// `dns_resolver`, come from `modules.dep`), put into the initramfs for NFS-root boots.
pub const NFS_MODULES: &[&str] = &["nfsv4"];

/// Where the load-order list lives inside the initramfs.
pub const MODULE_LIST: &str = "etc/drover/modules";

/// Biggest module file the builder accepts (a sanity limit; mlx5_core is ~2 MiB).
const MAX_MODULE_BYTES: u64 = 64 << 20;
/// Biggest `modules.dep` accepted.
const MAX_MODULES_DEP_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum InitramfsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("writing the initramfs: {0}")]
    Write(io::Error),
    #[error("reading the rootfs tar: {0}")]
    Tar(io::Error),
    #[error(
        "the rootfs has kernel modules for {kver} but no lib/modules/{kver}/modules.dep: \
         run `depmod -b ROOT {kver}` on the root directory and pack it again"
    )]
    NoModulesDep { kver: String },
    #[error("lib/modules/{kver}/modules.dep names {module}, which the rootfs does not contain")]
    MissingModule { kver: String, module: String },
    #[error("lib/modules/{kver}/modules.dep: line {line}: {reason}")]
    BadModulesDep {
        kver: String,
        line: usize,
        reason: &'static str,
    },
    #[error("{path} in the rootfs is {size} bytes, more than the {max} allowed")]
    TooBig { path: String, size: u64, max: u64 },
}

/// What went into an initramfs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildReport {
    pub kernels: Vec<KernelModules>,
    /// Size of the cpio written.
    pub bytes: u64,
}

/// The modules included for one kernel version, in load order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelModules {
    pub kver: String,
    /// Paths relative to `lib/modules/<kver>/`, dependencies first.
    pub modules: Vec<String>,
}

impl std::fmt::Display for BuildReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} bytes", self.bytes)?;
        if self.kernels.is_empty() {
            return write!(f, ", no kernel modules in the rootfs");
        }
        for k in &self.kernels {
            let names: Vec<&str> = k.modules.iter().map(|m| module_name(m)).collect();
            write!(f, "; {}: {}", k.kver, names.join(" "))?;
        }
        Ok(())
    }
}

/// Writes the initramfs for a rootfs tar to `out`. See the module docs for its contents.
pub fn build(
    agent: &Path,
    rootfs_tar: super::Tar<'_>,
    out: impl Write,
) -> Result<BuildReport, InitramfsError> {
    let kernels = scan_modules(rootfs_tar)?;
    let mut report = BuildReport::default();
    let mut cpio = CpioWriter::new(out);
    let w = InitramfsError::Write;
    write_base(&mut cpio, agent)?;

    // Directories of every selected module, parents first (BTreeSet order is parent-first).
    let mut wanted: BTreeMap<String, String> = BTreeMap::new(); // tar path -> cpio path
    let mut dirs = BTreeSet::new();
    let mut list = String::new();
    for k in &kernels {
        for m in &k.order {
            let cpio_path = format!("lib/modules/{}/{}", k.kver, m);
            let mut parent = Path::new(&cpio_path).parent();
            while let Some(p) = parent.filter(|p| p.as_os_str().len() > "lib/modules".len()) {
                dirs.insert(p.to_string_lossy().into_owned());
                parent = p.parent();
            }
            wanted.insert(format!("{}/{}", k.tar_dir, m), cpio_path);
            list.push_str(&format!("{} {}\n", k.kver, m));
        }
        report.kernels.push(KernelModules {
            kver: k.kver.clone(),
            modules: k.order.clone(),
        });
    }
    for d in &dirs {
        cpio.dir(d, 0o755).map_err(w)?;
    }
    if !wanted.is_empty() {
        let mut archive = tar::Archive::new(open_tar(rootfs_tar)?);
        for entry in archive.entries().map_err(InitramfsError::Tar)? {
            let mut entry = entry.map_err(InitramfsError::Tar)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let Some(cpio_path) = wanted.remove(&tar_name(&entry.path_bytes())) else {
                continue;
            };
            let size = entry.size();
            if size > MAX_MODULE_BYTES {
                return Err(InitramfsError::TooBig {
                    path: cpio_path,
                    size,
                    max: MAX_MODULE_BYTES,
                });
            }
            cpio.file(&cpio_path, 0o644, size, &mut entry)
                .map_err(|e| match e {
                    CopyError::Read(e) => InitramfsError::Tar(e),
                    CopyError::Write(e) => w(e),
                })?;
        }
        // scan_modules saw every one of them as a regular file, so none is left unless the
        // tar changed under us.
        if let Some((path, _)) = wanted.into_iter().next() {
            return Err(InitramfsError::Tar(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{path} disappeared from the rootfs tar while reading it"),
            )));
        }
    }
    cpio.file(
        MODULE_LIST,
        0o644,
        list.len() as u64,
        &mut io::Cursor::new(list.as_bytes()),
    )
    .map_err(|e| match e {
        CopyError::Read(e) | CopyError::Write(e) => w(e),
    })?;
    report.bytes = cpio.finish().map_err(w)?;
    Ok(report)
}

/// Writes what every drover initramfs starts with: the directories, `/dev/console` and the
/// agent as `/init`. The caller adds the modules and the [`MODULE_LIST`] file.
pub fn write_base<W: Write>(cpio: &mut CpioWriter<W>, agent: &Path) -> Result<(), InitramfsError> {
    let w = InitramfsError::Write;
    for dir in [
        "dev",
        "proc",
        "sys",
        "run",
        "newroot",
        "etc",
        "etc/drover",
        "lib",
    ] {
        cpio.dir(dir, 0o755).map_err(w)?;
    }
    cpio.dir("lib/modules", 0o755).map_err(w)?;
    cpio.char_dev("dev/console", 0o600, 5, 1).map_err(w)?;

    let io_err = |source| InitramfsError::Io {
        path: agent.to_path_buf(),
        source,
    };
    let agent_file = File::open(agent).map_err(io_err)?;
    let agent_len = agent_file.metadata().map_err(io_err)?.len();
    cpio.file("init", 0o755, agent_len, &mut BufReader::new(agent_file))
        .map_err(|e| match e {
            CopyError::Read(e) => io_err(e),
            CopyError::Write(e) => w(e),
        })
}

/// One kernel version's modules in the rootfs.
#[derive(Debug)]
struct KernelScan {
    kver: String,
    /// `lib/modules/<kver>` or `usr/lib/modules/<kver>`, as the tar names it (no `./`).
    tar_dir: String,
    /// Selected modules in load order, relative to `tar_dir`.
    order: Vec<String>,
}

fn open_tar(tar: super::Tar<'_>) -> Result<BufReader<super::BlobReader>, InitramfsError> {
    tar.open()
        .map(BufReader::new)
        .map_err(|source| InitramfsError::Io {
            path: tar.name(),
            source,
        })
}

/// A tar entry name without a leading `./` or `/`.
pub(super) fn tar_name(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let mut s: &str = &s;
    loop {
        if let Some(rest) = s.strip_prefix("./") {
            s = rest;
        } else if let Some(rest) = s.strip_prefix('/') {
            s = rest;
        } else {
            break;
        }
    }
    s.to_string()
}

/// Splits `lib/modules/<kver>/<rest>` (or under `usr/`) into (`tar_dir`, kver, rest).
fn split_module_path(name: &str) -> Option<(String, &str, &str)> {
    let (prefix, tail) = if let Some(t) = name.strip_prefix("lib/modules/") {
        ("lib/modules", t)
    } else {
        ("usr/lib/modules", name.strip_prefix("usr/lib/modules/")?)
    };
    let (kver, rest) = tail.split_once('/')?;
    if kver.is_empty() || rest.is_empty() {
        return None;
    }
    Some((format!("{prefix}/{kver}"), kver, rest))
}

/// Whether `path` names a kernel module file.
pub fn is_module_file(path: &str) -> bool {
    path.ends_with(".ko") || path.ends_with(".ko.xz") || path.ends_with(".ko.zst")
}

/// `kernel/drivers/net/virtio_net.ko.zst` -> `virtio_net`. (Names are compared the way
/// modprobe does, with `-` and `_` equal.)
pub fn module_name(path: &str) -> &str {
    let base = path.rsplit('/').next().unwrap_or(path);
    [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|suffix| base.strip_suffix(suffix))
        .unwrap_or(base)
}

fn same_module(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .all(|(x, y)| x == y || (x == b'-' || x == b'_') && (y == b'-' || y == b'_'))
}

/// First pass over the tar: module files and `modules.dep` per kernel version.
fn scan_modules(rootfs_tar: super::Tar<'_>) -> Result<Vec<KernelScan>, InitramfsError> {
    #[derive(Default)]
    struct Seen {
        tar_dir: String,
        files: BTreeSet<String>,
        dep: Option<String>,
    }
    let mut kernels: BTreeMap<String, Seen> = BTreeMap::new();
    let mut archive = tar::Archive::new(open_tar(rootfs_tar)?);
    for entry in archive.entries().map_err(InitramfsError::Tar)? {
        let mut entry = entry.map_err(InitramfsError::Tar)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = tar_name(&entry.path_bytes());
        let Some((tar_dir, kver, rest)) = split_module_path(&name) else {
            continue;
        };
        let seen = kernels.entry(kver.to_string()).or_default();
        seen.tar_dir = tar_dir;
        if rest == "modules.dep" {
            if entry.size() > MAX_MODULES_DEP_BYTES {
                return Err(InitramfsError::TooBig {
                    path: name,
                    size: entry.size(),
                    max: MAX_MODULES_DEP_BYTES,
                });
            }
            let mut text = String::new();
            entry
                .read_to_string(&mut text)
                .map_err(InitramfsError::Tar)?;
            seen.dep = Some(text);
        } else if is_module_file(rest) {
            seen.files.insert(rest.to_string());
        }
    }
    let mut out = Vec::new();
    for (kver, seen) in kernels {
        if seen.files.is_empty() {
            continue;
        }
        let Some(dep) = seen.dep else {
            return Err(InitramfsError::NoModulesDep { kver });
        };
        let deps = parse_modules_dep(&kver, &dep)?;
        let wanted: Vec<&str> = NIC_MODULES.iter().chain(NFS_MODULES).copied().collect();
        let order = resolve(&deps, &wanted);
        for m in &order {
            if !seen.files.contains(m) {
                return Err(InitramfsError::MissingModule {
                    kver,
                    module: m.clone(),
                });
            }
        }
        out.push(KernelScan {
            kver,
            tar_dir: seen.tar_dir,
            order,
        });
    }
    Ok(out)
}

/// `modules.dep` as a map from module path to its dependencies' paths.
pub type ModulesDep = BTreeMap<String, Vec<String>>;

/// Parses `modules.dep`: lines `path: dep dep ...`, paths relative to `lib/modules/<kver>/`.
pub fn parse_modules_dep(kver: &str, text: &str) -> Result<ModulesDep, InitramfsError> {
    let mut map = ModulesDep::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |reason| InitramfsError::BadModulesDep {
            kver: kver.to_string(),
            line: i + 1,
            reason,
        };
        let (module, deps) = line.split_once(':').ok_or_else(|| bad("no `:`"))?;
        let module = module.trim();
        if module.is_empty() {
            return Err(bad("empty module path"));
        }
        let deps: Vec<String> = deps.split_whitespace().map(str::to_string).collect();
        for p in std::iter::once(module).chain(deps.iter().map(String::as_str)) {
            if p.starts_with('/') || p.split('/').any(|c| c == "..") {
                return Err(bad("module path leaves lib/modules/<kver>"));
            }
        }
        map.insert(module.to_string(), deps);
    }
    Ok(map)
}

/// The modules named in `wanted` that exist in `deps`, with their dependencies, in an order
/// that loads every module after all of its dependencies. Missing names are skipped (built
/// into the kernel, or not built at all).
pub fn resolve(deps: &ModulesDep, wanted: &[&str]) -> Vec<String> {
    fn visit(
        deps: &ModulesDep,
        module: &str,
        done: &mut BTreeSet<String>,
        active: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        if done.contains(module) || !active.insert(module.to_string()) {
            // Already placed, or a dependency cycle (depmod refuses those; don't loop).
            return;
        }
        for d in deps.get(module).into_iter().flatten() {
            visit(deps, d, done, active, order);
        }
        active.remove(module);
        done.insert(module.to_string());
        order.push(module.to_string());
    }
    let mut done = BTreeSet::new();
    let mut active = BTreeSet::new();
    let mut order = Vec::new();
    for name in wanted {
        for path in deps.keys().filter(|p| same_module(module_name(p), name)) {
            visit(deps, path, &mut done, &mut active, &mut order);
        }
    }
    order
}

/// A failed copy into the archive: the source or the destination.
#[derive(Debug)]
pub enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Writes a newc ("070701") cpio archive: 110-byte ASCII header, NUL-terminated name padded
/// to 4 bytes, data padded to 4 bytes, `TRAILER!!!` at the end.
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
}

/// `S_IFDIR`, `S_IFREG`, `S_IFCHR` as the cpio mode field spells them.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            next_ino: 1,
            written: 0,
        }
    }

    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.header(name, S_IFDIR | perm, 2, 0, (0, 0))
    }

    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.header(name, S_IFCHR | perm, 1, 0, (major, minor))
    }

    /// Writes a regular file of exactly `size` bytes read from `data`.
    pub fn file(
        &mut self,
        name: &str,
        perm: u32,
        size: u64,
        data: &mut impl Read,
    ) -> Result<(), CopyError> {
        let size32 = u32::try_from(size).map_err(|_| {
            CopyError::Write(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name}: {size} bytes is too big for a newc cpio (4 GiB)"),
            ))
        })?;
        self.header(name, S_IFREG | perm, 1, size32, (0, 0))
            .map_err(CopyError::Write)?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = size;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match data.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(CopyError::Read(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{name}: shorter than its {size} bytes"),
                    )))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Read(e)),
            };
            self.put(&buf[..n]).map_err(CopyError::Write)?;
            left -= n as u64;
        }
        self.pad().map_err(CopyError::Write)
    }

    fn header(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        size: u32,
        rdev: (u32, u32),
    ) -> io::Result<()> {
        let ino = if name == "TRAILER!!!" {
            0
        } else {
            self.next_ino += 1;
            self.next_ino - 1
        };
        let namesize = name.len() as u32 + 1;
        let fields = [
            ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0,
        ];
        let mut h = String::with_capacity(110);
        h.push_str("070701");
        for f in fields {
            h.push_str(&format!("{f:08x}"));
        }
        self.put(h.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()
    }

    fn put(&mut self, b: &[u8]) -> io::Result<()> {
        self.out.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let n = (4 - (self.written % 4) as usize) % 4;
        self.put(&[0u8; 3][..n])
    }

    /// Writes the trailer and flushes; returns the archive's size.
    pub fn finish(mut self) -> io::Result<u64> {
        self.header("TRAILER!!!", 0, 1, 0, (0, 0))?;
        self.out.flush()?;
        Ok(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One parsed newc entry.
    #[derive(Debug)]
    struct Entry {
        name: String,
        mode: u32,
        rdev: (u32, u32),
        data: Vec<u8>,
    }

    /// A tiny newc reader, independent of the writer.
    fn parse_cpio(mut b: &[u8]) -> Vec<Entry> {
        let total = b.len();
        let mut out = Vec::new();
        loop {
            let at = total - b.len();
            assert_eq!(at % 4, 0, "entry not aligned");
            assert_eq!(&b[..6], b"070701");
            let field = |i: usize| {
                let s = std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap();
                u32::from_str_radix(s, 16).unwrap()
            };
            let (mode, size, rmaj, rmin, namesize) =
                (field(1), field(6), field(9), field(10), field(11));
            let name_end = 110 + namesize as usize;
            assert_eq!(b[name_end - 1], 0);
            let name = std::str::from_utf8(&b[110..name_end - 1])
                .unwrap()
                .to_string();
            let data_start = (name_end + 3) & !3;
            let data_end = data_start + size as usize;
            let data = b[data_start..data_end].to_vec();
            b = &b[(data_end + 3) & !3..];
            if name == "TRAILER!!!" {
                assert!(b.is_empty());
                return out;
            }
            out.push(Entry {
                name,
                mode,
                rdev: (rmaj, rmin),
                data,
            });
        }
    }

    #[test]
    fn cpio_round_trip() {
        let mut buf = Vec::new();
        let mut w = CpioWriter::new(&mut buf);
        w.dir("dev", 0o755).unwrap();
        w.char_dev("dev/console", 0o600, 5, 1).unwrap();
        for (name, len) in [
            ("a", 0usize),
            ("bb", 1),
            ("ccc", 2),
            ("init", 5),
            ("x/y", 1027),
        ] {
            let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
            w.file(name, 0o755, len as u64, &mut &data[..]).unwrap();
        }
        let n = w.finish().unwrap();
        assert_eq!(n as usize, buf.len());
        let entries = parse_cpio(&buf);
        assert_eq!(entries.len(), 7);
        assert_eq!(entries[0].name, "dev");
        assert_eq!(entries[0].mode, 0o040755);
        assert_eq!(entries[1].mode, 0o020600);
        assert_eq!(entries[1].rdev, (5, 1));
        assert_eq!(entries[5].name, "init");
        assert_eq!(entries[5].data, vec![0, 1, 2, 3, 4]);
        assert_eq!(entries[6].data.len(), 1027);
        assert_eq!(entries[6].data[1026], (1026 % 256) as u8);
    }

    #[test]
    fn short_input_is_an_error() {
        let mut w = CpioWriter::new(Vec::new());
        let err = w.file("f", 0o644, 10, &mut &b"abc"[..]).unwrap_err();
        assert!(matches!(err, CopyError::Read(_)));
    }

    const DEP: &str = "\
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/virtio/virtio_pci.ko.zst: kernel/drivers/virtio/virtio_pci_legacy_dev.ko.zst
kernel/drivers/virtio/virtio_pci_legacy_dev.ko.zst:
kernel/drivers/net/ethernet/intel/e1000/e1000.ko:
kernel/drivers/net/ethernet/mellanox/mlx5/core/mlx5_core.ko: kernel/net/psample/psample.ko \
kernel/drivers/net/ethernet/mellanox/mlxfw/mlxfw.ko kernel/net/tls/tls.ko
kernel/net/psample/psample.ko:
kernel/drivers/net/ethernet/mellanox/mlxfw/mlxfw.ko:
kernel/net/tls/tls.ko:
kernel/fs/nfs/nfsv4.ko: kernel/fs/nfs/nfs.ko
kernel/fs/nfs/nfs.ko:
";

    #[test]
    fn resolves_dependencies_first() {
        let deps = parse_modules_dep("6.1.0", DEP).unwrap();
        let order = resolve(
            &deps,
            &["virtio_pci", "virtio_net", "e1000", "tg3", "mlx5_core"],
        );
        let names: Vec<&str> = order.iter().map(|p| module_name(p)).collect();
        assert_eq!(
            names,
            [
                "virtio_pci_legacy_dev",
                "virtio_pci",
                "failover",
                "net_failover",
                "virtio_net",
                "e1000",
                "psample",
                "mlxfw",
                "tls",
                "mlx5_core"
            ]
        );
        for (i, m) in order.iter().enumerate() {
            for d in &deps[m] {
                assert!(order[..i].contains(d), "{d} must load before {m}");
            }
        }
    }

    #[test]
    fn dash_and_underscore_are_the_same_module() {
        let deps = parse_modules_dep("k", "kernel/x/foo-bar.ko:\n").unwrap();
        assert_eq!(resolve(&deps, &["foo_bar"]), ["kernel/x/foo-bar.ko"]);
    }

    #[test]
    fn bad_modules_dep() {
        let err = parse_modules_dep("k", "kernel/a.ko: ../../etc/x.ko\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        assert!(parse_modules_dep("k", "no colon here\n").is_err());
    }

    fn tar_with(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn build_from_tar() {
        let dir =
            std::env::temp_dir().join(format!("drover-initramfs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let agent = dir.join("agent");
        std::fs::write(&agent, b"\x7fELF-agent").unwrap();
        let k = "lib/modules/6.1.0-9-amd64";
        let tar = tar_with(&[
            ("bin/sh", b"sh"),
            (&format!("./{k}/modules.dep"), DEP.as_bytes()),
            (&format!("{k}/kernel/drivers/net/virtio_net.ko"), b"VN"),
            (&format!("{k}/kernel/drivers/net/net_failover.ko"), b"NF"),
            (&format!("{k}/kernel/net/core/failover.ko"), b"F"),
            (
                &format!("{k}/kernel/drivers/virtio/virtio_pci.ko.zst"),
                b"VP",
            ),
            (
                &format!("{k}/kernel/drivers/virtio/virtio_pci_legacy_dev.ko.zst"),
                b"VL",
            ),
            (
                &format!("{k}/kernel/drivers/net/ethernet/intel/e1000/e1000.ko"),
                b"E",
            ),
            (&format!("{k}/kernel/fs/nfs/nfs.ko"), b"NFS"),
        ]);
        // mlx5_core is in modules.dep but not in this tar: that is an error.
        let tar_path = dir.join("rootfs.tar");
        std::fs::write(&tar_path, &tar).unwrap();
        let err = build(&agent, super::super::Tar::File(&tar_path), Vec::new()).unwrap_err();
        assert!(matches!(err, InitramfsError::MissingModule { .. }), "{err}");

        let dep: String = DEP
            .lines()
            .filter(|l| !l.contains("mlx") && !l.starts_with("kernel/net/"))
            .chain(["kernel/net/core/failover.ko:"])
            .map(|l| format!("{l}\n"))
            .collect();
        let tar = tar_with(&[
            (&format!("{k}/modules.dep"), dep.as_bytes()),
            (&format!("{k}/kernel/drivers/net/virtio_net.ko"), b"VN"),
            (&format!("{k}/kernel/drivers/net/net_failover.ko"), b"NF"),
            (&format!("{k}/kernel/net/core/failover.ko"), b"F"),
            (
                &format!("{k}/kernel/drivers/virtio/virtio_pci.ko.zst"),
                b"VP",
            ),
            (
                &format!("{k}/kernel/drivers/virtio/virtio_pci_legacy_dev.ko.zst"),
                b"VL",
            ),
            (
                &format!("{k}/kernel/drivers/net/ethernet/intel/e1000/e1000.ko"),
                b"E",
            ),
            (&format!("{k}/kernel/fs/nfs/nfs.ko"), b"NFS"),
            (&format!("{k}/kernel/fs/nfs/nfsv4.ko"), b"NFS4"),
            (&format!("{k}/kernel/fs/other/unrelated.ko"), b"U"),
        ]);
        std::fs::write(&tar_path, &tar).unwrap();
        let mut out = Vec::new();
        let report = build(&agent, super::super::Tar::File(&tar_path), &mut out).unwrap();
        assert_eq!(report.bytes as usize, out.len());
        assert_eq!(report.kernels.len(), 1);
        assert_eq!(report.kernels[0].kver, "6.1.0-9-amd64");
        // Six NIC modules and the NFSv4 client with its dependency.
        assert_eq!(report.kernels[0].modules.len(), 8);
        let entries = parse_cpio(&out);
        let find = |n: &str| entries.iter().find(|e| e.name == n);
        assert_eq!(find("init").unwrap().data, b"\x7fELF-agent");
        assert_eq!(find("init").unwrap().mode, 0o100755);
        assert_eq!(find("dev/console").unwrap().rdev, (5, 1));
        assert!(find("newroot").is_some());
        assert_eq!(
            find(&format!("{k}/kernel/drivers/net/virtio_net.ko"))
                .unwrap()
                .data,
            b"VN"
        );
        assert_eq!(
            find(&format!("{k}/kernel/fs/nfs/nfs.ko")).unwrap().data,
            b"NFS"
        );
        assert!(find(&format!("{k}/kernel/fs/other/unrelated.ko")).is_none());
        let list = String::from_utf8(find(MODULE_LIST).unwrap().data.clone()).unwrap();
        assert!(
            list.ends_with(&format!(
                "{kv} kernel/fs/nfs/nfs.ko\n{kv} kernel/fs/nfs/nfsv4.ko\n",
                kv = "6.1.0-9-amd64"
            )),
            "{list}"
        );
        let first = list.lines().next().unwrap();
        assert_eq!(
            first,
            "6.1.0-9-amd64 kernel/drivers/virtio/virtio_pci_legacy_dev.ko.zst"
        );
        // Every module's directory comes before the module.
        let pos = |n: &str| entries.iter().position(|e| e.name == n).unwrap();
        assert!(
            pos(&format!("{k}/kernel/drivers/net"))
                < pos(&format!("{k}/kernel/drivers/net/virtio_net.ko"))
        );
        assert!(pos("lib/modules") < pos(k));

        // Modules without modules.dep: a clear error naming depmod.
        let tar = tar_with(&[(&format!("{k}/kernel/net/core/failover.ko"), b"F")]);
        std::fs::write(&tar_path, &tar).unwrap();
        let err = build(&agent, super::super::Tar::File(&tar_path), Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains("depmod -b ROOT 6.1.0-9-amd64"),
            "{err}"
        );

        // No modules at all is fine.
        let tar = tar_with(&[("bin/sh", b"sh")]);
        std::fs::write(&tar_path, &tar).unwrap();
        let report = build(&agent, super::super::Tar::File(&tar_path), Vec::new()).unwrap();
        assert!(report.kernels.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
