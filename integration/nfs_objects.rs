//! The object and attribute rules of drover's NFSv4 server, through the real binary over TCP
//! on loopback, one test per RFC section (RFC 7530 for 4.0, RFC 8881 for 4.1): GETATTR and
//! SETATTR, ACCESS, OPEN's create modes, operations on objects of the wrong type, CREATE of
//! special files, READDIR, SECINFO and unknown operations.
//!
//! The export is `--no-root-squash`, so that root may make device files through CREATE (the
//! server runs as root here). Needs root; fails with a clear message otherwise.

mod common;

use common::nfs4::*;
use common::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

const EXPORT: &str = "o";

/// Attribute numbers (RFC 7530 §5, RFC 8881 §5).
const A_TYPE: u32 = 1;
const A_SIZE: u32 = 4;
const A_HIDDEN: u32 = 25;
const A_MODE: u32 = 33;
const A_OWNER: u32 = 36;
const A_OWNER_GROUP: u32 = 37;
const A_RAWDEV: u32 = 41;
const A_TIME_MODIFY_SET: u32 = 54;

/// `nfs_ftype4` values, in their protocol order (NF4REG is 1).
const NF4REG: u32 = 1;
const NF4DIR: u32 = NF4REG + 1;
const NF4BLK: u32 = NF4DIR + 1;
const NF4CHR: u32 = NF4BLK + 1;
const NF4LNK: u32 = NF4CHR + 1;
const NF4SOCK: u32 = NF4LNK + 1;
const NF4FIFO: u32 = NF4SOCK + 1;

/// The running server: where it listens, and the export's directory on the host.
struct Server {
    addr: std::net::SocketAddr,
    dir: std::path::PathBuf,
    _drover: Drover,
}

/// `drover serve` on `lo` with the read-write export `o` (root not squashed) open to
/// 127.0.0.1, holding `data.txt` (uid 1000) and the directory `d`.
fn serve() -> Server {
    require_root();
    let mut drover = Drover::new();
    let dir = drover.scratch().join("objects");
    let data = dir.join("data.txt");
    std::fs::create_dir_all(dir.join("d")).expect("export dir");
    std::fs::write(&data, b"twelve bytes").expect("data.txt");
    std::os::unix::fs::chown(&data, Some(1000), Some(1000)).expect("chown");
    let path = dir.to_str().expect("utf-8");
    let flags = ["--clients", "127.0.0.1/32", "--rw", "--no-root-squash"];
    let mut args = vec!["nfs", "export", "add", EXPORT, "--path", path];
    args.extend(flags);
    drover.cli_ok(&args);
    let port = common::api::free_port();
    let config = format!("[nfs]\nenabled = true\nport = {port}\ngrace-secs = 0\n");
    drover.serve_with(None, "lo", &config_only(&[], &config));
    Server {
        addr: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        dir,
        _drover: drover,
    }
}

/// One connection with a 4.1 session, answering COMPOUNDs of either minor version.
struct Conn {
    c: Client,
    sess: Session,
}

impl Conn {
    fn new(s: &Server, owner: &str) -> Conn {
        let mut c = Client::connect(s.addr, None).expect("connect");
        let sess = c.session(1, owner).expect("4.1 session");
        Conn { c, sess }
    }

    /// A COMPOUND of minor version `minor` (4.1 in the session); panics on I/O errors.
    fn call(&mut self, minor: u32, cred: &Cred, ops: impl FnOnce(Ops) -> Ops) -> Reply {
        if minor == 0 {
            self.c
                .compound(0, cred, ops(Ops::new()))
                .expect("a 4.0 COMPOUND")
        } else {
            self.sess.compound(&mut self.c, cred, ops)
        }
    }
}

fn root() -> Cred {
    Cred::user(0, 0, &[])
}

/// The export's directory as the current filehandle.
fn export(o: Ops) -> Ops {
    o.putrootfh().lookup(EXPORT)
}

/// A 4.0 client id, set and confirmed.
fn clientid40(c: &mut Client, id: &str) -> u64 {
    let r = c
        .compound(0, &root(), Ops::new().setclientid(id))
        .expect("SETCLIENTID");
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let b = r.body(OP_SETCLIENTID);
    let clientid = u64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
    let verifier: [u8; 8] = b[8..16].try_into().expect("8 bytes");
    let r = c
        .compound(
            0,
            &root(),
            Ops::new().setclientid_confirm(clientid, verifier),
        )
        .expect("SETCLIENTID_CONFIRM");
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    clientid
}

