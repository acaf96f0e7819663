use super::apply::{apply, ApplyError};
use super::local::snapshot;
use super::wire::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn p(s: &str) -> RelPath {
    RelPath::new(
        s.split('/')
            .filter(|n| !n.is_empty())
            .map(|n| n.as_bytes().to_vec())
            .collect(),
    )
    .unwrap()
}

fn meta(mode: u32) -> Meta {
    Meta {
        mode,
        uid: 1000,
        gid: 100,
        mtime: (1_700_000_000, 5),
        xattrs: vec![(b"user.drover.id".to_vec(), b"obj-1".to_vec())],
    }
}

struct Tmp(PathBuf);

impl Tmp {
    fn new(tag: &str) -> Tmp {
        let d = std::env::temp_dir().join(format!(
            "drover-replica-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Tmp(d)
    }
    fn layer(&self) -> PathBuf {
        self.0.join("n1")
    }
}

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ops(v: Vec<Op>) -> Body {
    Body::Ops(v)
}

pub(crate) fn ship(body: Body) -> Shipment {
    Shipment {
        node: "n1".into(),
        origin: 7,
        epoch: 1,
        seq: 2,
        body,
    }
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    // getfattr is not always installed: read through the module's own call.
    let f = std::fs::File::open(path).ok()?;
    let c = std::ffi::CString::new(name).ok()?;
    super::sys::get_xattr(std::os::fd::AsFd::as_fd(&f), &c, 4096).ok()
}

pub(crate) fn all_ops() -> Vec<Op> {
    vec![
        Op::Put {
            path: p("log"),
            kind: Kind::Dir,
            meta: meta(0o755),
        },
        Op::Put {
            path: p("log/a.txt"),
            kind: Kind::File(b"hello".to_vec()),
            meta: meta(0o640),
        },
        Op::Write {
            path: p("log/a.txt"),
            offset: 5,
            data: b" world".to_vec(),
            size: 11,
            meta: meta(0o640),
        },
        Op::Attr {
            path: p("log/a.txt"),
            size: Some(11),
            meta: meta(0o4750),
        },
        Op::Put {
            path: p("log/l"),
            kind: Kind::Symlink(b"../../etc/passwd".to_vec()),
            meta: Meta {
                xattrs: Vec::new(),
                ..meta(0o777)
            },
        },
        Op::Put {
            path: p("log/dev"),
            kind: Kind::Char(super::super::fs::makedev(1, 3)),
            meta: Meta {
                xattrs: Vec::new(),
                ..meta(0o600)
            },
        },
        Op::Put {
            path: p("log/fifo"),
            kind: Kind::Fifo,
            meta: Meta {
                xattrs: Vec::new(),
                ..meta(0o600)
            },
        },
        Op::Link {
            from: p("log/a.txt"),
            to: p("log/b.txt"),
        },
        Op::Rename {
            from: p("log/b.txt"),
            to: p("c.txt"),
        },
        Op::Remove {
            path: p("log/fifo"),
        },
        Op::Attr {
            path: RelPath::root(),
            size: None,
            meta: Meta {
                xattrs: Vec::new(),
                ..meta(0o700)
            },
        },
    ]
}

#[test]
fn shipments_round_trip() {
    for body in [ops(all_ops()), Body::Snapshot(Vec::new()), ops(Vec::new())] {
        let s = ship(body);
        let bytes = s.encode();
        assert_eq!(Shipment::decode(&bytes), Ok(s.clone()));
        // Every strict prefix is refused, never a panic.
        for cut in 0..bytes.len() {
            assert!(Shipment::decode(&bytes[..cut]).is_err(), "prefix {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(Shipment::decode(&longer), Err(WireError::Trailing));
    }
    for a in [Ack::Done, Ack::NeedSnapshot, Ack::Refused] {
        assert_eq!(Ack::decode(&a.encode()), Ok(a));
    }
    assert!(Ack::decode(b"\0A1\x09").is_err());
    assert!(Ack::decode(b"").is_err());
}

#[test]
fn decoding_refuses_bad_names_kinds_and_sizes() {
    let good = ship(ops(vec![Op::Remove { path: p("a") }])).encode();
    // The path's one name "a" sits right before the end: make it "..", "/" or NUL.
    let at = good.len() - 1;
    for bad in [&b".."[..], b"/", b"\0", b"."] {
        let mut v = good[..at - 1].to_vec();
        v.push(bad.len() as u8);
        v.extend_from_slice(bad);
        assert_eq!(Shipment::decode(&v), Err(WireError::Name), "{bad:?}");
    }
    assert!(RelPath::new(vec![b"..".to_vec()]).is_err());
    assert!(RelPath::new(vec![b"a/b".to_vec()]).is_err());
    assert!(RelPath::new(vec![Vec::new()]).is_err());
    assert!(RelPath::new(vec![b"x".to_vec(); MAX_DEPTH + 1]).is_err());
    let mut bad_magic = good.clone();
    bad_magic[1] = b'X';
    assert_eq!(Shipment::decode(&bad_magic), Err(WireError::Magic));
    // An operation count far over what the bytes hold: refused without a huge allocation.
    let mut v = good[..good.len() - 4].to_vec();
    let n_at = v.len() - 4 - 1;
    v.truncate(n_at + 1);
    v.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(Shipment::decode(&v).is_err());
    // A snapshot may hold only puts and links.
    let mut s = ship(Body::Snapshot(vec![Op::Remove { path: p("a") }])).encode();
    assert!(Shipment::decode(&s).is_err());
    // An xattr outside user.drover.* is refused.
    let m = Meta {
        xattrs: vec![(b"security.capability".to_vec(), vec![1])],
        ..meta(0o644)
    };
    s = ship(ops(vec![Op::Attr {
        path: p("a"),
        size: None,
        meta: m,
    }]))
    .encode();
    assert_eq!(Shipment::decode(&s), Err(WireError::Name));
    // Random garbage never panics.
    let mut x: u32 = 12345;
    for len in 0..400 {
        let mut g = MAGIC.to_vec();
        for _ in 0..len {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            g.push((x >> 16) as u8);
        }
        let _ = Shipment::decode(&g);
    }
}

#[test]
fn apply_each_operation() {
    let t = Tmp::new("ops");
    apply(&t.0, "n1", &ops(all_ops())).unwrap();
    let l = t.layer();
    let a = l.join("log/a.txt");
    assert_eq!(std::fs::read(&a).unwrap(), b"hello world");
    let m = std::fs::symlink_metadata(&a).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o4750, "setuid survives the chown");
    assert_eq!((m.uid(), m.gid()), (1000, 100));
    assert_eq!((m.mtime(), m.mtime_nsec()), (1_700_000_000, 5));
    assert_eq!(m.nlink(), 2, "c.txt is a hard link of a.txt");
    assert_eq!(std::fs::read(l.join("c.txt")).unwrap(), b"hello world");
    assert_eq!(xattr(&a, "user.drover.id").as_deref(), Some(&b"obj-1"[..]));
    assert_eq!(
        std::fs::read_link(l.join("log/l")).unwrap(),
        Path::new("../../etc/passwd"),
        "a symlink is stored, never followed"
    );
    let dev = std::fs::symlink_metadata(l.join("log/dev")).unwrap();
    assert_eq!(dev.rdev(), super::super::fs::makedev(1, 3));
    assert!(!l.join("log/fifo").exists());
    assert_eq!(
        std::fs::metadata(&l).unwrap().permissions().mode() & 0o7777,
        0o700
    );
    // Writing through the symlink's name is refused as a divergence, and /etc is untouched.
    let before = std::fs::read("/etc/passwd").unwrap();
    let r = apply(
        &t.0,
        "n1",
        &ops(vec![Op::Write {
            path: p("log/l"),
            offset: 0,
            data: b"owned".to_vec(),
            size: 5,
            meta: meta(0o644),
        }]),
    );
    assert!(matches!(r, Err(ApplyError::Diverged(_))), "{r:?}");
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), before);
    // A write to a file the copy lacks asks for a snapshot.
    let r = apply(
        &t.0,
        "n1",
        &ops(vec![Op::Write {
            path: p("nope"),
            offset: 0,
            data: b"x".to_vec(),
            size: 1,
            meta: meta(0o644),
        }]),
    );
    assert!(matches!(r, Err(ApplyError::Diverged(_))), "{r:?}");
    // Removing a directory with content removes it all; xattrs not shipped are removed.
    apply(
        &t.0,
        "n1",
        &ops(vec![
            Op::Attr {
                path: p("log/a.txt"),
                size: Some(5),
                meta: Meta {
                    xattrs: Vec::new(),
                    ..meta(0o644)
                },
            },
            Op::Remove { path: p("log") },
        ]),
    )
    .unwrap();
    assert!(!l.join("log").exists());
    assert_eq!(std::fs::read(l.join("c.txt")).unwrap(), b"hello");
    assert_eq!(xattr(&l.join("c.txt"), "user.drover.id"), None);
}

#[test]
fn apply_stays_inside_the_layer() {
    let t = Tmp::new("confine");
    let outside = t.0.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(t.layer()).unwrap();
    // A symlink inside the copy that points out of it (a client can make one).
    std::os::unix::fs::symlink(&outside, t.layer().join("esc")).unwrap();
    for op in [
        Op::Put {
            path: p("esc/x"),
            kind: Kind::File(b"x".to_vec()),
            meta: meta(0o644),
        },
        Op::Put {
            path: p("esc/d"),
            kind: Kind::Dir,
            meta: meta(0o755),
        },
        Op::Remove { path: p("esc/y") },
        Op::Rename {
            from: p("esc"),
            to: p("esc/z"),
        },
    ] {
        let r = apply(&t.0, "n1", &ops(vec![op.clone()]));
        assert!(r.is_err(), "{op:?} went through a symlink: {r:?}");
    }
    std::fs::write(outside.join("y"), b"keep").unwrap();
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);
    // Attributes of the symlink itself, not of its target.
    let before = std::fs::metadata(&outside).unwrap();
    apply(
        &t.0,
        "n1",
        &ops(vec![Op::Attr {
            path: p("esc"),
            size: None,
            meta: Meta {
                xattrs: Vec::new(),
                ..meta(0o777)
            },
        }]),
    )
    .unwrap();
    let after = std::fs::metadata(&outside).unwrap();
    assert_eq!(before.mode(), after.mode());
    assert_eq!((before.uid(), before.mtime()), (after.uid(), after.mtime()));
    // The root cannot be replaced or removed; a bad node name is refused.
    for op in [
        Op::Remove {
            path: RelPath::root(),
        },
        Op::Put {
            path: RelPath::root(),
            kind: Kind::File(Vec::new()),
            meta: meta(0o644),
        },
    ] {
        assert!(matches!(
            apply(&t.0, "n1", &ops(vec![op])),
            Err(ApplyError::Refused(_))
        ));
    }
    for node in ["..", "a/b", ""] {
        assert!(matches!(
            apply(&t.0, node, &ops(Vec::new())),
            Err(ApplyError::Refused(_))
        ));
    }
}

