//! NFS root: the agent mounts the node's root over NFSv4 and makes the parts a booting system
//! writes writable.
//!
//! drover's NFS server shows each node its image read-only, merged with the node's own
//! writable layer for the image's persistent paths (`drover.persistent=`). The agent:
//!
//! 1. mounts `SERVER:PATH` on `/newroot` with the mount(2) syscall (there is no `mount.nfs`
//!    helper in the initramfs, so the options are the kernel's text options and name the
//!    server's address themselves): `vers=4.1,proto=tcp,hard,addr=..,clientaddr=..`, and
//!    `vers=4.0` when the server refuses 4.1 (EPROTONOSUPPORT, EINVAL, EOPNOTSUPP; other
//!    errors are the answer). Before each attempt a TCP connect to the server
//!    (with a timeout) tells "unreachable" from a mount error, since a `hard` mount of a silent
//!    server would block forever;
//! 2. turns the [`SCRATCH`] directories that the root does not let it write into node-local
//!    tmpfs copies: a tmpfs is mounted on a staging directory, the image's contents are copied
//!    in (at most [`SCRATCH_COPY_MAX`] bytes per directory), the persistent paths inside are
//!    bind-mounted back from the NFS root, and the tmpfs is moved over the directory. Writes
//!    there last until the next boot; persistent paths go to the node's layer on the server;
//!    everything else stays read-only.
//!
//! The pure parts ([`mount_options`], [`persistent_inside`]) are unit-tested; the rest is
//! exercised by the qemu tests in `qemu-tests/nfsroot.rs` (against drover, and against
//! nfs-ganesha as a development check).
//!
//! Not here: NFS over UDP, Kerberos, other pool members as fallback NFS servers (the root
//! comes from the one address on the command line), overlayfs (the kernel's overlay on an
//! NFSv4 lower layer trips over the `system.nfs4_acl` attribute on copy-up).

use crate::net::sys;
use std::fs;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

/// Directories a booting system writes to. Each becomes a node-local tmpfs (with the
/// image's contents) unless the NFS root lets the node write it (a persistent path).
pub const SCRATCH: &[&str] = &[
    "/etc",
    "/root",
    "/tmp",
    "/var/cache",
    "/var/lib",
    "/var/log",
    "/var/spool",
    "/var/tmp",
];
/// Most bytes of the image's contents copied into one scratch tmpfs; a larger directory
/// stays read-only (and the console says so).
pub const SCRATCH_COPY_MAX: u64 = 64 << 20;
/// How long the TCP probe of the NFS server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Where scratch tmpfs are filled before they are moved into place.
const STAGE: &str = "/run/drover-stage";

/// The NFS minor versions tried, in order.
pub const VERSIONS: &[&str] = &["4.1", "4.0"];

/// The kernel's text mount options for the `nfs4` file system type.
pub fn mount_options(version: &str, server: SocketAddr, client: IpAddr) -> String {
    format!(
        "vers={version},proto={},hard,addr={},port={},clientaddr={client}",
        if server.is_ipv6() { "tcp6" } else { "tcp" },
        server.ip(),
        server.port()
    )
}

/// The mount source `HOST:PATH` (IPv6 in brackets).
pub fn mount_source(server: SocketAddr, path: &str) -> String {
    match server.ip() {
        IpAddr::V4(a) => format!("{a}:{path}"),
        IpAddr::V6(a) => format!("[{a}]:{path}"),
    }
}

/// The persistent paths inside scratch directory `dir`, relative to it.
pub fn persistent_inside<'a>(dir: &str, persistent: &'a [String]) -> Vec<&'a str> {
    persistent
        .iter()
        .filter_map(|p| p.strip_prefix(dir)?.strip_prefix('/'))
        .filter(|rest| !rest.is_empty())
        .collect()
}

/// Why one mount attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot reach the NFS server {server}: {source}")]
    Unreachable {
        server: SocketAddr,
        source: io::Error,
    },
    #[error("mount {source_path} (NFSv{version}): {err}{hint}")]
    Mount {
        source_path: String,
        version: &'static str,
        err: io::Error,
        hint: &'static str,
    },
}