/// An `fattr4` of the attribute numbers `attrs` with their encoded values `vals`.
fn fattr(o: &mut Ops, attrs: &[u32], vals: impl FnOnce(&mut Ops)) {
    o.bitmap(attrs);
    let mut v = Ops::new();
    vals(&mut v);
    let bytes = v.into_bytes();
    o.opaque(&bytes);
}

/// How OPEN creates (`openflag4`), or `None` for no create.
#[derive(Clone, Copy)]
enum How {
    NoCreate,
    /// UNCHECKED4, truncating to 0 if `true`.
    Unchecked(bool),
    Guarded,
    Exclusive([u8; 8]),
    Exclusive41([u8; 8]),
}

/// OPEN (read and write, deny none) of `name` in the current directory by a fresh open-owner
/// `owner` of `clientid` (ignored in 4.1), seqid 0.
fn open(o: Ops, clientid: u64, owner: &str, name: &str, how: How) -> Ops {
    o.with(OP_OPEN, |s| {
        s.u32(0);
        s.u32(3);
        s.u32(0);
        s.u64(clientid);
        s.opaque(owner.as_bytes());
        match how {
            How::NoCreate => s.u32(0),
            How::Unchecked(trunc) => {
                s.u32(1);
                s.u32(0);
                if trunc {
                    fattr(s, &[A_SIZE], |v| v.u64(0));
                } else {
                    fattr(s, &[], |_| {});
                }
            }
            How::Guarded => {
                s.u32(1);
                s.u32(1);
                fattr(s, &[A_MODE], |v| v.u32(0o644));
            }
            How::Exclusive(verf) => {
                s.u32(1);
                s.u32(2);
                s.fixed(&verf);
            }
            How::Exclusive41(verf) => {
                s.u32(1);
                s.u32(3);
                s.fixed(&verf);
                fattr(s, &[A_MODE], |v| v.u32(0o600));
            }
        }
        s.u32(0); // CLAIM_NULL
        s.opaque(name.as_bytes());
    })
}

/// CREATE of `name` of type `ftype` (with `major`/`minor` for devices, the target for links).
fn create(o: Ops, ftype: u32, name: &str, dev: (u32, u32)) -> Ops {
    o.with(OP_CREATE, |s| {
        s.u32(ftype);
        match ftype {
            NF4LNK => s.opaque(b"data.txt"),
            NF4BLK | NF4CHR => {
                s.u32(dev.0);
                s.u32(dev.1);
            }
            _ => {}
        }
        s.opaque(name.as_bytes());
        fattr(s, &[A_MODE], |v| v.u32(0o640));
    })
}

fn lockt(o: Ops, clientid: u64) -> Ops {
    o.with(OP_LOCKT, |s| {
        s.u32(2); // WRITE_LT
        s.u64(0);
        s.u64(u64::MAX);
        s.u64(clientid);
        s.opaque(b"lockt-owner");
    })
}

fn setattr(o: Ops, attrs: &[u32], vals: impl FnOnce(&mut Ops)) -> Ops {
    o.with(OP_SETATTR, |s| {
        s.fixed(&ANONYMOUS);
        fattr(s, attrs, vals);
    })
}

fn access(o: Ops, bits: u32) -> Ops {
    o.with(OP_ACCESS, |s| s.u32(bits))
}

fn readdir(o: Ops, cookie: u64, verifier: [u8; 8], maxcount: u32) -> Ops {
    o.with(OP_READDIR, |s| {
        s.u64(cookie);
        s.fixed(&verifier);
        s.u32(maxcount);
        s.u32(maxcount);
        s.bitmap(&[A_TYPE]);
    })
}

