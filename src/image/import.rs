//! `drover image import`: an image's root tree from a directory, a tarball (plain, gzip, zstd,
//! xz), an OCI image layout (a directory, or a tar of one) or a `docker save` / `podman save`
//! archive, stored as one uncompressed rootfs tar blob, the form the rest of drover reads.
//!
//! Data flow: a file source is decompressed (by its magic number, not its name) into a
//! temporary file in the blob directory and its entry names indexed by seeking; an archive
//! holding `manifest.json` (docker) or `oci-layout` + `index.json` (OCI) is a container image,
//! anything else a rootfs tar, which is checked ([`rootfs::check_tar`]) and adopted as a blob
//! without being copied again. A container image's layers are decompressed one by one into
//! temporary files and merged ([`Merge`]): later layers replace earlier entries, `.wh.NAME`
//! removes `NAME`, `.wh..wh..opq` hides what lower layers had in its directory. The result is
//! written by copying each surviving entry's raw bytes (its extension headers, header and
//! data), so owners, modes, xattrs (PAX records), hard links, device nodes and GNU sparse
//! entries come through exactly as the image had them. A directory source is packed with
//! [`rootfs::pack_dir_full`], which keeps hard links, device nodes and FIFOs.
//!
//! The kernel is `--kernel`, else the tree's newest `/boot/vmlinuz-*` (a symlink or hard link
//! is followed inside the tree). The image's own initrd is not needed: a rootfs image boots
//! drover's agent initramfs.
//!
//! Layers named by their digest (`blobs/sha256/HEX`) are checked against it; manifests and
//! indexes are not (they only point at layers).
//!
//! Not here: multi-platform choice beyond "linux/amd64, else the first manifest", xattrs of
//! a directory source, and progress output.

use super::{rootfs, Blobs, ImageError};
use crate::store::model::ImageFile;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}: {1} compression is not supported (gzip, zstd and xz are)")]
    Unsupported(PathBuf, &'static str),
    #[error("decompressing {path}: {why}")]
    Decompress { path: PathBuf, why: String },
    #[error("{path}: {why}")]
    BadManifest { path: PathBuf, why: String },
    #[error("{source_path}: layer {layer:?} is missing")]
    MissingLayer { source_path: PathBuf, layer: String },
    #[error("{path}: layer {layer} does not match its sha256 digest (got {got})")]
    Digest {
        path: PathBuf,
        layer: String,
        got: String,
    },
    #[error("{0}: no /boot/vmlinuz-* in the image's tree; give the kernel with --kernel")]
    NoKernel(PathBuf),
    #[error("rootfs {path}")]
    Rootfs {
        path: PathBuf,
        #[source]
        source: rootfs::RootfsError,
    },
    #[error(transparent)]
    Image(#[from] ImageError),
}

/// Compression of a file, by its magic number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
    Xz,
}

