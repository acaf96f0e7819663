//! `drover backup` and `drover restore`: the store and the image blobs of a state directory
//! in one tar file, and back.
//!
//! A backup is a tar of, in this order: `drover-backup.json` (the [`Manifest`]: format,
//! drover version, store schema, member id, creation time, blob count), `store/data.mdb` (a
//! compacted LMDB copy taken in one read transaction, so it is consistent while a server
//! runs and writes) and, unless store-only, `blobs/<blake3>` for every image blob. The store
//! is copied *before* the blobs are listed: a blob is written and renamed into place before
//! the image record naming it commits, and blobs are never deleted, so every blob the copied
//! store names is in the backup. The file is made mode 0600 (the store holds password and
//! token hashes and BMC passwords) under a temporary name and renamed when complete.
//!
//! Restore reads the manifest first and refuses a backup from a newer format or store schema
//! (an older schema is migrated when the store is opened, as at any start), refuses a
//! non-empty state directory unless forced, accepts only the members above (no other paths,
//! so nothing is written outside the state directory), and checks every blob's hash against
//! its name. The restored store gets a new member id ([`MemberId::Renew`]) unless the caller
//! keeps the backup's ([`MemberId::Keep`]): see [`restore`].
//!
//! Not in a backup: the pool's files (`cluster.key`, `pool/seeds`: a restored member joins
//! with `drover pool join`), the NFS server's files (`nfs/`: handle key, the nodes' writable
//! layers, unpacked image roots, which are remade from the blobs), `tftp/` and the first
//! start's `initial-admin-password` (the users are in the store).

use crate::image::{Blobs, ImageError};
use crate::store::{Store, StoreError, SCHEMA_VERSION};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The backup format this drover writes and the newest it reads.
pub const FORMAT: u32 = 1;

/// The name of the manifest, the backup's first member.
const MANIFEST: &str = "drover-backup.json";
/// The store copy's name in the backup and below the state directory.
const STORE_FILE: &str = "store/data.mdb";
/// A manifest is a few hundred bytes; more is not a manifest.
const MAX_MANIFEST: u64 = 64 << 10;