/// One attempt to mount `server:path` at `target`: a TCP probe, then each of [`VERSIONS`].
/// Returns the version mounted.
pub fn mount_root(
    server: SocketAddr,
    path: &str,
    client: IpAddr,
    target: &str,
) -> Result<&'static str, MountError> {
    TcpStream::connect_timeout(&server, CONNECT_TIMEOUT)
        .map_err(|source| MountError::Unreachable { server, source })?;
    let source_path = mount_source(server, path);
    let mut last = MountError::Unreachable {
        server,
        source: io::Error::other("no NFS version to try"),
    };
    for version in VERSIONS {
        let options = mount_options(version, server, client);
        match sys::mount(&source_path, target, Some("nfs4"), 0, Some(&options)) {
            Ok(()) => return Ok(version),
            Err(err) => {
                let hint = match err.raw_os_error() {
                    Some(libc::ENODEV) => {
                        " (the kernel has no nfs4 file system: are nfsv4.ko and its \
                         dependencies in the image's lib/modules?)"
                    }
                    Some(libc::ENOENT) => " (the server has no such export for this node)",
                    Some(libc::EACCES) | Some(libc::EPERM) => {
                        " (the server refused this node's address)"
                    }
                    _ => "",
                };
                // Only a refused minor version is worth another version: anything else (no
                // such path, access denied) is the answer.
                let version_refused = matches!(
                    err.raw_os_error(),
                    Some(libc::EPROTONOSUPPORT | libc::EINVAL | libc::EOPNOTSUPP)
                );
                last = MountError::Mount {
                    source_path: source_path.clone(),
                    version,
                    err,
                    hint,
                };
                if !version_refused {
                    break;
                }
            }
        }
    }
    Err(last)
}

/// What happened to one scratch directory.
#[derive(Debug)]
pub enum Scratch {
    /// Not in the image.
    Absent,
    /// The root lets the node write it (a persistent path): left alone.
    Writable,
    /// Now a tmpfs holding the image's contents, with `binds` persistent paths inside.
    Tmpfs { bytes: u64, binds: usize },
    /// Left read-only, for the reason given.
    Failed(String),
}

/// Makes the [`SCRATCH`] directories under `root` writable (see the module docs).
pub fn setup_scratch(root: &str, persistent: &[String]) -> Vec<(&'static str, Scratch)> {
    SCRATCH
        .iter()
        .map(|dir| (*dir, scratch_one(root, dir, persistent)))
        .collect()
}

fn scratch_one(root: &str, dir: &str, persistent: &[String]) -> Scratch {
    let target = format!("{root}{dir}");
    let meta = match fs::metadata(&target) {
        Ok(m) if m.is_dir() => m,
        _ => return Scratch::Absent,
    };
    if writable(Path::new(&target)) {
        return Scratch::Writable;
    }
    let stage = format!("{STAGE}{}", dir.replace('/', "_"));
    let result = (|| -> io::Result<(u64, usize)> {
        fs::create_dir_all(&stage)?;
        let mode = meta.permissions().mode() & 0o7777;
        sys::mount(
            "tmpfs",
            &stage,
            Some("tmpfs"),
            libc::MS_NOSUID | libc::MS_NODEV,
            Some(&format!(
                "mode={mode:o},uid={},gid={}",
                meta.uid(),
                meta.gid()
            )),
        )?;
        let fill = (|| {
            let mut budget = SCRATCH_COPY_MAX;
            copy_tree(Path::new(&target), Path::new(&stage), &mut budget)?;
            let mut binds = 0;
            for rel in persistent_inside(dir, persistent) {
                let from = format!("{target}/{rel}");
                let to = format!("{stage}/{rel}");
                match fs::symlink_metadata(&from) {
                    Ok(m) if m.is_dir() => fs::create_dir_all(&to)?,
                    Ok(m) if m.is_file() => {
                        fs::create_dir_all(Path::new(&to).parent().unwrap_or(Path::new("/")))?;
                        fs::write(&to, b"")?;
                    }
                    // Not in the node's view: nothing to keep.
                    _ => continue,
                }
                sys::mount(&from, &to, None, libc::MS_BIND, None)?;
                binds += 1;
            }
            sys::mount(&stage, &target, None, libc::MS_MOVE, None)?;
            Ok((SCRATCH_COPY_MAX - budget, binds))
        })();
        if fill.is_err() {
            let _ = sys::umount_detach(&stage);
        }
        fill
    })();
    let _ = fs::remove_dir(&stage);
    match result {
        Ok((bytes, binds)) => Scratch::Tmpfs { bytes, binds },
        Err(e) => Scratch::Failed(e.to_string()),
    }
}

