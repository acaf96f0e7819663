//! DirVfs against real directories (needs root for file handles, chown and mknod).

use super::*;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::MetadataExt;

pub(crate) fn require_root() {
    assert!(
        // The owner of /proc/self is the effective uid.
        std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(1)
            == 0,
        "these tests need root (file handles, chown, mknod): run them as root"
    );
}

pub(crate) fn tempdir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "drover-nfsfs-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub(crate) fn user(uid: u32, gid: u32) -> Caller {
    Caller {
        addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        uid,
        gid,
        gids: Vec::new(),
    }
}

fn root() -> Caller {
    user(0, 0)
}

fn setup(tag: &str, writable: bool) -> (PathBuf, DirVfs, HandleKey) {
    require_root();
    let d = tempdir(tag);
    let key = HandleKey::random();
    let v = DirVfs::new(d.clone(), writable, key.clone()).unwrap();
    (d, v, key)
}

fn file(v: &DirVfs, c: &Caller, dir: &Handle, name: &str, data: &[u8]) -> Handle {
    let (h, _) = v
        .create(
            c,
            dir,
            name.as_bytes(),
            &NewObject::File { exclusive: true },
            &SetAttr::default(),
        )
        .unwrap();
    v.write(c, &h, 0, data, Stability::FileSync).unwrap();
    h
}

#[test]
fn create_write_read_lookup() {
    let (d, v, _) = setup("basic", true);
    let c = user(1000, 100);
    let r = v.root(&c).unwrap();
    // The root directory belongs to root: a user may not create in it.
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    let h = file(&v, &c, &r, "a.txt", b"hello world");
    assert_eq!(v.lookup(&c, &r, b"a.txt").unwrap(), h);
    let a = v.getattr(&c, &h).unwrap();
    assert_eq!(
        (a.uid, a.gid, a.size, a.kind),
        (1000, 100, 11, FileType::Regular)
    );
    let md = std::fs::metadata(d.join("a.txt")).unwrap();
    assert_eq!(
        (md.uid(), md.gid()),
        (1000, 100),
        "created owned by the caller"
    );
    assert_eq!(v.read(&c, &h, 6, 100).unwrap(), (b"world".to_vec(), true));
    assert_eq!(v.read(&c, &h, 0, 5).unwrap(), (b"hello".to_vec(), false));
    assert_eq!(v.read(&c, &h, 50, 5).unwrap(), (Vec::new(), true));
    v.commit(&c, &h, 0, 0).unwrap();
    assert_eq!(v.lookup(&c, &r, b"nope"), Err(VfsError::NoEnt));
    assert_eq!(v.read(&c, &r, 0, 1), Err(VfsError::IsDir));
    assert_eq!(v.lookup(&c, &h, b"x"), Err(VfsError::NotDir));
}

#[test]
fn names_never_escape() {
    let (d, v, _) = setup("escape", true);
    let c = root();
    let r = v.root(&c).unwrap();
    for bad in [&b".."[..], b".", b"", b"a/b", b"../etc"] {
        assert_eq!(v.lookup(&c, &r, bad), Err(VfsError::BadName), "{bad:?}");
    }
    assert_eq!(v.lookup(&c, &r, &[b'x'; 256]), Err(VfsError::NameTooLong));
    assert_eq!(
        v.parent(&c, &r),
        Err(VfsError::NoEnt),
        "no parent above the root"
    );
    std::os::unix::fs::symlink("/etc", d.join("out")).unwrap();
    let s = v.lookup(&c, &r, b"out").unwrap();
    assert_eq!(v.getattr(&c, &s).unwrap().kind, FileType::Symlink);
    assert_eq!(v.readlink(&c, &s).unwrap(), b"/etc");
    assert_eq!(v.lookup(&c, &s, b"passwd"), Err(VfsError::NotDir));
    assert_eq!(v.read(&c, &s, 0, 10), Err(VfsError::Symlink));
    let (l, _) = v
        .create(
            &c,
            &r,
            b"ln",
            &NewObject::Symlink {
                target: b"../../x".to_vec(),
            },
            &SetAttr::default(),
        )
        .unwrap();
    assert_eq!(v.readlink(&c, &l).unwrap(), b"../../x");
    // A directory's parent chain ends at the root.
    let (sub, _) = v
        .create(&c, &r, b"sub", &NewObject::Directory, &SetAttr::default())
        .unwrap();
    assert_eq!(v.parent(&c, &sub).unwrap(), r);
}