/// What a backup says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// The drover that wrote it (`CARGO_PKG_VERSION`).
    pub drover_version: String,
    /// The store schema of the copied store ([`SCHEMA_VERSION`] of the writing drover: it
    /// migrates a store when it opens it).
    pub schema: u32,
    /// The member id of the backed-up store, as `pool status` prints it (16 hex digits).
    pub member: String,
    /// Unix seconds.
    pub created: u64,
    /// Whether the image blobs were left out.
    pub store_only: bool,
    /// How many blobs the backup holds.
    pub blobs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}: no store here (nothing to back up); is --state-dir right?")]
    NoStore(PathBuf),
    #[error("{0} exists; give a new file name")]
    OutputExists(PathBuf),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: not a drover backup: {reason}")]
    NotABackup { path: PathBuf, reason: String },
    #[error(
        "{path}: backup format {found} is newer than this drover reads ({FORMAT}); restore with \
         drover {by} or newer"
    )]
    FormatTooNew {
        path: PathBuf,
        found: u32,
        by: String,
    },
    #[error(
        "{path}: the store's schema {found} is newer than this drover understands \
         ({SCHEMA_VERSION}); restore with drover {by} or newer"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: u32,
        by: String,
    },
    #[error(
        "{0} is not empty: restore into a new or empty state directory, or pass --force to \
         replace its store (no server may run on it)"
    )]
    NotEmpty(PathBuf),
    #[error("blob {name} in the backup does not match its content (BLAKE3 {actual})")]
    BlobMismatch { name: String, actual: String },
    #[error("image blob")]
    Image(#[from] ImageError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens the store of `state` for [`backup`]; unlike [`Store::open`] it does not make a new
/// empty store where there is none.
pub fn open_store(state: &Path) -> Result<Store, BackupError> {
    if !state.join(STORE_FILE).is_file() {
        return Err(BackupError::NoStore(state.to_path_buf()));
    }
    Ok(Store::open(state)?)
}

/// Writes a backup of `store`, the store of `state`, to `file` (which must not exist).
/// `created`: unix seconds for the manifest.
pub fn backup(
    store: &Store,
    state: &Path,
    file: &Path,
    store_only: bool,
    created: u64,
) -> Result<Manifest, BackupError> {
    if file.exists() {
        return Err(BackupError::OutputExists(file.to_path_buf()));
    }
    // Next to the output: the same file system (the rename is atomic) and no /tmp, which a
    // systemd unit may make private or small.
    let partial = sibling(file, "partial");
    let snapshot = sibling(file, "store");
    let result = write_backup(store, state, &partial, &snapshot, store_only, created);
    let _ = fs::remove_file(&snapshot);
    match result {
        Ok(manifest) => {
            crate::durable::rename(&partial, file).map_err(io_err(file))?;
            Ok(manifest)
        }
        Err(e) => {
            let _ = fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// `FILE.<tag>.tmp` beside `file`.
fn sibling(file: &Path, tag: &str) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{tag}.tmp"));
    file.with_file_name(name)
}

fn write_backup(
    store: &Store,
    state: &Path,
    out: &Path,
    snapshot: &Path,
    store_only: bool,
    created: u64,
) -> Result<Manifest, BackupError> {
    let _ = fs::remove_file(snapshot);
    store.copy_compacted(snapshot)?;
    let blobs = if store_only {
        Vec::new()
    } else {
        blob_names(&Blobs::new(state))?
    };
    let manifest = Manifest {
        format: FORMAT,
        drover_version: env!("CARGO_PKG_VERSION").to_string(),
        schema: SCHEMA_VERSION,
        member: format!("{:016x}", store.member()),
        created,
        store_only,
        blobs: blobs.len() as u64,
    };
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(io_err(out))?;
    let mut tar = tar::Builder::new(BufWriter::new(file));
    // Serialising a struct of strings and integers to JSON cannot fail.
    let json = serde_json::to_vec_pretty(&manifest).expect("the manifest serialises");
    append(
        &mut tar,
        MANIFEST,
        json.len() as u64,
        created,
        &json[..],
        out,
    )?;
    let mut add_file = |name: &str, path: &Path| {
        let f = File::open(path).map_err(io_err(path))?;
        let len = f.metadata().map_err(io_err(path))?.len();
        append(&mut tar, name, len, created, BufReader::new(f), out)
    };
    add_file(STORE_FILE, snapshot)?;
    let blob_store = Blobs::new(state);
    for id in &blobs {
        // The blob's bytes, whichever form it is stored in: a backup holds whole blobs, and
        // restore chunks them again.
        let reader = blob_store.open(id)?;
        let len = reader.len();
        let name = format!("blobs/{id}");
        append(&mut tar, &name, len, created, BufReader::new(reader), out)?;
    }
    let file = tar
        .into_inner()
        .map_err(io_err(out))?
        .into_inner()
        .map_err(|e| e.into_error())
        .map_err(io_err(out))?;
    file.sync_all().map_err(io_err(out))?;
    Ok(manifest)
}

fn append(
    tar: &mut tar::Builder<BufWriter<File>>,
    name: &str,
    len: u64,
    mtime: u64,
    data: impl Read,
    out: &Path,
) -> Result<(), BackupError> {
    let mut header = tar::Header::new_gnu();
    header.set_size(len);
    header.set_mode(0o600);
    header.set_mtime(mtime);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, data)
        .map_err(io_err(out))
}

/// The blobs' ids (hashes), sorted; in-progress imports (`.incoming-*`) left out.
fn blob_names(blobs: &Blobs) -> Result<Vec<String>, BackupError> {
    blobs.list().map_err(io_err(blobs.dir()))
}

fn is_blob_name(name: &str) -> bool {
    Blobs::valid_id(name)
}

/// Which member id a restored store writes under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberId {
    /// A new random id: the restored store is a new pool member, whatever happens to the
    /// backed-up one. The default.
    Renew,
    /// The backup's id: disaster recovery of the same member, whose old copy never runs
    /// again (two live members with one id would issue colliding versions).
    Keep,
}

/// What [`restore`] did.
#[derive(Debug)]
pub struct Restored {
    pub manifest: Manifest,
    /// The member id the restored store writes under.
    pub member: u64,
    pub blobs: u64,
}

/// Restores the backup `file` into `state`, which must be missing or empty unless `force`
/// (then its store is replaced and the blobs are added to those there; other files stay).
pub fn restore(
    file: &Path,
    state: &Path,
    force: bool,
    member: MemberId,
) -> Result<Restored, BackupError> {
    let f = File::open(file).map_err(io_err(file))?;
    let mut archive = tar::Archive::new(BufReader::new(f));
    let mut entries = archive.entries().map_err(io_err(file))?;
    let not_a_backup = |reason: String| BackupError::NotABackup {
        path: file.to_path_buf(),
        reason,
    };
    let manifest = match entries.next() {
        Some(entry) => read_manifest(entry.map_err(io_err(file))?, file)?,
        None => return Err(not_a_backup("an empty tar".into())),
    };
    if !force && !is_empty_dir(state).map_err(io_err(state))? {
        return Err(BackupError::NotEmpty(state.to_path_buf()));
    }
    fs::create_dir_all(state).map_err(io_err(state))?;
    let blobs = Blobs::new(state);
    let (mut have_store, mut blob_count) = (false, 0u64);
    for entry in entries {
        let mut entry = entry.map_err(io_err(file))?;
        let name = entry
            .path()
            .map_err(io_err(file))?
            .to_string_lossy()
            .into_owned();
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(not_a_backup(format!("{name} is not a regular file")));
        }
        if name == STORE_FILE {
            restore_store(&mut entry, state)?;
            have_store = true;
        } else if let Some(id) = name.strip_prefix("blobs/").filter(|n| is_blob_name(n)) {
            let got = blobs.import_with(|w| io::copy(&mut entry, w).map(|_| ()))?;
            if got.blob != id {
                // The bytes stay, correctly named by their own hash: an unreferenced blob.
                // Removing them could remove a same-content blob that was here before.
                return Err(BackupError::BlobMismatch {
                    name: id.to_string(),
                    actual: got.blob,
                });
            }
            blob_count += 1;
        } else {
            return Err(not_a_backup(format!("unexpected member {name:?}")));
        }
    }
    if !have_store {
        return Err(not_a_backup(format!("no {STORE_FILE}")));
    }
    if blob_count != manifest.blobs {
        return Err(not_a_backup(format!(
            "{blob_count} blobs, the manifest says {}",
            manifest.blobs
        )));
    }
    // Opening migrates a store of an older schema, as any start would.
    let mut store = Store::open(state)?;
    let id = match member {
        MemberId::Keep => store.member(),
        MemberId::Renew => store.renew_member()?,
    };
    Ok(Restored {
        manifest,
        member: id,
        blobs: blob_count,
    })
}

