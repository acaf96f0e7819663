//! A small in-memory [`Vfs`] for the protocol core's unit tests (the real file side is
//! tested against the real kernel client). Handles are 8-byte node numbers; permissions are
//! owner/other mode bits with root allowed everything.

use super::vfs::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

#[derive(Debug, Clone)]
struct Node {
    attr: Attr,
    data: Vec<u8>,
    children: BTreeMap<Vec<u8>, u64>,
    parent: u64,
    target: Vec<u8>,
}

#[derive(Debug)]
pub struct MemVfs {
    nodes: Mutex<(HashMap<u64, Node>, u64)>,
    pub verifier: [u8; 8],
}

fn h(id: u64) -> Handle {
    Handle(id.to_be_bytes().to_vec())
}

fn id(fh: &Handle) -> VfsResult<u64> {
    let b: [u8; 8] =
        fh.0.as_slice()
            .try_into()
            .map_err(|_| VfsError::BadHandle)?;
    Ok(u64::from_be_bytes(b))
}

fn attr(kind: FileType, fileid: u64, mode: u32, uid: u32, gid: u32) -> Attr {
    Attr {
        kind,
        mode,
        nlink: 1,
        uid,
        gid,
        size: 0,
        used: 0,
        rdev: (0, 0),
        fsid: (1, 1),
        fileid,
        atime: Time::default(),
        mtime: Time::default(),
        ctime: Time::default(),
        change: 1,
    }
}

impl MemVfs {
    pub fn new() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(
            1,
            Node {
                attr: attr(FileType::Directory, 1, 0o777, 0, 0),
                data: Vec::new(),
                children: BTreeMap::new(),
                parent: 1,
                target: Vec::new(),
            },
        );
        MemVfs {
            nodes: Mutex::new((nodes, 2)),
            verifier: *b"verifier",
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<u64, Node>, &mut u64) -> T) -> T {
        let mut g = self.nodes.lock().unwrap();
        let (nodes, next) = &mut *g;
        f(nodes, next)
    }
}

fn allowed(a: &Attr, c: &Caller, bits: u32) -> bool {
    if c.uid == 0 {
        return true;
    }
    let m = if a.uid == c.uid { a.mode >> 6 } else { a.mode };
    m & bits == bits
}

fn apply(a: &mut Attr, data: &mut Vec<u8>, set: &SetAttr) {
    if let Some(m) = set.mode {
        a.mode = m;
    }
    if let Some(u) = set.uid {
        a.uid = u;
    }
    if let Some(g) = set.gid {
        a.gid = g;
    }
    if let Some(s) = set.size {
        data.resize(s as usize, 0);
        a.size = s;
    }
    if let Some(SetTime::Client(t)) = set.atime {
        a.atime = t;
    }
    if let Some(SetTime::Client(t)) = set.mtime {
        a.mtime = t;
    }
    a.change += 1;
}

