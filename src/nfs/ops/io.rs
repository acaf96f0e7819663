//! I/O operations: READ, WRITE and COMMIT, and the stateid check they (and SETATTR of the
//! size) make; NFSv4.2's READ_PLUS (the data as one data segment: holes are not reported),
//! SEEK, ALLOCATE and DEALLOCATE, and the synchronous intra-server COPY and CLONE from the
//! saved filehandle to the current one. What the file system cannot do (CLONE without
//! reflinks, these operations on a node's replicated layer) is the Vfs's NOTSUPP.
//!
//! READ is cut to the reply size the client takes; WRITE passes the stability the client
//! asked for to the Vfs, which answers only once it holds (a DATA_SYNC or FILE_SYNC write is
//! durable, a node layer's change replicated, before the reply). READ and WRITE without an
//! open (the special stateids) meet the opens' deny modes (NFS4ERR_LOCKED), and such a
//! WRITE recalls other clients' read delegations of the file (NFS4ERR_DELAY meanwhile); a
//! delegation stateid reads, and is NFS4ERR_OPENMODE for writing. Not here:
//! byte-range lock checks (locks are advisory: READ and WRITE ignore them, as Linux's server does).

use super::Ctx;
use crate::nfs::state::Stateful;
use crate::nfs::status::Nfs4Status;
use crate::nfs::vfs::{Allocate, CopyRange, FileType, Handle, Stability};
use crate::nfs::wire::{Res, StateId, MAX_IO};

/// Checks a READ/WRITE/SETATTR stateid against the current file.
pub(super) fn check_stateid(
    cx: &mut Ctx,
    id: StateId,
    fh: &Handle,
    write: bool,
) -> Result<(), Nfs4Status> {
    let id = cx.stateid(id)?;
    if id == StateId::ANONYMOUS || id == StateId::BYPASS {
        // I/O without an open is subject to the opens' deny modes; the bypass stateid skips
        // them for reads only (RFC 7530 §9.1.4.3, RFC 8881 §8.2.3).
        let deny = if write { 2 } else { 1 };
        if (id == StateId::ANONYMOUS || write) && cx.state().denied(fh, deny) {
            return Err(Nfs4Status::Locked);
        }
        if write {
            // A write without an open changes what read delegations hold cached.
            cx.recall(fh, cx.session_client())?;
        }
        return Ok(());
    }
    let mut st = cx.state();
    let s = st.lookup_state(&id, cx.minor)?.clone();
    if s.fh() != fh {
        return Err(Nfs4Status::BadStateId);
    }
    let access = match &s {
        Stateful::Open(o) => o.access,
        Stateful::Lock(l) => match st.states.get(&l.open) {
            Some(Stateful::Open(o)) => o.access,
            _ => return Err(Nfs4Status::BadStateId),
        },
        // A read delegation reads (RFC 8881 §9.1.3.4: I/O under a delegation stateid).
        Stateful::Deleg(_) => 1,
    };
    if write && access & 2 == 0 {
        return Err(Nfs4Status::OpenMode);
    }
    st.renew(cx.now, s.client())?;
    Ok(())
}

/// Only regular files are read, written and committed.
fn regular(cx: &Ctx, fh: &Handle) -> Result<(), Nfs4Status> {
    match cx.vfs.getattr(cx.caller, fh)?.kind {
        FileType::Regular => Ok(()),
        FileType::Directory => Err(Nfs4Status::IsDir),
        _ => Err(Nfs4Status::Inval),
    }
}

pub(super) fn read(
    cx: &mut Ctx,
    stateid: StateId,
    offset: u64,
    count: u32,
) -> Result<Res, Nfs4Status> {
    let fh = cx.fh()?.clone();
    check_stateid(cx, stateid, &fh, false)?;
    regular(cx, &fh)?;
    let count = count
        .min(MAX_IO)
        .min(cx.max_response.saturating_sub(256) as u32);
    let (data, eof) = cx.vfs.read(cx.caller, &fh, offset, count)?;
    Ok(Res::Read { eof, data })
}