fn read_manifest(entry: tar::Entry<'_, impl Read>, file: &Path) -> Result<Manifest, BackupError> {
    let not_a_backup = |reason: String| BackupError::NotABackup {
        path: file.to_path_buf(),
        reason,
    };
    let name = entry
        .path()
        .map_err(io_err(file))?
        .to_string_lossy()
        .into_owned();
    if name != MANIFEST {
        return Err(not_a_backup(format!(
            "starts with {name:?}, not {MANIFEST}"
        )));
    }
    let mut json = Vec::new();
    entry
        .take(MAX_MANIFEST)
        .read_to_end(&mut json)
        .map_err(io_err(file))?;
    let manifest: Manifest =
        serde_json::from_slice(&json).map_err(|e| not_a_backup(format!("{MANIFEST}: {e}")))?;
    if manifest.format > FORMAT {
        return Err(BackupError::FormatTooNew {
            path: file.to_path_buf(),
            found: manifest.format,
            by: manifest.drover_version,
        });
    }
    if manifest.schema > SCHEMA_VERSION {
        return Err(BackupError::SchemaTooNew {
            path: file.to_path_buf(),
            found: manifest.schema,
            by: manifest.drover_version,
        });
    }
    Ok(manifest)
}

/// Writes the store copy as `<state>/store/data.mdb`: under a temporary name, fsynced, then
/// renamed over any old one (whose lock file goes too: LMDB makes a new one).
fn restore_store(data: &mut impl Read, state: &Path) -> Result<(), BackupError> {
    let dir = state.join("store");
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let tmp = dir.join("data.mdb.restoring");
    let mut out = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    io::copy(data, &mut out).map_err(io_err(&tmp))?;
    out.flush().map_err(io_err(&tmp))?;
    out.sync_all().map_err(io_err(&tmp))?;
    let dest = state.join(STORE_FILE);
    crate::durable::rename(&tmp, &dest).map_err(io_err(&dest))?;
    let lock = dir.join("lock.mdb");
    match fs::remove_file(&lock) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err(&lock)(e)),
        _ => Ok(()),
    }
}