#[test]
fn handles_persist_and_are_checked() {
    let (d, v, key) = setup("handles", true);
    let c = root();
    let r = v.root(&c).unwrap();
    let (sub, _) = v
        .create(&c, &r, b"sub", &NewObject::Directory, &SetAttr::default())
        .unwrap();
    let h = file(&v, &c, &sub, "f", b"data");
    drop(v);
    // A new instance with the same key (a restart) accepts the old handles.
    let v2 = DirVfs::new(d.clone(), true, key.clone()).unwrap();
    assert_eq!(v2.read(&c, &h, 0, 10).unwrap().0, b"data");
    assert_eq!(v2.parent(&c, &sub).unwrap(), r);
    // Another key, or the same key serving another directory, refuses them.
    let other = DirVfs::new(d.clone(), true, HandleKey::random()).unwrap();
    assert_eq!(other.getattr(&c, &h), Err(VfsError::BadHandle));
    let d2 = tempdir("handles2");
    let v3 = DirVfs::new(d2, true, key).unwrap();
    assert_eq!(v3.getattr(&c, &h), Err(VfsError::BadHandle));
    // Any altered byte is refused.
    for i in 0..h.0.len() {
        let mut bad = h.clone();
        bad.0[i] ^= 1;
        assert_eq!(v2.getattr(&c, &bad), Err(VfsError::BadHandle), "byte {i}");
    }
    assert_eq!(v2.getattr(&c, &Handle(vec![])), Err(VfsError::BadHandle));
    assert_eq!(
        v2.getattr(&c, &Handle(vec![b'D'; 200])),
        Err(VfsError::BadHandle)
    );
    // A removed file's handle is stale.
    v2.remove(&c, &sub, b"f").unwrap();
    assert_eq!(v2.getattr(&c, &h), Err(VfsError::Stale));
    // The write verifier changes per instance.
    assert_ne!(v2.write_verifier(), other.write_verifier());
}

