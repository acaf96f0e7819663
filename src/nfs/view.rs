//! What each client sees: [`Views`] implements [`Vfs`] over the store and the state
//! directory, composing `Tree`s into one pseudo-root per caller address.
//!
//! **Pseudo-root.** A caller sees `/root` if its address belongs to a node with an image that
//! has a root filesystem (the node's reserved `ip`, or a current DHCP lease of its MAC), and
//! `/NAME` for each shared export whose `clients` contain its address. Nothing else: an
//! unknown address sees an empty pseudo-root, or only the exports open to it.
//!
//! **Root views.** A node's `/root` is its image's root filesystem, read-only, with the
//! image's `persistent` paths taken from the node's own writable layer: one plain tree and
//! one fsid for the client. Image trees are unpacked once per rootfs blob under
//! `<state>/nfs/images/<blob>/` (into a temporary directory, then renamed; modes, owners,
//! symlinks, device nodes and hard links kept; entries that would land outside refused, see
//! `image::unpack`). A persistent path missing from the image is added to the unpacked tree
//! as an empty directory so that it has a place. Layers live in `<state>/nfs/nodes/<node>/`,
//! seeded on first use with the image's content at each persistent path (copied into a
//! temporary name, then renamed), and survive restarts. The merge is by name, not a union:
//! looking up a persistent path's last component in its (image) parent directory answers
//! the layer's object, READDIR shows the layer's attributes there, and LOOKUPP from it goes
//! back into the image. Everything else is the image and answers `ReadOnly` to writes (the
//! agent mounts tmpfs over scratch paths); rename and link between image and layer are
//! `XDev`.
//!
//! **Handles.** Root-view handles and fileids are object ids that every pool member computes
//! alike (`nfs::ids`), sealed with a key derived from the cluster key (the local
//! `<state>/nfs/handle.key` outside a pool), so a node's client keeps them when its server
//! address moves to another member. Handles issued before this member joined a pool stay
//! valid on it (until it restarts), not on the others. Export handles are kernel handles
//! sealed per scope (see `fs`) with the local key: they are valid on the member that issued
//! them only; exports do not fail over.
//!
//! **Confinement.** Every handle is checked on PUTFH (`Vfs::check`) and on every use. A
//! handle whose MAC does not verify (drover did not seal it, or a byte changed) is
//! `BadHandle`. A root-view handle names the node it was issued to and is honoured only for
//! a caller whose address maps to that node now (its reservation, or its current lease); an
//! export handle names the export and a hash of its path and is honoured only for addresses
//! in its `clients` or `ro_clients`. Anything else is `Stale`. Root is root in root views;
//! exports map identities as their record says (root squash by default, gid 0 included; no
//! squash; all squash; the anonymous ids) and are read-only for `ro_clients`.
//!
//! **Replication.** With a [`Replica`] (`with_replica`; `drover serve` in a pool), every
//! change of a layer object (WRITE, COMMIT, SETATTR, creates, LINK, REMOVE, RENAME) is
//! handed to it after it succeeded here and before the call returns; the replica blocks a
//! stable change until a peer has it (see `replica`). Image and export changes are not shipped.
//!
//! Not here: the protocol (RPC, COMPOUND, state) and admin input checks (`crate::admin`).

use super::fs::{self, HandleKey, KernelHandle, Squash, Tree};
use super::ids::{ImageIds, LayerIds, Loc, ObjId, RootHandle, RootKeys, TAG_IMAGE, TAG_LAYER};
use super::replica::{self, Capture, Replica};
use super::vfs::{
    Allocate, Attr, Caller, CopyRange, DirEntry, FileType, FsStat, Handle, NewObject, SetAttr,
    Stability, Time, Vfs, VfsError, VfsResult,
};
use crate::image::unpack;
use crate::image::Blobs;
use crate::store::model::{self, BlobId, Export, Image, LeaseState, Node, PersistentPath};
use crate::store::{SharedView, Store, View};
use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// The pseudo-root's name for a node's root view.
pub const ROOT_NAME: &str = "root";

const TAG_PSEUDO: u8 = b'P';
const TAG_EXPORT: u8 = b'E';
/// Tag byte plus the export's 8-byte id.
const PREFIX: usize = 9;
/// An export handle's prefix: [`PREFIX`] plus 8 bytes of the hash of the export's scope
/// (name and path), so that a handle outlives no change of the export's path.
const EXPORT_PREFIX: usize = PREFIX + 8;
/// What export handles' MACs are bound to: the same for every export, so that a handle this
/// member did not seal is told apart (BadHandle) from one of a changed export (Stale).
const EXPORT_MAC_SCOPE: &[u8] = b"drover export handle";

fn id8(s: &str) -> [u8; 8] {
    let h = blake3::hash(s.as_bytes());
    let mut out = [0u8; 8];
    out.copy_from_slice(&h.as_bytes()[..8]);
    out
}

/// A shared export and its tree.
struct ExportTree {
    export: Export,
    tree: Tree,
    id: [u8; 8],
    scope: Vec<u8>,
}

/// One node's root view: the image tree and the node's layer, merged by name.
struct RootView {
    id: [u8; 8],
    node: String,
    /// The layer's canonical path (what `replica` names objects relative to).
    layer_path: PathBuf,
    blob: BlobId,
    /// The blob's short hash, in image handles.
    blob8: [u8; 8],
    persistent: Vec<String>,
    image: Tree,
    layer: Tree,
    image_ids: Arc<ImageIds>,
    layer_ids: LayerIds,
    /// (image directory, name) -> the layer object that replaces it.
    overrides: HashMap<(ObjId, Vec<u8>), ObjId>,
    /// Layer object of a persistent path -> the image directory holding it.
    up: HashMap<ObjId, ObjId>,
}

