//! Durable file replacement: the one way drover writes a file that carries state across a
//! crash (the pool status file with its DHCP recovery window, the NFS client list that
//! decides the grace period, seeds, installed files, blobs).
//!
//! [`write`] puts the bytes in a temporary file beside the target, fsyncs it, renames it over
//! the target and fsyncs the directory, so after a crash at any moment the target holds
//! either the old or the new content, never a mix or nothing. [`rename`] and [`sync_dir`]
//! are the same last two steps for callers that wrote and fsynced a file themselves (blobs
//! hashed while written, a finished backup).
//!
//! Not here: the store (LMDB syncs its own commits), NFS client files (`nfs::fs` syncs
//! those), and the cluster key's own file (`pool::key` creates and syncs it).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Replaces `path` with `bytes` (file mode `mode`, before the umask), durably: temporary
/// file, write, fsync, rename, directory fsync. The directory must exist. Blocking.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let tmp = temp_name(path)?;
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Renames `from` to `to` and fsyncs the directory of `to` (and of `from`, if another), so
/// the rename survives a crash. The caller has fsynced the file itself. Blocking.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)?;
    let to_dir = parent(to);
    sync_dir(to_dir)?;
    let from_dir = parent(from);
    if from_dir != to_dir {
        sync_dir(from_dir)?;
    }
    Ok(())
}

/// Fsyncs a directory, making the entries created, renamed or removed in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path` (`.` for a bare name).
fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A name beside `path` no other writer uses: the process id and a counter, so two threads
/// replacing the same file never share a temporary (the last rename wins, whole).
fn temp_name(path: &Path) -> io::Result<std::path::PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "durable write needs a file name",
        )
    })?;
    let mut tmp = std::ffi::OsString::from(".");
    tmp.push(name);
    tmp.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    Ok(parent(path).join(tmp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("drover-durable-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn write_replaces_whole_and_leaves_no_temporary() {
        let dir = tempdir("replace");
        let file = dir.join("status.json");
        write(&file, b"old", 0o600).unwrap();
        write(&file, b"new content", 0o600).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"new content");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("status.json")]);
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }

    #[test]
    fn a_failed_write_keeps_the_old_content() {
        let dir = tempdir("failed");
        let file = dir.join("clients.json");
        write(&file, b"old", 0o644).unwrap();
        // A directory in the way of the rename: the write fails, the target is untouched.
        let blocked = dir.join("sub");
        std::fs::create_dir_all(blocked.join("x")).unwrap();
        assert!(write(&blocked, b"new", 0o644).is_err());
        assert_eq!(std::fs::read(&file).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
    }

    #[test]
    fn write_into_a_missing_directory_is_an_error() {
        let dir = tempdir("missing");
        assert!(write(&dir.join("no/such/file"), b"x", 0o644).is_err());
        assert!(write(Path::new("/"), b"x", 0o644).is_err());
    }

    #[test]
    fn rename_moves_across_directories() {
        let dir = tempdir("rename");
        std::fs::create_dir(dir.join("a")).unwrap();
        std::fs::create_dir(dir.join("b")).unwrap();
        std::fs::write(dir.join("a/f"), b"x").unwrap();
        rename(&dir.join("a/f"), &dir.join("b/g")).unwrap();
        assert_eq!(std::fs::read(dir.join("b/g")).unwrap(), b"x");
        assert!(!dir.join("a/f").exists());
    }
}