/// Reads `head`'s compression; bzip2 and unknown magics are refused by the caller.
fn compression_of(path: &Path) -> Result<Compression, ImportError> {
    let mut head = [0u8; 6];
    let mut f = File::open(path).map_err(io_at(path))?;
    let n = read_up_to(&mut f, &mut head).map_err(io_at(path))?;
    match rootfs::compression(&head[..n]) {
        None => Ok(Compression::None),
        Some("gzip") => Ok(Compression::Gzip),
        Some("zstd") => Ok(Compression::Zstd),
        Some("xz") => Ok(Compression::Xz),
        Some(other) => Err(ImportError::Unsupported(path.to_path_buf(), other)),
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ImportError + '_ {
    move |source| ImportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes the decompressed bytes of `input` to `out`.
pub fn decompress(c: Compression, input: impl Read, out: &mut dyn Write) -> io::Result<()> {
    let mut input = BufReader::new(input);
    match c {
        Compression::None => io::copy(&mut input, out).map(drop),
        Compression::Gzip => {
            io::copy(&mut flate2::bufread::MultiGzDecoder::new(input), out).map(drop)
        }
        Compression::Zstd => {
            let mut d = ruzstd::decoding::StreamingDecoder::new(input).map_err(io::Error::other)?;
            io::copy(&mut d, out).map(drop)
        }
        Compression::Xz => {
            lzma_rs::xz_decompress(&mut input, &mut &mut *out).map_err(|e| match e {
                lzma_rs::error::Error::IoError(e) => e,
                other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
            })
        }
    }
}

/// A temporary file in the blob directory, removed when dropped unless adopted.
struct Temp {
    path: PathBuf,
}

impl Temp {
    fn new(blobs: &Blobs) -> Result<Temp, ImportError> {
        let dir = blobs.dir();
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        Ok(Temp {
            path: dir.join(format!(
                ".import-{}-{}",
                std::process::id(),
                super::unique()
            )),
        })
    }

    /// Fills the file with `c`-decompressed `input`.
    fn fill(&self, c: Compression, input: impl Read, what: &Path) -> Result<(), ImportError> {
        let mut out = io::BufWriter::new(File::create(&self.path).map_err(io_at(&self.path))?);
        decompress(c, input, &mut out)
            .and_then(|()| out.flush())
            .map_err(|e| ImportError::Decompress {
                path: what.to_path_buf(),
                why: e.to_string(),
            })
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Where an archive's member lives: its data's offset and length in the (decompressed) file.
type Index = HashMap<String, (u64, u64)>;

/// Normalises a tar entry name: no leading `./` or `/`, no trailing `/`.
fn clean(raw: &[u8]) -> String {
    super::initramfs::tar_name(raw)
        .trim_end_matches('/')
        .to_string()
}

/// The regular files of the tar at `path`, by name (reading headers only).
fn index_tar(path: &Path) -> Result<Index, ImportError> {
    let file = File::open(path).map_err(io_at(path))?;
    let mut archive = tar::Archive::new(file);
    let mut index = Index::new();
    let bad = |e: io::Error| ImportError::Rootfs {
        path: path.to_path_buf(),
        source: rootfs::RootfsError::NotATar(e),
    };
    for entry in archive.entries_with_seek().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        if entry.header().entry_type().is_file() {
            let name = clean(&entry.path_bytes());
            index.insert(name, (entry.raw_file_position(), entry.size()));
        }
    }
    Ok(index)
}

/// Files of a container image, in a directory or inside an archive.
enum Layout<'a> {
    Dir(&'a Path),
    Tar(&'a Path, Index),
}

impl Layout<'_> {
    fn has(&self, name: &str) -> bool {
        match self {
            Layout::Dir(d) => d.join(name).is_file(),
            Layout::Tar(_, index) => index.contains_key(name),
        }
    }

    fn open(&self, name: &str) -> Result<Box<dyn Read + '_>, ImportError> {
        match self {
            Layout::Dir(d) => {
                let path = d.join(name);
                Ok(Box::new(File::open(&path).map_err(io_at(&path))?))
            }
            Layout::Tar(path, index) => {
                let Some(&(offset, len)) = index.get(name) else {
                    return Err(ImportError::MissingLayer {
                        source_path: path.to_path_buf(),
                        layer: name.to_string(),
                    });
                };
                let mut f = File::open(path).map_err(io_at(path))?;
                f.seek(SeekFrom::Start(offset)).map_err(io_at(path))?;
                Ok(Box::new(f.take(len)))
            }
        }
    }

    fn json(&self, name: &str, what: &Path) -> Result<serde_json::Value, ImportError> {
        let mut text = Vec::new();
        self.open(name)?
            .take(MAX_MANIFEST)
            .read_to_end(&mut text)
            .map_err(io_at(what))?;
        serde_json::from_slice(&text).map_err(|e| ImportError::BadManifest {
            path: what.join(name),
            why: e.to_string(),
        })
    }

    /// The layer files, bottom first, if this is a container image.
    fn layers(&self, what: &Path) -> Result<Option<Vec<String>>, ImportError> {
        let bad = |why: &str| ImportError::BadManifest {
            path: what.to_path_buf(),
            why: why.to_string(),
        };
        if self.has("oci-layout") && self.has("index.json") {
            let mut doc = self.json("index.json", what)?;
            // An index may point at further indexes (multi-platform images): descend.
            for _ in 0..MAX_INDEX_DEPTH {
                if doc.get("layers").is_some() {
                    break;
                }
                let manifests = doc["manifests"]
                    .as_array()
                    .ok_or_else(|| bad("index without manifests"))?;
                let pick = manifests
                    .iter()
                    .find(|m| {
                        m["platform"]["os"] == "linux" && m["platform"]["architecture"] == "amd64"
                    })
                    .or_else(|| manifests.first())
                    .ok_or_else(|| bad("index lists no manifest"))?;
                let digest = pick["digest"].as_str().ok_or_else(|| bad("no digest"))?;
                doc = self.json(&blob_path(digest).ok_or_else(|| bad("bad digest"))?, what)?;
            }
            let layers = doc["layers"]
                .as_array()
                .ok_or_else(|| bad("manifest without layers"))?;
            return layers
                .iter()
                .map(|l| {
                    l["digest"]
                        .as_str()
                        .and_then(blob_path)
                        .ok_or_else(|| bad("layer without a valid digest"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some);
        }
        if self.has("manifest.json") {
            let doc = self.json("manifest.json", what)?;
            let layers = doc[0]["Layers"]
                .as_array()
                .ok_or_else(|| bad("manifest.json without Layers"))?;
            return layers
                .iter()
                .map(|l| {
                    l.as_str()
                        .map(|l| clean(l.as_bytes()))
                        .ok_or_else(|| bad("layer is not a path"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some);
        }
        Ok(None)
    }
}

/// Largest manifest or index read, in bytes.
const MAX_MANIFEST: u64 = 4 << 20;
/// Most nested OCI indexes followed.
const MAX_INDEX_DEPTH: usize = 4;

/// `sha256:HEX` -> `blobs/sha256/HEX`, refusing anything that could leave the layout.
fn blob_path(digest: &str) -> Option<String> {
    let (alg, hex) = digest.split_once(':')?;
    let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
    (ok(alg) && ok(hex)).then(|| format!("blobs/{alg}/{hex}"))
}

/// One surviving entry of a merge: which layer file, and its raw byte range there.
#[derive(Debug, Clone, Copy)]
struct Raw {
    layer: usize,
    start: u64,
    end: u64,
}

/// Merges container layers by OCI's rules into the entries that survive.
#[derive(Debug, Default)]
pub struct Merge {
    entries: BTreeMap<String, Raw>,
}

impl Merge {
    /// Removes `path` and everything under it; with `below` (an opaque directory in that
    /// layer) only what lower layers put under it, and not `path` itself.
    fn remove_tree(&mut self, path: &str, below: Option<usize>) {
        let lower = |r: &Raw| below.is_none_or(|b| r.layer < b);
        if below.is_none() {
            self.entries.remove(path);
        }
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let under: Vec<String> = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, r)| lower(r))
            .map(|(k, _)| k.clone())
            .collect();
        for k in under {
            self.entries.remove(&k);
        }
    }

    /// Adds layer number `layer`, an uncompressed tar at `path`.
    fn add_layer(&mut self, layer: usize, path: &Path) -> Result<(), ImportError> {
        let bad = |e: io::Error| ImportError::Rootfs {
            path: path.to_path_buf(),
            source: rootfs::RootfsError::NotATar(e),
        };
        let file = File::open(path).map_err(io_at(path))?;
        let mut archive = tar::Archive::new(file);
        let mut start = 0;
        for entry in archive.entries_with_seek().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            let end = entry.raw_file_position() + entry.header().entry_size().map_err(bad)?;
            let end = end.div_ceil(512) * 512;
            let raw = Raw { layer, start, end };
            start = end;
            let name = clean(&entry.path_bytes());
            rootfs::check_relative(&name).map_err(|source| ImportError::Rootfs {
                path: path.to_path_buf(),
                source,
            })?;
            let (dir, base) = match name.rsplit_once('/') {
                Some((d, b)) => (d, b),
                None => ("", name.as_str()),
            };
            if base == ".wh..wh..opq" {
                self.remove_tree(dir, Some(layer));
            } else if let Some(hidden) = base.strip_prefix(".wh.") {
                let victim = if dir.is_empty() {
                    hidden.to_string()
                } else {
                    format!("{dir}/{hidden}")
                };
                self.remove_tree(&victim, None);
            } else if name.is_empty() {
                // The root directory itself: nothing to keep.
            } else {
                if !entry.header().entry_type().is_dir() {
                    // A non-directory replaces whatever tree was there.
                    self.remove_tree(&name, None);
                }
                self.entries.insert(name, raw);
            }
        }
        Ok(())
    }

    /// The surviving entries in layer order, then archive order (hard links after their
    /// targets, as each layer had them).
    fn order(&self) -> Vec<Raw> {
        let mut out: Vec<Raw> = self.entries.values().copied().collect();
        out.sort_by_key(|r| (r.layer, r.start));
        out
    }
}

/// Writes the merged tar: each entry's raw bytes from its layer file, then the end marker.
fn write_merged(merge: &Merge, layers: &[Temp], out: &mut dyn Write) -> io::Result<()> {
    let mut files: Vec<File> = layers
        .iter()
        .map(|t| File::open(&t.path))
        .collect::<Result<_, _>>()?;
    for raw in merge.order() {
        let f = &mut files[raw.layer];
        f.seek(SeekFrom::Start(raw.start))?;
        let want = raw.end - raw.start;
        let copied = io::copy(&mut f.take(want), out)?;
        if copied != want {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "layer ends early",
            ));
        }
    }
    out.write_all(&[0; 1024])
}

/// Hashes what is read through it.
struct Sha256Reader<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: Read> Read for Sha256Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        Ok(n)
    }
}

/// Stores the merged layers of a container image as one rootfs tar blob.
fn import_layers(
    blobs: &Blobs,
    layout: &Layout<'_>,
    layers: &[String],
    what: &Path,
) -> Result<ImageFile, ImportError> {
    let mut temps = Vec::with_capacity(layers.len());
    let mut merge = Merge::default();
    for (i, name) in layers.iter().enumerate() {
        let temp = Temp::new(blobs)?;
        let mut head = [0u8; 6];
        let n = read_up_to(&mut layout.open(name)?, &mut head).map_err(io_at(what))?;
        let c = match rootfs::compression(&head[..n]) {
            None => Compression::None,
            Some("gzip") => Compression::Gzip,
            Some("zstd") => Compression::Zstd,
            Some("xz") => Compression::Xz,
            Some(other) => return Err(ImportError::Unsupported(what.join(name), other)),
        };
        // A layer named by its digest (OCI layouts, newer `docker save`) must match it.
        let mut input = Sha256Reader {
            inner: layout.open(name)?,
            hasher: sha2::Sha256::default(),
        };
        temp.fill(c, &mut input, &what.join(name))?;
        if let Some(want) = name.strip_prefix("blobs/sha256/") {
            // The decompressor may stop at the end of its stream: hash what follows too.
            io::copy(&mut input, &mut io::sink()).map_err(io_at(what))?;
            let got: String = sha2::Digest::finalize(input.hasher)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            if got != want {
                return Err(ImportError::Digest {
                    path: what.to_path_buf(),
                    layer: name.clone(),
                    got,
                });
            }
        }
        merge.add_layer(i, &temp.path)?;
        temps.push(temp);
    }
    Ok(blobs.import_with(|out| write_merged(&merge, &temps, out))?)
}

/// Stores the root tree at `source` as an uncompressed tar blob.
pub fn import_rootfs(blobs: &Blobs, source: &Path) -> Result<ImageFile, ImportError> {
    let meta = fs::metadata(source).map_err(io_at(source))?;
    let rootfs_err = |source_err| ImportError::Rootfs {
        path: source.to_path_buf(),
        source: source_err,
    };
    if meta.is_dir() {
        let layout = Layout::Dir(source);
        if let Some(layers) = layout.layers(source)? {
            return import_layers(blobs, &layout, &layers, source);
        }
        return Ok(blobs.import_with(|out| {
            rootfs::pack_dir_full(source, out).map_err(|e| ImageError::Rootfs {
                path: source.to_path_buf(),
                source: e,
            })
        })?);
    }
    let temp = Temp::new(blobs)?;
    let c = compression_of(source)?;
    temp.fill(c, File::open(source).map_err(io_at(source))?, source)?;
    let layout = Layout::Tar(&temp.path, index_tar(&temp.path)?);
    if let Some(layers) = layout.layers(source)? {
        return import_layers(blobs, &layout, &layers, source);
    }
    rootfs::check_tar(&temp.path).map_err(rootfs_err)?;
    Ok(blobs.adopt(&temp.path)?)
}

/// Orders kernel file names by their version numbers (`5.10.0-9` before `5.10.0-28`).
fn version_key(name: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut rest = name;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            out.push((rest[..digits].parse().unwrap_or(u64::MAX), String::new()));
            rest = &rest[digits..];
        } else {
            let other = rest.bytes().take_while(|b| !b.is_ascii_digit()).count();
            out.push((0, rest[..other].to_string()));
            rest = &rest[other..];
        }
    }
    out
}