pub(super) fn write(
    cx: &mut Ctx,
    stateid: StateId,
    offset: u64,
    stable: u32,
    data: &[u8],
) -> Result<Res, Nfs4Status> {
    let fh = cx.fh()?.clone();
    check_stateid(cx, stateid, &fh, true)?;
    if offset.checked_add(data.len() as u64).is_none() {
        return Err(Nfs4Status::FBig);
    }
    regular(cx, &fh)?;
    let how = match stable {
        0 => Stability::Unstable,
        1 => Stability::DataSync,
        _ => Stability::FileSync,
    };
    let (count, got) = cx.vfs.write(cx.caller, &fh, offset, data, how)?;
    Ok(Res::Write {
        count,
        committed: match got {
            Stability::Unstable => 0,
            Stability::DataSync => 1,
            Stability::FileSync => 2,
        },
        verifier: cx.vfs.write_verifier(),
    })
}

pub(super) fn commit(cx: &mut Ctx, offset: u64, count: u32) -> Result<Res, Nfs4Status> {
    let fh = cx.fh()?;
    regular(cx, fh)?;
    if offset.checked_add(u64::from(count)).is_none() {
        return Err(Nfs4Status::Inval);
    }
    cx.vfs.commit(cx.caller, fh, offset, count)?;
    Ok(Res::Verifier(cx.vfs.write_verifier()))
}

pub(super) fn read_plus(
    cx: &mut Ctx,
    stateid: StateId,
    offset: u64,
    count: u32,
) -> Result<Res, Nfs4Status> {
    match read(cx, stateid, offset, count)? {
        Res::Read { eof, data } => Ok(Res::ReadPlus { eof, offset, data }),
        other => Ok(other),
    }
}

pub(super) fn seek(
    cx: &mut Ctx,
    stateid: StateId,
    offset: u64,
    data: bool,
) -> Result<Res, Nfs4Status> {
    let fh = cx.fh()?.clone();
    check_stateid(cx, stateid, &fh, false)?;
    regular(cx, &fh)?;
    let (found, size) = cx.vfs.seek(cx.caller, &fh, offset, data)?;
    Ok(Res::Seek {
        eof: found >= size,
        offset: found,
    })
}

pub(super) fn allocate(
    cx: &mut Ctx,
    stateid: StateId,
    offset: u64,
    length: u64,
    punch: bool,
) -> Result<Res, Nfs4Status> {
    let fh = cx.fh()?.clone();
    check_stateid(cx, stateid, &fh, true)?;
    regular(cx, &fh)?;
    if length == 0
        || offset
            .checked_add(length)
            .is_none_or(|e| e > i64::MAX as u64)
    {
        return Err(Nfs4Status::Inval);
    }
    let how = Allocate {
        offset,
        length,
        punch,
    };
    cx.vfs.allocate(cx.caller, &fh, &how)?;
    Ok(Res::Empty)
}

/// COPY (or CLONE, `clone`) of `count` bytes (0: to the source's end) from the saved
/// filehandle at `src.1` to the current one at `dst.1`.
pub(super) fn copy(
    cx: &mut Ctx,
    src: (StateId, u64),
    dst: (StateId, u64),
    count: u64,
    clone: bool,
) -> Result<Res, Nfs4Status> {
    let to = cx.fh()?.clone();
    let from = cx.saved.clone().ok_or(Nfs4Status::NoFileHandle)?;
    check_stateid(cx, src.0, &from, false)?;
    check_stateid(cx, dst.0, &to, true)?;
    regular(cx, &from)?;
    regular(cx, &to)?;
    let size = cx.vfs.getattr(cx.caller, &from)?.size;
    let count = if count == 0 {
        size.checked_sub(src.1).ok_or(Nfs4Status::Inval)?
    } else {
        count
    };
    // RFC 7862 §15.2.3: a range past the source's end is invalid.
    if src.1.checked_add(count).is_none_or(|end| end > size)
        || dst.1.checked_add(count).is_none_or(|e| e > i64::MAX as u64)
    {
        return Err(Nfs4Status::Inval);
    }
    let range = CopyRange {
        src_offset: src.1,
        dst_offset: dst.1,
        count,
        clone,
    };
    let copied = cx.vfs.copy(cx.caller, &from, &to, &range)?;
    if clone {
        return Ok(Res::Empty);
    }
    Ok(Res::Copy {
        count: copied,
        committed: 0,
        verifier: cx.vfs.write_verifier(),
    })
}
