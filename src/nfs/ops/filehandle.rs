//! Filehandle operations: setting, saving and restoring the current filehandle, and moving it
//! by name (LOOKUP, LOOKUPP); SECINFO and SECINFO_NO_NAME, which consume it.
//!
//! Handles are the Vfs's opaque bytes; PUTFH accepts any non-empty one and the Vfs says
//! STALE or BADHANDLE when it is used. Not here: which handles a caller may see (the Vfs).

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

pub(super) fn secinfo_no_name(cx: &mut Ctx) -> Result<Res, Nfs4Status> {
    cx.fh()?;
    cx.cfh = None;
    Ok(Res::SecInfo)
}
