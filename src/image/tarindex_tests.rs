use super::*;
use std::convert::Infallible;

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(1001);
    h.set_gid(1002);
    h.set_mtime(1_700_000_000);
    h.set_size(size);
    h
}

fn index_of(tar: &[u8]) -> Result<TarIndex, IndexError<Infallible>> {
    index(|at: u64, buf: &mut [u8]| {
        let at = usize::try_from(at).unwrap_or(usize::MAX).min(tar.len());
        let n = buf.len().min(tar.len() - at);
        buf[..n].copy_from_slice(&tar[at..at + n]);
        Ok::<usize, Infallible>(n)
    })
}

/// The bytes an inode's data reads as.
fn read(tar: &[u8], node: &Inode) -> Vec<u8> {
    let mut out = vec![0u8; node.size as usize];
    match &node.data {
        Data::At(at) => {
            let at = *at as usize;
            out.copy_from_slice(&tar[at..at + node.size as usize]);
        }
        Data::Sparse(segs) => {
            for (to, from, len) in sparse_copies(segs, 0, node.size) {
                let (to, from, len) = (to as usize, from as usize, len as usize);
                out[to..to + len].copy_from_slice(&tar[from..from + len]);
            }
        }
    }
    out
}

fn tree() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    b.append_data(&mut h, "./", std::io::empty()).unwrap();
    let mut h = header(tar::EntryType::Directory, 0o1777, 0);
    b.append_data(&mut h, "./tmp/", std::io::empty()).unwrap();
    // No `etc/` entry: the index makes the parent.
    let mut h = header(tar::EntryType::Regular, 0o4755, 5);
    b.append_data(&mut h, "./etc/hostname", &b"node\n"[..])
        .unwrap();
    let mut h = header(tar::EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, "./etc/name", "hostname").unwrap();
    let mut h = header(tar::EntryType::Link, 0o644, 0);
    b.append_link(&mut h, "./tmp/again", "etc/hostname")
        .unwrap();
    let mut h = header(tar::EntryType::Char, 0o600, 0);
    h.set_device_major(4).unwrap();
    h.set_device_minor(64).unwrap();
    b.append_data(&mut h, "./ttyS0", std::io::empty()).unwrap();
    let mut h = header(tar::EntryType::Regular, 0o755, 3);
    b.append_pax_extensions([
        ("SCHILY.xattr.security.capability", &b"\x01\x00\x00\x02"[..]),
        ("SCHILY.xattr.user.x", &b"y"[..]),
    ])
    .unwrap();
    // A long name goes through a GNU long-name record.
    let long = format!("./{}/ping", "d".repeat(150));
    b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn indexes_kinds_modes_owners_links_devices_and_xattrs() {
    let tar = tree();
    let ix = index_of(&tar).unwrap();
    let host = ix.resolve(b"etc/hostname").unwrap();
    let h = ix.get(host).unwrap();
    assert_eq!(
        (h.kind, h.mode, h.uid, h.gid),
        (Kind::File, 0o4755, 1001, 1002)
    );
    assert_eq!((h.mtime, h.size, h.nlink), (1_700_000_000, 5, 2));
    assert_eq!(read(&tar, h), b"node\n");
    assert_eq!(
        ix.resolve(b"tmp/again"),
        Some(host),
        "a hard link is the same inode"
    );
    let etc = ix.get(ix.resolve(b"etc").unwrap()).unwrap();
    assert_eq!((etc.kind, etc.mode, etc.uid), (Kind::Dir, 0o755, 0));
    assert_eq!(ix.get(ix.resolve(b"tmp").unwrap()).unwrap().mode, 0o1777);
    let link = ix.get(ix.resolve(b"etc/name").unwrap()).unwrap();
    assert_eq!(
        (link.kind, &link.target[..], link.size),
        (Kind::Symlink, &b"hostname"[..], 8)
    );
    let tty = ix.get(ix.resolve(b"ttyS0").unwrap()).unwrap();
    assert_eq!((tty.kind, tty.major, tty.minor), (Kind::Char, 4, 64));
    let ping = format!("{}/ping", "d".repeat(150));
    let ping = ix.get(ix.resolve(ping.as_bytes()).unwrap()).unwrap();
    assert_eq!(read(&tar, ping), b"abc");
    let names: Vec<&[u8]> = ping.xattrs.iter().map(|(k, _)| &k[..]).collect();
    assert_eq!(names, [&b"security.capability"[..], b"user.x"]);
    assert_eq!(ping.xattrs[0].1, b"\x01\x00\x00\x02");
    let root = ix.get(ROOT).unwrap();
    // Root: ., .., and etc, tmp and the long directory.
    assert_eq!(root.nlink, 5);
    let names: Vec<&[u8]> = root.children.keys().map(|k| &k[..]).collect();
    assert_eq!(names.len(), 4);
    assert_eq!(ix.lookup(ix.resolve(b"etc").unwrap(), b".."), Some(ROOT));
}

#[test]
fn a_later_entry_replaces_an_earlier_one() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(tar::EntryType::Regular, 0o644, 3);
    b.append_data(&mut h, "a", &b"old"[..]).unwrap();
    let mut h = header(tar::EntryType::Regular, 0o600, 3);
    b.append_data(&mut h, "a", &b"new"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let ix = index_of(&tar).unwrap();
    let a = ix.get(ix.resolve(b"a").unwrap()).unwrap();
    assert_eq!((a.mode, read(&tar, a)), (0o600, b"new".to_vec()));
    assert_eq!(ix.get(ROOT).unwrap().children.len(), 1);
}

