//! Directory operations: READDIR, CREATE (everything but regular files, which OPEN makes),
//! REMOVE, RENAME, LINK and READLINK.
//!
//! Changes answer with the directory's change attribute before and after (never atomic: the
//! Vfs does not say whether another change came between). REMOVE and RENAME wait out a grace
//! period, as a client may still reclaim an open of the name, and recall other clients'
//! read delegations of the object they remove or rename (NFS4ERR_DELAY until they are
//! returned). READDIR's cookie verifier is
//! the Vfs's write verifier, so a listing resumed after a restart gets NFS4ERR_NOT_SAME.
//! Not here: what a name may be on disk, and permissions (the Vfs's).

use super::attr::write_only;
use super::{check_name, Ctx};
use crate::nfs::status::Nfs4Status;
use crate::nfs::vfs::{Attr, FileType, Handle, NewObject};
use crate::nfs::wire::{
    self, encode_attrs, AttrSource, Bitmap, ChangeInfo, CreateType, FAttr, Res,
};
use crate::nfs::xdr::{opaque_len, Writer};

/// The attributes of `dir`, which must be a directory.
fn directory(cx: &Ctx, dir: &Handle) -> Result<Attr, Nfs4Status> {
    let a = cx.vfs.getattr(cx.caller, dir)?;
    if a.kind != FileType::Directory {
        return Err(Nfs4Status::NotDir);
    }
    Ok(a)
}

/// The change of `dir` from `before` to now.
fn changed(cx: &Ctx, dir: &Handle, before: u64) -> ChangeInfo {
    ChangeInfo {
        atomic: false,
        before,
        after: cx.change(dir),
    }
}

pub(super) fn readlink(cx: &mut Ctx) -> Result<Res, Nfs4Status> {
    let fh = cx.fh()?;
    let a = cx.vfs.getattr(cx.caller, fh)?;
    if a.kind != FileType::Symlink {
        return Err(Nfs4Status::Inval);
    }
    Ok(Res::Link(cx.vfs.readlink(cx.caller, fh)?))
}

pub(super) fn create(
    cx: &mut Ctx,
    kind: &CreateType,
    name: &[u8],
    attrs: &FAttr,
) -> Result<Res, Nfs4Status> {
    let dir = cx.fh()?.clone();
    check_name(name)?;
    let set = attrs.settable()?;
    let what = match kind {
        CreateType::Link(t) => {
            if t.is_empty() {
                return Err(Nfs4Status::Inval);
            }
            NewObject::Symlink { target: t.clone() }
        }
        CreateType::Block(ma, mi) => NewObject::Block {
            major: *ma,
            minor: *mi,
        },
        CreateType::Char(ma, mi) => NewObject::Char {
            major: *ma,
            minor: *mi,
        },
        CreateType::Socket => NewObject::Socket,
        CreateType::Fifo => NewObject::Fifo,
        CreateType::Dir => NewObject::Directory,
        CreateType::BadType => return Err(Nfs4Status::BadType),
    };
    let da = directory(cx, &dir)?;
    let (fh, _) = cx.vfs.create(cx.caller, &dir, name, &what, &set)?;
    let cinfo = changed(cx, &dir, da.change);
    cx.cfh = Some(fh);
    Ok(Res::Create {
        cinfo,
        attrset: attrs.mask.clone(),
    })
}

pub(super) fn link(cx: &mut Ctx, name: &[u8]) -> Result<Res, Nfs4Status> {
    let dir = cx.fh()?.clone();
    let src = cx.saved.clone().ok_or(Nfs4Status::NoFileHandle)?;
    check_name(name)?;
    let before = directory(cx, &dir)?;
    if cx.vfs.getattr(cx.caller, &src)?.kind == FileType::Directory {
        return Err(Nfs4Status::IsDir);
    }
    cx.vfs.link(cx.caller, &src, &dir, name)?;
    Ok(Res::Change(changed(cx, &dir, before.change)))
}

