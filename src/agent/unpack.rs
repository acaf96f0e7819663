//! Streaming tar extraction into the new root: entries are written as they arrive from the
//! network, nothing is buffered whole.
//!
//! Every entry's path must be relative and free of `..` (the same rule as
//! [`crate::image::rootfs::check_relative`]); on top of that the tar crate's `unpack_in`
//! refuses to write through a symlink that leads outside the destination. Refused entries are
//! counted and skipped. Permissions, mtimes and (when `owners` is set, as for PID 1) owners
//! are kept. Device nodes in the tar are created as the tar crate does (mknod); FIFOs too.

use crate::image::rootfs::check_relative;
use std::io::{self, Read};
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

/// Unpacks the tar read from `reader` under `dest`.
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
        let hardlink_escapes = entry.header().entry_type() == tar::EntryType::Link
            && entry
                .link_name_bytes()
                .is_some_and(|t| check_relative(&String::from_utf8_lossy(&t)).is_err());
        if check_relative(&name).is_err() || hardlink_escapes {
            stats.refused += 1;
            continue;
        }
        let size = if entry.header().entry_type().is_file() {
            entry.size()
        } else {
            0
        };
        let written = entry
            .unpack_in(dest)
            .map_err(|e| io::Error::new(e.kind(), format!("{name}: {e}")))?;
        if written {
            stats.entries += 1;
            stats.bytes += size;
        } else {
            stats.refused += 1;
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn raw_entry(name: &str, kind: tar::EntryType, link: &str, data: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(kind);
        // Raw names: tar's setters refuse the hostile ones this test needs.
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    #[test]
    fn unpacks_a_packed_tree_and_refuses_escapes() {
        let base = std::env::temp_dir().join(format!("drover-unpack-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
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
}
