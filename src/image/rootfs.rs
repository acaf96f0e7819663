//! Root filesystem tarballs: what a RAM-root node streams into its tmpfs at boot.
//!
//! Data flow: `drover image add --rootfs DIR` packs the directory with [`pack_dir`] into an
//! uncompressed tar (written straight into the blob store); `--rootfs FILE.tar` is first
//! validated with [`check_tar`] and then imported as is. The HTTP shell serves the result as
//! `/images/{IMAGE}/rootfs.tar`, the initramfs builder reads its kernel modules from it, and the
//! node agent unpacks it under `/newroot`.
//!
//! [`pack_dir`] is deterministic: entries are sorted by name, and each keeps its mode, owner
//! and mtime, so the same tree gives the same bytes (and the same blob). Symlinks are stored as
//! symlinks; hard links are stored as separate files (simple, at the cost of some size);
//! device nodes, FIFOs and sockets are skipped with a warning (the node's devtmpfs provides
//! `/dev`). [`pack_dir_full`] (for `image import DIR`) stores hard links as links and keeps
//! device nodes and FIFOs.
//!
//! Not here: compressed tarballs (`image add` rejects them with a clear message; `image
//! import` decompresses them, see `super::import`), extended attributes and sparse files of a
//! directory, and chunked (content-defined) storage of the tar.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// Why a root filesystem could not be packed or was refused.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}: not a directory")]
    NotADirectory(PathBuf),
    #[error("compressed tarballs are not supported yet: decompress first ({0} data found)")]
    Compressed(&'static str),
    #[error("not a tar archive: {0}")]
    NotATar(io::Error),
    #[error("tar entry {0:?} has an absolute path; paths must be relative to the root")]
    AbsolutePath(String),
    #[error("tar entry {0:?} contains `..`; paths must stay inside the root")]
    ParentComponent(String),
    #[error("tar hard link {entry:?} points outside the root: {target:?}")]
    LinkEscapes { entry: String, target: String },
    #[error("the tar archive is empty")]
    Empty,
}

/// What [`check_tar`] found in a valid tarball.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TarSummary {
    pub entries: u64,
    /// Sum of the regular files' sizes.
    pub file_bytes: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RootfsError + '_ {
    move |source| RootfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `dir` as a deterministic uncompressed tar to `out`. Paths in the archive are
/// relative (`etc/hostname`, directories end in `/`); the root directory itself is not stored.
pub fn pack_dir(dir: &Path, out: impl Write) -> Result<(), RootfsError> {
    pack(dir, out, None)
}

/// [`pack_dir`] keeping more of the tree, for `image import`: a file with several links is
/// stored once and its other names as hard links to the first (in sorted order); device
/// nodes and FIFOs are stored (sockets are still skipped).
pub fn pack_dir_full(dir: &Path, out: impl Write) -> Result<(), RootfsError> {
    pack(dir, out, Some(HashMap::new()))
}

/// Hard-linked files already stored: (device, inode) -> first path.
type Links = HashMap<(u64, u64), PathBuf>;

fn pack(dir: &Path, out: impl Write, mut links: Option<Links>) -> Result<(), RootfsError> {
    let meta = fs::metadata(dir).map_err(io_err(dir))?;
    if !meta.is_dir() {
        return Err(RootfsError::NotADirectory(dir.to_path_buf()));
    }
    let mut builder = tar::Builder::new(out);
    pack_children(&mut builder, dir, Path::new(""), &mut links)?;
    builder
        .into_inner()
        .and_then(|mut w| w.flush())
        .map_err(io_err(dir))
}