/// Most symlinks or hard links followed to the kernel.
const MAX_LINK_HOPS: usize = 8;

/// Stores the newest `/boot/vmlinuz-*` of the rootfs tar `tar` as a blob.
pub fn kernel_from_tree(
    blobs: &Blobs,
    tar: super::Tar<'_>,
    what: &Path,
) -> Result<ImageFile, ImportError> {
    let bad = |e: io::Error| ImportError::Rootfs {
        path: what.to_path_buf(),
        source: rootfs::RootfsError::NotATar(e),
    };
    // name -> link target (resolved to a tree path) or None for a regular file.
    let mut kinds: HashMap<String, Option<String>> = HashMap::new();
    let mut archive = tar::Archive::new(tar.open().map_err(io_at(&tar.name()))?);
    for entry in archive.entries_with_seek().map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let name = clean(&entry.path_bytes());
        if !name.starts_with("boot/") {
            continue;
        }
        let link = entry.link_name_bytes();
        let kind = match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => None,
            tar::EntryType::Link => link.map(|t| clean(&t)),
            // Relative symlinks are relative to boot/; absolute ones to the tree's root.
            tar::EntryType::Symlink => link.map(|t| match t.first() {
                Some(b'/') => clean(&t),
                _ => clean(&[&b"boot/"[..], &t].concat()),
            }),
            _ => continue,
        };
        kinds.insert(name, kind);
    }
    let mut name = kinds
        .keys()
        .filter(|k| {
            k.strip_prefix("boot/vmlinuz-")
                .is_some_and(|v| !v.contains('/'))
        })
        .max_by_key(|k| version_key(k))
        .cloned()
        .ok_or_else(|| ImportError::NoKernel(what.to_path_buf()))?;
    for _ in 0..MAX_LINK_HOPS {
        match kinds.get(&name) {
            Some(Some(target)) => name = target.clone(),
            _ => break,
        }
    }
    let mut archive = tar::Archive::new(tar.open().map_err(io_at(&tar.name()))?);
    for entry in archive.entries_with_seek().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if entry.header().entry_type().is_file() && clean(&entry.path_bytes()) == name {
            return Ok(blobs.import_with(|out| io::copy(&mut entry, out).map(drop))?);
        }
    }
    Err(ImportError::NoKernel(what.to_path_buf()))
}

/// Imports an image from `source` (see the module doc); the kernel is `kernel`, else the
/// tree's. Builds drover's agent initramfs for the tree with `agent`.
pub fn import(
    blobs: &Blobs,
    source: &Path,
    kernel: Option<&Path>,
    agent: &Path,
) -> Result<crate::store::model::ImageFiles, ImportError> {
    let rootfs = import_rootfs(blobs, source)?;
    let tar = super::Tar::Blob(blobs, &rootfs.blob);
    let kernel = match kernel {
        Some(k) => blobs.import_file(k)?,
        None => kernel_from_tree(blobs, tar, source)?,
    };
    let initramfs = super::agent_initramfs(blobs, agent, tar, source)?;
    Ok(crate::store::model::ImageFiles {
        kernel,
        initrd: None,
        rootfs: Some(rootfs),
        initramfs: Some(initramfs),
    })
}

#[cfg(test)]
#[path = "import_tests.rs"]
mod tests;
