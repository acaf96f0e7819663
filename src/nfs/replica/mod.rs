//! Replication of nodes' writable layers: every change a client makes to its node's layer
//! through NFS is described as operations ([`wire::Op`]) and handed to a [`Replica`], which
//! ships them to the other live members' copies (`pool::layers`); a stable change is answered
//! only once a peer has it on disk.
//!
//! Data flow: `view::Views` makes the change in the layer, then (before it answers) calls
//! [`Replica::ship`] with a closure that describes the change by reading the result back
//! (`Capture`: the object's path below the layer, its attributes and `user.drover.*`
//! extended attributes, the bytes a WRITE covered as they are now). Describing the result
//! rather than the request makes the operations idempotent, and reading back under the
//! replica's per-node lock makes concurrent changes to one node ship in the order of their
//! read-back, so a copy converges to the layer. A peer applies them with [`apply::apply`];
//! a copy that missed changes (a peer that was down, a failed shipment) is brought level by
//! a snapshot of the whole layer ([`local::snapshot`]).
//!
//! - [`wire`]: the shipment format (sans IO);
//! - [`local`]: reading this member's layer (paths of objects, attributes, snapshots);
//! - [`apply`]: applying a shipment to a copy, confined below it, fsynced before the ack;
//! - `sys`: the few raw calls `fs::sys` lacks (extended attributes, `linkat`, `syncfs`).
//!
//! Not here: the transport, peers and counters (`pool::layers`); shared exports (only node
//! layers are replicated); changes made to a layer behind NFS's back (on the host), which
//! reach the copies only with the next snapshot.

pub mod apply;
pub mod local;
pub(crate) mod sys;
pub mod wire;

#[cfg(test)]
pub(crate) mod tests;

use super::fs::{KernelHandle, Tree};
use local::Obj;
use std::path::Path;
use wire::{Op, RelPath};

/// How long a change may wait for its copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// An UNSTABLE write: ship it, answer at once (a later COMMIT waits for it).
    Lazy,
    /// A stable write, COMMIT or metadata change: answer once a live peer has it durably,
    /// or when no peer could take it within the replica's timeout (counted unreplicated).
    Stable,
}

/// Where the changes of nodes' layers go (implemented by `pool::layers::Shipper`).
pub trait Replica: Send + Sync {
    /// Ships the change that `describe` reads back from `node`'s layer at `layer` (canonical
    /// path) to the other live members, and blocks as `wait` says. `describe` returns `None`
    /// when it cannot describe the change (the peers then get a snapshot instead); no
    /// operations is a flush (COMMIT): it waits for what was shipped before.
    fn ship(&self, node: &str, layer: &Path, describe: &dyn Fn() -> Option<Vec<Op>>, wait: Wait);
}

/// Describes changes of one node's layer by reading them back.
pub(crate) struct Capture<'a> {
    pub tree: &'a Tree,
    /// The layer's canonical path.
    pub root: &'a Path,
}

impl Capture<'_> {
    fn obj(&self, k: &KernelHandle) -> Option<Obj> {
        let o = self.tree.obj(k).ok()?;
        Some(Obj { fd: o.fd, st: o.st })
    }

    fn located(&self, k: &KernelHandle) -> Option<(Obj, RelPath)> {
        let o = self.obj(k)?;
        let p = local::path_of(self.root, &o)?;
        Some((o, p))
    }

    fn attr_op(o: &Obj, path: RelPath) -> Option<Op> {
        let size = local::is(&o.st, libc::S_IFREG).then_some(o.st.st_size.max(0) as u64);
        Some(Op::Attr {
            path,
            size,
            meta: local::meta_of(o).ok()?,
        })
    }

    /// The attributes (and size) of `k` after SETATTR or a truncating OPEN.
    pub fn attr(&self, k: &KernelHandle) -> Option<Vec<Op>> {
        let (o, p) = self.located(k)?;
        Some(vec![Self::attr_op(&o, p)?])
    }

    /// The bytes `offset..offset+len` of `k` after a WRITE.
    pub fn write(&self, k: &KernelHandle, offset: u64, len: usize) -> Option<Vec<Op>> {
        let (o, path) = self.located(k)?;
        let data = local::read_range(&o, offset, len).ok()?;
        Some(vec![Op::Write {
            path,
            offset,
            data,
            size: o.st.st_size.max(0) as u64,
            meta: local::meta_of(&o).ok()?,
        }])
    }

    /// `name` in `dir` after a create (or an OPEN of an existing file).
    pub fn made(&self, dir: &KernelHandle, name: &[u8]) -> Option<Vec<Op>> {
        let (d, dp) = self.located(dir)?;
        let o = local::open_obj(std::os::fd::AsFd::as_fd(&d.fd), name).ok()?;
        let path = dp.join(name).ok()?;
        let op = if local::is(&o.st, libc::S_IFREG) && o.st.st_size > 0 {
            // A new file is empty: this one existed and was opened.
            Self::attr_op(&o, path)?
        } else {
            local::put_of(&o, path).ok()?
        };
        Some(vec![op, Self::attr_op(&d, dp)?])
    }

    /// `name` gone from `dir`.
    pub fn removed(&self, dir: &KernelHandle, name: &[u8]) -> Option<Vec<Op>> {
        let (d, dp) = self.located(dir)?;
        Some(vec![
            Op::Remove {
                path: dp.join(name).ok()?,
            },
            Self::attr_op(&d, dp)?,
        ])
    }

    /// `from` in `a` renamed to `to` in `b`.
    pub fn renamed(
        &self,
        a: &KernelHandle,
        from: &[u8],
        b: &KernelHandle,
        to: &[u8],
    ) -> Option<Vec<Op>> {
        let (ad, ap) = self.located(a)?;
        let (bd, bp) = self.located(b)?;
        let mut ops = vec![Op::Rename {
            from: ap.join(from).ok()?,
            to: bp.join(to).ok()?,
        }];
        ops.push(Self::attr_op(&ad, ap.clone())?);
        if bp != ap {
            ops.push(Self::attr_op(&bd, bp)?);
        }
        Some(ops)
    }

    /// `name` in `dir` made a new name of `file`.
    pub fn linked(&self, file: &KernelHandle, dir: &KernelHandle, name: &[u8]) -> Option<Vec<Op>> {
        let (d, dp) = self.located(dir)?;
        let to = dp.join(name).ok()?;
        let (f, from) = self.located(file)?;
        // The kernel may name the file by its new name; then a snapshot says it better.
        if from == to {
            return None;
        }
        Some(vec![
            Op::Link {
                from,
                to: to.clone(),
            },
            Self::attr_op(&d, dp)?,
            Self::attr_op(&f, to)?,
        ])
    }
}
