//! Streaming tar extraction of an image's root filesystem under a destination directory. The
//! agent unpacks into its tmpfs `/newroot` as the bytes arrive from the network (nothing is
//! buffered whole); the NFS server unpacks each rootfs blob once under
//! `<state>/nfs/images/<blob>/`. One implementation, so that a node sees the same tree whether
//! it boots with a RAM root or an NFS root.
//!
//! What happens to each entry type:
//! - Every entry: its path must be relative and free of `..` (the rule of
//!   [`check_relative`]); otherwise it is refused: counted in [`Stats::refused`], skipped.
//! - Directories, regular files: written by the tar crate's `unpack_in`, which refuses to
//!   write through a symlink leading outside the destination. That is an error naming the
//!   entry, not a refusal: a tar that tries it is hostile or broken, and the caller stops.
//! - Symlinks: created as they are. Their targets are not checked: they are read inside the
//!   node's root, where `/etc` is the node's own; nothing is written through one that leads
//!   outside (above).
//! - Hard links: the target must be relative and free of `..` too (else refused), and the
//!   tar crate checks that it resolves inside the destination.
//! - Character and block devices, FIFOs: made with mknod(2) with the entry's mode and device
//!   numbers (the tar crate alone would write them as empty regular files). mknod has no
//!   confinement of its own, so such an entry is refused if any directory on its way is a
//!   symlink or not a directory. Devices need root: the agent is PID 1, the server root.
//! - Extension headers (PAX, GNU long names) are consumed by the tar crate; tar has no
//!   socket entries.
//!
//! Permissions and mtimes are kept (not the mtime of devices and FIFOs); owners too when
//! `owners` is set. Not here: packing ([`super::rootfs::pack_dir`]), compression, xattrs.

use super::rootfs::check_relative;
use crate::nfs::fs::{makedev, mknod_like};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries written.
    pub entries: u64,
    /// Bytes of regular-file data written.
    pub bytes: u64,
    /// Entries skipped because they would land outside the destination.
    pub refused: u64,
}

/// Unpacks the tar read from `reader` under `dest`, keeping owners if `owners`.
pub fn unpack(reader: impl Read, dest: &Path, owners: bool) -> io::Result<Stats> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(owners);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
    let mut stats = Stats::default();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let kind = entry.header().entry_type();
        let link_escapes = kind == tar::EntryType::Link
            && entry
                .link_name_bytes()
                .is_some_and(|t| check_relative(&String::from_utf8_lossy(&t)).is_err());
        if check_relative(&name).is_err() || link_escapes {
            stats.refused += 1;
            continue;
        }
        let written = match special_type(kind) {
            Some(file_type) => make_special(&entry, &name, dest, file_type, owners),
            None => entry.unpack_in(dest),
        }
        .map_err(|e| io::Error::new(e.kind(), format!("{name}: {e}")))?;
        if written {
            stats.entries += 1;
            if kind.is_file() {
                stats.bytes += entry.size();
            }
        } else {
            stats.refused += 1;
        }
    }
    Ok(stats)
}

/// The `st_mode` file type bits of the entry types that mknod makes.
fn special_type(kind: tar::EntryType) -> Option<u32> {
    match kind {
        tar::EntryType::Char => Some(libc::S_IFCHR),
        tar::EntryType::Block => Some(libc::S_IFBLK),
        tar::EntryType::Fifo => Some(libc::S_IFIFO),
        _ => None,
    }
}

