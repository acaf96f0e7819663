//! An index of a rootfs tar, for `drover image mount`: every entry's kind, mode, owner,
//! mtime, size, where its data starts in the tar, xattrs, link target and device numbers,
//! arranged as inodes and directories so that a file system can answer lookups without
//! reading the tar again.
//!
//! Pure (sans-IO): the bytes come from a `read_at` function the caller gives, so the same
//! code indexes a store blob, a file or a byte slice in a test. Only headers, extension
//! records and sparse maps are read; file data is skipped by offset.
//!
//! Understood: ustar and GNU headers (octal and base-256 numbers), GNU long names and long
//! link names, PAX records (`path`, `linkpath`, `size`, `uid`, `gid`, `mtime`,
//! `SCHILY.xattr.*`), hard links (one inode, several names), GNU sparse entries (old GNU
//! headers and PAX sparse formats 0.0, 0.1 and 1.0). A later entry of the same path replaces
//! an earlier one, as when tar extracts. Parents missing from the tar are made as 0755
//! directories owned by root.
//!
//! Not here: serving the index (`super::mount`), writing tars, other xattr encodings
//! (`LIBARCHIVE.xattr.*` are ignored), global PAX headers (ignored).

use std::collections::BTreeMap;

/// The tar block size.
const BLOCK: u64 = 512;
/// Most entries one index holds (a Debian root has well under 100 000).
pub const MAX_ENTRIES: usize = 4_000_000;
/// Largest PAX or GNU long-name record read into memory.
const MAX_EXTENSION: u64 = 1 << 20;
/// Most segments one sparse file may have.
const MAX_SEGMENTS: usize = 1 << 20;
/// The inode number of the root directory (FUSE's own root inode).
pub const ROOT: u64 = 1;

/// A sparse map as a tar gives it: (file offset, length) of each data segment.
type SparseMap = Vec<(u64, u64)>;

/// Why a tar could not be indexed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError<E: std::error::Error + 'static> {
    #[error("reading the tar at byte {offset}: {source}")]
    Read {
        offset: u64,
        #[source]
        source: E,
    },
    #[error("the tar ends inside the entry at byte {0}")]
    Truncated(u64),
    #[error("bad header checksum at byte {0}: not a tar, or a damaged one")]
    Checksum(u64),
    #[error("bad number in the header at byte {0}")]
    Number(u64),
    #[error("bad PAX record in the header at byte {0}")]
    Pax(u64),
    #[error("bad sparse map in the entry at byte {0}")]
    Sparse(u64),
    #[error("{0}: a path with `..` or an empty component")]
    Path(String),
    #[error("{0}: a hard link to a path that is not in the tar before it")]
    Link(String),
    #[error("{0}: a parent is not a directory")]
    Parent(String),
    #[error("more than {MAX_ENTRIES} entries")]
    TooMany,
}

/// What an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Char,
    Block,
    Fifo,
}

/// Where a file's bytes are in the tar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// `size` bytes from this offset.
    At(u64),
    /// Only these segments hold data; the rest reads as zeros. Sorted by file offset.
    Sparse(Vec<Segment>),
}

/// One data segment of a sparse file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub len: u64,
    /// Where the segment's bytes start in the tar.
    pub at: u64,
}

/// One inode: a file, a directory, a link target or a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
    /// Nanoseconds within the second (PAX `mtime` fractions; 0 from plain headers).
    pub mtime_ns: u32,
    /// Apparent size (a sparse file's real size; a symlink's target length).
    pub size: u64,
    pub data: Data,
    /// Sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// A symlink's target.
    pub target: Vec<u8>,
    /// Device numbers of a character or block device.
    pub major: u32,
    pub minor: u32,
    /// Names that point here (directories: 2 + subdirectories).
    pub nlink: u32,
    /// A directory's entries: name -> inode number.
    pub children: BTreeMap<Vec<u8>, u64>,
    /// The parent directory's inode number (the root's is itself).
    pub parent: u64,
}

impl Inode {
    fn dir(parent: u64) -> Inode {
        Inode {
            kind: Kind::Dir,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_ns: 0,
            size: 0,
            data: Data::At(0),
            xattrs: Vec::new(),
            target: Vec::new(),
            major: 0,
            minor: 0,
            nlink: 2,
            children: BTreeMap::new(),
            parent,
        }
    }