fn is_empty_dir(dir: &Path) -> io::Result<bool> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::Group;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("drover-backup-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A tar with the given (name, bytes) members.
    fn tar_of(path: &Path, members: &[(&str, &[u8])]) {
        let mut tar = tar::Builder::new(BufWriter::new(File::create(path).unwrap()));
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            tar.append_data(&mut h, name, *data).unwrap();
        }
        tar.into_inner().unwrap().flush().unwrap();
    }

    fn manifest(schema: u32, blobs: u64) -> Vec<u8> {
        serde_json::to_vec(&Manifest {
            format: FORMAT,
            drover_version: "9.9.9".into(),
            schema,
            member: "0000000000000001".into(),
            created: 1,
            store_only: blobs == 0,
            blobs,
        })
        .unwrap()
    }

    #[test]
    fn backup_and_restore_round_trip_with_a_new_member_id() {
        let dir = temp("rt");
        let (src, dst, file) = (dir.join("src"), dir.join("dst"), dir.join("b.tar"));
        let store = Store::open(&src).unwrap();
        let group = Group {
            name: "rack1".into(),
            image: None,
            image_version: None,
            swarm: None,
        };
        store.write::<_, StoreError>(|w| w.put(&group)).unwrap();
        let blob = Blobs::new(&src)
            .import_with(|w| w.write_all(b"kernel"))
            .unwrap();
        fs::write(src.join("blobs/.incoming-1-2"), b"half").unwrap();
        // A whole-file blob, as stores made before chunking hold them.
        let legacy = blake3::hash(b"old kernel").to_hex().to_string();
        fs::write(src.join("blobs").join(&legacy), b"old kernel").unwrap();
        assert!(matches!(open_store(&dst), Err(BackupError::NoStore(_))));
        let m = backup(&store, &src, &file, false, 1_700_000_000).unwrap();
        assert_eq!(
            (m.blobs, m.schema, m.store_only),
            (2, SCHEMA_VERSION, false)
        );
        assert_eq!(m.member, format!("{:016x}", store.member()));
        assert!(matches!(
            backup(&store, &src, &file, false, 1),
            Err(BackupError::OutputExists(_))
        ));
        let mode = fs::metadata(&file).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );

        let r = restore(&file, &dst, false, MemberId::Renew).unwrap();
        assert_eq!(r.blobs, 2);
        assert_ne!(r.member, store.member(), "a restored member gets a new id");
        let read = |id: &str| {
            let mut out = Vec::new();
            Blobs::new(&dst)
                .open(id)
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            out
        };
        assert_eq!(read(&blob.blob), b"kernel");
        assert_eq!(read(&legacy), b"old kernel");
        assert!(!dst.join("blobs/.incoming-1-2").exists());
        assert!(matches!(
            restore(&file, &dst, false, MemberId::Keep),
            Err(BackupError::NotEmpty(_))
        ));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn restore_refuses_what_is_not_a_backup_of_ours() {
        let dir = temp("bad");
        let file = dir.join("b.tar");
        let state = dir.join("state");
        let refused = |members: &[(&str, &[u8])]| {
            tar_of(&file, members);
            let err = restore(&file, &state, true, MemberId::Renew).unwrap_err();
            let _ = fs::remove_dir_all(&state);
            err
        };
        let ok = manifest(SCHEMA_VERSION, 0);
        assert!(matches!(
            refused(&[("store/data.mdb", b"x")]),
            BackupError::NotABackup { .. }
        ));
        assert!(matches!(
            refused(&[(MANIFEST, &manifest(SCHEMA_VERSION + 1, 0))]),
            BackupError::SchemaTooNew { found, .. } if found == SCHEMA_VERSION + 1
        ));
        let err = refused(&[(MANIFEST, &ok), ("etc/passwd", b"x")]);
        assert!(err.to_string().contains("unexpected member"), "{err}");
        let err = refused(&[(MANIFEST, &ok)]);
        assert!(err.to_string().contains("no store/data.mdb"), "{err}");
        let wrong = format!("blobs/{}", "0".repeat(64));
        let err = refused(&[(MANIFEST, &manifest(SCHEMA_VERSION, 1)), (&wrong, b"x")]);
        assert!(matches!(err, BackupError::BlobMismatch { .. }), "{err}");
        let _ = fs::remove_dir_all(&dir);
    }
}