#[test]
fn snapshot_then_ops_make_an_equal_copy() {
    let src = Tmp::new("src");
    let dst = Tmp::new("dst");
    let l = src.layer();
    std::fs::create_dir_all(l.join("var/log")).unwrap();
    std::fs::write(l.join("var/log/syslog"), b"line 1\n").unwrap();
    std::fs::hard_link(l.join("var/log/syslog"), l.join("var/log/again")).unwrap();
    std::os::unix::fs::symlink("syslog", l.join("var/log/latest")).unwrap();
    std::fs::set_permissions(
        l.join("var/log/syslog"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    {
        let f = std::fs::File::open(l.join("var/log/syslog")).unwrap();
        super::sys::set_xattr(
            std::os::fd::AsFd::as_fd(&f),
            c"user.drover.id",
            b"id-syslog",
        )
        .unwrap();
    }
    // The copy has stale content and an object the layer does not.
    let d = dst.layer();
    std::fs::create_dir_all(d.join("var/log")).unwrap();
    std::fs::write(d.join("var/log/syslog"), b"old old old\n").unwrap();
    std::fs::write(d.join("stale"), b"x").unwrap();
    std::fs::create_dir_all(d.join("gone/deep")).unwrap();

    let snap = snapshot(&l).unwrap();
    let shipped = Shipment::decode(&ship(Body::Snapshot(snap)).encode()).unwrap();
    apply(&dst.0, "n1", &shipped.body).unwrap();
    assert_eq!(
        snapshot(&d).unwrap(),
        snapshot(&l).unwrap(),
        "copy equals layer"
    );
    assert!(!d.join("stale").exists() && !d.join("gone").exists());
    assert_eq!(
        std::fs::symlink_metadata(d.join("var/log/again"))
            .unwrap()
            .nlink(),
        2
    );
    assert_eq!(
        xattr(&d.join("var/log/syslog"), "user.drover.id").as_deref(),
        Some(&b"id-syslog"[..])
    );

    // Then operations follow.
    std::fs::write(l.join("var/log/syslog"), b"line 1\nline 2\n").unwrap();
    let meta = {
        let f = std::fs::symlink_metadata(l.join("var/log/syslog")).unwrap();
        Meta {
            mode: f.mode() & 0o7777,
            uid: f.uid(),
            gid: f.gid(),
            mtime: (f.mtime(), f.mtime_nsec() as u32),
            xattrs: vec![(b"user.drover.id".to_vec(), b"id-syslog".to_vec())],
        }
    };
    apply(
        &dst.0,
        "n1",
        &ops(vec![Op::Write {
            path: p("var/log/syslog"),
            offset: 7,
            data: b"line 2\n".to_vec(),
            size: 14,
            meta,
        }]),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(d.join("var/log/again")).unwrap(),
        b"line 1\nline 2\n"
    );
    assert_eq!(snapshot(&d).unwrap(), snapshot(&l).unwrap());
}
