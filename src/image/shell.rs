//! `drover image shell`: an image's latest root tree unpacked into a scratch directory, a
//! command (an interactive shell by default) run in it ([`super::chroot`]), and what it
//! changed ([`super::diff`]) so the caller can store the tree as the next version, or not.
//!
//! Data flow: [`unpack_tree`] writes the rootfs blob out with owners, modes, device nodes and
//! hard links ([`super::unpack`]); [`snapshot`] records every entry's metadata before and
//! after the command; the caller imports the tree (`image import`'s directory path) only
//! when the command exited 0 and something changed.
//!
//! Not here: an overlay over a shared unpacked tree (each shell unpacks its own copy), xattrs
//! (neither the unpacker nor the directory packer keeps them yet, so file capabilities
//! are lost on the way through a shell), locking against a concurrent change of the same
//! image (the later commit is simply the newer version).

use super::chroot::{self, ChrootError};
use super::diff::{Snapshot, Stamp};
use super::Blobs;
use crate::store::model::ImageFile;
use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    #[error(transparent)]
    Chroot(#[from] ChrootError),
    #[error(
        "image {0} has no root tree (it boots a kernel and its own initrd): image shell needs \
         an image made by image import, image build or image add --rootfs"
    )]
    NoTree(String),
    #[error(transparent)]
    Image(#[from] super::ImageError),
    #[error("unpacking the image's tree into {path}: {source}")]
    Unpack { path: String, source: io::Error },
    #[error("reading the tree {path}: {source}")]
    Walk { path: String, source: io::Error },
}

/// Unpacks `rootfs` (the image's latest tree) into `dest`, keeping owners.
pub fn unpack_tree(blobs: &Blobs, rootfs: &ImageFile, dest: &Path) -> Result<(), ShellError> {
    let unpack_err = |source| ShellError::Unpack {
        path: dest.display().to_string(),
        source,
    };
    fs::create_dir_all(dest).map_err(unpack_err)?;
    let reader = blobs.open(&rootfs.blob)?;
    super::unpack::unpack(reader, dest, true).map_err(unpack_err)?;
    restore_dir_mtimes(blobs, rootfs, dest).map_err(unpack_err)
}

/// Sets every directory's mtime back to the tar's: unpacking a directory's entries moved it,
/// and a stored tree whose every directory header changed would share few chunks with the
/// version it came from. Walks the unpacked tree (never through a symlink), so nothing
/// outside `dest` is touched.
fn restore_dir_mtimes(blobs: &Blobs, rootfs: &ImageFile, dest: &Path) -> io::Result<()> {
    let reader = blobs.open(&rootfs.blob).map_err(io::Error::other)?;
    let mut archive = tar::Archive::new(reader);
    let mut mtimes = HashMap::new();
    for entry in archive.entries_with_seek()? {
        let entry = entry?;
        if entry.header().entry_type() == tar::EntryType::Directory {
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let name = name
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_string();
            mtimes.insert(name, entry.header().mtime()?);
        }
    }
    let mut stack = vec![dest.to_path_buf()];
    let mut dirs = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
                dirs.push(entry.path());
            }
        }
    }
    for dir in dirs {
        let rel = dir.strip_prefix(dest).unwrap_or(&dir).to_string_lossy();
        if let Some(&secs) = mtimes.get(rel.as_ref()) {
            let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            fs::File::open(&dir)?.set_modified(when)?;
        }
    }
    Ok(())
}

/// The metadata of every entry under `root` (not following symlinks), by relative path.
pub fn snapshot(root: &Path) -> Result<Snapshot, ShellError> {
    let mut out = Snapshot::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let walk_err = |source| ShellError::Walk {
            path: dir.display().to_string(),
            source,
        };
        for entry in fs::read_dir(&dir).map_err(walk_err)? {
            let entry = entry.map_err(walk_err)?;
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(walk_err)?;
            let target = if meta.file_type().is_symlink() {
                fs::read_link(&path)
                    .ok()
                    .map(|t| t.to_string_lossy().into_owned())
            } else {
                None
            };
            let rel = path
                .strip_prefix(root)
                .map_or_else(|_| path.clone(), Path::to_path_buf)
                .to_string_lossy()
                .into_owned();
            out.insert(
                rel,
                Stamp {
                    mode: meta.mode(),
                    uid: meta.uid(),
                    gid: meta.gid(),
                    size: meta.size(),
                    ino: meta.ino(),
                    mtime_ns: i128::from(meta.mtime()) * 1_000_000_000
                        + i128::from(meta.mtime_nsec()),
                    ctime_ns: i128::from(meta.ctime()) * 1_000_000_000
                        + i128::from(meta.ctime_nsec()),
                    target,
                },
            );
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(out)
}

/// The command `image shell` runs when given none: a login shell of the image.
pub fn default_command(root: &Path) -> Vec<String> {
    let shell = if root.join("bin/bash").exists() {
        "/bin/bash"
    } else {
        "/bin/sh"
    };
    vec![shell.to_string(), "-l".to_string()]
}

/// Runs `argv` in the tree at `root` (stdin: the terminal); `scratch` is outside the tree.
pub fn run(
    root: &Path,
    scratch: &Path,
    argv: &[String],
) -> Result<std::process::ExitStatus, ShellError> {
    Ok(chroot::run(root, scratch, argv, chroot::Input::Inherit)?)
}