/// What a handle names, resolved for a caller.
enum Target {
    Pseudo,
    Export(Arc<ExportTree>, KernelHandle),
    Image(Arc<RootView>, Loc),
    Layer(Arc<RootView>, Loc),
}

impl Target {
    fn tree(&self) -> Option<&Tree> {
        match self {
            Target::Pseudo => None,
            Target::Export(e, _) => Some(&e.tree),
            Target::Image(r, _) => Some(&r.image),
            Target::Layer(r, _) => Some(&r.layer),
        }
    }

    fn kh(&self) -> Option<&KernelHandle> {
        match self {
            Target::Pseudo => None,
            Target::Export(_, k) => Some(k),
            Target::Image(_, l) | Target::Layer(_, l) => Some(&l.kh),
        }
    }

    /// The tree and kernel handle, or `ReadOnly` for the pseudo-root.
    fn file(&self) -> VfsResult<(&Tree, &KernelHandle)> {
        match (self.tree(), self.kh()) {
            (Some(t), Some(k)) => Ok((t, k)),
            _ => Err(VfsError::ReadOnly),
        }
    }

    /// Whether two targets are in the same tree (same export, or same part of one view).
    fn same_tree(&self, other: &Target) -> bool {
        match (self, other) {
            (Target::Export(a, _), Target::Export(b, _)) => Arc::ptr_eq(a, b),
            (Target::Image(a, _), Target::Image(b, _)) => Arc::ptr_eq(a, b),
            (Target::Layer(a, _), Target::Layer(b, _)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

struct Inner {
    roots: HashMap<String, Arc<RootView>>,
    exports: HashMap<String, Arc<ExportTree>>,
}

/// Every client's view of drover's NFS files (see the module docs).
pub struct Views {
    /// The store as the server sees it; whoever owns it keeps it current.
    view: Arc<SharedView>,
    blobs: Blobs,
    dir: PathBuf,
    key: HandleKey,
    root_keys: RootKeys,
    verifier: [u8; 8],
    started: Time,
    inner: Mutex<Inner>,
    /// Object ids of each unpacked image tree, by rootfs blob.
    image_ids: Mutex<HashMap<BlobId, Arc<ImageIds>>>,
    /// Where changes of node layers are shipped (`pool::layers`), if anywhere.
    replica: Option<Arc<dyn Replica>>,
}

impl Views {
    /// [`Views::over`] a view of `store` of their own, brought up to date by
    /// [`Views::refresh`].
    pub fn open(store: Arc<Store>, state_dir: &Path) -> io::Result<Views> {
        let view = SharedView::load(store).map_err(io::Error::other)?;
        Views::over(Arc::new(view), state_dir)
    }

    /// Opens the views over the server's `view` of the store, keeping image trees, layers
    /// and the handle key in `<state_dir>/nfs/`; with a cluster key
    /// (`<state_dir>/cluster.key`, now or later), root-view handles are sealed with a key
    /// derived from it, alike on all members.
    pub fn over(view: Arc<SharedView>, state_dir: &Path) -> io::Result<Views> {
        let dir = state_dir.join("nfs");
        for sub in ["images", "nodes"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let key = HandleKey::load_or_create(&dir.join("handle.key"))?;
        let root_keys = RootKeys::new(state_dir, key.clone())?;
        // Unpacks cut short by a crash: never renamed into place, so never served.
        for e in std::fs::read_dir(dir.join("images"))?.flatten() {
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Ok(Views {
            blobs: Blobs::new(state_dir),
            view,
            dir,
            key,
            root_keys,
            verifier: fs::new_verifier(),
            started: Time {
                seconds: now.as_secs() as i64,
                nanos: now.subsec_nanos(),
            },
            inner: Mutex::new(Inner {
                roots: HashMap::new(),
                exports: HashMap::new(),
            }),
            image_ids: Mutex::new(HashMap::new()),
            replica: None,
        })
    }

    /// Ships every change of a node's layer to `replica` before answering it.
    pub fn with_replica(mut self, replica: Arc<dyn Replica>) -> Views {
        self.replica = Some(replica);
        self
    }

    /// Hands the change `describe` reads back from a layer object to the replica, if any
    /// (no-op for other targets), and waits as `wait` says.
    fn replicate(
        &self,
        t: &Target,
        wait: replica::Wait,
        describe: impl Fn(&Capture) -> Option<Vec<replica::wire::Op>>,
    ) {
        if let (Some(rep), Target::Layer(r, _)) = (&self.replica, t) {
            let cap = Capture {
                tree: &r.layer,
                root: &r.layer_path,
            };
            rep.ship(&r.node, &r.layer_path, &|| describe(&cap), wait);
        }
    }

    /// Brings the view of the store up to date now (in `drover serve`, the server's
    /// refresher does it).
    pub fn refresh(&self) -> io::Result<()> {
        self.view.refresh().map_err(io::Error::other)?;
        Ok(())
    }

    /// Unpacks the root filesystems of all images that boot from NFS, so that no client
    /// waits for it (the first use of an image unpacks it otherwise, holding up every
    /// caller meanwhile). For the serving shell to run off the async runtime at start and
    /// after image changes.
    pub fn prepare(&self) -> io::Result<()> {
        let blobs: Vec<BlobId> = {
            self.view
                .snapshot()
                .images
                .values()
                .filter(|i| i.root == crate::store::model::RootMode::Nfs)
                .filter_map(|i| i.rootfs.as_ref().map(|r| r.blob.clone()))
                .collect()
        };
        for blob in blobs {
            let root = self.unpacked(&blob)?;
            self.image_ids(&blob, &Tree::open(&root, false, Squash::None)?, false)?;
        }
        Ok(())
    }

    /// The object ids of `tree`, the unpacked rootfs blob `blob`: cached, or walked now
    /// (also when `changed`: something was added to the tree).
    fn image_ids(&self, blob: &BlobId, tree: &Tree, changed: bool) -> io::Result<Arc<ImageIds>> {
        let mut cache = self.image_ids.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ids) = cache.get(blob).filter(|_| !changed) {
            return Ok(ids.clone());
        }
        let ids = Arc::new(ImageIds::build(tree, blob).map_err(vfs_io)?);
        cache.insert(blob.clone(), ids.clone());
        Ok(ids)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock aborts the process (panic = "abort"), so a poisoned
        // lock cannot be observed; take the data anyway.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node behind `addr`: its reservation, else a current lease of its MAC.
    fn node_of(view: &View, addr: IpAddr) -> Option<&Node> {
        let IpAddr::V4(ip) = addr else {
            return None;
        };
        if let Some(n) = view.node_by_ip(ip) {
            return Some(n);
        }
        let lease = view.leases.get(&ip)?;
        let now = crate::clock::unix_secs();
        if lease.state != LeaseState::Bound || lease.expires <= now {
            return None;
        }
        view.node_by_mac(lease.mac).filter(|n| n.ip.is_none())
    }

    /// The caller's root view, if it has one.
    fn root_view(&self, view: &View, inner: &mut Inner, addr: IpAddr) -> Option<Arc<RootView>> {
        let node = Self::node_of(view, addr)?.clone();
        let (image, _) = view.boot_image_of(&node)?;
        let blob = image.rootfs.as_ref()?.blob.clone();
        if let Some(r) = inner.roots.get(&node.name) {
            if r.blob == blob && r.persistent == image.persistent {
                return Some(r.clone());
            }
        }
        match self.make_root_view(&node, &image, &blob) {
            Ok(r) => {
                let r = Arc::new(r);
                // Views of the same image made before something was added to its tree have
                // an incomplete index: made again on their next use.
                inner
                    .roots
                    .retain(|_, o| o.blob != r.blob || Arc::ptr_eq(&o.image_ids, &r.image_ids));
                inner.roots.insert(node.name.clone(), r.clone());
                Some(r)
            }
            Err(e) => {
                tracing::warn!("nfs: root view of node {}: {e}", node.name);
                None
            }
        }
    }

    /// The unpacked tree of rootfs blob `blob`, unpacking it first if needed.
    fn unpacked(&self, blob: &BlobId) -> io::Result<PathBuf> {
        let dest = self.image_dir(blob)?;
        if !dest.exists() {
            self.unpack(blob, &dest)?;
        }
        Ok(dest)
    }

    fn image_dir(&self, blob: &BlobId) -> io::Result<PathBuf> {
        // A valid id is a hash (hex only): safe as a path component.
        Blobs::valid_id(blob)
            .then(|| self.dir.join("images").join(blob))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad blob id"))
    }

    /// Unpacks rootfs blob `blob` to `dest`, atomically.
    fn unpack(&self, blob: &BlobId, dest: &Path) -> io::Result<()> {
        let file = crate::image::Tar::Blob(&self.blobs, blob).open()?;
        let tmp = self.dir.join("images").join(format!(
            ".tmp-{blob}-{}",
            u64::from_le_bytes(fs::new_verifier())
        ));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir(&tmp)?;
        let refused = unpack::unpack(io::BufReader::new(file), &tmp, true)
            .map(|stats| stats.refused)
            .inspect_err(|_| {
                let _ = std::fs::remove_dir_all(&tmp);
            })?;
        if refused > 0 {
            tracing::warn!("nfs: image blob {blob}: {refused} entries refused (outside the root)");
        }
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        match std::fs::rename(&tmp, dest) {
            // Another thread unpacked the same blob first: same content, keep theirs.
            Err(_) if dest.is_dir() => {
                let _ = std::fs::remove_dir_all(&tmp);
                Ok(())
            }
            r => r,
        }
    }

    fn make_root_view(&self, node: &Node, image: &Image, blob: &BlobId) -> io::Result<RootView> {
        crate::admin::check_name(&node.name).map_err(io::Error::other)?;
        let image_root = self.unpacked(blob)?;
        let layer_root = self.dir.join("nodes").join(&node.name);
        std::fs::create_dir_all(&layer_root)?;
        // Paths inside another persistent path are covered by it.
        let mut paths: Vec<(String, Vec<String>)> = Vec::new();
        for p in &image.persistent {
            match PersistentPath::parse(p) {
                Ok(path) => paths.push((p.clone(), path.components().map(String::from).collect())),
                Err(e) => tracing::warn!("nfs: image {}: persistent path {p:?}: {e}", image.name),
            }
        }
        paths.sort_by_key(|(_, parts)| parts.len());
        let mut kept: Vec<Vec<String>> = Vec::new();
        let mut changed = false;
        for (p, parts) in paths {
            if kept.iter().any(|k| parts.starts_with(k)) {
                continue;
            }
            match place_in_image(&image_root, &parts) {
                Ok(added) => {
                    changed |= added;
                    kept.push(parts)
                }
                Err(e) => tracing::warn!("nfs: image {}: persistent path {p}: {e}", image.name),
            }
        }
        let id = id8(&node.name);
        let fsid = (u64::from_le_bytes(id), 0x726f_6f74);
        let mut image_tree = Tree::open(&image_root, false, Squash::None)?;
        image_tree.fsid = fsid;
        let mut layer = Tree::open(&layer_root, true, Squash::None)?;
        layer.fsid = fsid;
        let image_ids = self.image_ids(blob, &image_tree, changed)?;
        for parts in &kept {
            seed(&image_root, &layer_root, parts, &image_ids)?;
        }
        let layer_ids = LayerIds::build(&layer).map_err(vfs_io)?;
        let mut overrides = HashMap::new();
        let mut up = HashMap::new();
        for parts in &kept {
            let (dir, name) = parts.split_at(parts.len() - 1);
            let image_dir = image_ids.at(&image_tree, dir).map_err(vfs_io)?;
            let layer_obj = layer_ids.at(&layer, parts).map_err(vfs_io)?;
            overrides.insert((image_dir.id, name[0].as_bytes().to_vec()), layer_obj.id);
            up.insert(layer_obj.id, image_dir.id);
        }
        Ok(RootView {
            id,
            node: node.name.clone(),
            layer_path: std::fs::canonicalize(&layer_root)?,
            blob: blob.clone(),
            blob8: id8(blob),
            persistent: image.persistent.clone(),
            image: image_tree,
            layer,
            image_ids,
            layer_ids,
            overrides,
            up,
        })
    }

    /// The exports `addr` may see, by name.
    fn exports_for(&self, view: &View, inner: &mut Inner, addr: IpAddr) -> Vec<Arc<ExportTree>> {
        let IpAddr::V4(ip) = addr else {
            return Vec::new();
        };
        let wanted: Vec<Export> = view
            .exports
            .values()
            .filter(|e| e.allows(ip))
            .cloned()
            .collect();
        let mut out = Vec::new();
        for e in wanted {
            if let Some(t) = inner.exports.get(&e.name) {
                if t.export == e {
                    out.push(t.clone());
                    continue;
                }
            }
            match Tree::open(Path::new(&e.path), e.rw, export_squash(&e)) {
                Ok(mut tree) => {
                    let id = id8(&e.name);
                    tree.fsid = (u64::from_le_bytes(id), 0x6578_7074);
                    tree.read_only_clients = e.ro_clients.clone();
                    let mut scope = b"export\0".to_vec();
                    scope.extend_from_slice(e.name.as_bytes());
                    scope.push(0);
                    scope.extend_from_slice(e.path.as_bytes());
                    let t = Arc::new(ExportTree {
                        export: e.clone(),
                        tree,
                        id,
                        scope,
                    });
                    inner.exports.insert(e.name.clone(), t.clone());
                    out.push(t);
                }
                Err(err) => tracing::warn!("nfs: export {} ({}): {err}", e.name, e.path),
            }
        }
        out
    }

    fn seal(&self, t: &Target) -> VfsResult<Handle> {
        match t {
            Target::Pseudo => Ok(Handle(vec![TAG_PSEUDO])),
            Target::Export(e, k) => self.key.seal(EXPORT_MAC_SCOPE, &export_prefix(e), k),
            Target::Image(r, l) => Ok(self.root_keys.seal(&RootHandle {
                node: r.id,
                blob: Some(r.blob8),
                id: l.id,
            })),
            Target::Layer(r, l) => Ok(self.root_keys.seal(&RootHandle {
                node: r.id,
                blob: None,
                id: l.id,
            })),
        }
    }

    /// A root-view handle: `BadHandle` unless drover sealed it, `Stale` unless the caller is
    /// its node now (and, for the image, the node's image is still the one it names).
    fn resolve_root(&self, caller: &Caller, h: &Handle) -> VfsResult<Target> {
        let rh = self.root_keys.open(h)?;
        let r = {
            let view = self.view.snapshot();
            self.root_view(&view, &mut self.lock(), caller.addr)
                .filter(|r| r.id == rh.node)
                .ok_or(VfsError::Stale)?
        };
        match rh.blob {
            Some(blob8) if blob8 != r.blob8 => Err(VfsError::Stale),
            Some(_) => {
                let l = r.image_ids.loc(rh.id).ok_or(VfsError::Stale)?;
                Ok(Target::Image(r, l))
            }
            None => {
                let kh = r.layer_ids.resolve(&r.layer, rh.id)?;
                Ok(Target::Layer(r, Loc { id: rh.id, kh }))
            }
        }
    }

    fn resolve(&self, caller: &Caller, h: &Handle) -> VfsResult<Target> {
        let b = &h.0;
        let tag = *b.first().ok_or(VfsError::BadHandle)?;
        if tag == TAG_PSEUDO {
            return if b.len() == 1 {
                Ok(Target::Pseudo)
            } else {
                Err(VfsError::BadHandle)
            };
        }
        if tag == TAG_IMAGE || tag == TAG_LAYER {
            return self.resolve_root(caller, h);
        }
        if tag != TAG_EXPORT || b.len() < PREFIX {
            return Err(VfsError::BadHandle);
        }
        let id: [u8; 8] = b[1..PREFIX].try_into().map_err(|_| VfsError::BadHandle)?;
        // Sealed by this member (the MAC does not depend on the export's current state), or
        // it is no handle of ours: BadHandle before anything else is looked at.
        let sealed = self.key.unseal(EXPORT_MAC_SCOPE, h, EXPORT_PREFIX);
        let view = self.view.snapshot();
        let mut inner = self.lock();
        // Only the exports open to the caller's address: any other is stale for it, whatever
        // handle it presents.
        let e = self
            .exports_for(&view, &mut inner, caller.addr)
            .into_iter()
            .find(|e| e.id == id);
        match (sealed, e) {
            (Ok(k), Some(e)) if b[PREFIX..EXPORT_PREFIX] == scope8(&e.scope) => {
                Ok(Target::Export(e, k))
            }
            (Ok(_), _) => Err(VfsError::Stale),
            // Handles minted before the export MAC left the scope out ([tag, id, kernel handle,
            // MAC over the scope]) stay valid while their export is unchanged.
            (Err(_), Some(e)) => match self.key.unseal(&e.scope, h, PREFIX) {
                Ok(k) => Ok(Target::Export(e, k)),
                Err(_) => Err(VfsError::BadHandle),
            },
            (Err(_), None) => Err(VfsError::BadHandle),
        }
    }

    /// The pseudo-root's entries for `caller`: name and the target it leads to.
    fn pseudo_entries(&self, caller: &Caller) -> VfsResult<Vec<(String, Target)>> {
        let view = self.view.snapshot();
        let mut inner = self.lock();
        let mut out = Vec::new();
        if let Some(r) = self.root_view(&view, &mut inner, caller.addr) {
            let l = r.image_ids.root();
            out.push((ROOT_NAME.to_string(), Target::Image(r, l)));
        }
        let mut exports = self.exports_for(&view, &mut inner, caller.addr);
        exports.sort_by(|a, b| a.export.name.cmp(&b.export.name));
        for e in exports {
            let k = e.tree.root_handle()?;
            out.push((e.export.name.clone(), Target::Export(e, k)));
        }
        Ok(out)
    }

    fn pseudo_attr(&self, caller: &Caller) -> VfsResult<Attr> {
        let entries = self.pseudo_entries(caller)?;
        // The pseudo-root's content depends on the caller: its change attribute follows
        // what the caller sees.
        let mut h = blake3::Hasher::new();
        for (name, _) in &entries {
            h.update(name.as_bytes());
            h.update(b"\0");
        }
        let change = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().unwrap_or([0; 8]));
        Ok(Attr {
            kind: FileType::Directory,
            mode: 0o555,
            nlink: 2,
            uid: 0,
            gid: 0,
            size: 4096,
            used: 4096,
            rdev: (0, 0),
            fsid: (0, 1),
            fileid: 1,
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            change,
        })
    }

    /// `name` in `dir` within one target's tree, with root-view merging.
    fn lookup_in(&self, caller: &Caller, dir: &Target, name: &[u8]) -> VfsResult<Target> {
        match dir {
            Target::Pseudo => {
                let name = std::str::from_utf8(name).map_err(|_| VfsError::NoEnt)?;
                fs::check_name(name.as_bytes())?;
                self.pseudo_entries(caller)?
                    .into_iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| t)
                    .ok_or(VfsError::NoEnt)
            }
            Target::Export(e, k) => {
                let (kh, _) = e.tree.lookup(&e.tree.cred(caller), k, name)?;
                Ok(Target::Export(e.clone(), kh))
            }
            Target::Image(r, d) => {
                let (kh, a) = r.image.lookup(&r.image.cred(caller), &d.kh, name)?;
                match r.overrides.get(&(d.id, name.to_vec())) {
                    Some(&id) => Ok(Target::Layer(r.clone(), r.layer_loc(id)?)),
                    None => {
                        let id = r.image_ids.id_of(&a).ok_or(VfsError::Stale)?;
                        Ok(Target::Image(r.clone(), Loc { id, kh }))
                    }
                }
            }
            Target::Layer(r, d) => {
                let (kh, a) = r.layer.lookup(&r.layer.cred(caller), &d.kh, name)?;
                let id = r.layer_ids.child(&r.layer, d.id, name, &kh, &a)?;
                Ok(Target::Layer(r.clone(), Loc { id, kh }))
            }
        }
    }

    fn attr_of(&self, caller: &Caller, t: &Target) -> VfsResult<Attr> {
        match t.file() {
            Ok((tree, k)) => Ok(with_fileid(t, tree.getattr(k)?)),
            Err(_) => self.pseudo_attr(caller),
        }
    }
}

impl RootView {
    /// The layer object with id `id`.
    fn layer_loc(&self, id: ObjId) -> VfsResult<Loc> {
        let kh = self.layer_ids.resolve(&self.layer, id)?;
        Ok(Loc { id, kh })
    }
}

/// The tree and kernel handle of an export file, for the NFSv4.2 changes that `replica`
/// cannot describe (ALLOCATE, DEALLOCATE, COPY, CLONE): a node's layer answers NOTSUPP, so
/// its client falls back to WRITE, which is shipped; the image is read-only.
fn unreplicated(t: &Target) -> VfsResult<(&Tree, &KernelHandle)> {
    match t {
        Target::Export(e, k) => Ok((&e.tree, k)),
        Target::Layer(..) => Err(VfsError::NotSupported),
        Target::Image(..) => Err(VfsError::ReadOnly),
        Target::Pseudo => Err(VfsError::IsDir),
    }
}

/// `a` with the member-independent fileid of a root-view target (other targets keep the
/// inode number).
fn with_fileid(t: &Target, mut a: Attr) -> Attr {
    if let Target::Image(_, l) | Target::Layer(_, l) = t {
        a.fileid = l.id;
    }
    a
}

/// The identity mapping of an export's tree.
fn export_squash(e: &Export) -> Squash {
    let (uid, gid) = (e.anon_uid, e.anon_gid);
    match e.squash {
        model::Squash::Root => Squash::Root { uid, gid },
        model::Squash::None => Squash::None,
        model::Squash::All => Squash::All { uid, gid },
    }
}

/// The first 8 bytes of the hash of an export's scope.
fn scope8(scope: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&blake3::hash(scope).as_bytes()[..8]);
    out
}

fn export_prefix(e: &ExportTree) -> [u8; EXPORT_PREFIX] {
    let mut p = [0u8; EXPORT_PREFIX];
    p[0] = TAG_EXPORT;
    p[1..PREFIX].copy_from_slice(&e.id);
    p[PREFIX..].copy_from_slice(&scope8(&e.scope));
    p
}

fn vfs_io(e: VfsError) -> io::Error {
    io::Error::other(e.to_string())
}

/// Makes sure the persistent path `parts` has a place in the unpacked image: its parent
/// directories exist as real directories (not symlinks), and a missing last component
/// becomes an empty directory. Whether it added anything.
fn place_in_image(root: &Path, parts: &[String]) -> io::Result<bool> {
    let mut added = false;
    let mut at = root.to_path_buf();
    for (i, p) in parts.iter().enumerate() {
        at.push(p);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if i + 1 == parts.len() && !m.file_type().is_symlink() => {}
            Ok(_) => {
                return Err(io::Error::other(format!(
                    "{} is a symlink or not a directory in the image",
                    at.strip_prefix(root).unwrap_or(&at).display()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir(&at)?;
                std::fs::set_permissions(&at, std::fs::Permissions::from_mode(0o755))?;
                added = true;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(added)
}

/// Copies the image's content at `parts` into the node's layer unless the layer has it,
/// with the image's object ids.
fn seed(image: &Path, layer: &Path, parts: &[String], ids: &ImageIds) -> io::Result<()> {
    let rel: PathBuf = parts.iter().collect();
    let dest = layer.join(&rel);
    if std::fs::symlink_metadata(&dest).is_ok() {
        return Ok(());
    }
    // Parents in the layer mirror the image's (owner and mode), for a faithful tree.
    let mut at = layer.to_path_buf();
    let mut src_at = image.to_path_buf();
    for p in &parts[..parts.len() - 1] {
        at.push(p);
        src_at.push(p);
        if std::fs::symlink_metadata(&at).is_err() {
            std::fs::create_dir(&at)?;
            let m = std::fs::symlink_metadata(&src_at)?;
            std::os::unix::fs::lchown(&at, Some(m.uid()), Some(m.gid()))?;
            std::fs::set_permissions(&at, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
            ids.stamp(&src_at, &at, false)?;
        }
    }
    let tmp = at.join(format!(".drover-seed-{}", parts[parts.len() - 1]));
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_file(&tmp);
    copy_tree(&image.join(&rel), &tmp)?;
    ids.stamp(&image.join(&rel), &tmp, true)?;
    // Durable name: a node's stable writes to the seeded file must not vanish with it.
    crate::durable::rename(&tmp, &dest)
}

/// Copies `src` (not following symlinks) to `dst`: files, directories, symlinks, device
/// nodes, FIFOs and sockets, with owners, modes and modification times.
fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let m = std::fs::symlink_metadata(src)?;
    let ft = m.file_type();
    if ft.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(src)?, dst)?;
        std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid()))?;
        return Ok(());
    }
    if ft.is_dir() {
        std::fs::create_dir(dst)?;
        for entry in std::fs::read_dir(src)? {
            let entry = entry?;
            copy_tree(&entry.path(), &dst.join(entry.file_name()))?;
        }
    } else if ft.is_file() {
        std::fs::copy(src, dst)?;
    } else if ft.is_block_device() || ft.is_char_device() || ft.is_fifo() || ft.is_socket() {
        fs::mknod_like(dst, m.mode(), m.rdev())?;
    }
    std::os::unix::fs::lchown(dst, Some(m.uid()), Some(m.gid()))?;
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
    if ft.is_file() || ft.is_dir() {
        let f = std::fs::File::open(dst)?;
        f.set_modified(m.modified()?)?;
        // Synced before `seed` renames the copy into the layer: the name is never durable
        // ahead of the content.
        f.sync_all()?;
    }
    Ok(())
}

impl Vfs for Views {
    fn root(&self, _caller: &Caller) -> VfsResult<Handle> {
        self.seal(&Target::Pseudo)
    }

    fn check(&self, caller: &Caller, fh: &Handle) -> VfsResult<()> {
        self.resolve(caller, fh).map(|_| ())
    }

    fn getattr(&self, caller: &Caller, fh: &Handle) -> VfsResult<Attr> {
        let t = self.resolve(caller, fh)?;
        self.attr_of(caller, &t)
    }

    fn setattr(&self, caller: &Caller, fh: &Handle, set: &SetAttr) -> VfsResult<Attr> {
        let t = self.resolve(caller, fh)?;
        let (tree, k) = t.file()?;
        let a = with_fileid(&t, tree.setattr(&tree.cred(caller), k, set)?);
        self.replicate(&t, replica::Wait::Stable, |c| c.attr(k));
        Ok(a)
    }

    fn access(&self, caller: &Caller, fh: &Handle, wanted: u32) -> VfsResult<u32> {
        let t = self.resolve(caller, fh)?;
        match t.file() {
            Ok((tree, k)) => tree.access(&tree.cred(caller), k, wanted),
            Err(_) => Ok(wanted & (super::vfs::access::READ | super::vfs::access::LOOKUP)),
        }
    }

    fn lookup(&self, caller: &Caller, dir: &Handle, name: &[u8]) -> VfsResult<Handle> {
        let t = self.resolve(caller, dir)?;
        let found = self.lookup_in(caller, &t, name)?;
        self.seal(&found)
    }

    fn parent(&self, caller: &Caller, dir: &Handle) -> VfsResult<Handle> {
        let t = self.resolve(caller, dir)?;
        let up = match &t {
            Target::Pseudo => return Err(VfsError::NoEnt),
            Target::Export(e, k) => match e.tree.parent(&e.tree.cred(caller), k)? {
                Some(p) => Target::Export(e.clone(), p),
                None => Target::Pseudo,
            },
            Target::Image(r, l) => match r.image.parent(&r.image.cred(caller), &l.kh)? {
                Some(kh) => {
                    let id = r.image_ids.parent(l.id).ok_or(VfsError::Stale)?;
                    Target::Image(r.clone(), Loc { id, kh })
                }
                None => Target::Pseudo,
            },
            Target::Layer(r, l) => match r.up.get(&l.id) {
                Some(&p) => Target::Image(r.clone(), r.image_ids.loc(p).ok_or(VfsError::Stale)?),
                None => match r.layer.parent(&r.layer.cred(caller), &l.kh)? {
                    Some(kh) => {
                        let id = r.layer_ids.parent(l.id).ok_or(VfsError::Stale)?;
                        Target::Layer(r.clone(), Loc { id, kh })
                    }
                    None => return Err(VfsError::NoEnt),
                },
            },
        };
        self.seal(&up)
    }

    fn read(
        &self,
        caller: &Caller,
        fh: &Handle,
        offset: u64,
        count: u32,
    ) -> VfsResult<(Vec<u8>, bool)> {
        let t = self.resolve(caller, fh)?;
        let (tree, k) = t.file().map_err(|_| VfsError::IsDir)?;
        tree.read(&tree.cred(caller), k, offset, count)
    }

    fn write(
        &self,
        caller: &Caller,
        fh: &Handle,
        offset: u64,
        data: &[u8],
        stable: Stability,
    ) -> VfsResult<(u32, Stability)> {
        let t = self.resolve(caller, fh)?;
        let (tree, k) = t.file().map_err(|_| VfsError::IsDir)?;
        let (n, how) = tree.write(&tree.cred(caller), k, offset, data, stable)?;
        let wait = match stable {
            Stability::Unstable => replica::Wait::Lazy,
            _ => replica::Wait::Stable,
        };
        self.replicate(&t, wait, |c| c.write(k, offset, n as usize));
        Ok((n, how))
    }

    fn commit(&self, caller: &Caller, fh: &Handle, _offset: u64, _count: u32) -> VfsResult<()> {
        let t = self.resolve(caller, fh)?;
        let (tree, k) = t.file().map_err(|_| VfsError::IsDir)?;
        tree.commit(k)?;
        // What earlier UNSTABLE writes shipped must be on a peer before COMMIT answers.
        self.replicate(&t, replica::Wait::Stable, |_| Some(Vec::new()));
        Ok(())
    }

    fn write_verifier(&self) -> [u8; 8] {
        self.verifier
    }

    fn create(
        &self,
        caller: &Caller,
        dir: &Handle,
        name: &[u8],
        what: &NewObject,
        attrs: &SetAttr,
    ) -> VfsResult<(Handle, Attr)> {
        let t = self.resolve(caller, dir)?;
        let (tree, k) = t.file()?;
        // An existing persistent path opened by a non-exclusive create is the layer's file.
        if let (Target::Image(r, d), NewObject::File { exclusive: false }) = (&t, what) {
            if let Some(&id) = r.overrides.get(&(d.id, name.to_vec())) {
                let l = r.layer_loc(id)?;
                let a = r.layer.getattr(&l.kh)?;
                match a.kind {
                    FileType::Regular => {}
                    FileType::Directory => return Err(VfsError::IsDir),
                    _ => return Err(VfsError::Inval),
                }
                let trunc = SetAttr {
                    size: attrs.size,
                    ..SetAttr::default()
                };
                let a = r.layer.setattr(&r.layer.cred(caller), &l.kh, &trunc)?;
                let kh = l.kh.clone();
                let made = Target::Layer(r.clone(), l);
                self.replicate(&made, replica::Wait::Stable, |c| c.attr(&kh));
                return Ok((self.seal(&made)?, with_fileid(&made, a)));
            }
        }
        let (kh, a) = tree.create(&tree.cred(caller), k, name, what, attrs)?;
        let made = match &t {
            Target::Export(e, _) => Target::Export(e.clone(), kh),
            Target::Layer(r, d) => Target::Layer(r.clone(), r.layer_ids.made(&r.layer, d, name)?),
            // The image is read-only: its tree refused already.
            Target::Image(..) | Target::Pseudo => return Err(VfsError::ReadOnly),
        };
        self.replicate(&t, replica::Wait::Stable, |c| c.made(k, name));
        Ok((self.seal(&made)?, with_fileid(&made, a)))
    }

    fn link(&self, caller: &Caller, fh: &Handle, dir: &Handle, name: &[u8]) -> VfsResult<()> {
        let f = self.resolve(caller, fh)?;
        let d = self.resolve(caller, dir)?;
        let (tree, dk) = d.file()?;
        if !f.same_tree(&d) {
            return Err(if tree.writable {
                VfsError::XDev
            } else {
                VfsError::ReadOnly
            });
        }
        let (_, fk) = f.file()?;
        tree.link(&tree.cred(caller), fk, dk, name)?;
        if let Target::Layer(r, dl) = &d {
            r.layer_ids.made(&r.layer, dl, name)?;
        }
        self.replicate(&d, replica::Wait::Stable, |c| c.linked(fk, dk, name));
        Ok(())
    }

    fn remove(&self, caller: &Caller, dir: &Handle, name: &[u8]) -> VfsResult<()> {
        let t = self.resolve(caller, dir)?;
        let (tree, k) = t.file()?;
        tree.remove(&tree.cred(caller), k, name)?;
        if let Target::Layer(r, d) = &t {
            r.layer_ids.removed(d.id, name);
        }
        self.replicate(&t, replica::Wait::Stable, |c| c.removed(k, name));
        Ok(())
    }

    fn rename(
        &self,
        caller: &Caller,
        from_dir: &Handle,
        from: &[u8],
        to_dir: &Handle,
        to: &[u8],
    ) -> VfsResult<()> {
        let a = self.resolve(caller, from_dir)?;
        let b = self.resolve(caller, to_dir)?;
        let (ta, ka) = a.file()?;
        let (tb, kb) = b.file()?;
        if !ta.writable || !tb.writable {
            return Err(VfsError::ReadOnly);
        }
        if !a.same_tree(&b) {
            return Err(VfsError::XDev);
        }
        ta.rename(&ta.cred(caller), ka, from, kb, to)?;
        if let (Target::Layer(r, fd), Target::Layer(_, td)) = (&a, &b) {
            r.layer_ids.renamed(&r.layer, fd.id, from, td, to)?;
        }
        self.replicate(&a, replica::Wait::Stable, |c| c.renamed(ka, from, kb, to));
        Ok(())
    }

    fn readdir(
        &self,
        caller: &Caller,
        dir: &Handle,
        cookie: u64,
        max: usize,
    ) -> VfsResult<(Vec<DirEntry>, bool)> {
        let t = self.resolve(caller, dir)?;
        let Ok((tree, k)) = t.file() else {
            // The pseudo-root: cookies are positions in its (small, sorted) list.
            let entries = self.pseudo_entries(caller)?;
            let start = match cookie {
                0 => 0,
                c if c >= 3 => (c - 2) as usize,
                _ => return Err(VfsError::BadCookie),
            };
            let mut out = Vec::new();
            for (i, (name, target)) in entries.iter().enumerate().skip(start).take(max) {
                out.push(DirEntry {
                    name: name.as_bytes().to_vec(),
                    cookie: i as u64 + 3,
                    handle: self.seal(target)?,
                    attr: self.attr_of(caller, target)?,
                });
            }
            let eof = start + out.len() >= entries.len();
            return Ok((out, eof));
        };
        let (raw, eof) = tree.readdir(&tree.cred(caller), k, cookie, max)?;
        let mut out = Vec::with_capacity(raw.len());
        for (name, cookie, kh, attr) in raw {
            let (target, attr) = match &t {
                Target::Image(r, d) => match r.overrides.get(&(d.id, name.clone())) {
                    Some(&id) => {
                        let l = r.layer_loc(id)?;
                        let a = r.layer.getattr(&l.kh)?;
                        (Target::Layer(r.clone(), l), a)
                    }
                    None => {
                        // Not in the index: added behind our back, not listed.
                        let Some(id) = r.image_ids.id_of(&attr) else {
                            continue;
                        };
                        (Target::Image(r.clone(), Loc { id, kh }), attr)
                    }
                },
                Target::Layer(r, d) => {
                    let id = r.layer_ids.child(&r.layer, d.id, &name, &kh, &attr)?;
                    (Target::Layer(r.clone(), Loc { id, kh }), attr)
                }
                Target::Export(e, _) => (Target::Export(e.clone(), kh), attr),
                Target::Pseudo => return Err(VfsError::BadHandle),
            };
            out.push(DirEntry {
                name,
                cookie,
                handle: self.seal(&target)?,
                attr: with_fileid(&target, attr),
            });
        }
        Ok((out, eof))
    }

    fn readlink(&self, caller: &Caller, fh: &Handle) -> VfsResult<Vec<u8>> {
        let t = self.resolve(caller, fh)?;
        let (tree, k) = t.file().map_err(|_| VfsError::Inval)?;
        tree.readlink(k)
    }

    fn seek(&self, caller: &Caller, fh: &Handle, offset: u64, data: bool) -> VfsResult<(u64, u64)> {
        let t = self.resolve(caller, fh)?;
        let (tree, k) = t.file().map_err(|_| VfsError::IsDir)?;
        tree.seek(&tree.cred(caller), k, offset, data)
    }

    fn allocate(&self, caller: &Caller, fh: &Handle, how: &Allocate) -> VfsResult<()> {
        let t = self.resolve(caller, fh)?;
        let (tree, k) = unreplicated(&t)?;
        tree.allocate(&tree.cred(caller), k, how)
    }

    fn copy(
        &self,
        caller: &Caller,
        src: &Handle,
        dst: &Handle,
        range: &CopyRange,
    ) -> VfsResult<u64> {
        let (a, b) = (self.resolve(caller, src)?, self.resolve(caller, dst)?);
        let ((tree, ka), (_, kb)) = (unreplicated(&a)?, unreplicated(&b)?);
        // Between exports the client copies through READ and WRITE itself.
        if !a.same_tree(&b) {
            return Err(VfsError::NotSupported);
        }
        tree.copy(&tree.cred(caller), ka, kb, range)
    }

    fn statfs(&self, caller: &Caller, fh: &Handle) -> VfsResult<FsStat> {
        let t = self.resolve(caller, fh)?;
        match t.file() {
            Ok((tree, k)) => tree.statfs(k),
            Err(_) => Ok(FsStat::default()),
        }
    }
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