/// Appends the entries under `base.join(rel)`, sorted by name, depth first; `links` is
/// `Some` for [`pack_dir_full`].
fn pack_children<W: Write>(
    builder: &mut tar::Builder<W>,
    base: &Path,
    rel: &Path,
    links: &mut Option<Links>,
) -> Result<(), RootfsError> {
    let here = base.join(rel);
    let mut names: Vec<_> = fs::read_dir(&here)
        .map_err(io_err(&here))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io_err(&here))?;
    names.sort();
    for name in names {
        let rel_path = rel.join(&name);
        let full = base.join(&rel_path);
        let meta = fs::symlink_metadata(&full).map_err(io_err(&full))?;
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        header.set_mode(meta.mode() & 0o7777);
        let ft = meta.file_type();
        let append = if ft.is_dir() {
            header.set_size(0);
            builder
                .append_data(&mut header, &rel_path, io::empty())
                .map(|()| pack_children(builder, base, &rel_path, links))
        } else if ft.is_symlink() {
            let target = fs::read_link(&full).map_err(io_err(&full))?;
            header.set_size(0);
            builder
                .append_link(&mut header, &rel_path, &target)
                .map(|()| Ok(()))
        } else if ft.is_file() {
            let first = links.as_mut().filter(|_| meta.nlink() > 1).and_then(|l| {
                let key = (meta.dev(), meta.ino());
                let first = l.get(&key).cloned();
                l.entry(key).or_insert_with(|| rel_path.clone());
                first
            });
            if let Some(first) = first {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                builder
                    .append_link(&mut header, &rel_path, &first)
                    .map(|()| Ok(()))
            } else {
                // Without `links`, hard links become plain copies: the reader never has to
                // resolve them.
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(meta.len());
                let file = File::open(&full).map_err(io_err(&full))?;
                // If the file changes size while we read it, `append_data` fails rather than
                // writing a corrupt archive.
                builder
                    .append_data(
                        &mut header,
                        &rel_path,
                        BufReader::new(file).take(meta.len()),
                    )
                    .map(|()| Ok(()))
            }
        } else if links.is_some() && !ft.is_socket() {
            // `set_metadata_in_mode` set the type, not the device numbers (glibc's split of
            // `st_rdev`).
            let dev = meta.rdev();
            let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0xfff);
            let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0xff);
            header.set_size(0);
            // Both fit: each is at most 32 bits by construction of the masks above.
            header
                .set_device_major(major as u32)
                .and_then(|()| header.set_device_minor(minor as u32))
                .map_err(io_err(&full))?;
            builder
                .append_data(&mut header, &rel_path, io::empty())
                .map(|()| Ok(()))
        } else {
            tracing::warn!(path = %full.display(), "skipping device node, FIFO or socket");
            continue;
        };
        append.map_err(io_err(&full))??;
    }
    Ok(())
}

/// Validates an admin-supplied tarball: uncompressed, readable to the end, and every entry's
/// path (and hard-link target) relative and free of `..`.
pub fn check_tar(path: &Path) -> Result<TarSummary, RootfsError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut magic = [0u8; 6];
    let n = read_up_to(&mut file, &mut magic).map_err(io_err(path))?;
    if let Some(kind) = compression(&magic[..n]) {
        return Err(RootfsError::Compressed(kind));
    }
    let file = File::open(path).map_err(io_err(path))?;
    check_tar_reader(BufReader::new(file))
}

/// [`check_tar`] on any reader (the magic check is the caller's).
fn check_tar_reader(reader: impl Read) -> Result<TarSummary, RootfsError> {
    let mut archive = tar::Archive::new(reader);
    let mut summary = TarSummary::default();
    for entry in archive.entries().map_err(RootfsError::NotATar)? {
        let entry = entry.map_err(RootfsError::NotATar)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        check_relative(&name)?;
        if entry.header().entry_type() == tar::EntryType::Link {
            if let Some(target) = entry.link_name_bytes() {
                let target = String::from_utf8_lossy(&target).into_owned();
                if check_relative(&target).is_err() {
                    return Err(RootfsError::LinkEscapes {
                        entry: name,
                        target,
                    });
                }
            }
        }
        if entry.header().entry_type().is_file() {
            summary.file_bytes += entry.size();
        }
        summary.entries += 1;
    }
    if summary.entries == 0 {
        return Err(RootfsError::Empty);
    }
    Ok(summary)
}

/// Refuses absolute paths and `..` components (the agent refuses them again when unpacking).
pub fn check_relative(name: &str) -> Result<(), RootfsError> {
    let path = Path::new(name);
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {
                return Err(RootfsError::AbsolutePath(name.to_string()))
            }
            Component::ParentDir => return Err(RootfsError::ParentComponent(name.to_string())),
            Component::CurDir | Component::Normal(_) => {}
        }
    }
    Ok(())
}