/// Makes a device node or FIFO at `name` under `dest`; false if refused (a directory on the
/// way is a symlink or not a directory).
fn make_special<R: Read>(
    entry: &tar::Entry<'_, R>,
    name: &str,
    dest: &Path,
    file_type: u32,
    owners: bool,
) -> io::Result<bool> {
    let rel = Path::new(name.trim_end_matches('/'));
    let mut at = dest.to_path_buf();
    for c in rel.parent().into_iter().flat_map(|p| p.components()) {
        at.push(c);
        if std::fs::symlink_metadata(&at).is_ok_and(|m| !m.is_dir()) {
            return Ok(false);
        }
    }
    let h = entry.header();
    let path = dest.join(rel);
    // Overwrite, like the other entry types; a missing file is the usual case.
    let _ = std::fs::remove_file(&path);
    // A FIFO has no device numbers, and writers leave the fields empty or zero.
    let dev = if file_type == libc::S_IFIFO {
        0
    } else {
        makedev(
            h.device_major()?.unwrap_or(0),
            h.device_minor()?.unwrap_or(0),
        )
    };
    let mode = h.mode()? & 0o7777;
    mknod_like(&path, file_type | mode, dev)?;
    if owners {
        // Owner first: chown clears the set-id bits that the mode then sets again.
        std::os::unix::fs::lchown(&path, Some(h.uid()? as u32), Some(h.gid()? as u32))?;
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    Ok(true)
}

/// Tar entries built by hand, for the tests here and the NFS views' (`nfs/view_tests.rs`).
#[cfg(test)]
pub(crate) mod test_tar {
    /// One entry with a raw name and link (tar's setters refuse the hostile ones tests need),
    /// mode 0644, owned by root; a character device is /dev/null's numbers (1, 3).
    pub(crate) fn raw_entry(name: &str, kind: tar::EntryType, link: &str, data: &[u8]) -> Vec<u8> {
        entry(name, kind, 0o644, link, data)
    }

    /// [`raw_entry`] with `mode`.
    pub(crate) fn entry(
        name: &str,
        kind: tar::EntryType,
        mode: u32,
        link: &str,
        data: &[u8],
    ) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(kind);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        if kind == tar::EntryType::Char {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        }
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::test_tar::raw_entry;
    use super::*;
    use std::fs;
    use std::os::unix::fs::FileTypeExt;

    fn tempdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("drover-unpack-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// `entries` followed by the end-of-archive blocks.
    fn tar_of(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut t = entries.concat();
        t.extend([0u8; 1024]);
        t
    }

    #[test]
    fn unpacks_a_packed_tree_and_refuses_escapes() {
        let base = tempdir("tree");
        let src = base.join("src");
        fs::create_dir_all(src.join("sbin")).unwrap();
        fs::write(src.join("sbin/init"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("sbin/init"), fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::symlink("/etc", src.join("escape")).unwrap();
        let mut tar = Vec::new();
        crate::image::rootfs::pack_dir(&src, &mut tar).unwrap();
        // Strip the end-of-archive blocks and append hostile entries.
        while tar.len() >= 512 && tar[tar.len() - 512..].iter().all(|&b| b == 0) {
            tar.truncate(tar.len() - 512);
        }
        tar.extend(raw_entry("../outside", tar::EntryType::Regular, "", b"x"));
        tar.extend(raw_entry("/abs", tar::EntryType::Regular, "", b"x"));
        tar.extend(raw_entry(
            "hl",
            tar::EntryType::Link,
            "../../etc/passwd",
            b"",
        ));
        tar.extend(raw_entry("escape/owned", tar::EntryType::Regular, "", b"x"));
        tar.extend([0u8; 1024]);

        let dest = base.join("dest");
        fs::create_dir_all(&dest).unwrap();
        // "escape/owned" goes through a symlink to /etc: unpack_in refuses with an error.
        let err = unpack(&tar[..], &dest, false).unwrap_err();
        assert!(err.to_string().contains("escape/owned"), "{err}");
        assert!(!Path::new("/etc/owned").exists());
        let meta = fs::metadata(dest.join("sbin/init")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o750);
        assert!(!base.join("outside").exists());

        // Without the symlink trick the rest unpacks, with the escapes counted.
        let end = tar.len() - 1024 - 1024;
        let mut tar2 = tar[..end].to_vec();
        tar2.extend([0u8; 1024]);
        let dest2 = base.join("dest2");
        fs::create_dir_all(&dest2).unwrap();
        let stats = unpack(&tar2[..], &dest2, false).unwrap();
        assert_eq!(stats.refused, 3);
        assert_eq!(stats.entries, 3); // sbin/, sbin/init, escape
        assert_eq!(stats.bytes, 10);
        assert!(!base.join("outside").exists());
        assert!(!dest2.join("hl").exists());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn fifos_and_devices_are_made_not_written_as_files() {
        use tar::EntryType as E;
        let dest = tempdir("special");
        let tar = tar_of(&[
            raw_entry("dev/", E::Directory, "", b""),
            raw_entry("dev/fifo", E::Fifo, "", b""),
            raw_entry("dev/null", E::Char, "", b""),
        ]);
        // Device nodes need root (CAP_MKNOD): without it only the FIFO is asserted.
        let root = fs::metadata("/proc/self").is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.uid() == 0
        });
        let tar = if root { tar } else { tar[..1024].to_vec() };
        let stats = unpack(&tar[..], &dest, false).unwrap();
        assert_eq!(stats.refused, 0);
        let fifo = fs::symlink_metadata(dest.join("dev/fifo")).unwrap();
        assert!(fifo.file_type().is_fifo());
        assert_eq!(fifo.permissions().mode() & 0o7777, 0o644);
        if root {
            use std::os::unix::fs::MetadataExt;
            let null = fs::symlink_metadata(dest.join("dev/null")).unwrap();
            assert!(null.file_type().is_char_device());
            assert_eq!(null.rdev(), fs::metadata("/dev/null").unwrap().rdev());
            assert_eq!(stats.entries, 3);
        }
        // Unpacking again replaces them.
        assert!(unpack(&tar[..], &dest, false).is_ok());
        fs::remove_dir_all(&dest).unwrap();
    }

    #[test]
    fn special_entries_are_refused_under_a_symlink_or_outside() {
        use tar::EntryType as E;
        let base = tempdir("special-escape");
        let dest = base.join("dest");
        fs::create_dir_all(&dest).unwrap();
        let outside = base.join("outside");
        fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, dest.join("link")).unwrap();
        let tar = tar_of(&[
            raw_entry("link/fifo", E::Fifo, "", b""),
            raw_entry("../fifo", E::Fifo, "", b""),
            raw_entry("/fifo", E::Fifo, "", b""),
        ]);
        let stats = unpack(&tar[..], &dest, false).unwrap();
        assert_eq!(stats.refused, 3);
        assert_eq!(stats.entries, 0);
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        assert!(!base.join("fifo").exists());
        fs::remove_dir_all(&base).unwrap();
    }
}