#[test]
fn permissions_follow_mode_bits() {
    let (d, v, _) = setup("perms", true);
    let rootc = root();
    let r = v.root(&rootc).unwrap();
    let h = file(&v, &rootc, &r, "secret", b"x");
    v.setattr(
        &rootc,
        &h,
        &SetAttr {
            mode: Some(0o640),
            gid: Some(50),
            ..SetAttr::default()
        },
    )
    .unwrap();
    let alice = user(1000, 100);
    let mut staff = user(1001, 100);
    staff.gids = vec![50];
    assert_eq!(v.read(&alice, &h, 0, 1), Err(VfsError::Access));
    assert_eq!(v.read(&staff, &h, 0, 1).unwrap().0, b"x");
    assert_eq!(
        v.write(&staff, &h, 0, b"y", Stability::Unstable),
        Err(VfsError::Access)
    );
    assert_eq!(v.access(&alice, &h, 0x3f).unwrap(), 0);
    assert_eq!(v.access(&staff, &h, 0x3f).unwrap(), access::READ);
    assert_eq!(
        v.create(
            &alice,
            &r,
            b"new",
            &NewObject::File { exclusive: true },
            &SetAttr::default()
        ),
        Err(VfsError::Access),
        "root's 0755 directory"
    );
    assert_eq!(v.remove(&alice, &r, b"secret"), Err(VfsError::Access));
    assert_eq!(
        v.setattr(
            &alice,
            &h,
            &SetAttr {
                mode: Some(0o777),
                ..SetAttr::default()
            }
        ),
        Err(VfsError::Perm)
    );
    // Sticky world-writable directory: only the owner removes its entry.
    let (tmp, _) = v
        .create(
            &rootc,
            &r,
            b"tmp",
            &NewObject::Directory,
            &SetAttr {
                mode: Some(0o1777),
                ..SetAttr::default()
            },
        )
        .unwrap();
    assert_eq!(
        std::fs::metadata(d.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    let mine = file(&v, &alice, &tmp, "mine", b"a");
    assert_eq!(v.remove(&staff, &tmp, b"mine"), Err(VfsError::Access));
    assert_eq!(
        v.setattr(
            &alice,
            &mine,
            &SetAttr {
                uid: Some(1001),
                ..SetAttr::default()
            }
        ),
        Err(VfsError::Perm),
        "only root gives files away"
    );
    assert_eq!(
        v.create(
            &alice,
            &tmp,
            b"dev",
            &NewObject::Char { major: 1, minor: 3 },
            &SetAttr::default()
        ),
        Err(VfsError::Perm)
    );
    let (dev, a) = v
        .create(
            &rootc,
            &tmp,
            b"dev",
            &NewObject::Char { major: 1, minor: 3 },
            &SetAttr::default(),
        )
        .unwrap();
    assert_eq!((a.kind, a.rdev), (FileType::Char, (1, 3)));
    assert_eq!(
        v.read(&rootc, &dev, 0, 1),
        Err(VfsError::Inval),
        "devices are not opened"
    );
    v.remove(&alice, &tmp, b"mine").unwrap();
    // The owner may write its own read-only file (the client checked at OPEN).
    let ro = file(&v, &alice, &tmp, "ro", b"1");
    v.setattr(
        &alice,
        &ro,
        &SetAttr {
            mode: Some(0o444),
            ..SetAttr::default()
        },
    )
    .unwrap();
    v.write(&alice, &ro, 0, b"2", Stability::FileSync).unwrap();
    // setgid directory: new entries take its group.
    let (sg, _) = v
        .create(
            &rootc,
            &r,
            b"sg",
            &NewObject::Directory,
            &SetAttr {
                mode: Some(0o2777),
                gid: Some(77),
                ..SetAttr::default()
            },
        )
        .unwrap();
    let (_, a) = v
        .create(
            &alice,
            &sg,
            b"d",
            &NewObject::Directory,
            &SetAttr::default(),
        )
        .unwrap();
    assert_eq!((a.uid, a.gid, a.mode & 0o2000), (1000, 77, 0o2000));
}

#[test]
fn squashed_root_is_nobody() {
    let (_d, v, _) = setup("squash", true);
    let v = v.squash_root();
    let c = root();
    let r = v.root(&c).unwrap();
    assert_eq!(
        v.create(&c, &r, b"x", &NewObject::Directory, &SetAttr::default()),
        Err(VfsError::Access)
    );
}

#[test]
fn read_only_tree_refuses_changes() {
    let (d, v, _) = setup("ro", false);
    std::fs::write(d.join("f"), b"abc").unwrap();
    let c = root();
    let r = v.root(&c).unwrap();
    let f = v.lookup(&c, &r, b"f").unwrap();
    assert_eq!(v.read(&c, &f, 0, 10).unwrap().0, b"abc");
    assert_eq!(
        v.write(&c, &f, 0, b"x", Stability::Unstable),
        Err(VfsError::ReadOnly)
    );
    assert_eq!(
        v.create(&c, &r, b"n", &NewObject::Directory, &SetAttr::default()),
        Err(VfsError::ReadOnly)
    );
    assert_eq!(v.remove(&c, &r, b"f"), Err(VfsError::ReadOnly));
    assert_eq!(
        v.setattr(
            &c,
            &f,
            &SetAttr {
                size: Some(0),
                ..SetAttr::default()
            }
        ),
        Err(VfsError::ReadOnly)
    );
    assert_eq!(v.access(&c, &f, 0x3f).unwrap(), access::READ);
}

#[test]
fn rename_link_remove() {
    let (_d, v, _) = setup("rename", true);
    let c = root();
    let r = v.root(&c).unwrap();
    let (a, _) = v
        .create(&c, &r, b"a", &NewObject::Directory, &SetAttr::default())
        .unwrap();
    let (b, _) = v
        .create(&c, &r, b"b", &NewObject::Directory, &SetAttr::default())
        .unwrap();
    let f = file(&v, &c, &a, "f", b"x");
    v.rename(&c, &a, b"f", &b, b"g").unwrap();
    assert_eq!(
        v.lookup(&c, &b, b"g").unwrap(),
        f,
        "handles survive renames"
    );
    assert_eq!(v.lookup(&c, &a, b"f"), Err(VfsError::NoEnt));
    v.link(&c, &f, &a, b"hard").unwrap();
    assert_eq!(v.getattr(&c, &f).unwrap().nlink, 2);
    assert_eq!(v.link(&c, &a, &b, b"dirlink"), Err(VfsError::IsDir));
    assert_eq!(v.remove(&c, &r, b"a"), Err(VfsError::NotEmpty));
    assert_eq!(v.rename(&c, &r, b"a", &a, b"inside"), Err(VfsError::Inval));
    v.remove(&c, &a, b"hard").unwrap();
    v.remove(&c, &r, b"a").unwrap();
    assert_eq!(v.getattr(&c, &a), Err(VfsError::Stale));
    assert_eq!(
        v.create(
            &c,
            &b,
            b"g",
            &NewObject::File { exclusive: true },
            &SetAttr::default()
        ),
        Err(VfsError::Exist)
    );
    // A non-exclusive create opens the existing file and truncates when asked.
    let (g, at) = v
        .create(
            &c,
            &b,
            b"g",
            &NewObject::File { exclusive: false },
            &SetAttr {
                size: Some(0),
                ..SetAttr::default()
            },
        )
        .unwrap();
    assert_eq!((g, at.size), (f, 0));
}

#[test]
fn large_sparse_file() {
    let (_d, v, _) = setup("sparse", true);
    let c = root();
    let r = v.root(&c).unwrap();
    let h = file(&v, &c, &r, "big", b"start");
    let off = 5u64 << 30;
    v.write(&c, &h, off, b"end", Stability::DataSync).unwrap();
    let a = v.getattr(&c, &h).unwrap();
    assert_eq!(a.size, off + 3);
    assert!(a.used < 1 << 20, "sparse: {} bytes used", a.used);
    assert_eq!(v.read(&c, &h, off, 100).unwrap(), (b"end".to_vec(), true));
    assert_eq!(v.read(&c, &h, off - 2, 5).unwrap().0, b"\0\0end");
    v.setattr(
        &c,
        &h,
        &SetAttr {
            size: Some(6 << 30),
            ..SetAttr::default()
        },
    )
    .unwrap();
    assert_eq!(v.getattr(&c, &h).unwrap().size, 6 << 30);
    assert_eq!(
        v.write(&c, &h, u64::MAX - 1, b"xx", Stability::Unstable),
        Err(VfsError::TooBig)
    );
}

fn list_all(v: &DirVfs, c: &Caller, dir: &Handle, page: usize) -> Vec<(Vec<u8>, u64)> {
    let mut out = Vec::new();
    let mut cookie = 0;
    loop {
        let (entries, eof) = v.readdir(c, dir, cookie, page).unwrap();
        assert!(entries.len() <= page);
        for e in &entries {
            assert!(e.cookie > 2);
            out.push((e.name.clone(), e.cookie));
        }
        if eof {
            return out;
        }
        cookie = entries
            .last()
            .expect("a page before the end is not empty")
            .cookie;
    }
}

#[test]
fn readdir_ten_thousand_entries() {
    let (d, v, _) = setup("readdir", true);
    let c = root();
    for i in 0..10_000 {
        std::fs::write(d.join(format!("f{i:05}")), b"").unwrap();
    }
    let r = v.root(&c).unwrap();
    let all = list_all(&v, &c, &r, 113);
    assert_eq!(all.len(), 10_000);
    let names: HashSet<_> = all.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names.len(), 10_000, "no duplicates");
    assert!(names.contains(b"f09999".as_slice()));
    // Change the directory in the middle of a listing: every entry that was there before and
    // still is comes exactly once.
    let (first, eof) = v.readdir(&c, &r, 0, 5000).unwrap();
    assert!(!eof);
    for i in 0..200 {
        std::fs::remove_file(d.join(format!("f{:05}", i * 50))).unwrap();
        std::fs::write(d.join(format!("new{i}")), b"").unwrap();
    }
    let mut seen: Vec<Vec<u8>> = first.iter().map(|e| e.name.clone()).collect();
    let mut cookie = first.last().unwrap().cookie;
    loop {
        let (page, eof) = v.readdir(&c, &r, cookie, 777).unwrap();
        seen.extend(page.iter().map(|e| e.name.clone()));
        if eof {
            break;
        }
        cookie = page.last().unwrap().cookie;
    }
    let set: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(set.len(), seen.len(), "no entry twice");
    for i in 0..10_000 {
        if i % 50 != 0 {
            assert!(set.contains(format!("f{i:05}").as_bytes()), "f{i:05} lost");
        }
    }
    assert_eq!(v.readdir(&c, &r, 1, 10), Err(VfsError::BadCookie));
}

#[test]
fn setattr_times_and_size() {
    let (_d, v, _) = setup("times", true);
    let c = user(1000, 100);
    let rc = root();
    let r = v.root(&rc).unwrap();
    v.setattr(
        &rc,
        &r,
        &SetAttr {
            mode: Some(0o777),
            ..SetAttr::default()
        },
    )
    .unwrap();
    let h = file(&v, &c, &r, "t", b"123456");
    let t = Time {
        seconds: 1_000_000,
        nanos: 5,
    };
    let a = v
        .setattr(
            &c,
            &h,
            &SetAttr {
                size: Some(2),
                mtime: Some(SetTime::Client(t)),
                ..SetAttr::default()
            },
        )
        .unwrap();
    assert_eq!((a.size, a.mtime), (2, t));
    let other = user(1001, 101);
    assert_eq!(
        v.setattr(
            &other,
            &h,
            &SetAttr {
                mtime: Some(SetTime::Client(t)),
                ..SetAttr::default()
            }
        ),
        Err(VfsError::Perm)
    );
    let before = v.getattr(&c, &h).unwrap().change;
    v.write(&c, &h, 0, b"zz", Stability::Unstable).unwrap();
    assert_ne!(v.getattr(&c, &h).unwrap().change, before);
    let s = v.statfs(&c, &h).unwrap();
    assert!(s.bytes_total > 0 && s.files_total > 0);
}
