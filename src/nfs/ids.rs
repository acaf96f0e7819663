//! Object ids for root views that every pool member computes alike, and the handles built on
//! them, so that a client's handles and fileids for its `/root` stay valid when its server
//! address moves to another member (issue 7).
//!
//! Kernel handles and inode numbers cannot do that: each member unpacks its own copy of an
//! image and keeps its own copy of a node's layer, with other inodes. So a root-view object
//! is named by a 64-bit id (never 0 or 1: 1 is the pseudo-root's fileid) that is also its
//! `fileid` attribute:
//!
//! - **Image objects** ([`ImageIds`]): the root's id is a hash of the rootfs blob id, every
//!   other object's a hash of its parent's id and its name, so the id follows from the blob
//!   and the path alone. Hard links get one id for all their names: that of the name met
//!   first in a depth-first walk that takes each directory's entries in byte order. The
//!   index (id -> kernel handle and parent, inode -> id) is built by walking the unpacked
//!   tree once per blob and kept in memory: the tree is immutable (only empty directories
//!   for missing persistent paths are added, which rebuilds it). Resolving an id is
//!   `open_by_handle_at` of a handle found by that walk, which follows no name at all.
//! - **Layer objects** ([`LayerIds`]): each regular file and directory keeps its id in the
//!   extended attribute `user.drover.id`, whose value is the id as 16 lowercase hex digits
//!   (no newline). Objects seeded from the image carry the image object's id (so a seeded
//!   path keeps its identity; not for files the image hard-links elsewhere), objects created
//!   over NFS a random one, and objects found without the attribute (made on the host) one
//!   derived from their parent's id and name, written at once. A rename moves the inode and
//!   with it the attribute, so the id (and the client's handle) survives; hard links share
//!   it. A copy of an object that carries the same id as a live one (`cp -a` on the host)
//!   gets its own. Linux allows `user.*` attributes on regular files and directories only,
//!   so symlinks, device nodes, FIFOs and sockets have an id derived from their parent's id
//!   and name, which a rename of the object itself changes (their old handle goes stale; a
//!   client looks them up again). Replication to the peers copies every `user.drover.*`
//!   attribute with each object, so a peer's copy answers with the same ids.
//!
//!   The index (id -> parent id and name for each link, (parent, name) -> id) is built by
//!   walking the layer when a root view is made, kept up to date by create, link, rename
//!   and remove, and rebuilt by a walk (at most once a second) when an id is not where it
//!   says: the layer may change behind our back (replication, the host). Resolving an id
//!   opens the path the index gives with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//!   RESOLVE_NO_XDEV)` and checks the object found still has that id, so a symlink or a
//!   mount swapped into the layer is never followed and a different object never answers.
//!
//! - **Handles** ([`RootHandle`]): tag (`I` image, `L` layer), the node's 8-byte id, for
//!   image objects 8 bytes of the blob's hash (a new image makes old image handles stale),
//!   the object id, and a 16-byte keyed BLAKE3 MAC over all of it. The key is derived from
//!   the cluster key when the member is in a pool ([`RootKeys`]), so every member verifies
//!   every other's handles. A handle whose MAC fails is `BadHandle`; one for another node or
//!   an older image is `Stale` (the view decides).
//!
//! Not here: which caller may use which view (`view`), file work (`fs::Tree`), copying the
//! layer to the peers (replication). Export handles stay kernel handles: exports do not
//! fail over to another member. The other attributes are the member's own: `change` comes
//! from the inode's ctime, so after a move the client sees every object as changed once and
//! drops its caches of them (no error; data is read again from the new member).

use super::fs::{self, HandleKey, KernelHandle, Obj, Tree, MAC_LEN};
use super::vfs::{Attr, FileType, Handle, VfsError, VfsResult};
use std::collections::HashMap;
use std::ffi::CStr;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// An object's member-independent id (also its fileid).
pub(crate) type ObjId = u64;

/// The extended attribute that keeps a layer object's id.
pub(crate) const ID_XATTR: &CStr = c"user.drover.id";
/// Ids below this are never given out: 0 is no id, 1 the pseudo-root's fileid.
const FIRST_ID: ObjId = 2;
/// The least time between two walks of one layer caused by ids not found, and between two
/// looks for a cluster key.
pub(crate) const REWALK_EVERY: Duration = Duration::from_secs(1);
/// The most components a layer path built from the index may have (a cycle stops here).
const MAX_DEPTH: usize = 2048;