    /// Bytes of data stored for this inode (a sparse file's segments only).
    pub fn stored(&self) -> u64 {
        match &self.data {
            Data::At(_) => self.size,
            Data::Sparse(segs) => segs.iter().map(|s| s.len).sum(),
        }
    }
}

/// The whole tree; inode `n` is `inodes[n - 1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarIndex {
    inodes: Vec<Inode>,
}

impl TarIndex {
    /// The inode with this number.
    pub fn get(&self, ino: u64) -> Option<&Inode> {
        let i = usize::try_from(ino.checked_sub(1)?).ok()?;
        self.inodes.get(i)
    }

    /// The inode number of `name` in directory `dir`.
    pub fn lookup(&self, dir: u64, name: &[u8]) -> Option<u64> {
        match name {
            b"." => Some(dir),
            b".." => self.get(dir).map(|d| d.parent),
            _ => self.get(dir)?.children.get(name).copied(),
        }
    }

    /// The inode number of a relative path (`etc/hostname`), following no symlinks.
    pub fn resolve(&self, path: &[u8]) -> Option<u64> {
        path.split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .try_fold(ROOT, |ino, c| self.lookup(ino, c))
    }

    /// How many inodes there are.
    pub fn len(&self) -> usize {
        self.inodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inodes.is_empty()
    }
}

/// Bytes `[offset, offset + len)` of a sparse file described by `segs`, as (position in the
/// output, position in the tar, length) copies; the rest of the output is zeros.
pub fn sparse_copies(segs: &[Segment], offset: u64, len: u64) -> Vec<(u64, u64, u64)> {
    let end = offset.saturating_add(len);
    segs.iter()
        .filter_map(|s| {
            let from = s.offset.max(offset);
            let to = (s.offset + s.len).min(end);
            (from < to).then(|| (from - offset, s.at + (from - s.offset), to - from))
        })
        .collect()
}

/// What the extension records before a header said.
#[derive(Default)]
struct Ext {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u32>,
    gid: Option<u32>,
    mtime: Option<(i64, u32)>,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    sparse_name: Option<Vec<u8>>,
    sparse_size: Option<u64>,
    /// PAX sparse 0.0 and 0.1: (offset, length) pairs.
    sparse_map: Vec<u64>,
    /// PAX sparse 1.0: the map is at the start of the data.
    sparse_v1: bool,
}

