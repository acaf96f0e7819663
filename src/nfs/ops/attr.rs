//! Attribute operations: GETATTR, SETATTR, ACCESS, VERIFY and NVERIFY.
//!
//! Values come from the Vfs's [`Attr`] and are encoded by [`wire::encode_attrs`] (which
//! attributes exist and how each is written is the wire's business); VERIFY and NVERIFY
//! compare the client's encoded values with ours byte for byte. SETATTR recalls other
//! clients' read delegations of the file first (NFS4ERR_DELAY until returned). Not here: attribute numbers
//! and the fattr4 codec ([`crate::nfs::wire`]), permission checks (the Vfs's).

use super::Ctx;
use crate::nfs::status::Nfs4Status;
use crate::nfs::vfs::{Attr, FileType, Handle};
use crate::nfs::wire::{
    self, encode_attrs, fattr, AttrSource, Bitmap, ErrBody, FAttr, OpError, OpResult, Res, StateId,
};
use crate::nfs::xdr::Writer;

/// Whether a request asks to read a write-only attribute (RFC 7530 §5.5: NFS4ERR_INVAL).
pub(super) fn write_only(mask: &Bitmap) -> bool {
    mask.has(fattr::TIME_ACCESS_SET) || mask.has(fattr::TIME_MODIFY_SET)
}

/// Encodes the attributes `want` of `fh` (file system statistics only if asked for).
fn encode(
    cx: &Ctx,
    w: &mut Writer,
    want: &Bitmap,
    fh: &Handle,
    attr: &Attr,
) -> Result<(), Nfs4Status> {
    let fsstat = if wire::needs_fsstat(want) {
        Some(cx.vfs.statfs(cx.caller, fh)?)
    } else {
        None
    };
    let lease_seconds = cx.state().limits.lease.as_secs() as u32;
    encode_attrs(
        w,
        want,
        &AttrSource {
            attr,
            handle: fh,
            fsstat,
            lease_seconds,
            minor: cx.minor,
        },
    );
    Ok(())
}

pub(super) fn getattr(cx: &mut Ctx, want: &Bitmap) -> Result<Res, Nfs4Status> {
    let fh = cx.fh()?;
    if write_only(want) {
        return Err(Nfs4Status::Inval);
    }
    let a = cx.vfs.getattr(cx.caller, fh)?;
    let mut w = Writer::new();
    encode(cx, &mut w, want, fh, &a)?;
    Ok(Res::Attrs(w.buf))
}

/// VERIFY (`same`: succeed if the values are equal) and NVERIFY (succeed if they differ).
pub(super) fn verify(cx: &mut Ctx, f: &FAttr, same: bool) -> Result<Res, Nfs4Status> {
    let fh = cx.fh()?;
    let sup = wire::supported(cx.minor);
    if f.mask.bits().any(|b| !sup.has(b)) {
        return Err(Nfs4Status::AttrNotSupp);
    }
    if [
        fattr::RDATTR_ERROR,
        fattr::TIME_ACCESS_SET,
        fattr::TIME_MODIFY_SET,
    ]
    .iter()
    .any(|&b| f.mask.has(b))
    {
        return Err(Nfs4Status::Inval);
    }
    let a = cx.vfs.getattr(cx.caller, fh)?;
    let mut w = Writer::new();
    encode(cx, &mut w, &f.mask, fh, &a)?;
    let mut mine = Writer::new();
    mine.opaque(&f.vals);
    let equal = w.buf.ends_with(&mine.buf);
    match (same, equal) {
        (true, true) | (false, false) => Ok(Res::Empty),
        (true, false) => Err(Nfs4Status::NotSame),
        (false, true) => Err(Nfs4Status::Same),
    }
}

/// The ACCESS bits that mean something for an object of type `kind` (RFC 8881 §18.1.3,
/// RFC 7530 §16.1.4): LOOKUP and DELETE name entries of a directory, EXECUTE has no meaning
/// for one.
fn meaningful(kind: FileType) -> u32 {
    use crate::nfs::vfs::access::*;
    match kind {
        FileType::Directory => READ | LOOKUP | MODIFY | EXTEND | DELETE,
        _ => READ | MODIFY | EXTEND | EXECUTE,
    }
}

/// ACCESS: `supported` is what was asked and means something for the object; `access` is
/// the part of it the caller has.
pub(super) fn access(cx: &mut Ctx, wanted: u32) -> Result<Res, Nfs4Status> {
    let fh = cx.fh()?;
    let supported = wanted & meaningful(cx.vfs.getattr(cx.caller, fh)?.kind);
    let access = cx.vfs.access(cx.caller, fh, supported)? & supported;
    Ok(Res::Access { supported, access })
}

/// SETATTR: a failure carries the (empty) set of attributes set.
pub(super) fn setattr(cx: &mut Ctx, stateid: StateId, attrs: &FAttr) -> OpResult {
    let failed = |status: Nfs4Status| OpError {
        status,
        body: ErrBody::AttrSet(Bitmap::default()),
    };
    let fh = cx.fh().map_err(OpError::from)?.clone();
    let set = attrs.settable().map_err(failed)?;
    if set.size.is_some() {
        super::io::check_stateid(cx, stateid, &fh, true).map_err(failed)?;
    }
    // Any change of attributes is one other clients' read delegations cache: they are
    // recalled first. The caller is the session's client (4.1) or the stateid's (4.0).
    let own = cx.session_client().or_else(|| {
        let st = cx.state();
        st.lookup_state(&stateid, cx.minor).ok().map(|s| s.client())
    });
    cx.recall(&fh, own).map_err(failed)?;
    cx.vfs
        .setattr(cx.caller, &fh, &set)
        .map_err(|e| failed(e.into()))?;
    let mut w = Writer::new();
    attrs.mask.encode(&mut w);
    Ok(Res::Attrs(w.buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nfs::vfs::access::*;

    #[test]
    fn access_bits_that_mean_something_per_type() {
        let dir = meaningful(FileType::Directory);
        assert_eq!(dir & (LOOKUP | DELETE), LOOKUP | DELETE);
        assert_eq!(dir & EXECUTE, 0, "EXECUTE means nothing for a directory");
        for kind in [
            FileType::Regular,
            FileType::Symlink,
            FileType::Fifo,
            FileType::Socket,
            FileType::Char,
            FileType::Block,
        ] {
            let m = meaningful(kind);
            assert_eq!(m & (LOOKUP | DELETE), 0, "{kind:?}");
            assert_eq!(m & (READ | MODIFY | EXTEND | EXECUTE), m, "{kind:?}");
        }
    }
}