fn word(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The attribute numbers set in the `bitmap4` at the start of `b`, and the bytes after it.
fn bitmap_of(b: &[u8]) -> (Vec<u32>, &[u8]) {
    let words = word(b, 0) as usize;
    let mut bits = Vec::new();
    for i in 0..words {
        let w = word(b, 4 + 4 * i);
        bits.extend(
            (0..32)
                .filter(|k| w & (1 << k) != 0)
                .map(|k| 32 * i as u32 + k),
        );
    }
    (bits, &b[4 + 4 * words..])
}

/// A GETATTR body: the attributes answered, and their values (past the opaque's length).
fn getattr_of(b: &[u8]) -> (Vec<u32>, Vec<u8>) {
    let (bits, rest) = bitmap_of(b);
    let len = word(rest, 0) as usize;
    (bits, rest[4..4 + len].to_vec())
}

/// GETATTR (RFC 7530 §16.7, RFC 8881 §18.7) of attributes the server does not know, in words
/// past the ones it uses, answers the known ones and says so in the reply's bitmap. SETATTR
/// (RFC 7530 §16.32, RFC 8881 §18.30) refuses times with nseconds of 10^9 and more
/// (nfstime4, RFC 8881 §3.3.1: INVAL), empty owner strings (INVAL), mode bits beyond 07777
/// (RFC 8881 §6.2.4: INVAL), read-only attributes (INVAL) and unknown ones (ATTRNOTSUPP),
/// with its bitmap empty, and nothing changes;
/// without a current filehandle it is NOFILEHANDLE and the connection stays up.
#[test]
fn getattr_of_unknown_attributes_and_setattr_refusals() {
    let s = serve();
    let user = Cred::user(1000, 1000, &[]);
    let mut c = Conn::new(&s, "nfsobj-attrs");
    for minor in [0, 1] {
        let r = c.call(minor, &user, |o| {
            export(o)
                .lookup("data.txt")
                .getattr(&[A_TYPE, A_SIZE, A_HIDDEN, 76, 200])
        });
        assert_eq!(r.status, NFS4_OK, "4.{minor}: {r:?}");
        let (bits, vals) = getattr_of(r.body(OP_GETATTR));
        assert_eq!(bits, vec![A_TYPE, A_SIZE], "4.{minor}");
        assert_eq!(word(&vals, 0), NF4REG);
        assert_eq!(vals[4..12], 12u64.to_be_bytes());

        let mode_before = std::fs::metadata(s.dir.join("data.txt"))
            .expect("data")
            .mode();
        let time = |nanos: u32| {
            move |v: &mut Ops| {
                v.u32(1); // SET_TO_CLIENT_TIME4
                v.u64(1_000_000);
                v.u32(nanos);
            }
        };
        type Case = (&'static str, Box<dyn Fn(Ops) -> Ops>, u32);
        let cases: Vec<Case> = vec![
            (
                "nseconds 10^9",
                Box::new(move |o| setattr(o, &[A_TIME_MODIFY_SET], time(1_000_000_000))),
                NFS4ERR_INVAL,
            ),
            (
                "nseconds u32::MAX",
                Box::new(move |o| setattr(o, &[A_TIME_MODIFY_SET], time(u32::MAX))),
                NFS4ERR_INVAL,
            ),
            (
                "empty owner",
                Box::new(move |o| setattr(o, &[A_OWNER], |v| v.opaque(b""))),
                NFS4ERR_INVAL,
            ),
            (
                "empty owner_group",
                Box::new(move |o| setattr(o, &[A_OWNER_GROUP], |v| v.opaque(b""))),
                NFS4ERR_INVAL,
            ),
            (
                "an owner name",
                Box::new(move |o| setattr(o, &[A_OWNER], |v| v.opaque(b"alice@example"))),
                NFS4ERR_BADOWNER,
            ),
            (
                "mode with S_IFREG",
                Box::new(move |o| setattr(o, &[A_MODE], |v| v.u32(0o100600))),
                NFS4ERR_INVAL,
            ),
            (
                "read-only type",
                Box::new(move |o| setattr(o, &[A_TYPE], |v| v.u32(NF4DIR))),
                NFS4ERR_INVAL,
            ),
            (
                "unknown hidden",
                Box::new(move |o| setattr(o, &[A_HIDDEN], |v| v.u32(1))),
                NFS4ERR_ATTRNOTSUPP,
            ),
        ];
        for (what, op, want) in cases {
            let r = c.call(minor, &user, |o| op(export(o).lookup("data.txt")));
            assert_eq!(r.status, want, "4.{minor} {what}: {r:?}");
            let last = r.results.last().expect("a result");
            assert_eq!(last.op, OP_SETATTR, "4.{minor} {what}");
            assert_eq!(
                bitmap_of(&last.body).0,
                Vec::<u32>::new(),
                "{what}: attrsset"
            );
        }
        let meta = std::fs::metadata(s.dir.join("data.txt")).expect("data.txt");
        assert_eq!(
            (meta.uid(), meta.len(), meta.mode()),
            (1000, 12, mode_before),
            "a refused SETATTR changed it"
        );

        // No current filehandle: an error, and the same connection answers again.
        let r = c.call(minor, &user, |o| setattr(o, &[A_MODE], |v| v.u32(0o600)));
        assert_eq!(r.status, NFS4ERR_NOFILEHANDLE, "4.{minor}: {r:?}");
        let r = c.call(minor, &user, |o| export(o).getfh());
        assert_eq!(r.status, NFS4_OK, "4.{minor}: {r:?}");
    }
}

/// ACCESS (RFC 8881 §18.1.3, RFC 7530 §16.1): `supported` holds only the bits that mean
/// something for the object's type (LOOKUP and DELETE for directories, EXECUTE for
/// non-directories), and `access` is within it.
#[test]
fn access_supported_bits_follow_the_object_type() {
    const READ: u32 = 0x01;
    const LOOKUP: u32 = 0x02;
    const MODIFY: u32 = 0x04;
    const EXTEND: u32 = 0x08;
    const DELETE: u32 = 0x10;
    const EXECUTE: u32 = 0x20;
    let s = serve();
    let mut c = Conn::new(&s, "nfsobj-access");
    for (name, want_supported, want_access) in [
        (
            "d",
            READ | LOOKUP | MODIFY | EXTEND | DELETE,
            READ | LOOKUP | MODIFY | EXTEND | DELETE,
        ),
        (
            "data.txt",
            READ | MODIFY | EXTEND | EXECUTE,
            READ | MODIFY | EXTEND,
        ),
    ] {
        let r = c.call(1, &root(), |o| access(export(o).lookup(name), 0x3f));
        assert_eq!(r.status, NFS4_OK, "{name}: {r:?}");
        let b = r.body(OP_ACCESS);
        assert_eq!(
            (word(b, 0), word(b, 4)),
            (want_supported, want_access),
            "{name}: supported, access"
        );
    }
    // Asking for some bits only: supported is within what was asked.
    let r = c.call(0, &root(), |o| access(export(o), READ | EXECUTE));
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    assert_eq!(word(r.body(OP_ACCESS), 0), READ);
}

/// OPEN's create modes (RFC 8881 §18.16.3, RFC 7530 §16.16.5): UNCHECKED of an existing
/// file opens it (truncating it only if the size attribute says 0), GUARDED of an existing
/// name is EXIST, and an EXCLUSIVE (or 4.1 EXCLUSIVE4_1) create retransmitted with the same
/// verifier opens the file it made, while another verifier gets EXIST.
#[test]
fn open_create_modes_on_existing_files() {
    let s = serve();
    let mut c = Client::connect(s.addr, None).expect("connect");
    let mut sess = c.session(1, "nfsobj-open").expect("4.1 session");
    let mut call = |c: &mut Client, owner: &str, name: &str, how: How| {
        sess.compound(c, &root(), |o| open(export(o), 0, owner, name, how).getfh())
    };
    let data = s.dir.join("data.txt");
    let r = call(&mut c, "o1", "data.txt", How::Unchecked(false));
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    assert_eq!(std::fs::read(&data).expect("data"), b"twelve bytes");
    let r = call(&mut c, "o2", "data.txt", How::Unchecked(true));
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    assert_eq!(
        std::fs::metadata(&data).expect("data").len(),
        0,
        "truncated"
    );
    let r = call(&mut c, "o3", "data.txt", How::Guarded);
    assert_eq!(r.status, NFS4ERR_EXIST, "{r:?}");
    let r = call(&mut c, "o3", "new.txt", How::Guarded);
    assert_eq!(r.status, NFS4_OK, "{r:?}");

    for (name, first, other) in [
        (
            "excl.txt",
            How::Exclusive(*b"verifier"),
            How::Exclusive(*b"otherone"),
        ),
        (
            "excl41.txt",
            How::Exclusive41(*b"verifie4"),
            How::Exclusive41(*b"other41!"),
        ),
    ] {
        let r = call(&mut c, "o4", name, first);
        assert_eq!(r.status, NFS4_OK, "{name}: {r:?}");
        let fh = r.body(OP_GETFH).to_vec();
        let r = call(&mut c, "o5", name, first);
        assert_eq!(r.status, NFS4_OK, "{name} replayed: {r:?}");
        assert_eq!(
            r.body(OP_GETFH),
            fh,
            "{name}: the replay opens the same file"
        );
        let r = call(&mut c, "o6", name, other);
        assert_eq!(r.status, NFS4ERR_EXIST, "{name} other verifier: {r:?}");
        assert!(s.dir.join(name).is_file());
    }
}

/// CREATE (RFC 8881 §18.4, RFC 7530 §16.4) of character and block devices (with their
/// specdata), sockets, FIFOs, directories and symlinks, in 4.0 and 4.1: each can be looked
/// up, its GETATTR gives type and rawdev (RFC 8881 §5.8.2), the host sees the real object,
/// and RENAME moves it.
#[test]
fn create_lookup_getattr_and_rename_special_files() {
    let s = serve();
    let mut c = Conn::new(&s, "nfsobj-create");
    for minor in [0, 1] {
        for (ftype, dev) in [
            (NF4CHR, (1, 3)),
            (NF4BLK, (7, 42)),
            (NF4SOCK, (0, 0)),
            (NF4FIFO, (0, 0)),
            (NF4DIR, (0, 0)),
            (NF4LNK, (0, 0)),
        ] {
            let name = format!("t{ftype}-{minor}");
            let r = c.call(minor, &root(), |o| create(export(o), ftype, &name, dev));
            assert_eq!(r.status, NFS4_OK, "4.{minor} type {ftype}: {r:?}");
            let r = c.call(minor, &root(), |o| {
                export(o).lookup(&name).getattr(&[A_TYPE, A_MODE, A_RAWDEV])
            });
            assert_eq!(r.status, NFS4_OK, "4.{minor} {name}: {r:?}");
            let (bits, vals) = getattr_of(r.body(OP_GETATTR));
            assert_eq!(bits, vec![A_TYPE, A_MODE, A_RAWDEV], "{name}");
            assert_eq!(word(&vals, 0), ftype, "{name}: type");
            if ftype != NF4LNK {
                assert_eq!(word(&vals, 4), 0o640, "{name}: mode");
            }
            assert_eq!((word(&vals, 8), word(&vals, 12)), dev, "{name}: rawdev");

            let meta = std::fs::symlink_metadata(s.dir.join(&name)).expect("on the host");
            let t = meta.file_type();
            let host_type = match ftype {
                NF4CHR => t.is_char_device(),
                NF4BLK => t.is_block_device(),
                NF4SOCK => t.is_socket(),
                NF4FIFO => t.is_fifo(),
                NF4DIR => t.is_dir(),
                _ => t.is_symlink(),
            };
            assert!(host_type, "{name}: {t:?} on the host");
            if ftype == NF4CHR || ftype == NF4BLK {
                let rdev = meta.rdev();
                let major = ((rdev >> 8) & 0xfff) as u32;
                let minor_no = ((rdev & 0xff) | ((rdev >> 12) & 0xfff00)) as u32;
                assert_eq!((major, minor_no), dev, "{name}: rdev on the host");
            }

            let moved = format!("{name}-moved");
            let r = c.call(minor, &root(), |o| {
                export(o).savefh().with(OP_RENAME, |a| {
                    a.opaque(name.as_bytes());
                    a.opaque(moved.as_bytes());
                })
            });
            assert_eq!(r.status, NFS4_OK, "4.{minor} rename {name}: {r:?}");
            let r = c.call(minor, &root(), |o| export(o).lookup(&moved).getfh());
            assert_eq!(r.status, NFS4_OK, "{moved}: {r:?}");
            assert!(!s.dir.join(&name).exists() && s.dir.join(&moved).exists());
        }
    }
}

/// CREATE's refusals (RFC 8881 §18.4.3, RFC 7530 §16.4.5): a regular file (OPEN makes those)
/// is BADTYPE, an existing name EXIST, an empty symlink target INVAL, a current filehandle
/// that is no directory NOTDIR, and a device made by someone other than root PERM; nothing
/// is left behind.
#[test]
fn create_refusals() {
    let s = serve();
    let mut c = Conn::new(&s, "nfsobj-create-refusals");
    let empty_link = |o: Ops| {
        o.with(OP_CREATE, |a| {
            a.u32(NF4LNK);
            a.opaque(b"");
            a.opaque(b"empty-link");
            fattr(a, &[], |_| {});
        })
    };
    let user = Cred::user(1000, 1000, &[]);
    std::fs::set_permissions(
        s.dir.join("d"),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod d");
    for minor in [0, 1] {
        let r = c.call(minor, &root(), |o| create(export(o), NF4REG, "reg", (0, 0)));
        assert_eq!(r.status, NFS4ERR_BADTYPE, "4.{minor}: {r:?}");
        let r = c.call(minor, &root(), |o| create(export(o), NF4DIR, "d", (0, 0)));
        assert_eq!(r.status, NFS4ERR_EXIST, "4.{minor}: {r:?}");
        let r = c.call(minor, &root(), |o| empty_link(export(o)));
        assert_eq!(r.status, NFS4ERR_INVAL, "4.{minor}: {r:?}");
        let r = c.call(minor, &root(), |o| {
            create(export(o).lookup("data.txt"), NF4FIFO, "p", (0, 0))
        });
        assert_eq!(r.status, NFS4ERR_NOTDIR, "4.{minor}: {r:?}");
        let r = c.call(minor, &user, |o| {
            create(export(o).lookup("d"), NF4CHR, "c", (1, 3))
        });
        assert_eq!(r.status, NFS4ERR_PERM, "4.{minor} uid 1000 mknod: {r:?}");
    }
    for name in ["reg", "empty-link", "d/c"] {
        assert!(!s.dir.join(name).exists(), "{name} was made");
    }
}

/// Directory operations on objects of the wrong type (RFC 8881 §18.15, §18.9, §18.25,
/// §18.26; RFC 7530 §16.15, §16.9, §16.26, §16.27): LOOKUP from a symlink is SYMLINK and
/// from a file NOTDIR; LINK of a directory is ISDIR; REMOVE and RENAME in a file are
/// NOTDIR.
#[test]
fn directory_operations_on_non_directories() {
    let s = serve();
    let mut c = Conn::new(&s, "nfsobj-dirops");
    let r = c.call(1, &root(), |o| create(export(o), NF4LNK, "link", (0, 0)));
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    let rename = |o: Ops| {
        o.with(OP_RENAME, |a| {
            a.opaque(b"x");
            a.opaque(b"y");
        })
    };
    for minor in [0, 1] {
        let r = c.call(minor, &root(), |o| export(o).lookup("link").lookup("x"));
        assert_eq!(r.status, NFS4ERR_SYMLINK, "4.{minor}: {r:?}");
        let r = c.call(minor, &root(), |o| export(o).lookup("data.txt").lookup("x"));
        assert_eq!(r.status, NFS4ERR_NOTDIR, "4.{minor}: {r:?}");
        let r = c.call(minor, &root(), |o| {
            export(o)
                .lookup("d")
                .savefh()
                .putrootfh()
                .lookup(EXPORT)
                .with(OP_LINK, |a| a.opaque(b"dirlink"))
        });
        assert_eq!(r.status, NFS4ERR_ISDIR, "4.{minor} LINK: {r:?}");
        let r = c.call(minor, &root(), |o| {
            export(o)
                .lookup("data.txt")
                .with(OP_REMOVE, |a| a.opaque(b"x"))
        });
        assert_eq!(r.status, NFS4ERR_NOTDIR, "4.{minor} REMOVE: {r:?}");
        let r = c.call(minor, &root(), |o| {
            rename(export(o).lookup("data.txt").savefh())
        });
        assert_eq!(r.status, NFS4ERR_NOTDIR, "4.{minor} RENAME: {r:?}");
    }
    assert!(!s.dir.join("dirlink").exists());
    // LOOKUPP (RFC 8881 §18.14.3, RFC 7530 §16.15.4): from the export to the pseudo-root,
    // and NOENT above that.
    for minor in [0, 1] {
        let r = c.call(minor, &root(), |o| o.putrootfh().getfh());
        let pseudo = r.body(OP_GETFH).to_vec();
        let r = c.call(minor, &root(), |o| export(o).lookupp().getfh());
        assert_eq!(r.status, NFS4_OK, "4.{minor}: {r:?}");
        assert_eq!(r.body(OP_GETFH), pseudo, "4.{minor}: the export's parent");
        let r = c.call(minor, &root(), |o| o.putrootfh().lookupp());
        assert_eq!(r.status, NFS4ERR_NOENT, "4.{minor}: {r:?}");
    }
}

/// Objects of the wrong type (RFC 7530 §16.16.6 and §13.2, RFC 8881 §18.16.3, §18.11 and
/// §15.2): OPEN of a directory is ISDIR, of a symlink SYMLINK, of any other non-regular
/// file SYMLINK in 4.0 and WRONG_TYPE in 4.1; LOCKT on a directory is ISDIR, on the others
/// INVAL in 4.0, and SYMLINK or WRONG_TYPE in 4.1; LOOKUPP from a non-directory is NOTDIR.
#[test]
fn open_lockt_and_lookupp_refuse_objects_of_the_wrong_type() {
    let s = serve();
    let mut c = Conn::new(&s, "nfsobj-types");
    let objects = [
        ("dir", NF4DIR),
        ("link", NF4LNK),
        ("fifo", NF4FIFO),
        ("sock", NF4SOCK),
        ("chr", NF4CHR),
        ("blk", NF4BLK),
    ];
    for (name, ftype) in objects {
        let r = c.call(1, &root(), |o| create(export(o), ftype, name, (1, 5)));
        assert_eq!(r.status, NFS4_OK, "{name}: {r:?}");
    }
    let clientid = clientid40(&mut c.c, "nfsobj-types");
    for (name, ftype) in objects {
        let (open40, open41, lockt40, lockt41) = match ftype {
            NF4DIR => (NFS4ERR_ISDIR, NFS4ERR_ISDIR, NFS4ERR_ISDIR, NFS4ERR_ISDIR),
            NF4LNK => (
                NFS4ERR_SYMLINK,
                NFS4ERR_SYMLINK,
                NFS4ERR_INVAL,
                NFS4ERR_SYMLINK,
            ),
            _ => (
                NFS4ERR_SYMLINK,
                NFS4ERR_WRONG_TYPE,
                NFS4ERR_INVAL,
                NFS4ERR_WRONG_TYPE,
            ),
        };
        for how in [How::NoCreate, How::Unchecked(false)] {
            let owner = format!("open-{name}-{}", matches!(how, How::NoCreate));
            let r = c.call(0, &root(), |o| open(export(o), clientid, &owner, name, how));
            assert_eq!(r.status, open40, "4.0 OPEN {name}: {r:?}");
            let r = c.call(1, &root(), |o| open(export(o), 0, &owner, name, how));
            assert_eq!(r.status, open41, "4.1 OPEN {name}: {r:?}");
        }
        let r = c.call(0, &root(), |o| lockt(export(o).lookup(name), clientid));
        assert_eq!(r.status, lockt40, "4.0 LOCKT {name}: {r:?}");
        let r = c.call(1, &root(), |o| lockt(export(o).lookup(name), 0));
        assert_eq!(r.status, lockt41, "4.1 LOCKT {name}: {r:?}");

        let want = if ftype == NF4DIR {
            NFS4_OK
        } else {
            NFS4ERR_NOTDIR
        };
        for minor in [0, 1] {
            let r = c.call(minor, &root(), |o| export(o).lookup(name).lookupp().getfh());
            assert_eq!(r.status, want, "4.{minor} LOOKUPP {name}: {r:?}");
        }
    }
}

/// One READDIR entry: its cookie and name.
fn entries(body: &[u8]) -> (Vec<(u64, String)>, bool) {
    let mut at = 8; // the cookie verifier
    let mut out = Vec::new();
    while word(body, at) == 1 {
        let cookie = u64::from_be_bytes(body[at + 4..at + 12].try_into().expect("8 bytes"));
        let len = word(body, at + 12) as usize;
        let name = String::from_utf8_lossy(&body[at + 16..at + 16 + len]).into_owned();
        at += 16 + len.div_ceil(4) * 4;
        let (_, rest) = bitmap_of(&body[at..]);
        at = body.len() - rest.len();
        at += 4 + (word(body, at) as usize).div_ceil(4) * 4;
        out.push((cookie, name));
    }
    (out, word(body, at + 4) == 1)
}

/// READDIR (RFC 7530 §16.24, RFC 8881 §18.23): a maxcount too small for one entry is
/// TOOSMALL; a listing resumes after any entry's cookie with the verifier it came with,
/// reaching eof with each name once; the reserved cookies 1 and 2 are BAD_COOKIE; a cookie
/// with another verifier is NOT_SAME.
#[test]
fn readdir_cookies_verifier_and_toosmall() {
    let s = serve();
    let names: Vec<String> = (0..6).map(|i| format!("entry-{i}")).collect();
    for n in &names {
        std::fs::write(s.dir.join("d").join(n), b"x").expect("entry");
    }
    let mut c = Conn::new(&s, "nfsobj-readdir");
    for minor in [0, 1] {
        let dir = |o: Ops| export(o).lookup("d");
        let r = c.call(minor, &root(), |o| readdir(dir(o), 0, [0; 8], 16));
        assert_eq!(r.status, NFS4ERR_TOOSMALL, "4.{minor}: {r:?}");
        let mut seen = Vec::new();
        let mut cookie = 0;
        let mut verifier = [0u8; 8];
        let mut rounds = 0;
        loop {
            // Room for about two entries a call.
            let r = c.call(minor, &root(), |o| readdir(dir(o), cookie, verifier, 200));
            assert_eq!(r.status, NFS4_OK, "4.{minor} cookie {cookie}: {r:?}");
            let body = r.body(OP_READDIR);
            verifier = body[..8].try_into().expect("verifier");
            let (list, eof) = entries(body);
            assert!(!list.is_empty() || eof, "an empty page before eof");
            for (k, name) in list {
                assert!(k > 2, "cookie {k} is reserved");
                seen.push(name);
                cookie = k;
            }
            rounds += 1;
            if eof {
                break;
            }
            assert!(rounds < 20, "the listing never ends: {seen:?}");
        }
        assert!(rounds > 1, "maxcount 200 should page the listing");
        seen.sort();
        assert_eq!(seen, names, "4.{minor}: every entry once");
        for bad in [1, 2] {
            let r = c.call(minor, &root(), |o| readdir(dir(o), bad, verifier, 4096));
            assert_eq!(
                r.status, NFS4ERR_BAD_COOKIE,
                "4.{minor} cookie {bad}: {r:?}"
            );
        }
        let mut other = verifier;
        other[0] ^= 0xff;
        let r = c.call(minor, &root(), |o| readdir(dir(o), cookie, other, 4096));
        assert_eq!(r.status, NFS4ERR_NOT_SAME, "4.{minor}: {r:?}");
    }
}

/// The flavours in a SECINFO reply body: each `secinfo4` is a flavour (and RPCSEC_GSS
/// details, which drover never offers).
fn flavours(body: &[u8]) -> Vec<u32> {
    let n = word(body, 0) as usize;
    (0..n).map(|i| word(body, 4 + 4 * i)).collect()
}

/// SECINFO (RFC 8881 §18.29, RFC 7530 §16.31) and SECINFO_NO_NAME (RFC 8881 §18.45) answer
/// AUTH_SYS, and in 4.1 consume the current filehandle (§2.6.3.1.1.8: a GETFH after them is
/// NOFILEHANDLE); SECINFO of a missing name is NOENT, and so is SECINFO_NO_NAME's parent
/// style at the pseudo-root; SECINFO_NO_NAME is no 4.0 operation.
/// An unknown operation number (RFC 8881 §18.53, RFC 7530 §16.39) is answered as
/// OP_ILLEGAL with NFS4ERR_OP_ILLEGAL, and the COMPOUND stops there.
#[test]
fn secinfo_and_illegal_operations() {
    const AUTH_SYS: u32 = 1;
    let s = serve();
    let mut c = Client::connect(s.addr, None).expect("connect");
    let secinfo = |o: Ops, name: &str| o.with(OP_SECINFO, |a| a.opaque(name.as_bytes()));
    let no_name = |o: Ops, style: u32| o.with(OP_SECINFO_NO_NAME, |a| a.u32(style));

    let r = c
        .compound(0, &root(), secinfo(export(Ops::new()), "data.txt"))
        .expect("SECINFO 4.0");
    assert_eq!(r.status, NFS4_OK, "{r:?}");
    assert_eq!(flavours(r.body(OP_SECINFO)), vec![AUTH_SYS]);
    let r = c
        .compound(0, &root(), secinfo(export(Ops::new()), "missing"))
        .expect("SECINFO 4.0");
    assert_eq!(r.status, NFS4ERR_NOENT, "{r:?}");
    let r = c
        .compound(0, &root(), no_name(export(Ops::new()), 0))
        .expect("SECINFO_NO_NAME 4.0");
    assert_eq!(r.status, NFS4ERR_OP_ILLEGAL, "{r:?}");

    let mut sess = c.session(1, "nfsobj-secinfo").expect("4.1 session");
    for style in [0, 1] {
        let r = sess.compound(&mut c, &root(), |o| no_name(export(o).lookup("d"), style));
        assert_eq!(r.status, NFS4_OK, "style {style}: {r:?}");
        assert_eq!(flavours(r.body(OP_SECINFO_NO_NAME)), vec![AUTH_SYS]);
        let r = sess.compound(&mut c, &root(), |o| {
            no_name(export(o).lookup("d"), style).getfh()
        });
        assert_eq!(r.status, NFS4ERR_NOFILEHANDLE, "style {style}: {r:?}");
    }
    let r = sess.compound(&mut c, &root(), |o| secinfo(export(o), "data.txt").getfh());
    assert_eq!(r.status, NFS4ERR_NOFILEHANDLE, "{r:?}");
    // The pseudo-root has no parent.
    let r = sess.compound(&mut c, &root(), |o| no_name(o.putrootfh(), 1));
    assert_eq!(r.status, NFS4ERR_NOENT, "parent of the pseudo-root: {r:?}");
    let r = sess.compound(&mut c, &root(), |o| no_name(o.putrootfh(), 0));
    assert_eq!(r.status, NFS4_OK, "the pseudo-root itself: {r:?}");

    for minor in [0, 1] {
        let r = if minor == 0 {
            c.compound(0, &root(), export(Ops::new()).op(9999).getfh())
                .expect("an unknown op")
        } else {
            sess.compound(&mut c, &root(), |o| export(o).op(9999).getfh())
        };
        assert_eq!(r.status, NFS4ERR_OP_ILLEGAL, "4.{minor}: {r:?}");
        let last = r.results.last().expect("results");
        assert_eq!(
            (last.op, last.status),
            (OP_ILLEGAL, NFS4ERR_OP_ILLEGAL),
            "4.{minor}"
        );
        assert!(
            r.results.iter().all(|x| x.op != OP_GETFH),
            "4.{minor}: the COMPOUND went on after OP_ILLEGAL: {r:?}"
        );
    }
}
