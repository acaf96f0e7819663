//! Views over a real store, blob store and state directory (needs root).

use super::*;
use crate::image::unpack::test_tar::entry;
use crate::nfs::fs::tests::{require_root, tempdir};
use crate::store::model::{Ipv4Net, Mac, RootMode};
use crate::store::StoreError;
use std::net::Ipv4Addr;

fn caller(last: u8, uid: u32) -> Caller {
    Caller {
        addr: IpAddr::V4(Ipv4Addr::new(198, 18, 0, last)),
        uid,
        gid: uid,
        gids: Vec::new(),
    }
}

fn rootfs_tar() -> Vec<u8> {
    use tar::EntryType as E;
    let mut t = Vec::new();
    for d in ["etc/", "etc/ssh/", "var/", "var/log/", "srv/", "dev/"] {
        t.extend(entry(d, E::Directory, 0o755, "", b""));
    }
    t.extend(entry("etc/hostname", E::Regular, 0o644, "", b"img"));
    t.extend(entry("etc/passwd", E::Regular, 0o644, "", b"root:x:0:0"));
    t.extend(entry("etc/ssh/key", E::Regular, 0o600, "", b"k"));
    t.extend(entry("etc/alias", E::Link, 0o644, "etc/passwd", b""));
    t.extend(entry("var/log/boot.log", E::Regular, 0o644, "", b"boot"));
    t.extend(entry("etc/mtab", E::Symlink, 0o777, "../proc/mounts", b""));
    t.extend(entry("dev/null", E::Char, 0o666, "", b""));
    t.extend(entry("../escape", E::Regular, 0o644, "", b"x"));
    t.extend(entry("/abs-escape", E::Regular, 0o644, "", b"x"));
    t.extend(vec![0; 1024]);
    t
}

struct Fixture {
    state: PathBuf,
    store: Arc<Store>,
}