/// First byte of a handle of an image object.
pub(crate) const TAG_IMAGE: u8 = b'I';
/// First byte of a handle of a layer object.
pub(crate) const TAG_LAYER: u8 = b'L';
const MAC_SCOPE: &[u8] = b"drover nfs root view";

const IMAGE_ROOT: &str = "drover nfs 2026-11 image root id";
const IMAGE_CHILD: &str = "drover nfs 2026-11 image object id";
const LAYER_ROOT: &str = "drover nfs 2026-11 layer root id";
const LAYER_CHILD: &str = "drover nfs 2026-11 layer object id";
const LAYER_LINK: &str = "drover nfs 2026-11 layer link id";

/// An object of a root view: its id and this member's kernel handle for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Loc {
    pub id: ObjId,
    pub kh: KernelHandle,
}

/// The `n`th candidate id of `name` under `parent` in `domain`.
fn hash_id(domain: &str, parent: ObjId, name: &[u8], n: u32) -> ObjId {
    let mut h = blake3::Hasher::new_derive_key(domain);
    h.update(&parent.to_le_bytes());
    h.update(&n.to_le_bytes());
    h.update(name);
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(b).max(FIRST_ID)
}

fn random_id() -> ObjId {
    use rand_core::RngCore;
    rand_core::OsRng.next_u64().max(FIRST_ID)
}

/// The attribute value for `id`.
pub(crate) fn encode(id: ObjId) -> String {
    format!("{id:016x}")
}

/// The id in an attribute value, if it is one.
pub(crate) fn decode(v: &[u8]) -> Option<ObjId> {
    if v.len() != 16 || !v.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let id = u64::from_str_radix(std::str::from_utf8(v).ok()?, 16).ok()?;
    (id >= FIRST_ID).then_some(id)
}

fn root_cred() -> fs::Cred {
    fs::Cred {
        uid: 0,
        gid: 0,
        gids: Vec::new(),
        read_only: false,
    }
}

/// Whether objects of this kind can keep their id in an attribute.
fn keeps_xattr(kind: FileType) -> bool {
    matches!(kind, FileType::Regular | FileType::Directory)
}