/// Whether the node may create files in `dir`: makes and removes a probe file.
fn writable(dir: &Path) -> bool {
    let probe = dir.join(format!(".drover-probe-{}", std::process::id()));
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = fs::remove_file(&probe);
            true
        }
        Err(_) => false,
    }
}

/// Copies the tree `from` into the existing directory `to`: directories, regular files and
/// symlinks, with their owners and modes (other file types are skipped). Fails when more
/// than `budget` bytes of file data would be copied.
fn copy_tree(from: &Path, to: &Path, budget: &mut u64) -> io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let meta = fs::symlink_metadata(&src)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            fs::create_dir(&dst)?;
            copy_tree(&src, &dst, budget)?;
        } else if ft.is_file() {
            if meta.len() > *budget {
                return Err(io::Error::other(format!(
                    "more than {} MiB to copy",
                    SCRATCH_COPY_MAX >> 20
                )));
            }
            *budget -= meta.len();
            fs::copy(&src, &dst)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else {
            // Sockets, fifos and device nodes have no place in an image's /etc or /var.
            continue;
        }
        std::os::unix::fs::lchown(&dst, Some(meta.uid()), Some(meta.gid()))?;
        if !ft.is_symlink() {
            fs::set_permissions(&dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_name_the_server_and_the_client() {
        let server: SocketAddr = "198.18.0.1:2049".parse().unwrap();
        assert_eq!(
            mount_options("4.1", server, "198.18.0.11".parse().unwrap()),
            "vers=4.1,proto=tcp,hard,addr=198.18.0.1,port=2049,clientaddr=198.18.0.11"
        );
        assert_eq!(mount_source(server, "/root"), "198.18.0.1:/root");
        let v6: SocketAddr = "[fd00::1]:2049".parse().unwrap();
        assert!(mount_options("4.0", v6, "fd00::2".parse().unwrap()).contains("proto=tcp6"));
        assert_eq!(mount_source(v6, "/root"), "[fd00::1]:/root");
    }

    #[test]
    fn persistent_paths_inside_a_directory() {
        let p: Vec<String> = ["/var/log", "/etc/ssh", "/etc/machine-id", "/etcetera"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(persistent_inside("/etc", &p), ["ssh", "machine-id"]);
        assert!(persistent_inside("/var/log", &p).is_empty());
        assert!(persistent_inside("/tmp", &p).is_empty());
    }

    #[test]
    fn copies_a_tree_within_its_budget() {
        let dir = std::env::temp_dir().join(format!("drover-nfsroot-{}", std::process::id()));
        let (from, to) = (dir.join("from"), dir.join("to"));
        fs::create_dir_all(from.join("sub")).unwrap();
        fs::create_dir_all(&to).unwrap();
        fs::write(from.join("sub/file"), b"hello").unwrap();
        fs::set_permissions(from.join("sub/file"), fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink("sub/file", from.join("link")).unwrap();
        let mut budget = 100;
        copy_tree(&from, &to, &mut budget).unwrap();
        assert_eq!(budget, 95);
        assert_eq!(fs::read(to.join("sub/file")).unwrap(), b"hello");
        let mode = fs::metadata(to.join("sub/file"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            fs::read_link(to.join("link")).unwrap(),
            Path::new("sub/file")
        );
        let to2 = dir.join("to2");
        fs::create_dir_all(&to2).unwrap();
        let mut small = 3;
        assert!(copy_tree(&from, &to2, &mut small).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