/// An old GNU sparse entry: data at 0..4 and 8192..8196 of a 10000-byte file, with the map
/// spilling into an extension block.
#[test]
fn old_gnu_sparse_reads_holes_as_zeros() {
    let segs: Vec<(u64, u64)> = (0..6).map(|i| (i * 4096, 4)).collect();
    let mut h = header(tar::EntryType::GNUSparse, 0o644, 24);
    h.set_path("holes").unwrap();
    let g = h.as_gnu_mut().unwrap();
    for (s, &(off, len)) in g.sparse.iter_mut().zip(&segs) {
        s.offset.copy_from_slice(format!("{off:011o}\0").as_bytes());
        s.numbytes
            .copy_from_slice(format!("{len:011o}\0").as_bytes());
    }
    g.isextended[0] = 1;
    g.realsize
        .copy_from_slice(format!("{:011o}\0", 30_000).as_bytes());
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    let mut ext = [0u8; 512];
    for (i, &(off, len)) in segs[4..].iter().enumerate() {
        ext[i * 24..i * 24 + 12].copy_from_slice(format!("{off:011o}\0").as_bytes());
        ext[i * 24 + 12..i * 24 + 24].copy_from_slice(format!("{len:011o}\0").as_bytes());
    }
    tar.extend_from_slice(&ext);
    let mut data = b"AAAABBBBCCCCDDDDEEEEFFFF".to_vec();
    data.resize(512, 0);
    tar.extend_from_slice(&data);
    tar.extend_from_slice(&[0u8; 1024]);
    let ix = index_of(&tar).unwrap();
    let f = ix.get(ix.resolve(b"holes").unwrap()).unwrap();
    assert_eq!((f.size, f.stored()), (30_000, 24));
    let bytes = read(&tar, f);
    assert_eq!(&bytes[..4], b"AAAA");
    assert_eq!(&bytes[4096..4100], b"BBBB");
    assert_eq!(&bytes[20480..20484], b"FFFF");
    assert_eq!(bytes.iter().filter(|&&b| b != 0).count(), 24);
}

/// GNU tar's PAX sparse 1.0: the map is at the start of the data.
#[test]
fn pax_sparse_1_0_reads_its_map_from_the_data() {
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([
        ("GNU.sparse.major", &b"1"[..]),
        ("GNU.sparse.minor", &b"0"[..]),
        ("GNU.sparse.name", &b"dir/sparse"[..]),
        ("GNU.sparse.realsize", &b"1000000"[..]),
    ])
    .unwrap();
    let mut data = b"2\n0\n3\n999997\n3\n".to_vec();
    data.resize(512, 0);
    data.extend_from_slice(b"abcxyz");
    let mut h = header(tar::EntryType::Regular, 0o640, data.len() as u64);
    b.append_data(&mut h, "dir/GNUSparseFile.0/sparse", &data[..])
        .unwrap();
    let tar = b.into_inner().unwrap();
    let ix = index_of(&tar).unwrap();
    let f = ix.get(ix.resolve(b"dir/sparse").unwrap()).unwrap();
    assert_eq!((f.size, f.mode), (1_000_000, 0o640));
    let bytes = read(&tar, f);
    assert_eq!((&bytes[..3], &bytes[999_997..]), (&b"abc"[..], &b"xyz"[..]));
    assert!(bytes[3..999_997].iter().all(|&b| b == 0));
    assert_eq!(ix.resolve(b"dir/GNUSparseFile.0"), None);
}

#[test]
fn sparse_copies_cut_the_asked_range() {
    let segs = [
        Segment {
            offset: 10,
            len: 10,
            at: 1000,
        },
        Segment {
            offset: 40,
            len: 5,
            at: 1010,
        },
    ];
    assert_eq!(sparse_copies(&segs, 15, 30), [(0, 1005, 5), (25, 1010, 5)]);
    assert_eq!(sparse_copies(&segs, 20, 20), []);
    assert_eq!(sparse_copies(&segs, 0, 12), [(10, 1000, 2)]);
}

#[test]
fn bad_input_is_a_clear_error() {
    let mut tar = tree();
    tar[0] ^= 1;
    assert!(matches!(index_of(&tar), Err(IndexError::Checksum(0))));
    let tar = tree();
    // The first entry (`./`) has no data: the cut is in the second header.
    assert!(matches!(
        index_of(&tar[..700]),
        Err(IndexError::Truncated(512))
    ));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(tar::EntryType::Link, 0o644, 0);
    b.append_link(&mut h, "x", "nowhere").unwrap();
    let tar = b.into_inner().unwrap();
    assert!(matches!(index_of(&tar), Err(IndexError::Link(p)) if p == "x"));
    let mut h = header(tar::EntryType::Regular, 0o644, 0);
    h.as_gnu_mut().unwrap().name[..5].copy_from_slice(b"../x\0");
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.extend_from_slice(&[0; 1024]);
    assert!(matches!(index_of(&tar), Err(IndexError::Path(_))));
    // A file as a parent.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(tar::EntryType::Regular, 0o644, 0);
    b.append_data(&mut h, "f", std::io::empty()).unwrap();
    b.append_data(&mut h, "f/g", std::io::empty()).unwrap();
    let tar = b.into_inner().unwrap();
    assert!(matches!(index_of(&tar), Err(IndexError::Parent(p)) if p == "f"));
}

#[test]
fn pax_times_keep_nanoseconds() {
    assert_eq!(
        pax_time("1796682009.566676441"),
        Some((1_796_682_009, 566_676_441))
    );
    assert_eq!(pax_time("12.5"), Some((12, 500_000_000)));
    assert_eq!(pax_time("12.1234567891"), Some((12, 123_456_789)));
    assert_eq!(pax_time("-3"), Some((-3, 0)));
    assert_eq!(pax_time("x"), None);
}