/// Reads the tar through `read_at(offset, buf)`, which fills `buf` completely or returns how
/// many bytes it could (fewer at the end of the tar), and builds its index.
pub fn index<E, F>(mut read_at: F) -> Result<TarIndex, IndexError<E>>
where
    E: std::error::Error + 'static,
    F: FnMut(u64, &mut [u8]) -> Result<usize, E>,
{
    let mut ix = TarIndex {
        inodes: vec![Inode::dir(ROOT)],
    };
    let mut at = 0u64;
    let mut ext = Ext::default();
    let mut block = [0u8; BLOCK as usize];
    loop {
        let n =
            read_at(at, &mut block).map_err(|source| IndexError::Read { offset: at, source })?;
        // A tar that stops without its end blocks is still read up to there, as GNU tar does.
        if n == 0 || block.iter().all(|&b| b == 0) {
            break;
        }
        if n < block.len() {
            return Err(IndexError::Truncated(at));
        }
        check_sum(&block, at)?;
        let typ = block[156];
        let size = ext
            .size
            .filter(|_| !matches!(typ, b'x' | b'g' | b'L' | b'K'));
        let size = match size {
            Some(s) => s,
            None => number(&block[124..136], at)?,
        };
        let head = at;
        at += BLOCK;
        let padded = size.div_ceil(BLOCK) * BLOCK;
        match typ {
            b'x' | b'L' | b'K' => {
                if size > MAX_EXTENSION {
                    return Err(IndexError::Pax(head));
                }
                let mut rec = vec![0u8; size as usize];
                read_full(&mut read_at, at, &mut rec)?;
                match typ {
                    b'x' => pax(&rec, &mut ext).ok_or(IndexError::Pax(head))?,
                    b'L' => ext.path = Some(cstr(&rec).to_vec()),
                    _ => ext.link = Some(cstr(&rec).to_vec()),
                }
                at += padded;
                continue;
            }
            b'g' => {
                at += padded;
                continue;
            }
            _ => {}
        }
        let e = std::mem::take(&mut ext);
        let mut data_at = at;
        // Old GNU sparse: the map is in the header and in extension blocks after it.
        let mut segs: Option<SparseMap> = None;
        let mut real = None;
        if typ == b'S' {
            let mut list = Vec::new();
            let mut more = gnu_sparse(&block[386..482], block[482], &mut list, head)?;
            real = Some(number(&block[483..495], head)?);
            while more {
                let mut b = [0u8; BLOCK as usize];
                read_full(&mut read_at, data_at, &mut b)?;
                more = gnu_sparse(&b[..504], b[504], &mut list, head)?;
                data_at += BLOCK;
                if list.len() > MAX_SEGMENTS {
                    return Err(IndexError::Sparse(head));
                }
            }
            segs = Some(list);
        } else if e.sparse_v1 {
            let (list, map_len) = sparse_v1(&mut read_at, data_at, head)?;
            data_at += map_len;
            segs = Some(list);
            real = e.sparse_size;
        } else if !e.sparse_map.is_empty() || e.sparse_size.is_some() {
            let list = e
                .sparse_map
                .chunks(2)
                .map(|p| (p[0], p.get(1).copied().unwrap_or(0)));
            segs = Some(list.collect());
            real = e.sparse_size;
        }
        // The data ends `padded` bytes after the header (PAX sparse 1.0 counts its map in
        // the size); old GNU sparse extension blocks come on top.
        let next = if typ == b'S' { data_at } else { at } + padded;
        let path = e
            .sparse_name
            .clone()
            .or(e.path.clone())
            .unwrap_or_else(|| header_path(&block));
        let link = e
            .link
            .clone()
            .unwrap_or_else(|| cstr(&block[157..257]).to_vec());
        let kind = match typ {
            b'0' | 0 | b'7' | b'S' => Some(Kind::File),
            b'1' => None,
            b'2' => Some(Kind::Symlink),
            b'3' => Some(Kind::Char),
            b'4' => Some(Kind::Block),
            b'5' => Some(Kind::Dir),
            b'6' => Some(Kind::Fifo),
            // Unknown entry types (volume labels, ...) are skipped, as tar does.
            _ => {
                at = next;
                continue;
            }
        };
        let name = clean(&path).ok_or_else(|| lossy_err(&path))?;
        let Some(kind) = kind else {
            let target = clean(&link).ok_or_else(|| lossy_err(&link))?;
            hard_link(&mut ix, &name, &target)?;
            at = next;
            continue;
        };
        let mut node = Inode::dir(ROOT);
        node.kind = kind;
        node.mode = number(&block[100..108], head)? as u32 & 0o7777;
        node.uid = match e.uid {
            Some(u) => u,
            None => number(&block[108..116], head)? as u32,
        };
        node.gid = match e.gid {
            Some(g) => g,
            None => number(&block[116..124], head)? as u32,
        };
        (node.mtime, node.mtime_ns) = match e.mtime {
            Some(m) => m,
            None => (number(&block[136..148], head)? as i64, 0),
        };
        node.xattrs = e.xattrs.into_iter().collect();
        node.nlink = if kind == Kind::Dir { 2 } else { 1 };
        match kind {
            Kind::File => {
                node.size = real.unwrap_or(size);
                node.data = match segs {
                    None => Data::At(at),
                    Some(list) => Data::Sparse(place(&list, data_at, next, head)?),
                };
            }
            Kind::Symlink => {
                node.size = link.len() as u64;
                node.target = link;
            }
            Kind::Char | Kind::Block => {
                node.major = number(&block[329..337], head)? as u32;
                node.minor = number(&block[337..345], head)? as u32;
            }
            Kind::Dir | Kind::Fifo => {}
        }
        insert(&mut ix, &name, node)?;
        at = next;
    }
    Ok(ix)
}

fn read_full<E, F>(read_at: &mut F, at: u64, buf: &mut [u8]) -> Result<(), IndexError<E>>
where
    E: std::error::Error + 'static,
    F: FnMut(u64, &mut [u8]) -> Result<usize, E>,
{
    let n = read_at(at, buf).map_err(|source| IndexError::Read { offset: at, source })?;
    if n < buf.len() {
        return Err(IndexError::Truncated(at));
    }
    Ok(())
}

