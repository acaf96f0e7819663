//! Root-view handles and fileids across pool members: two `Views` over two state directories
//! (two members) with one cluster key and the same image blob (needs root).

use super::*;
use crate::pool::key::ClusterKey;

fn share_key(members: &[&Fixture]) {
    let key = ClusterKey::generate().unwrap();
    for f in members {
        key.save_new(&ClusterKey::path(&f.state)).unwrap();
    }
}

/// What a peer's replication does: the layer copied with owners, modes and `user.*`
/// attributes.
fn copy_layer(from: &Fixture, to: &Fixture, node: &str) {
    let dst = to.state.join("nfs/nodes");
    std::fs::create_dir_all(&dst).unwrap();
    let _ = std::fs::remove_dir_all(dst.join(node));
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from.state.join("nfs/nodes").join(node))
        .arg(&dst)
        .status()
        .expect("cp (coreutils) must be installed");
    assert!(st.success(), "cp -a of the layer");
}

fn fileid(v: &Views, c: &Caller, h: &Handle) -> u64 {
    v.getattr(c, h).unwrap().fileid
}

fn file(v: &Views, c: &Caller, dir: &Handle, name: &str, data: &[u8]) -> Handle {
    let (h, a) = v
        .create(
            c,
            dir,
            name.as_bytes(),
            &NewObject::File { exclusive: true },
            &SetAttr::default(),
        )
        .unwrap();
    assert_eq!(
        a.fileid,
        fileid(v, c, &h),
        "create answers the object's fileid"
    );
    v.write(c, &h, 0, data, Stability::FileSync).unwrap();
    h
}

const PATHS: &[&[&str]] = &[
    &["root"],
    &["root", "etc"],
    &["root", "etc", "passwd"],
    &["root", "etc", "alias"],
    &["root", "etc", "mtab"],
    &["root", "dev", "null"],
    &["root", "etc", "hostname"],
    &["root", "etc", "ssh"],
    &["root", "etc", "ssh", "key"],
    &["root", "var", "log"],
    &["root", "var", "log", "boot.log"],
    &["root", "var", "log", "b.log"],
    &["root", "var", "log", "c.log"],
    &["root", "var", "log", "lnk"],
    &["root", "var", "log", "sub2"],
    &["root", "var", "log", "sub2", "f"],
    &["root", "var", "log", "host.txt"],
    &["root", "srv", "data"],
];

