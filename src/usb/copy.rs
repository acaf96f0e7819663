//! `usb build --image NAME`: copies images from the local store into a new state directory
//! that becomes the stick's data partition, so the appliance boots nodes from its first
//! start.
//!
//! Each image's record (every version) goes into a new store (a member of its own), and
//! every blob it names: a chunked blob chunk by chunk (each checked against its hash by
//! [`crate::image::Blobs::put_chunk`]) and then its manifest, a whole-file blob through
//! [`crate::image::Blobs::import_file`]. Nothing else of the source store is copied: no
//! nodes, users, leases or pool membership.

use crate::image::{chunk, Blobs, ImageError};
use crate::store::model::Image;
use crate::store::{Store, StoreError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("opening the store in {dir}: {source}")]
    Open { dir: PathBuf, source: StoreError },
    #[error("the store: {0}")]
    Store(#[from] StoreError),
    #[error("no image {0} in the local store (drover image list)")]
    NoImage(String),
    #[error("image {image}: {source}")]
    Blob { image: String, source: ImageError },
    #[error("image {image}: blob {blob} changed its id when copied (got {got})")]
    Changed {
        image: String,
        blob: String,
        got: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Copies `names` from the store in `from` into a new state directory `to`; returns the
/// bytes written there. Without names nothing is opened or written.
pub fn images(from: &Path, names: &[String], to: &Path) -> Result<u64, CopyError> {
    if names.is_empty() {
        return Ok(0);
    }
    let src = Store::open(from).map_err(|source| CopyError::Open {
        dir: from.to_path_buf(),
        source,
    })?;
    let mut records = Vec::new();
    for name in names {
        let image = src
            .read(|r| r.get::<Image>(name))?
            .ok_or_else(|| CopyError::NoImage(name.clone()))?;
        records.push(image);
    }
    drop(src);
    let (src_blobs, dst_blobs) = (Blobs::new(from), Blobs::new(to));
    for image in &records {
        let blob_err = |source| CopyError::Blob {
            image: image.name.clone(),
            source,
        };
        for file in image.all_files() {
            let id = &file.blob;
            if dst_blobs.contains(id) {
                continue;
            }
            match src_blobs.manifest_bytes(id).map_err(blob_err)? {
                Some(bytes) => {
                    let manifest = chunk::Manifest::decode(&bytes).map_err(|source| {
                        blob_err(ImageError::Manifest {
                            id: id.clone(),
                            source,
                        })
                    })?;
                    for c in &manifest.chunks {
                        let data = src_blobs
                            .read_chunk(&c.id)
                            .map_err(|source| CopyError::Io {
                                path: src_blobs.dir().join(chunk::hex(&c.id)),
                                source,
                            })?;
                        dst_blobs.put_chunk(&c.id, &data).map_err(blob_err)?;
                    }
                    dst_blobs.put_manifest(id, &manifest).map_err(blob_err)?;
                }
                None => {
                    let copied = dst_blobs
                        .import_file(&src_blobs.dir().join(id))
                        .map_err(blob_err)?;
                    if copied.blob != *id {
                        return Err(CopyError::Changed {
                            image: image.name.clone(),
                            blob: id.clone(),
                            got: copied.blob,
                        });
                    }
                }
            }
        }
    }
    let dst = Store::open(to).map_err(|source| CopyError::Open {
        dir: to.to_path_buf(),
        source,
    })?;
    dst.write(|w| {
        for image in &records {
            w.put(image)?;
        }
        Ok::<_, StoreError>(())
    })?;
    drop(dst);
    tree_bytes(to)
}

/// The bytes of the regular files under `dir`.
fn tree_bytes(dir: &Path) -> Result<u64, CopyError> {
    let io = |source| CopyError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut total = 0;
    for e in std::fs::read_dir(dir).map_err(io)? {
        let e = e.map_err(io)?;
        let meta = e.metadata().map_err(io)?;
        if meta.is_dir() {
            total += tree_bytes(&e.path())?;
        } else {
            total += meta.len();
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_names_copy_nothing() {
        let dir = std::env::temp_dir().join(format!("drover-usb-copy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // The source does not even exist: it is not opened.
        let n = images(&dir.join("missing"), &[], &dir).unwrap();
        assert_eq!(n, 0);
        assert!(std::fs::read_dir(&dir).unwrap().next().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