fn lossy_err<E: std::error::Error + 'static>(path: &[u8]) -> IndexError<E> {
    IndexError::Path(String::from_utf8_lossy(path).into_owned())
}

/// The header's checksum: the byte sum with the checksum field read as spaces.
fn check_sum<E: std::error::Error + 'static>(
    block: &[u8; 512],
    at: u64,
) -> Result<(), IndexError<E>> {
    let want = number::<E>(&block[148..156], at).map_err(|_| IndexError::Checksum(at))?;
    let sum: u64 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    if sum != want {
        return Err(IndexError::Checksum(at));
    }
    Ok(())
}

/// A numeric header field: octal text (NUL or space ended), or GNU base-256 when the first
/// byte has its high bit set.
fn number<E: std::error::Error + 'static>(field: &[u8], at: u64) -> Result<u64, IndexError<E>> {
    if let Some((&first, rest)) = field.split_first() {
        if first & 0x80 != 0 {
            // Base-256: negative numbers (0xff lead) are not valid sizes, ids or devices.
            if first & 0x40 != 0 {
                return Err(IndexError::Number(at));
            }
            let mut v = u64::from(first & 0x3f);
            for &b in rest {
                v = v
                    .checked_mul(256)
                    .and_then(|v| v.checked_add(u64::from(b)))
                    .ok_or(IndexError::Number(at))?;
            }
            return Ok(v);
        }
    }
    let text: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| b != 0 && b != b' ')
        .collect();
    if text.is_empty() {
        return Ok(0);
    }
    let s = std::str::from_utf8(&text).map_err(|_| IndexError::Number(at))?;
    u64::from_str_radix(s, 8).map_err(|_| IndexError::Number(at))
}

/// The bytes before the first NUL.
fn cstr(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

/// A header's own path: POSIX ustar joins the prefix field; GNU uses that space otherwise.
fn header_path(block: &[u8; 512]) -> Vec<u8> {
    let name = cstr(&block[0..100]);
    let prefix = cstr(&block[345..500]);
    if &block[257..263] == b"ustar\0" && !prefix.is_empty() {
        let mut p = prefix.to_vec();
        p.push(b'/');
        p.extend_from_slice(name);
        p
    } else {
        name.to_vec()
    }
}

/// Parses PAX records (`LEN KEY=VALUE\n`) into `ext`; `None` if malformed.
fn pax(mut rec: &[u8], ext: &mut Ext) -> Option<()> {
    while !rec.is_empty() {
        let sp = rec.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rec[..sp]).ok()?.parse().ok()?;
        if len <= sp + 1 || len > rec.len() || rec[len - 1] != b'\n' {
            return None;
        }
        let kv = &rec[sp + 1..len - 1];
        rec = &rec[len..];
        let eq = kv.iter().position(|&b| b == b'=')?;
        let (key, value) = (&kv[..eq], &kv[eq + 1..]);
        let text = || std::str::from_utf8(value).ok();
        let num = || text()?.parse::<u64>().ok();
        match key {
            b"path" => ext.path = Some(value.to_vec()),
            b"linkpath" => ext.link = Some(value.to_vec()),
            b"size" => ext.size = Some(num()?),
            b"uid" => ext.uid = Some(u32::try_from(num()?).ok()?),
            b"gid" => ext.gid = Some(u32::try_from(num()?).ok()?),
            b"mtime" => ext.mtime = Some(pax_time(text()?)?),
            b"GNU.sparse.name" => ext.sparse_name = Some(value.to_vec()),
            b"GNU.sparse.size" | b"GNU.sparse.realsize" => ext.sparse_size = Some(num()?),
            b"GNU.sparse.major" => ext.sparse_v1 = num()? == 1,
            b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => ext.sparse_map.push(num()?),
            b"GNU.sparse.map" => {
                for n in text()?.split(',').filter(|s| !s.is_empty()) {
                    ext.sparse_map.push(n.parse().ok()?);
                }
            }
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    ext.xattrs.insert(name.to_vec(), value.to_vec());
                }
            }
        }
        if ext.sparse_map.len() > 2 * MAX_SEGMENTS {
            return None;
        }
    }
    Some(())
}