pub(super) fn remove(cx: &mut Ctx, name: &[u8]) -> Result<Res, Nfs4Status> {
    let dir = cx.fh()?.clone();
    check_name(name)?;
    let before = directory(cx, &dir)?;
    if cx.in_grace() {
        // Removing a file a client may still reclaim an open of.
        return Err(Nfs4Status::Grace);
    }
    cx.recall_name(&dir, name)?;
    cx.vfs.remove(cx.caller, &dir, name)?;
    Ok(Res::Change(changed(cx, &dir, before.change)))
}

pub(super) fn rename(cx: &mut Ctx, from: &[u8], to: &[u8]) -> Result<Res, Nfs4Status> {
    let to_dir = cx.fh()?.clone();
    let from_dir = cx.saved.clone().ok_or(Nfs4Status::NoFileHandle)?;
    check_name(from)?;
    check_name(to)?;
    let fb = cx.vfs.getattr(cx.caller, &from_dir)?;
    let tb = cx.vfs.getattr(cx.caller, &to_dir)?;
    if fb.kind != FileType::Directory || tb.kind != FileType::Directory {
        return Err(Nfs4Status::NotDir);
    }
    if cx.in_grace() {
        return Err(Nfs4Status::Grace);
    }
    // The renamed object, and one the new name replaces, lose their read delegations.
    cx.recall_name(&from_dir, from)?;
    cx.recall_name(&to_dir, to)?;
    cx.vfs.rename(cx.caller, &from_dir, from, &to_dir, to)?;
    Ok(Res::Rename {
        source: changed(cx, &from_dir, fb.change),
        target: changed(cx, &to_dir, tb.change),
    })
}

pub(super) fn readdir(
    cx: &mut Ctx,
    cookie: u64,
    verifier: [u8; 8],
    dircount: u32,
    maxcount: u32,
    want: &Bitmap,
) -> Result<Res, Nfs4Status> {
    let dir = cx.fh()?.clone();
    let caller = cx.caller;
    directory(cx, &dir)?;
    if cookie == 1 || cookie == 2 {
        return Err(Nfs4Status::BadCookie);
    }
    if write_only(want) {
        return Err(Nfs4Status::Inval);
    }
    // The verifier names this server run; cookies from another run are refused.
    let ours = cx.vfs.write_verifier();
    if cookie != 0 && verifier != [0; 8] && verifier != ours {
        return Err(Nfs4Status::NotSame);
    }
    let maxcount = (maxcount as usize).min(cx.max_response.saturating_sub(512));
    // verifier + end-of-list marker + eof
    let fixed = 8 + 4 + 4;
    if maxcount < fixed + 24 {
        return Err(Nfs4Status::TooSmall);
    }
    let max_entries = (maxcount / 24).clamp(1, 4096);
    let (entries, complete) = cx.vfs.readdir(caller, &dir, cookie, max_entries)?;
    let sup = wire::supported(cx.minor);
    let want = want.intersect(&sup);
    let fsstat = if wire::needs_fsstat(&want) {
        Some(cx.vfs.statfs(caller, &dir)?)
    } else {
        None
    };
    let lease_seconds = cx.state().limits.lease.as_secs() as u32;
    let mut body = Writer::new();
    body.fixed(&ours);
    let mut names = 0usize;
    let mut all = true;
    let mut n = 0;
    for e in &entries {
        let mark = body.len();
        body.bool(true);
        body.u64(e.cookie);
        body.opaque(&e.name);
        encode_attrs(
            &mut body,
            &want,
            &AttrSource {
                attr: &e.attr,
                handle: &e.handle,
                fsstat,
                lease_seconds,
                minor: cx.minor,
            },
        );
        names += 8 + opaque_len(e.name.len());
        if body.len() + 8 > maxcount || (dircount > 0 && n > 0 && names > dircount as usize) {
            body.truncate(mark);
            all = false;
            break;
        }
        n += 1;
    }
    if n == 0 && !entries.is_empty() {
        return Err(Nfs4Status::TooSmall);
    }
    body.bool(false);
    body.bool(all && complete);
    Ok(Res::ReadDir(body.buf))
}