/// Names the compression format whose magic number starts `head`, if any.
pub fn compression(head: &[u8]) -> Option<&'static str> {
    const MAGICS: &[(&[u8], &str)] = &[
        (&[0x1f, 0x8b], "gzip"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], "xz"),
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
        (b"BZh", "bzip2"),
    ];
    MAGICS
        .iter()
        .find(|(magic, _)| head.starts_with(magic))
        .map(|(_, kind)| *kind)
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("drover-rootfs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn sample_tree(name: &str) -> PathBuf {
        let d = tmpdir(name);
        fs::create_dir_all(d.join("etc/drover")).unwrap();
        fs::create_dir_all(d.join("bin")).unwrap();
        fs::write(d.join("etc/hostname"), "x\n").unwrap();
        fs::write(d.join("bin/busybox"), vec![7u8; 3000]).unwrap();
        fs::set_permissions(d.join("bin/busybox"), fs::Permissions::from_mode(0o4755)).unwrap();
        symlink("busybox", d.join("bin/sh")).unwrap();
        fs::hard_link(d.join("etc/hostname"), d.join("etc/hostname2")).unwrap();
        let long = "a".repeat(120);
        fs::create_dir_all(d.join(&long)).unwrap();
        fs::write(d.join(&long).join("b".repeat(120)), "long").unwrap();
        d
    }

    #[test]
    fn pack_is_sorted_deterministic_and_keeps_metadata() {
        let d = sample_tree("pack");
        let mut a = Vec::new();
        pack_dir(&d, &mut a).unwrap();
        let mut b = Vec::new();
        pack_dir(&d, &mut b).unwrap();
        assert_eq!(a, b);

        let mut archive = tar::Archive::new(&a[..]);
        let mut names = Vec::new();
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            match name.as_str() {
                "bin/busybox" => {
                    assert_eq!(e.header().mode().unwrap(), 0o4755);
                    assert_eq!(e.size(), 3000);
                }
                "bin/sh" => {
                    assert_eq!(e.header().entry_type(), tar::EntryType::Symlink);
                    assert_eq!(e.link_name().unwrap().unwrap(), Path::new("busybox"));
                }
                "etc/hostname2" => assert_eq!(e.header().entry_type(), tar::EntryType::Regular),
                _ => {}
            }
            names.push(name);
        }
        let long = "a".repeat(120);
        let want = vec![
            format!("{long}/"),
            format!("{long}/{}", "b".repeat(120)),
            "bin/".into(),
            "bin/busybox".into(),
            "bin/sh".into(),
            "etc/".into(),
            "etc/drover/".into(),
            "etc/hostname".into(),
            "etc/hostname2".into(),
        ];
        // tar's `path()` drops the trailing slash of directories.
        let want: Vec<String> = want
            .iter()
            .map(|s| s.trim_end_matches('/').into())
            .collect();
        assert_eq!(names, want);
        check_tar_reader(&a[..]).unwrap();
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn check_tar_refuses_compressed_and_escaping() {
        let d = tmpdir("check");
        let gz = d.join("x.tar.gz");
        fs::write(&gz, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0]).unwrap();
        let err = check_tar(&gz).unwrap_err();
        assert!(err
            .to_string()
            .contains("compressed tarballs are not supported yet: decompress first"));

        for (name, bad) in [("../etc/passwd", "`..`"), ("/etc/passwd", "absolute")] {
            let mut header = tar::Header::new_gnu();
            header.set_size(1);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            // Write the name raw: tar's own setters refuse `..` and absolute paths.
            let raw = &mut header.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            let mut data = header.as_bytes().to_vec();
            data.extend_from_slice(&[b'x'; 512]);
            data.extend_from_slice(&[0; 1024]);
            let err = check_tar_reader(&data[..]).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
        assert!(matches!(
            check_tar_reader(&[0u8; 1024][..]),
            Err(RootfsError::Empty)
        ));
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn magic_numbers() {
        assert_eq!(compression(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Some("zstd"));
        assert_eq!(compression(b"\xfd7zXZ\0"), Some("xz"));
        assert_eq!(compression(b"etc/"), None);
        assert_eq!(compression(b""), None);
    }
}