/// The entries of directory `dir`, sorted by name: name, kernel handle, attributes (with the
/// inode number as fileid).
fn entries(tree: &Tree, dir: &KernelHandle) -> VfsResult<Vec<(Vec<u8>, KernelHandle, Attr)>> {
    let (raw, _) = tree.readdir(&root_cred(), dir, 0, usize::MAX)?;
    let mut out: Vec<_> = raw.into_iter().map(|(n, _, k, a)| (n, k, a)).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

struct ImageObj {
    kh: KernelHandle,
    parent: ObjId,
}

/// The ids of one unpacked image tree (see the module docs).
pub(crate) struct ImageIds {
    root: ObjId,
    root_kh: KernelHandle,
    objs: HashMap<ObjId, ImageObj>,
    by_ino: HashMap<u64, ObjId>,
}

impl ImageIds {
    /// Walks `tree`, the unpacked rootfs blob `blob`.
    pub fn build(tree: &Tree, blob: &str) -> VfsResult<ImageIds> {
        let root_kh = tree.root_handle()?;
        let root_ino = tree.getattr(&root_kh)?.fileid;
        let root = hash_id(IMAGE_ROOT, 0, blob.as_bytes(), 0);
        let mut ids = ImageIds {
            root,
            root_kh: root_kh.clone(),
            objs: HashMap::new(),
            by_ino: HashMap::new(),
        };
        ids.objs.insert(
            root,
            ImageObj {
                kh: root_kh.clone(),
                parent: root,
            },
        );
        ids.by_ino.insert(root_ino, root);
        // Depth-first, each directory's entries in byte order: the stack holds what is
        // still to visit, next on top.
        let mut todo: Vec<(ObjId, Vec<u8>, KernelHandle, Attr)> = Vec::new();
        let push = |todo: &mut Vec<_>, dir: ObjId, kh: &KernelHandle| -> VfsResult<()> {
            for (name, k, a) in entries(tree, kh)?.into_iter().rev() {
                todo.push((dir, name, k, a));
            }
            Ok(())
        };
        push(&mut todo, root, &root_kh)?;
        while let Some((parent, name, kh, a)) = todo.pop() {
            let is_dir = a.kind == FileType::Directory;
            if !is_dir && ids.by_ino.contains_key(&a.fileid) {
                // A further name of a hard link: the first name's id.
                continue;
            }
            let mut n = 0;
            let mut id = hash_id(IMAGE_CHILD, parent, &name, n);
            while ids.objs.contains_key(&id) {
                n += 1;
                id = hash_id(IMAGE_CHILD, parent, &name, n);
            }
            ids.by_ino.insert(a.fileid, id);
            ids.objs.insert(
                id,
                ImageObj {
                    kh: kh.clone(),
                    parent,
                },
            );
            if is_dir {
                push(&mut todo, id, &kh)?;
            }
        }
        Ok(ids)
    }

    pub fn root(&self) -> Loc {
        Loc {
            id: self.root,
            kh: self.root_kh.clone(),
        }
    }

    /// The object with id `id`, if the image has it.
    pub fn loc(&self, id: ObjId) -> Option<Loc> {
        self.objs.get(&id).map(|o| Loc {
            id,
            kh: o.kh.clone(),
        })
    }

    /// The id of the directory holding directory `id` (`None` for the root).
    pub fn parent(&self, id: ObjId) -> Option<ObjId> {
        (id != self.root)
            .then(|| self.objs.get(&id).map(|o| o.parent))
            .flatten()
    }

    /// The id of the object with attributes `a` as the tree reports them (inode as fileid).
    pub fn id_of(&self, a: &Attr) -> Option<ObjId> {
        self.by_ino.get(&a.fileid).copied()
    }

    /// The object at `parts` below the root.
    pub fn at(&self, tree: &Tree, parts: &[String]) -> VfsResult<Loc> {
        let mut at = self.root();
        for p in parts {
            let (kh, a) = tree.lookup(&root_cred(), &at.kh, p.as_bytes())?;
            at = Loc {
                id: self.id_of(&a).ok_or(VfsError::Stale)?,
                kh,
            };
        }
        Ok(at)
    }

    /// Writes the image's id of `src` (a path in the unpacked image) into `copy`, its fresh
    /// copy in a layer, and with `deep` into the copies of everything below it. A file that
    /// the image hard-links elsewhere gets none (the image's other names keep that id).
    pub fn stamp(&self, src: &Path, copy: &Path, deep: bool) -> io::Result<()> {
        let m = std::fs::symlink_metadata(src)?;
        let ft = m.file_type();
        if !(ft.is_file() || ft.is_dir()) || (ft.is_file() && m.nlink() > 1) {
            return Ok(());
        }
        if let Some(&id) = self.by_ino.get(&m.ino()) {
            let o = Obj::open_nofollow(copy)?;
            if o.kind() == fs_kind(&m) {
                match o.set_xattr(ID_XATTR, encode(id).as_bytes()) {
                    Ok(()) => {}
                    // No user attributes here: the layer's ids will be derived.
                    Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        }
        if deep && ft.is_dir() {
            for e in std::fs::read_dir(src)? {
                let e = e?;
                self.stamp(&e.path(), &copy.join(e.file_name()), true)?;
            }
        }
        Ok(())
    }
}

fn fs_kind(m: &std::fs::Metadata) -> FileType {
    if m.is_dir() {
        FileType::Directory
    } else {
        FileType::Regular
    }
}

struct LayerObj {
    ino: u64,
    /// (parent id, name) of each link.
    places: Vec<(ObjId, Vec<u8>)>,
}

/// How an object without a stored id gets one.
#[derive(Clone, Copy)]
enum Fresh {
    /// Made on the host: derived from its parent and name (what a peer derives too).
    Derived,
    /// Just made over NFS: random, so that an id never names two objects in turn.
    Random,
}

struct LayerIndex {
    root: ObjId,
    objs: HashMap<ObjId, LayerObj>,
    names: HashMap<(ObjId, Vec<u8>), ObjId>,
    walked: Option<Instant>,
    warned: bool,
}

/// The ids of one node's layer (see the module docs).
pub(crate) struct LayerIds {
    idx: Mutex<LayerIndex>,
}

impl LayerIndex {
    fn new(root_ino: u64) -> LayerIndex {
        let root = hash_id(LAYER_ROOT, 0, b"", 0);
        let mut objs = HashMap::new();
        objs.insert(
            root,
            LayerObj {
                ino: root_ino,
                places: Vec::new(),
            },
        );
        LayerIndex {
            root,
            objs,
            names: HashMap::new(),
            walked: None,
            warned: false,
        }
    }

    /// Records that `parent/name` is object `id` (inode `ino`).
    fn place(&mut self, id: ObjId, ino: u64, parent: ObjId, name: &[u8]) {
        self.forget(parent, name);
        self.names.insert((parent, name.to_vec()), id);
        let o = self.objs.entry(id).or_insert(LayerObj {
            ino,
            places: Vec::new(),
        });
        o.ino = ino;
        o.places.push((parent, name.to_vec()));
    }

    /// Records that `parent/name` is gone.
    fn forget(&mut self, parent: ObjId, name: &[u8]) {
        let Some(id) = self.names.remove(&(parent, name.to_vec())) else {
            return;
        };
        if let Some(o) = self.objs.get_mut(&id) {
            o.places.retain(|(p, n)| !(*p == parent && n == name));
            if o.places.is_empty() && id != self.root {
                self.objs.remove(&id);
            }
        }
    }

    /// The path below the root of directory `id`, from the index.
    fn dir_path(&self, mut id: ObjId) -> Option<Vec<u8>> {
        let mut parts: Vec<&[u8]> = Vec::new();
        while id != self.root {
            let (parent, name) = self.objs.get(&id)?.places.first()?;
            parts.push(name);
            if parts.len() > MAX_DEPTH {
                return None;
            }
            id = *parent;
        }
        parts.reverse();
        Some(parts.join(&b'/'))
    }

    /// Each link of `id` as (parent, name, path), from the index.
    fn paths(&self, id: ObjId) -> Vec<(ObjId, Vec<u8>, Vec<u8>)> {
        if id == self.root {
            return vec![(id, Vec::new(), Vec::new())];
        }
        let Some(o) = self.objs.get(&id) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (parent, name) in &o.places {
            if let Some(mut p) = self.dir_path(*parent) {
                if !p.is_empty() {
                    p.push(b'/');
                }
                p.extend_from_slice(name);
                out.push((*parent, name.clone(), p));
            }
        }
        out
    }

    /// Whether the index entry of `id` still names a live object with its inode.
    fn alive(&self, tree: &Tree, id: ObjId) -> bool {
        let Some(ino) = self.objs.get(&id).map(|o| o.ino) else {
            return false;
        };
        self.paths(id)
            .iter()
            .any(|(_, _, p)| tree.open_beneath(p).is_ok_and(|(_, o)| o.st.st_ino == ino))
    }

    /// The id of `obj`, found at `parent/name`: its stored id, or a new one (stored at once)
    /// when it has none or shares a live object's. `hint`: the id the index had for it.
    fn identify(
        &mut self,
        tree: &Tree,
        parent: ObjId,
        name: &[u8],
        obj: &Obj,
        fresh: Fresh,
        hint: Option<ObjId>,
    ) -> ObjId {
        if !keeps_xattr(obj.kind()) {
            return hash_id(LAYER_LINK, parent, name, 0);
        }
        let stored = obj.xattr(ID_XATTR);
        if let Ok(Some(id)) = stored.as_ref().map(|v| v.as_deref().and_then(decode)) {
            match self.objs.get(&id) {
                None => return id,
                Some(o) if o.ino == obj.st.st_ino => return id,
                Some(_) if !self.alive(tree, id) => {
                    let places = self.objs.get(&id).map(|o| o.places.clone());
                    for (p, n) in places.unwrap_or_default() {
                        self.forget(p, &n);
                    }
                    self.objs.remove(&id);
                    return id;
                }
                // A copy of a live object: it gets an id of its own below.
                Some(_) => {}
            }
        }
        // An attribute the file system cannot keep: the id lives in the index only.
        if let (Some(h), Ok(None) | Err(_)) = (hint, &stored) {
            if self.objs.get(&h).is_some_and(|o| o.ino == obj.st.st_ino) {
                return h;
            }
        }
        let mut id = match fresh {
            Fresh::Derived => hash_id(LAYER_CHILD, parent, name, 0),
            Fresh::Random => random_id(),
        };
        let mut n = 0;
        while self.objs.contains_key(&id) {
            n += 1;
            id = match fresh {
                Fresh::Derived => hash_id(LAYER_CHILD, parent, name, n),
                Fresh::Random => random_id(),
            };
        }
        if let Err(e) = obj.set_xattr(ID_XATTR, encode(id).as_bytes()) {
            if !self.warned {
                self.warned = true;
                tracing::warn!(
                    "nfs: cannot keep object ids in the layer ({e}): renamed files will get \
                     new handles, and other members may not know them"
                );
            }
        }
        id
    }

    /// Whether `obj`, found at `parent/name`, is object `id`.
    fn is(&self, id: ObjId, parent: ObjId, name: &[u8], obj: &Obj) -> bool {
        if id == self.root {
            return self.objs.get(&id).is_some_and(|o| o.ino == obj.st.st_ino);
        }
        if !keeps_xattr(obj.kind()) {
            return hash_id(LAYER_LINK, parent, name, 0) == id;
        }
        match obj.xattr(ID_XATTR) {
            Ok(Some(v)) => decode(&v) == Some(id),
            // Nothing stored (the file system keeps no attributes): the index's inode.
            _ => self.objs.get(&id).is_some_and(|o| o.ino == obj.st.st_ino),
        }
    }
}

impl LayerIds {
    /// Walks `tree`, a node's layer, giving ids to the objects that have none.
    pub fn build(tree: &Tree) -> VfsResult<LayerIds> {
        Ok(LayerIds {
            idx: Mutex::new(Self::walk(tree)?),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LayerIndex> {
        // Poisoning cannot be observed (panic = "abort"); take the data anyway.
        self.idx.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn walk(tree: &Tree) -> VfsResult<LayerIndex> {
        let root_kh = tree.root_handle()?;
        let mut idx = LayerIndex::new(tree.getattr(&root_kh)?.fileid);
        let mut todo: Vec<(ObjId, Vec<u8>, KernelHandle, Attr)> = Vec::new();
        let push = |todo: &mut Vec<_>, dir: ObjId, kh: &KernelHandle| -> VfsResult<()> {
            for (name, k, a) in entries(tree, kh)?.into_iter().rev() {
                todo.push((dir, name, k, a));
            }
            Ok(())
        };
        push(&mut todo, idx.root, &root_kh)?;
        while let Some((parent, name, kh, a)) = todo.pop() {
            // Gone since the listing: not indexed.
            let Ok(obj) = tree.obj(&kh) else {
                continue;
            };
            let id = idx.identify(tree, parent, &name, &obj, Fresh::Derived, None);
            idx.place(id, obj.st.st_ino, parent, &name);
            if a.kind == FileType::Directory {
                push(&mut todo, id, &kh)?;
            }
        }
        idx.walked = Some(Instant::now());
        Ok(idx)
    }

    /// Walks the layer again unless that was done a moment ago; whether it walked.
    fn rewalk(&self, tree: &Tree) -> VfsResult<bool> {
        let mut idx = self.lock();
        if idx.walked.is_some_and(|t| t.elapsed() < REWALK_EVERY) {
            return Ok(false);
        }
        *idx = Self::walk(tree)?;
        Ok(true)
    }

    /// This member's kernel handle of object `id`, or `Stale` if the layer has no such
    /// object (any more).
    pub fn resolve(&self, tree: &Tree, id: ObjId) -> VfsResult<KernelHandle> {
        for first in [true, false] {
            let paths = self.lock().paths(id);
            for (parent, name, path) in paths {
                if let Ok((kh, obj)) = tree.open_beneath(&path) {
                    if self.lock().is(id, parent, &name, &obj) {
                        return Ok(kh);
                    }
                }
            }
            if !first || !self.rewalk(tree)? {
                break;
            }
        }
        Err(VfsError::Stale)
    }

    /// The id of `dir/name`, just looked up or listed as `kh` with attributes `a` (inode
    /// as fileid).
    pub fn child(
        &self,
        tree: &Tree,
        dir: ObjId,
        name: &[u8],
        kh: &KernelHandle,
        a: &Attr,
    ) -> VfsResult<ObjId> {
        let mut idx = self.lock();
        if let Some(&id) = idx.names.get(&(dir, name.to_vec())) {
            if idx.objs.get(&id).is_some_and(|o| o.ino == a.fileid) {
                return Ok(id);
            }
        }
        let obj = tree.obj(kh)?;
        let id = idx.identify(tree, dir, name, &obj, Fresh::Derived, None);
        idx.place(id, obj.st.st_ino, dir, name);
        Ok(id)
    }

    /// The object at `parts` below the layer's root.
    pub fn at(&self, tree: &Tree, parts: &[String]) -> VfsResult<Loc> {
        let mut at = Loc {
            id: self.lock().root,
            kh: tree.root_handle()?,
        };
        for p in parts {
            let (kh, a) = tree.lookup(&root_cred(), &at.kh, p.as_bytes())?;
            at = Loc {
                id: self.child(tree, at.id, p.as_bytes(), &kh, &a)?,
                kh,
            };
        }
        Ok(at)
    }

    /// Learns `dir/name` after it was made (create, link): an object without an id gets a
    /// random one.
    pub fn made(&self, tree: &Tree, dir: &Loc, name: &[u8]) -> VfsResult<Loc> {
        self.learn(tree, dir, name, None)
    }

    fn learn(&self, tree: &Tree, dir: &Loc, name: &[u8], hint: Option<ObjId>) -> VfsResult<Loc> {
        let (kh, _) = tree.lookup(&root_cred(), &dir.kh, name)?;
        let obj = tree.obj(&kh)?;
        let mut idx = self.lock();
        idx.forget(dir.id, name);
        let id = idx.identify(tree, dir.id, name, &obj, Fresh::Random, hint);
        idx.place(id, obj.st.st_ino, dir.id, name);
        Ok(Loc { id, kh })
    }

    /// Learns that `from_dir/from` was renamed to `to_dir/to`.
    pub fn renamed(
        &self,
        tree: &Tree,
        from_dir: ObjId,
        from: &[u8],
        to_dir: &Loc,
        to: &[u8],
    ) -> VfsResult<()> {
        let hint = {
            let mut idx = self.lock();
            let hint = idx.names.get(&(from_dir, from.to_vec())).copied();
            idx.forget(from_dir, from);
            hint
        };
        self.learn(tree, to_dir, to, hint).map(drop)
    }

    /// Learns that `dir/name` was removed.
    pub fn removed(&self, dir: ObjId, name: &[u8]) {
        self.lock().forget(dir, name);
    }

    /// The id of the directory holding directory `id`, from the index (`None` at the root).
    pub fn parent(&self, id: ObjId) -> Option<ObjId> {
        let idx = self.lock();
        if id == idx.root {
            return None;
        }
        idx.objs.get(&id)?.places.first().map(|(p, _)| *p)
    }
}

/// The keys that seal root-view handles: derived from the cluster key once this member has
/// one (every member alike), else this member's own key. A cluster key that appears while
/// running (`drover pool join`) is picked up within a second; handles sealed with the own
/// key before stay valid here (not on other members).
pub(crate) struct RootKeys {
    state_dir: PathBuf,
    own: HandleKey,
    /// The key derived from the cluster key, and when the state directory was last looked
    /// at for one.
    pool: Mutex<(Option<HandleKey>, Instant)>,
}

/// The context of the handle key's derivation from the cluster key.
const POOL_KEY_CONTEXT: &str = "drover 2026-11 nfs root-view handle key";

impl RootKeys {
    /// The keys of state directory `state_dir`; `own` seals handles outside a pool.
    pub fn new(state_dir: &Path, own: HandleKey) -> io::Result<RootKeys> {
        let pool = Self::load(state_dir).map_err(io::Error::other)?;
        Ok(RootKeys {
            state_dir: state_dir.to_path_buf(),
            own,
            pool: Mutex::new((pool, Instant::now())),
        })
    }

    fn load(state_dir: &Path) -> Result<Option<HandleKey>, crate::pool::key::KeyError> {
        let k = crate::pool::key::ClusterKey::load_state(state_dir)?;
        Ok(k.map(|k| HandleKey::from_secret(k.derive_key(POOL_KEY_CONTEXT))))
    }

    fn pool(&self) -> Option<HandleKey> {
        let mut p = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if p.0.is_none() && p.1.elapsed() >= REWALK_EVERY {
            p.1 = Instant::now();
            match Self::load(&self.state_dir) {
                Ok(k) => p.0 = k,
                Err(e) => tracing::warn!("nfs: handles stay this member's own: {e}"),
            }
        }
        p.0.clone()
    }

    pub fn seal(&self, rh: &RootHandle) -> Handle {
        rh.seal(self.pool().as_ref().unwrap_or(&self.own))
    }

    /// The handle's content if one of the keys sealed it; `BadHandle` otherwise.
    pub fn open(&self, h: &Handle) -> VfsResult<RootHandle> {
        match self.pool() {
            Some(k) => RootHandle::open(&k, h).or_else(|_| RootHandle::open(&self.own, h)),
            None => RootHandle::open(&self.own, h),
        }
    }
}

/// What a root-view handle names (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RootHandle {
    /// The node's id.
    pub node: [u8; 8],
    /// For an image object, the first bytes of the blob's hash; `None` for the layer.
    pub blob: Option<[u8; 8]>,
    pub id: ObjId,
}

impl RootHandle {
    fn body_len(image: bool) -> usize {
        1 + 8 + if image { 8 } else { 0 } + 8
    }

    pub fn seal(&self, key: &HandleKey) -> Handle {
        let mut b = Vec::with_capacity(Self::body_len(true) + MAC_LEN);
        b.push(if self.blob.is_some() {
            TAG_IMAGE
        } else {
            TAG_LAYER
        });
        b.extend_from_slice(&self.node);
        if let Some(blob) = &self.blob {
            b.extend_from_slice(blob);
        }
        b.extend_from_slice(&self.id.to_le_bytes());
        let mac = key.mac(MAC_SCOPE, &b);
        b.extend_from_slice(&mac);
        Handle(b)
    }

    /// The handle's content if `key` sealed it; `BadHandle` otherwise.
    pub fn open(key: &HandleKey, h: &Handle) -> VfsResult<RootHandle> {
        let b = &h.0;
        let image = match b.first() {
            Some(&TAG_IMAGE) => true,
            Some(&TAG_LAYER) => false,
            _ => return Err(VfsError::BadHandle),
        };
        if b.len() != Self::body_len(image) + MAC_LEN {
            return Err(VfsError::BadHandle);
        }
        let (body, mac) = b.split_at(b.len() - MAC_LEN);
        let want = key.mac(MAC_SCOPE, body);
        // Compare without an early exit.
        if want.iter().zip(mac).fold(0u8, |acc, (x, y)| acc | (x ^ y)) != 0 {
            return Err(VfsError::BadHandle);
        }
        let eight = |at: usize| -> [u8; 8] {
            let mut out = [0u8; 8];
            out.copy_from_slice(&body[at..at + 8]);
            out
        };
        Ok(RootHandle {
            node: eight(1),
            blob: image.then(|| eight(9)),
            id: u64::from_le_bytes(eight(if image { 17 } else { 9 })),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_clear_of_reserved() {
        assert_eq!(
            hash_id(IMAGE_CHILD, 7, b"etc", 0),
            hash_id(IMAGE_CHILD, 7, b"etc", 0)
        );
        assert_ne!(
            hash_id(IMAGE_CHILD, 7, b"etc", 0),
            hash_id(IMAGE_CHILD, 8, b"etc", 0)
        );
        assert_ne!(
            hash_id(IMAGE_CHILD, 7, b"etc", 0),
            hash_id(LAYER_CHILD, 7, b"etc", 0)
        );
        assert_ne!(
            hash_id(IMAGE_CHILD, 7, b"etc", 0),
            hash_id(IMAGE_CHILD, 7, b"etc", 1)
        );
        for _ in 0..100 {
            assert!(random_id() >= FIRST_ID);
        }
        assert_eq!(decode(encode(0x1234_abcd).as_bytes()), Some(0x1234_abcd));
        for bad in [
            &b"1"[..],
            b"000000000000000g",
            b"0000000000000001",
            b"00000000000000AB",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn handles_verify_and_refuse_alterations() {
        let key = HandleKey::from_secret([3; 32]);
        for blob in [Some([9; 8]), None] {
            let rh = RootHandle {
                node: [1; 8],
                blob,
                id: 77,
            };
            let h = rh.seal(&key);
            assert_eq!(RootHandle::open(&key, &h), Ok(rh.clone()));
            assert_eq!(
                RootHandle::open(&HandleKey::from_secret([4; 32]), &h),
                Err(VfsError::BadHandle)
            );
            for i in 0..h.0.len() {
                let mut bad = h.clone();
                bad.0[i] ^= 0x20;
                assert_eq!(
                    RootHandle::open(&key, &bad),
                    Err(VfsError::BadHandle),
                    "{i}"
                );
            }
            let mut short = h.clone();
            short.0.pop();
            assert_eq!(RootHandle::open(&key, &short), Err(VfsError::BadHandle));
        }
    }
}