#[test]
fn members_agree_on_root_view_handles_and_fileids() {
    let fa = fixture("ids-a");
    let fb = fixture("ids-b");
    share_key(&[&fa, &fb]);
    let a = Views::open(fa.store.clone(), &fa.state).unwrap();
    let b = Views::open(fb.store.clone(), &fb.state).unwrap();
    let n1 = caller(11, 0);
    let log = path(&a, &n1, &["root", "var", "log"]).unwrap();
    // A file made over NFS keeps its handle and fileid through a rename; a hard link shares
    // them.
    let made = file(&a, &n1, &log, "a.log", b"made on A");
    let made_id = fileid(&a, &n1, &made);
    a.rename(&n1, &log, b"a.log", &log, b"b.log").unwrap();
    assert_eq!(v_lookup(&a, &n1, &log, "b.log"), made);
    assert_eq!(fileid(&a, &n1, &made), made_id);
    assert_eq!(a.read(&n1, &made, 0, 100).unwrap().0, b"made on A");
    a.link(&n1, &made, &log, b"c.log").unwrap();
    let link = v_lookup(&a, &n1, &log, "c.log");
    assert_eq!(
        (link.clone(), fileid(&a, &n1, &link)),
        (made.clone(), made_id)
    );
    // A directory renamed: it and what it holds keep their handles.
    let (sub, _) = a
        .create(
            &n1,
            &log,
            b"sub",
            &NewObject::Directory,
            &SetAttr::default(),
        )
        .unwrap();
    let inner = file(&a, &n1, &sub, "f", b"inner");
    a.rename(&n1, &log, b"sub", &log, b"sub2").unwrap();
    assert_eq!(v_lookup(&a, &n1, &log, "sub2"), sub);
    assert_eq!(a.read(&n1, &inner, 0, 10).unwrap().0, b"inner");
    a.create(
        &n1,
        &log,
        b"lnk",
        &NewObject::Symlink {
            target: b"b.log".to_vec(),
        },
        &SetAttr::default(),
    )
    .unwrap();
    // A file made on the host, without an id: both members derive the same.
    std::fs::write(fa.state.join("nfs/nodes/n1/var/log/host.txt"), b"host").unwrap();
    // A seeded path keeps the image object's id, kept in the layer's attribute.
    let host = path(&a, &n1, &["root", "etc", "hostname"]).unwrap();
    let r = a.lock().roots.get("n1").cloned().unwrap();
    let parts = ["etc".to_string(), "hostname".to_string()];
    let image_id = r.image_ids.at(&r.image, &parts).unwrap().id;
    assert_eq!(fileid(&a, &n1, &host), image_id);
    let o = fs::Obj::open_nofollow(&fa.state.join("nfs/nodes/n1/etc/hostname")).unwrap();
    let stored = o.xattr(crate::nfs::ids::ID_XATTR).unwrap().unwrap();
    assert_eq!(stored, format!("{image_id:016x}").into_bytes());
    // Hard links in the image share one fileid.
    let passwd = path(&a, &n1, &["root", "etc", "passwd"]).unwrap();
    let alias = path(&a, &n1, &["root", "etc", "alias"]).unwrap();
    assert_eq!(fileid(&a, &n1, &passwd), fileid(&a, &n1, &alias));

    // Member B: the same image, its own unpacked copy, and a copy of A's layer.
    copy_layer(&fa, &fb, "n1");
    let mut seen = HashMap::new();
    for parts in PATHS {
        let ha = path(&a, &n1, parts).unwrap();
        let hb = path(&b, &n1, parts).unwrap();
        assert_eq!(ha, hb, "handle of {parts:?}");
        let (ia, ib) = (fileid(&a, &n1, &ha), fileid(&b, &n1, &ha));
        assert_eq!(ia, ib, "fileid of {parts:?}");
        assert!(ia > 1, "{parts:?}: fileids 0 and 1 are reserved");
        assert_eq!(
            a.getattr(&n1, &ha).unwrap().fsid,
            b.getattr(&n1, &hb).unwrap().fsid
        );
        if let Some(other) = seen.insert(ia, parts) {
            // Only hard links may share a fileid.
            assert!(
                [other, parts].iter().all(|p| p.ends_with(&["passwd"])
                    || p.ends_with(&["alias"])
                    || p.ends_with(&["b.log"])
                    || p.ends_with(&["c.log"])),
                "{other:?} and {parts:?} share fileid {ia}"
            );
        }
    }
    // Handles A issued work on B, with the same content (and READDIR agrees).
    assert_eq!(b.read(&n1, &made, 0, 100).unwrap().0, b"made on A");
    assert_eq!(b.read(&n1, &inner, 0, 100).unwrap().0, b"inner");
    assert_eq!(b.read(&n1, &passwd, 0, 100).unwrap().0, b"root:x:0:0");
    let (ea, _) = a.readdir(&n1, &log, 0, 100).unwrap();
    let (eb, _) = b.readdir(&n1, &log, 0, 100).unwrap();
    let ids = |e: &[DirEntry]| {
        let mut v: Vec<_> = e
            .iter()
            .map(|e| (e.name.clone(), e.handle.0.clone(), e.attr.fileid))
            .collect();
        v.sort();
        v
    };
    assert_eq!(ids(&ea), ids(&eb));
    assert!(ea
        .iter()
        .all(|e| e.attr.fileid == fileid(&a, &n1, &e.handle)));
    // B writes through A's handle; a rename on B keeps it valid there too.
    b.write(&n1, &made, 0, b"MADE", Stability::FileSync)
        .unwrap();
    b.rename(&n1, &log, b"b.log", &log, b"d.log").unwrap();
    assert_eq!(b.read(&n1, &made, 0, 4).unwrap().0, b"MADE");
    assert_eq!(fileid(&b, &n1, &made), made_id);
    // Confinement holds on every member: another node's handle is stale, an altered one bad.
    let n2 = caller(12, 0);
    assert_eq!(b.getattr(&n2, &made), Err(VfsError::Stale));
    assert_eq!(b.getattr(&caller(99, 0), &made), Err(VfsError::Stale));
    let mut forged = made.clone();
    let at = forged.0.len() - 20;
    forged.0[at] ^= 1;
    assert_eq!(b.getattr(&n1, &forged), Err(VfsError::BadHandle));
    assert_eq!(a.getattr(&n1, &forged), Err(VfsError::BadHandle));
    // A member outside the pool (its own key) refuses them all.
    let fc = fixture("ids-c");
    let c = Views::open(fc.store.clone(), &fc.state).unwrap();
    assert_eq!(c.getattr(&n1, &passwd), Err(VfsError::BadHandle));
}

