//! Filehandle operations: setting, saving and restoring the current filehandle, and moving it
//! by name (LOOKUP, LOOKUPP); SECINFO and SECINFO_NO_NAME, which consume it.
//!
//! Handles are the Vfs's opaque bytes; PUTFH has the Vfs check each one for the caller
//! (BADHANDLE for one it did not make, STALE for one out of the caller's reach), and every
//! later use checks again. Not here: which handles a caller may see (the Vfs).

use super::{check_name, Ctx};
use crate::nfs::status::Nfs4Status;
use crate::nfs::vfs::{FileType, Handle};
use crate::nfs::wire::Res;

pub(super) fn put_root(cx: &mut Ctx) -> Result<Res, Nfs4Status> {
    cx.cfh = Some(cx.vfs.root(cx.caller)?);
    Ok(Res::Empty)
}

pub(super) fn put(cx: &mut Ctx, h: &Handle) -> Result<Res, Nfs4Status> {
    if h.0.is_empty() {
        return Err(Nfs4Status::BadHandle);
    }
    cx.vfs.check(cx.caller, h)?;
    cx.cfh = Some(h.clone());
    Ok(Res::Empty)
}

pub(super) fn get(cx: &mut Ctx) -> Result<Res, Nfs4Status> {
    Ok(Res::Fh(cx.fh()?.clone()))
}

pub(super) fn save(cx: &mut Ctx) -> Result<Res, Nfs4Status> {
    cx.saved = Some(cx.fh()?.clone());
    cx.saved_stateid = cx.current_stateid;
    Ok(Res::Empty)
}

pub(super) fn restore(cx: &mut Ctx) -> Result<Res, Nfs4Status> {
    cx.cfh = Some(cx.saved.clone().ok_or(Nfs4Status::RestoreFh)?);
    cx.current_stateid = cx.saved_stateid;
    Ok(Res::Empty)
}

pub(super) fn lookup(cx: &mut Ctx, name: &[u8]) -> Result<Res, Nfs4Status> {
    let dir = cx.fh()?;
    check_name(name)?;
    let a = cx.vfs.getattr(cx.caller, dir)?;
    if a.kind != FileType::Directory {
        return Err(if a.kind == FileType::Symlink {
            Nfs4Status::Symlink
        } else {
            Nfs4Status::NotDir
        });
    }
    cx.cfh = Some(cx.vfs.lookup(cx.caller, dir, name)?);
    Ok(Res::Empty)
}

pub(super) fn lookupp(cx: &mut Ctx) -> Result<Res, Nfs4Status> {
    let dir = cx.fh()?;
    let a = cx.vfs.getattr(cx.caller, dir)?;
    if a.kind != FileType::Directory {
        return Err(Nfs4Status::NotDir);
    }
    cx.cfh = Some(cx.vfs.parent(cx.caller, dir)?);
    Ok(Res::Empty)
}

pub(super) fn secinfo(cx: &mut Ctx, name: &[u8]) -> Result<Res, Nfs4Status> {
    let dir = cx.fh()?;
    check_name(name)?;
    cx.vfs.lookup(cx.caller, dir, name)?;
    if cx.minor >= 1 {
        cx.cfh = None;
    }
    Ok(Res::SecInfo)
}

/// SECINFO_NO_NAME (RFC 8881 §18.45): the current filehandle's flavours, or with
/// `SECINFO_STYLE4_PARENT` (`style` 1) its parent's, which at the pseudo-root does not exist
/// (NFS4ERR_NOENT, as LOOKUPP). Either way the current filehandle is consumed.
pub(super) fn secinfo_no_name(cx: &mut Ctx, style: u32) -> Result<Res, Nfs4Status> {
    let fh = cx.fh()?;
    if style == SECINFO_STYLE4_PARENT {
        cx.vfs.parent(cx.caller, fh)?;
    }
    cx.cfh = None;
    Ok(Res::SecInfo)
}

/// `secinfo_style4`: the parent of the current filehandle.
const SECINFO_STYLE4_PARENT: u32 = 1;