/// A PAX time (`SECONDS[.FRACTION]`) as seconds and nanoseconds; digits past the
/// nanosecond are dropped. A negative time with a fraction keeps only its seconds.
fn pax_time(text: &str) -> Option<(i64, u32)> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: i64 = secs.parse().ok()?;
    if secs < 0 || frac.is_empty() {
        return Some((secs, 0));
    }
    let digits: String = frac.chars().take(9).collect();
    let ns: u32 = format!("{digits:0<9}").parse().ok()?;
    Some((secs, ns))
}

/// Old GNU sparse entries (24 bytes each: offset, length) and the "more follow" flag.
fn gnu_sparse<E: std::error::Error + 'static>(
    area: &[u8],
    more: u8,
    list: &mut SparseMap,
    at: u64,
) -> Result<bool, IndexError<E>> {
    for e in area.chunks_exact(24) {
        if e[0] == 0 {
            break;
        }
        list.push((number(&e[..12], at)?, number(&e[12..], at)?));
    }
    Ok(more != 0)
}

/// PAX sparse 1.0: decimal lines (count, then offset and length pairs) at the start of the
/// data, padded to a block. Returns the map and the bytes it took.
fn sparse_v1<E, F>(
    read_at: &mut F,
    start: u64,
    head: u64,
) -> Result<(SparseMap, u64), IndexError<E>>
where
    E: std::error::Error + 'static,
    F: FnMut(u64, &mut [u8]) -> Result<usize, E>,
{
    let mut text = Vec::new();
    let mut numbers: Vec<u64> = Vec::new();
    let mut want = None;
    let mut pos = 0;
    loop {
        // Parse whole lines already read.
        while let Some(nl) = text[pos..].iter().position(|&b| b == b'\n') {
            let line = std::str::from_utf8(&text[pos..pos + nl]).ok();
            let n: u64 = line
                .and_then(|l| l.parse().ok())
                .ok_or(IndexError::Sparse(head))?;
            pos += nl + 1;
            match want {
                None => {
                    if n as usize > MAX_SEGMENTS {
                        return Err(IndexError::Sparse(head));
                    }
                    want = Some(n as usize * 2);
                }
                Some(_) => numbers.push(n),
            }
            if want == Some(numbers.len()) {
                let used = (pos as u64).div_ceil(BLOCK) * BLOCK;
                let list = numbers.chunks(2).map(|p| (p[0], p[1])).collect();
                return Ok((list, used));
            }
        }
        if text.len() as u64 > MAX_EXTENSION * 64 {
            return Err(IndexError::Sparse(head));
        }
        let mut b = [0u8; BLOCK as usize];
        read_full(read_at, start + text.len() as u64, &mut b)?;
        text.extend_from_slice(&b);
    }
}

/// Lays sparse segments (file offset, length) out after `data_at`, checking they end before
/// the next header and are in order.
fn place<E: std::error::Error + 'static>(
    list: &[(u64, u64)],
    data_at: u64,
    next: u64,
    head: u64,
) -> Result<Vec<Segment>, IndexError<E>> {
    let mut at = data_at;
    let mut end = 0;
    let mut out = Vec::with_capacity(list.len());
    for &(offset, len) in list {
        if offset < end {
            return Err(IndexError::Sparse(head));
        }
        end = offset.checked_add(len).ok_or(IndexError::Sparse(head))?;
        if len > 0 {
            out.push(Segment { offset, len, at });
        }
        at = at.checked_add(len).ok_or(IndexError::Sparse(head))?;
    }
    if at > next {
        return Err(IndexError::Sparse(head));
    }
    Ok(out)
}

/// The components of a tar path: `./` and empty components dropped; `None` if it has `..`.
fn clean(path: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for c in path.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return None,
            _ => out.push(c.to_vec()),
        }
    }
    Some(out)
}

/// The directory that holds `name`'s last component, made (0755, root) where missing.
fn parent_of<E: std::error::Error + 'static>(
    ix: &mut TarIndex,
    name: &[Vec<u8>],
) -> Result<u64, IndexError<E>> {
    let mut dir = ROOT;
    for (i, c) in name.iter().enumerate().take(name.len().saturating_sub(1)) {
        let found = ix.lookup(dir, c);
        dir = match found {
            Some(ino) if ix.get(ino).is_some_and(|n| n.kind == Kind::Dir) => ino,
            Some(_) => return Err(IndexError::Parent(joined(&name[..=i]))),
            None => add(ix, dir, c, Inode::dir(dir))?,
        };
    }
    Ok(dir)
}