fn v_lookup(v: &Views, c: &Caller, dir: &Handle, name: &str) -> Handle {
    v.lookup(c, dir, name.as_bytes()).unwrap()
}

#[test]
fn a_symlink_swapped_into_the_layer_is_not_followed() {
    let f = fixture("ids-swap");
    let v = Views::open(f.store.clone(), &f.state).unwrap();
    let n1 = caller(11, 0);
    let log = path(&v, &n1, &["root", "var", "log"]).unwrap();
    let (sub, _) = v
        .create(
            &n1,
            &log,
            b"sub",
            &NewObject::Directory,
            &SetAttr::default(),
        )
        .unwrap();
    let secret = file(&v, &n1, &sub, "secret", b"inside");
    assert_eq!(v.read(&n1, &secret, 0, 10).unwrap().0, b"inside");
    // On the host, the indexed directory moves out of the layer (its objects keep their
    // ids) and a symlink to it takes its place.
    let layer_sub = f.state.join("nfs/nodes/n1/var/log/sub");
    let outside = f.state.join("outside");
    std::fs::rename(&layer_sub, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &layer_sub).unwrap();
    assert_eq!(v.read(&n1, &secret, 0, 10), Err(VfsError::Stale));
    assert_eq!(v.getattr(&n1, &sub), Err(VfsError::Stale));
    // The name now answers the symlink itself, never what it points to.
    let now = v_lookup(&v, &n1, &log, "sub");
    assert_eq!(v.getattr(&n1, &now).unwrap().kind, FileType::Symlink);
    assert_eq!(
        v.lookup(&n1, &now, b"secret"),
        Err(VfsError::NotDir),
        "a symlink has no entries"
    );
}

#[test]
fn objects_replicated_after_the_walk_are_found() {
    let fa = fixture("ids-late-a");
    let fb = fixture("ids-late-b");
    share_key(&[&fa, &fb]);
    let a = Views::open(fa.store.clone(), &fa.state).unwrap();
    let b = Views::open(fb.store.clone(), &fb.state).unwrap();
    let n1 = caller(11, 0);
    // B has indexed n1's layer already (the node once reached it).
    let log_b = path(&b, &n1, &["root", "var", "log"]).unwrap();
    let log = path(&a, &n1, &["root", "var", "log"]).unwrap();
    assert_eq!(log, log_b);
    let made = file(&a, &n1, &log, "late.log", b"late");
    // What replication does: the object lands in B's layer with its attributes.
    let rel = "nfs/nodes/n1/var/log/late.log";
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(fa.state.join(rel))
        .arg(fb.state.join(rel))
        .status()
        .expect("cp (coreutils) must be installed");
    assert!(st.success());
    // B walks its layer again for an id it does not know (not more than once a second).
    std::thread::sleep(crate::nfs::ids::REWALK_EVERY);
    assert_eq!(b.read(&n1, &made, 0, 10).unwrap().0, b"late");
    assert_eq!(fileid(&b, &n1, &made), fileid(&a, &n1, &made));
    assert_eq!(v_lookup(&b, &n1, &log, "late.log"), made);
}

#[test]
fn a_cluster_key_that_appears_later_is_used() {
    let fa = fixture("ids-join-a");
    let fb = fixture("ids-join-b");
    let a = Views::open(fa.store.clone(), &fa.state).unwrap();
    let n1 = caller(11, 0);
    let parts = ["root", "etc", "passwd"];
    let own = path(&a, &n1, &parts).unwrap();
    // A joins a pool while serving; B starts in it.
    share_key(&[&fa, &fb]);
    let b = Views::open(fb.store.clone(), &fb.state).unwrap();
    // A looks for the key at most once a second.
    std::thread::sleep(crate::nfs::ids::REWALK_EVERY);
    let pooled = path(&a, &n1, &parts).unwrap();
    assert_ne!(own, pooled);
    assert_eq!(pooled, path(&b, &n1, &parts).unwrap());
    assert_eq!(b.read(&n1, &pooled, 0, 4).unwrap().0, b"root");
    // Handles A sealed before stay valid on A only.
    assert_eq!(a.read(&n1, &own, 0, 4).unwrap().0, b"root");
    assert_eq!(b.getattr(&n1, &own), Err(VfsError::BadHandle));
}