fn fixture(tag: &str) -> Fixture {
    require_root();
    let state = tempdir(tag);
    let store = Arc::new(Store::open(&state).unwrap());
    let tar_path = state.join("rootfs.tar");
    std::fs::write(&tar_path, rootfs_tar()).unwrap();
    let rootfs = Blobs::new(&state).import_file(&tar_path).unwrap();
    let image = Image {
        name: "img".into(),
        kernel: rootfs.clone(),
        initrd: None,
        cmdline: String::new(),
        rootfs: Some(rootfs),
        initramfs: None,
        root: RootMode::Nfs,
        persistent: vec![
            "/var/log".into(),
            "/etc/hostname".into(),
            "/etc/ssh".into(),
            "/etc/ssh/key".into(),
            "/srv/data".into(),
            "relative".into(),
            "/etc/mtab/x".into(),
        ],
        versions: Vec::new(),
        swarm: true,
    };
    let nodes = [("n1", 11u8), ("n2", 12)].map(|(name, last)| Node {
        name: name.into(),
        mac: Mac([0x52, 0x54, 0, 0, 0, last]),
        ip: Some(Ipv4Addr::new(198, 18, 0, last)),
        image: Some("img".into()),
        group: None,
        aliases: Vec::new(),
        root: None,
        image_version: None,
        swarm: None,
    });
    store
        .write(|w| {
            w.put(&image)?;
            for n in &nodes {
                w.put(n)?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    Fixture { state, store }
}

fn path(v: &Views, c: &Caller, parts: &[&str]) -> VfsResult<Handle> {
    let mut h = v.root(c)?;
    for p in parts {
        h = v.lookup(c, &h, p.as_bytes())?;
    }
    Ok(h)
}

fn names(v: &Views, c: &Caller, dir: &Handle) -> Vec<String> {
    let (entries, eof) = v.readdir(c, dir, 0, 1000).unwrap();
    assert!(eof);
    let mut n: Vec<String> = entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .collect();
    n.sort();
    n
}

#[test]
fn root_views_merge_image_and_layer() {
    let f = fixture("views-merge");
    std::fs::create_dir_all(f.state.join("nfs/images/.tmp-crashed")).unwrap();
    let v = Views::open(f.store.clone(), &f.state).unwrap();
    assert!(!f.state.join("nfs/images/.tmp-crashed").exists());
    v.prepare().unwrap();
    let unpacked: Vec<_> = std::fs::read_dir(f.state.join("nfs/images"))
        .unwrap()
        .collect();
    assert_eq!(
        unpacked.len(),
        1,
        "the image's tree, unpacked before any client asked"
    );
    let n1 = caller(11, 0);
    let pseudo = v.root(&n1).unwrap();
    assert_eq!(names(&v, &n1, &pseudo), ["root"]);
    let root = path(&v, &n1, &["root"]).unwrap();
    assert_eq!(
        names(&v, &n1, &root),
        ["dev", "etc", "srv", "var"],
        "the tar's escaping entries are refused"
    );
    assert!(!f.state.join("nfs/images/escape").exists());
    assert!(!std::path::Path::new("/abs-escape").exists());
    // Persistent file: the node's own copy, seeded from the image, writable.
    let host = path(&v, &n1, &["root", "etc", "hostname"]).unwrap();
    assert_eq!(v.read(&n1, &host, 0, 100).unwrap().0, b"img");
    v.setattr(
        &n1,
        &host,
        &SetAttr {
            size: Some(0),
            ..SetAttr::default()
        },
    )
    .unwrap();
    v.write(&n1, &host, 0, b"node1", Stability::FileSync)
        .unwrap();
    assert_eq!(
        std::fs::read(f.state.join("nfs/nodes/n1/etc/hostname")).unwrap(),
        b"node1"
    );
    // The image is untouched and read-only elsewhere.
    let blob_dir = std::fs::read_dir(f.state.join("nfs/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .unwrap();
    assert_eq!(
        std::fs::read(blob_dir.join("etc/hostname")).unwrap(),
        b"img"
    );
    let etc = path(&v, &n1, &["root", "etc"]).unwrap();
    let passwd = v.lookup(&n1, &etc, b"passwd").unwrap();
    assert_eq!(
        v.write(&n1, &passwd, 0, b"x", Stability::Unstable),
        Err(VfsError::ReadOnly)
    );
    assert_eq!(
        v.create(
            &n1,
            &etc,
            b"new",
            &NewObject::File { exclusive: true },
            &SetAttr::default()
        ),
        Err(VfsError::ReadOnly)
    );
    assert_eq!(v.remove(&n1, &etc, b"hostname"), Err(VfsError::ReadOnly));
    // READDIR shows the layer's object at a persistent name, with one fsid throughout.
    let (entries, _) = v.readdir(&n1, &etc, 0, 100).unwrap();
    let h = entries.iter().find(|e| e.name == b"hostname").unwrap();
    assert_eq!((h.handle.clone(), h.attr.size), (host.clone(), 5));
    let a_etc = v.getattr(&n1, &etc).unwrap();
    assert_eq!(h.attr.fsid, a_etc.fsid);
    let m = entries.iter().find(|e| e.name == b"mtab").unwrap();
    assert_eq!(m.attr.kind, FileType::Symlink);
    assert_eq!(v.readlink(&n1, &m.handle).unwrap(), b"../proc/mounts");
    let alias = entries.iter().find(|e| e.name == b"alias").unwrap();
    assert_eq!(alias.attr.nlink, 2, "hard link kept");
    let null = path(&v, &n1, &["root", "dev", "null"]).unwrap();
    assert_eq!(v.getattr(&n1, &null).unwrap().rdev, (1, 3));
    assert_eq!(v.getattr(&n1, &null).unwrap().kind, FileType::Char);
    // Persistent directory: writable, and its parent is the image's.
    let log = path(&v, &n1, &["root", "var", "log"]).unwrap();
    let (new, _) = v
        .create(
            &n1,
            &log,
            b"n1.log",
            &NewObject::File { exclusive: true },
            &SetAttr::default(),
        )
        .unwrap();
    v.write(&n1, &new, 0, b"hello", Stability::FileSync)
        .unwrap();
    assert!(f.state.join("nfs/nodes/n1/var/log/n1.log").exists());
    assert_eq!(names(&v, &n1, &log), ["boot.log", "n1.log"]);
    assert_eq!(
        v.parent(&n1, &log).unwrap(),
        path(&v, &n1, &["root", "var"]).unwrap()
    );
    assert_eq!(v.parent(&n1, &root).unwrap(), pseudo);
    // A persistent path missing from the image gets a place; nested ones are covered.
    let data = path(&v, &n1, &["root", "srv", "data"]).unwrap();
    v.create(&n1, &data, b"d", &NewObject::Directory, &SetAttr::default())
        .unwrap();
    let key = path(&v, &n1, &["root", "etc", "ssh", "key"]).unwrap();
    assert_eq!(v.read(&n1, &key, 0, 10).unwrap().0, b"k");
    // Between persistent paths (one layer) renames work; into the image they do not, and
    // no link crosses from image to layer.
    v.rename(&n1, &log, b"n1.log", &data, b"moved").unwrap();
    v.rename(&n1, &data, b"moved", &log, b"n1.log").unwrap();
    assert_eq!(
        v.rename(&n1, &log, b"n1.log", &etc, b"moved"),
        Err(VfsError::ReadOnly)
    );
    assert_eq!(v.link(&n1, &passwd, &log, b"pw"), Err(VfsError::XDev));
    v.rename(&n1, &log, b"n1.log", &log, b"renamed.log")
        .unwrap();
}

#[test]
fn nodes_and_strangers_are_confined() {
    let f = fixture("views-confine");
    let v = Views::open(f.store.clone(), &f.state).unwrap();
    let n1 = caller(11, 0);
    let n2 = caller(12, 0);
    let stranger = caller(99, 0);
    let host1 = path(&v, &n1, &["root", "etc", "hostname"]).unwrap();
    v.write(&n1, &host1, 0, b"ONE", Stability::FileSync)
        .unwrap();
    let log1 = path(&v, &n1, &["root", "var", "log"]).unwrap();
    let etc1 = path(&v, &n1, &["root", "etc"]).unwrap();
    // The other node sees its own layer under the same names, and none of n1's handles.
    let host2 = path(&v, &n2, &["root", "etc", "hostname"]).unwrap();
    assert_ne!(host1, host2);
    assert_eq!(v.read(&n2, &host2, 0, 10).unwrap().0, b"img");
    for h in [&host1, &log1, &etc1] {
        assert_eq!(v.getattr(&n2, h), Err(VfsError::Stale));
        assert_eq!(v.read(&n2, h, 0, 1), Err(VfsError::Stale));
        assert_eq!(v.getattr(&stranger, h), Err(VfsError::Stale));
    }
    assert_eq!(
        v.write(&n2, &host1, 0, b"TWO", Stability::FileSync),
        Err(VfsError::Stale)
    );
    // A handle forged by changing the node id does not verify.
    let mut forged = host1.clone();
    forged.0[1..9].copy_from_slice(&id8("n2"));
    assert_eq!(v.getattr(&n2, &forged), Err(VfsError::BadHandle));
    // An unknown address has an empty pseudo-root.
    let p = v.root(&stranger).unwrap();
    assert!(names(&v, &stranger, &p).is_empty());
    assert_eq!(v.lookup(&stranger, &p, b"root"), Err(VfsError::NoEnt));
    // A restart keeps handles and layers.
    drop(v);
    let v = Views::open(f.store.clone(), &f.state).unwrap();
    assert_eq!(v.read(&n1, &host1, 0, 10).unwrap().0, b"ONE");
    assert_eq!(v.lookup(&n1, &etc1, b"hostname").unwrap(), host1);
    // A node moved to another address loses its view at the old one.
    f.store
        .write(|w| {
            let mut n = w.get::<Node>("n1")?.unwrap();
            n.ip = Some(Ipv4Addr::new(198, 18, 0, 21));
            w.put(&n)
        })
        .unwrap();
    v.refresh().unwrap();
    assert_eq!(v.getattr(&n1, &host1), Err(VfsError::Stale));
    assert_eq!(v.read(&caller(21, 0), &host1, 0, 10).unwrap().0, b"ONE");
}

#[test]
fn exports_by_client_address() {
    let f = fixture("views-exports");
    let home = f.state.join("home");
    let apps = f.state.join("apps");
    std::fs::create_dir_all(home.join("alice")).unwrap();
    std::fs::create_dir_all(&apps).unwrap();
    std::fs::set_permissions(home.join("alice"), std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(apps.join("tool"), b"bin").unwrap();
    let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
    let exports = [
        Export {
            rw: true,
            ..Export::new("home", &home.to_string_lossy(), vec![net("198.18.0.0/24")])
        },
        Export::new(
            "apps",
            &apps.to_string_lossy(),
            vec![net("198.18.0.11/32"), net("10.0.0.0/8")],
        ),
    ];
    f.store
        .write(|w| {
            for e in &exports {
                w.put(e)?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    let v = Views::open(f.store.clone(), &f.state).unwrap();
    let n1 = caller(11, 0);
    let stranger = caller(99, 0);
    let p = v.root(&n1).unwrap();
    assert_eq!(names(&v, &n1, &p), ["apps", "home", "root"]);
    let ps = v.root(&stranger).unwrap();
    assert_eq!(names(&v, &stranger, &ps), ["home"]);
    // Exports are mount points: their own fsid.
    let h = v.lookup(&n1, &p, b"home").unwrap();
    let r = v.lookup(&n1, &p, b"root").unwrap();
    assert_ne!(
        v.getattr(&n1, &h).unwrap().fsid,
        v.getattr(&n1, &r).unwrap().fsid
    );
    assert_eq!(v.parent(&n1, &h).unwrap(), p);
    // Root is squashed in exports; users write where the mode lets them.
    assert_eq!(
        v.create(&n1, &h, b"x", &NewObject::Directory, &SetAttr::default()),
        Err(VfsError::Access)
    );
    let alice = Caller {
        uid: 1000,
        gid: 1000,
        ..stranger.clone()
    };
    let ad = v.lookup(&alice, &h, b"alice").unwrap();
    let (file, a) = v
        .create(
            &alice,
            &ad,
            b"notes",
            &NewObject::File { exclusive: true },
            &SetAttr::default(),
        )
        .unwrap();
    assert_eq!(a.uid, 1000);
    v.write(&alice, &file, 0, b"hi", Stability::FileSync)
        .unwrap();
    // Read-only export; an address outside an export's clients gets nothing from a handle.
    let tool = path(&v, &n1, &["apps", "tool"]).unwrap();
    assert_eq!(v.read(&n1, &tool, 0, 10).unwrap().0, b"bin");
    assert_eq!(
        v.write(&n1, &tool, 0, b"x", Stability::Unstable),
        Err(VfsError::ReadOnly)
    );
    assert_eq!(v.read(&stranger, &tool, 0, 10), Err(VfsError::Stale));
    // Removing the export ends access through old handles.
    f.store
        .write(|w| w.delete::<Export>("home").map(drop))
        .unwrap();
    v.refresh().unwrap();
    assert_eq!(v.read(&alice, &file, 0, 10), Err(VfsError::Stale));
    assert_eq!(names(&v, &stranger, &ps), Vec::<String>::new());
}

#[test]
fn dynamic_nodes_are_known_by_their_current_lease() {
    use crate::store::model::{Lease, RelayInfo};
    let f = fixture("views-lease");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mac = Mac([0x52, 0x54, 0, 0, 0, 77]);
    let lease = |last: u8, state, expires| Lease {
        ip: Ipv4Addr::new(198, 18, 0, last),
        mac,
        client_id: None,
        hostname: None,
        state,
        start: now - 10,
        expires,
        network: "lab".into(),
        relay: RelayInfo::default(),
    };
    f.store
        .write(|w| {
            w.put(&Node {
                name: "dyn".into(),
                mac,
                ip: None,
                image: Some("img".into()),
                group: None,
                aliases: Vec::new(),
                root: None,
                image_version: None,
                swarm: None,
            })?;
            w.put(&lease(50, LeaseState::Bound, now + 600))?;
            w.put(&lease(51, LeaseState::Bound, now - 1))?;
            w.put(&lease(52, LeaseState::Offered, now + 600))
        })
        .unwrap();
    let v = Views::open(f.store.clone(), &f.state).unwrap();
    let c = caller(50, 0);
    let p = v.root(&c).unwrap();
    assert_eq!(names(&v, &c, &p), ["root"]);
    let host = path(&v, &c, &["root", "etc", "hostname"]).unwrap();
    v.write(&c, &host, 0, b"dyn", Stability::FileSync).unwrap();
    assert!(f.state.join("nfs/nodes/dyn/etc/hostname").exists());
    for last in [51, 52] {
        let other = caller(last, 0);
        let p = v.root(&other).unwrap();
        assert!(
            names(&v, &other, &p).is_empty(),
            "expired or offered lease .{last}"
        );
        assert_eq!(v.getattr(&other, &host), Err(VfsError::Stale));
    }
}

/// A replica that applies every change at once to a copy of the layer, as a peer would.
struct CopyReplica {
    copy: PathBuf,
    waits: Mutex<Vec<replica::Wait>>,
}

impl Replica for CopyReplica {
    fn ship(
        &self,
        node: &str,
        layer: &Path,
        describe: &dyn Fn() -> Option<Vec<replica::wire::Op>>,
        wait: replica::Wait,
    ) {
        self.waits.lock().unwrap().push(wait);
        let body = match describe() {
            Some(ops) => replica::wire::Body::Ops(ops),
            None => replica::wire::Body::Snapshot(replica::local::snapshot(layer).unwrap()),
        };
        replica::apply::apply(&self.copy, node, &body).unwrap();
    }
}

/// Every change a client makes to its layer reaches the replica, described well enough that
/// a copy (seeded by one snapshot) ends up equal to the layer: content, modes, owners,
/// mtimes, links, symlinks, devices and `user.drover.*` xattrs.
#[test]
fn layer_changes_reach_the_replica() {
    use replica::Wait::{Lazy, Stable};
    let f = fixture("views-replica");
    let copy = f.state.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    let rep = Arc::new(CopyReplica {
        copy: copy.clone(),
        waits: Mutex::new(Vec::new()),
    });
    let v = Views::open(f.store.clone(), &f.state)
        .unwrap()
        .with_replica(rep.clone());
    let n1 = caller(11, 0);
    let log = path(&v, &n1, &["root", "var", "log"]).unwrap();
    // The copy starts from a snapshot (as a peer's first shipment would be).
    let layer = f.state.join("nfs/nodes/n1");
    replica::apply::apply(
        &copy,
        "n1",
        &replica::wire::Body::Snapshot(replica::local::snapshot(&layer).unwrap()),
    )
    .unwrap();

    let (fh, _) = v
        .create(
            &n1,
            &log,
            b"app.log",
            &NewObject::File { exclusive: true },
            &SetAttr::default(),
        )
        .unwrap();
    v.write(&n1, &fh, 0, b"one\n", Stability::FileSync).unwrap();
    v.write(&n1, &fh, 4, b"two\n", Stability::Unstable).unwrap();
    v.commit(&n1, &fh, 0, 0).unwrap();
    // The object's member-independent id (`nfs::ids`) is in this xattr: it travels with the
    // object, so the copy answers with the same handle and fileid.
    let on_disk = layer.join("var/log/app.log");
    let file = std::fs::File::open(&on_disk).unwrap();
    let id = replica::sys::get_xattr(std::os::fd::AsFd::as_fd(&file), c"user.drover.id", 64)
        .expect("a layer object made over NFS carries its id");
    v.setattr(
        &n1,
        &fh,
        &SetAttr {
            mode: Some(0o600),
            uid: Some(1000),
            gid: Some(1000),
            mtime: Some(crate::nfs::vfs::SetTime::Client(Time {
                seconds: 1_600_000_000,
                nanos: 7,
            })),
            ..SetAttr::default()
        },
    )
    .unwrap();
    let (dir, _) = v
        .create(
            &n1,
            &log,
            b"sub",
            &NewObject::Directory,
            &SetAttr::default(),
        )
        .unwrap();
    v.create(
        &n1,
        &dir,
        b"link",
        &NewObject::Symlink {
            target: b"../app.log".to_vec(),
        },
        &SetAttr::default(),
    )
    .unwrap();
    v.create(
        &n1,
        &dir,
        b"null",
        &NewObject::Char { major: 1, minor: 3 },
        &SetAttr::default(),
    )
    .unwrap();
    v.link(&n1, &fh, &dir, b"hard").unwrap();
    v.rename(&n1, &log, b"app.log", &dir, b"moved.log").unwrap();
    v.create(
        &n1,
        &log,
        b"tmp",
        &NewObject::File { exclusive: false },
        &SetAttr::default(),
    )
    .unwrap();
    v.remove(&n1, &log, b"tmp").unwrap();
    v.setattr(
        &n1,
        &fh,
        &SetAttr {
            size: Some(2),
            ..SetAttr::default()
        },
    )
    .unwrap();

    assert_eq!(
        replica::local::snapshot(&copy.join("n1")).unwrap(),
        replica::local::snapshot(&layer).unwrap(),
        "the copy equals the layer"
    );
    assert_eq!(
        std::fs::read(copy.join("n1/var/log/sub/hard")).unwrap(),
        b"on"
    );
    let copied = std::fs::File::open(copy.join("n1/var/log/sub/moved.log")).unwrap();
    assert_eq!(
        replica::sys::get_xattr(std::os::fd::AsFd::as_fd(&copied), c"user.drover.id", 64).unwrap(),
        id
    );
    let waits = rep.waits.lock().unwrap().clone();
    assert_eq!(waits[1..4], [Stable, Lazy, Stable], "write, write, commit");
    assert_eq!(waits.iter().filter(|w| **w == Lazy).count(), 1);
    // Image files are read-only and other nodes' layers are theirs: nothing else shipped.
    let n = waits.len();
    let etc = path(&v, &n1, &["root", "etc"]).unwrap();
    assert!(v
        .create(&n1, &etc, b"x", &NewObject::Directory, &SetAttr::default())
        .is_err());
    assert_eq!(rep.waits.lock().unwrap().len(), n);
}

#[path = "view_ids_tests.rs"]
mod ids;

/// An export with `options` applied, the only one in the store, and the views over it.
fn one_export(tag: &str, options: impl FnOnce(&mut Export)) -> (Fixture, Views, PathBuf) {
    let f = fixture(tag);
    let dir = f.state.join("shared");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
    let mut e = Export {
        rw: true,
        ..Export::new("shared", &dir.to_string_lossy(), vec![net("198.18.0.0/24")])
    };
    options(&mut e);
    f.store.write(|w| w.put(&e)).unwrap();
    let v = Views::open(f.store.clone(), &f.state).unwrap();
    (f, v, dir)
}

/// Every byte of a handle is covered by its MAC: one flipped anywhere is BadHandle, not
/// Stale and not another object. A good handle from an address outside the export is
/// Stale, on the check PUTFH makes and on READ.
#[test]
fn forged_and_replayed_export_handles() {
    let (_f, v, dir) = one_export("views-forged", |_| {});
    std::fs::write(dir.join("f"), b"data").unwrap();
    let inside = caller(11, 1000);
    let p = v.root(&inside).unwrap();
    let e = v.lookup(&inside, &p, b"shared").unwrap();
    let fh = v.lookup(&inside, &e, b"f").unwrap();
    v.check(&inside, &fh).unwrap();
    for i in 0..fh.0.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut bad = fh.clone();
            bad.0[i] ^= flip;
            assert_eq!(
                v.check(&inside, &bad),
                Err(VfsError::BadHandle),
                "byte {i} ^ {flip:#x}"
            );
            assert_eq!(v.read(&inside, &bad, 0, 4), Err(VfsError::BadHandle));
        }
    }
    for short in [0, 1, 9, fh.0.len() - 1] {
        let bad = Handle(fh.0[..short].to_vec());
        assert_eq!(
            v.check(&inside, &bad),
            Err(VfsError::BadHandle),
            "{short} bytes"
        );
    }
    let outside = Caller {
        addr: IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)),
        ..inside.clone()
    };
    assert_eq!(v.check(&outside, &fh), Err(VfsError::Stale));
    assert_eq!(v.read(&outside, &fh, 0, 4), Err(VfsError::Stale));
    assert_eq!(v.read(&inside, &fh, 0, 4).unwrap().0, b"data");
}

/// Handles minted before export handles carried the scope hash ([tag, id, kernel handle,
/// MAC over the scope]) keep working while their export is unchanged.
#[test]
fn export_handles_of_the_earlier_format_stay_valid() {
    let (_f, v, dir) = one_export("views-oldfh", |_| {});
    std::fs::write(dir.join("f"), b"old").unwrap();
    let c = caller(11, 1000);
    let p = v.root(&c).unwrap();
    let e = v.lookup(&c, &p, b"shared").unwrap();
    let fh = v.lookup(&c, &e, b"f").unwrap();
    let view = v.view.snapshot();
    let mut inner = v.lock();
    let t = v.exports_for(&view, &mut inner, c.addr).pop().unwrap();
    drop(inner);
    let kh = v.key.unseal(EXPORT_MAC_SCOPE, &fh, EXPORT_PREFIX).unwrap();
    let mut old_prefix = [0u8; PREFIX];
    old_prefix[0] = TAG_EXPORT;
    old_prefix[1..].copy_from_slice(&t.id);
    let old = v.key.seal(&t.scope, &old_prefix, &kh).unwrap();
    assert_eq!(v.read(&c, &old, 0, 3).unwrap().0, b"old");
    let mut bad = old.clone();
    bad.0[PREFIX] ^= 1;
    assert_eq!(v.check(&c, &bad), Err(VfsError::BadHandle));
}

fn with_groups(c: &Caller, gid: u32, gids: &[u32]) -> Caller {
    Caller {
        gid,
        gids: gids.to_vec(),
        ..c.clone()
    }
}

/// Root squash maps uid 0 and gid 0, also as a supplementary group (a non-root uid with gid
/// 0 does not read a 0640 root:root file); `--no-root-squash` keeps root; `--all-squash`
/// maps everyone to the anonymous ids; read-only networks inside a read-write export.
#[test]
fn export_identity_mapping_and_read_only_networks() {
    use crate::store::model::Squash as S;
    let secret = |dir: &Path| {
        let f = dir.join("secret");
        std::fs::write(&f, b"s").unwrap();
        std::os::unix::fs::chown(&f, Some(0), Some(0)).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    };
    let dir_of = |v: &Views, c: &Caller| {
        let p = v.root(c).unwrap();
        v.lookup(c, &p, b"shared").unwrap()
    };
    let file = |v: &Views, c: &Caller, name: &str| {
        let e = dir_of(v, c);
        (e.clone(), v.lookup(c, &e, name.as_bytes()).unwrap())
    };

    // Root squash (the default).
    let (_f, v, dir) = one_export("views-squash-root", |_| {});
    secret(&dir);
    let user = caller(11, 1000);
    let (_, fh) = file(&v, &user, "secret");
    for c in [
        with_groups(&user, 0, &[]),
        with_groups(&user, 1000, &[0]),
        caller(11, 0),
    ] {
        assert_eq!(v.read(&c, &fh, 0, 1), Err(VfsError::Access), "{c:?}");
    }
    let (e, _) = file(&v, &caller(11, 0), "secret");
    let (_, a) = v
        .create(
            &caller(11, 0),
            &e,
            b"byroot",
            &NewObject::Directory,
            &SetAttr::default(),
        )
        .unwrap();
    assert_eq!((a.uid, a.gid), (65534, 65534));

    // No root squash: root reads and owns what it makes.
    let (_f, v, dir) = one_export("views-squash-none", |e| e.squash = S::None);
    secret(&dir);
    let root = caller(11, 0);
    let (e, fh) = file(&v, &root, "secret");
    assert_eq!(v.read(&root, &fh, 0, 1).unwrap().0, b"s");
    let (_, a) = v
        .create(&root, &e, b"r", &NewObject::Directory, &SetAttr::default())
        .unwrap();
    assert_eq!((a.uid, a.gid), (0, 0));

    // All squash with anonymous ids.
    let (_f, v, _dir) = one_export("views-squash-all", |e| {
        e.squash = S::All;
        e.anon_uid = 4000;
        e.anon_gid = 4001;
    });
    let e = dir_of(&v, &caller(11, 1000));
    let (_, a) = v
        .create(
            &caller(11, 1000),
            &e,
            b"a",
            &NewObject::Directory,
            &SetAttr::default(),
        )
        .unwrap();
    assert_eq!((a.uid, a.gid), (4000, 4001));

    // A read-only network inside the read-write one, and one outside it.
    let (_f, v, _dir) = one_export("views-ro-net", |e| {
        e.ro_clients = vec![
            "198.18.0.128/25".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
    });
    let rw = caller(11, 1000);
    let ro = caller(200, 1000);
    let far = Caller {
        addr: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
        ..rw.clone()
    };
    let e = dir_of(&v, &rw);
    v.create(&rw, &e, b"w", &NewObject::Directory, &SetAttr::default())
        .unwrap();
    for c in [&ro, &far] {
        let e = dir_of(&v, c);
        assert_eq!(
            v.create(c, &e, b"no", &NewObject::Directory, &SetAttr::default()),
            Err(VfsError::ReadOnly),
            "{c:?}"
        );
        assert_eq!(
            v.access(c, &e, 0x3f).unwrap() & 0x0c,
            0,
            "no MODIFY/EXTEND for {c:?}"
        );
    }
}