fn joined(name: &[Vec<u8>]) -> String {
    String::from_utf8_lossy(&name.join(&b'/')).into_owned()
}

/// Adds `node` as `name` in `dir` and returns its inode number.
fn add<E: std::error::Error + 'static>(
    ix: &mut TarIndex,
    dir: u64,
    name: &[u8],
    mut node: Inode,
) -> Result<u64, IndexError<E>> {
    if ix.inodes.len() >= MAX_ENTRIES {
        return Err(IndexError::TooMany);
    }
    node.parent = dir;
    let is_dir = node.kind == Kind::Dir;
    ix.inodes.push(node);
    let ino = ix.inodes.len() as u64;
    let d = dir_mut(ix, dir);
    d.children.insert(name.to_vec(), ino);
    if is_dir {
        d.nlink += 1;
    }
    Ok(ino)
}

/// A directory inode that the index made itself.
fn dir_mut(ix: &mut TarIndex, dir: u64) -> &mut Inode {
    // Directory numbers come from the index itself (ROOT, or a lookup or push just done).
    let i = (dir - 1) as usize;
    &mut ix.inodes[i]
}

/// Removes `name` from `dir` (the old entry of a path a later entry replaces).
fn unlink(ix: &mut TarIndex, dir: u64, name: &[u8]) {
    let Some(old) = dir_mut(ix, dir).children.remove(name) else {
        return;
    };
    let old_is_dir = ix.get(old).is_some_and(|n| n.kind == Kind::Dir);
    if old_is_dir {
        dir_mut(ix, dir).nlink -= 1;
    } else if let Some(n) = ix.inodes.get_mut((old - 1) as usize) {
        n.nlink = n.nlink.saturating_sub(1);
    }
}

fn insert<E: std::error::Error + 'static>(
    ix: &mut TarIndex,
    name: &[Vec<u8>],
    node: Inode,
) -> Result<(), IndexError<E>> {
    let Some(last) = name.last() else {
        // `./` itself: the root's own metadata.
        if node.kind == Kind::Dir {
            let root = dir_mut(ix, ROOT);
            let (children, nlink) = (std::mem::take(&mut root.children), root.nlink);
            *root = Inode {
                children,
                nlink,
                parent: ROOT,
                ..node
            };
        }
        return Ok(());
    };
    let dir = parent_of(ix, name)?;
    if let Some(old) = ix.lookup(dir, last) {
        // A directory given again keeps its entries and takes the new metadata, as tar does.
        if node.kind == Kind::Dir && ix.get(old).is_some_and(|n| n.kind == Kind::Dir) {
            let o = dir_mut(ix, old);
            let (children, nlink, parent) = (std::mem::take(&mut o.children), o.nlink, o.parent);
            *o = Inode {
                children,
                nlink,
                parent,
                ..node
            };
            return Ok(());
        }
        unlink(ix, dir, last);
    }
    add(ix, dir, last, node)?;
    Ok(())
}

fn hard_link<E: std::error::Error + 'static>(
    ix: &mut TarIndex,
    name: &[Vec<u8>],
    target: &[Vec<u8>],
) -> Result<(), IndexError<E>> {
    let found = ix.resolve(&target.join(&b'/'));
    let Some(ino) = found.filter(|&i| ix.get(i).is_some_and(|n| n.kind != Kind::Dir)) else {
        return Err(IndexError::Link(joined(name)));
    };
    let Some(last) = name.last() else {
        return Err(IndexError::Link(joined(name)));
    };
    let dir = parent_of(ix, name)?;
    if ix.lookup(dir, last) == Some(ino) {
        return Ok(());
    }
    unlink(ix, dir, last);
    dir_mut(ix, dir).children.insert(last.clone(), ino);
    if let Some(n) = ix.inodes.get_mut((ino - 1) as usize) {
        n.nlink += 1;
    }
    Ok(())
}

#[cfg(test)]
#[path = "tarindex_tests.rs"]
mod tests;