impl Vfs for MemVfs {
    fn root(&self, _: &Caller) -> VfsResult<Handle> {
        Ok(h(1))
    }
    fn check(&self, c: &Caller, fh: &Handle) -> VfsResult<()> {
        self.getattr(c, fh).map(|_| ())
    }
    fn getattr(&self, _: &Caller, fh: &Handle) -> VfsResult<Attr> {
        let i = id(fh)?;
        self.with(|n, _| n.get(&i).map(|n| n.attr.clone()).ok_or(VfsError::Stale))
    }
    fn setattr(&self, c: &Caller, fh: &Handle, set: &SetAttr) -> VfsResult<Attr> {
        let i = id(fh)?;
        self.with(|n, _| {
            let node = n.get_mut(&i).ok_or(VfsError::Stale)?;
            if c.uid != 0 && c.uid != node.attr.uid {
                return Err(VfsError::Perm);
            }
            apply(&mut node.attr, &mut node.data, set);
            Ok(node.attr.clone())
        })
    }
    fn access(&self, c: &Caller, fh: &Handle, wanted: u32) -> VfsResult<u32> {
        let a = self.getattr(c, fh)?;
        let mut got = 0;
        for (bit, need) in [
            (access::READ, 4),
            (access::LOOKUP, 1),
            (access::MODIFY, 2),
            (access::EXTEND, 2),
            (access::DELETE, 2),
            (access::EXECUTE, 1),
        ] {
            if wanted & bit != 0 && allowed(&a, c, need) {
                got |= bit;
            }
        }
        Ok(got)
    }
    fn lookup(&self, _: &Caller, dir: &Handle, name: &[u8]) -> VfsResult<Handle> {
        let i = id(dir)?;
        self.with(|n, _| {
            let d = n.get(&i).ok_or(VfsError::Stale)?;
            d.children.get(name).map(|c| h(*c)).ok_or(VfsError::NoEnt)
        })
    }
    fn parent(&self, _: &Caller, dir: &Handle) -> VfsResult<Handle> {
        let i = id(dir)?;
        if i == 1 {
            return Err(VfsError::NoEnt);
        }
        self.with(|n, _| n.get(&i).map(|d| h(d.parent)).ok_or(VfsError::Stale))
    }
    fn read(&self, c: &Caller, fh: &Handle, off: u64, count: u32) -> VfsResult<(Vec<u8>, bool)> {
        let i = id(fh)?;
        self.with(|n, _| {
            let f = n.get(&i).ok_or(VfsError::Stale)?;
            if !allowed(&f.attr, c, 4) {
                return Err(VfsError::Access);
            }
            let start = (off as usize).min(f.data.len());
            let end = (start + count as usize).min(f.data.len());
            Ok((f.data[start..end].to_vec(), end == f.data.len()))
        })
    }
    fn write(
        &self,
        c: &Caller,
        fh: &Handle,
        off: u64,
        data: &[u8],
        stable: Stability,
    ) -> VfsResult<(u32, Stability)> {
        let i = id(fh)?;
        self.with(|n, _| {
            let f = n.get_mut(&i).ok_or(VfsError::Stale)?;
            if !allowed(&f.attr, c, 2) {
                return Err(VfsError::Access);
            }
            let end = off as usize + data.len();
            if f.data.len() < end {
                f.data.resize(end, 0);
            }
            f.data[off as usize..end].copy_from_slice(data);
            f.attr.size = f.data.len() as u64;
            f.attr.change += 1;
            Ok((data.len() as u32, stable))
        })
    }
    fn commit(&self, _: &Caller, _: &Handle, _: u64, _: u32) -> VfsResult<()> {
        Ok(())
    }
    fn write_verifier(&self) -> [u8; 8] {
        self.verifier
    }
    fn create(
        &self,
        c: &Caller,
        dir: &Handle,
        name: &[u8],
        what: &NewObject,
        attrs: &SetAttr,
    ) -> VfsResult<(Handle, Attr)> {
        let d = id(dir)?;
        self.with(|n, next| {
            let parent = n.get(&d).ok_or(VfsError::Stale)?;
            if !allowed(&parent.attr, c, 2) {
                return Err(VfsError::Access);
            }
            if let Some(&existing) = parent.children.get(name) {
                match what {
                    NewObject::File { exclusive: false } => {
                        let f = n.get_mut(&existing).ok_or(VfsError::Stale)?;
                        return Ok((h(existing), f.attr.clone()));
                    }
                    _ => return Err(VfsError::Exist),
                }
            }
            let (kind, target) = match what {
                NewObject::File { .. } => (FileType::Regular, Vec::new()),
                NewObject::Directory => (FileType::Directory, Vec::new()),
                NewObject::Symlink { target } => (FileType::Symlink, target.clone()),
                NewObject::Fifo => (FileType::Fifo, Vec::new()),
                _ => return Err(VfsError::NotSupported),
            };
            let new = *next;
            *next += 1;
            let mut node = Node {
                attr: attr(kind, new, 0o644, c.uid, c.gid),
                data: Vec::new(),
                children: BTreeMap::new(),
                parent: d,
                target,
            };
            apply(&mut node.attr, &mut node.data, attrs);
            let a = node.attr.clone();
            n.insert(new, node);
            let p = n.get_mut(&d).ok_or(VfsError::Stale)?;
            p.children.insert(name.to_vec(), new);
            p.attr.change += 1;
            Ok((h(new), a))
        })
    }
    fn link(&self, _: &Caller, fh: &Handle, dir: &Handle, name: &[u8]) -> VfsResult<()> {
        let (f, d) = (id(fh)?, id(dir)?);
        self.with(|n, _| {
            let p = n.get_mut(&d).ok_or(VfsError::Stale)?;
            if p.children.contains_key(name) {
                return Err(VfsError::Exist);
            }
            p.children.insert(name.to_vec(), f);
            p.attr.change += 1;
            n.get_mut(&f).ok_or(VfsError::Stale)?.attr.nlink += 1;
            Ok(())
        })
    }
    fn remove(&self, _: &Caller, dir: &Handle, name: &[u8]) -> VfsResult<()> {
        let d = id(dir)?;
        self.with(|n, _| {
            let p = n.get_mut(&d).ok_or(VfsError::Stale)?;
            let c = p.children.remove(name).ok_or(VfsError::NoEnt)?;
            p.attr.change += 1;
            if n.get(&c).is_some_and(|c| !c.children.is_empty()) {
                n.get_mut(&d)
                    .ok_or(VfsError::Stale)?
                    .children
                    .insert(name.to_vec(), c);
                return Err(VfsError::NotEmpty);
            }
            Ok(())
        })
    }
    fn rename(
        &self,
        _: &Caller,
        from_dir: &Handle,
        from: &[u8],
        to_dir: &Handle,
        to: &[u8],
    ) -> VfsResult<()> {
        let (fd, td) = (id(from_dir)?, id(to_dir)?);
        self.with(|n, _| {
            let c = n
                .get_mut(&fd)
                .ok_or(VfsError::Stale)?
                .children
                .remove(from)
                .ok_or(VfsError::NoEnt)?;
            n.get_mut(&td)
                .ok_or(VfsError::Stale)?
                .children
                .insert(to.to_vec(), c);
            Ok(())
        })
    }
    fn readdir(
        &self,
        _: &Caller,
        dir: &Handle,
        cookie: u64,
        max: usize,
    ) -> VfsResult<(Vec<DirEntry>, bool)> {
        let d = id(dir)?;
        self.with(|n, _| {
            let p = n.get(&d).ok_or(VfsError::Stale)?;
            let all: Vec<(&Vec<u8>, &u64)> = p.children.iter().collect();
            let start = if cookie == 0 { 0 } else { cookie as usize - 2 };
            let mut out = Vec::new();
            for (i, (name, child)) in all.iter().enumerate().skip(start).take(max) {
                out.push(DirEntry {
                    name: name.to_vec(),
                    cookie: i as u64 + 3,
                    handle: h(**child),
                    attr: n[*child].attr.clone(),
                });
            }
            Ok((out, start + max >= all.len()))
        })
    }
    fn readlink(&self, _: &Caller, fh: &Handle) -> VfsResult<Vec<u8>> {
        let i = id(fh)?;
        self.with(|n, _| n.get(&i).map(|f| f.target.clone()).ok_or(VfsError::Stale))
    }
    fn statfs(&self, _: &Caller, _: &Handle) -> VfsResult<FsStat> {
        Ok(FsStat {
            bytes_total: 1 << 30,
            bytes_free: 1 << 29,
            bytes_avail: 1 << 29,
            files_total: 1000,
            files_free: 500,
            files_avail: 500,
        })
    }
}
