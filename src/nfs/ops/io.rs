//! I/O operations: READ, WRITE and COMMIT, and the stateid check they (and SETATTR of the
//! size) make.
//!
//! READ is cut to the reply size the client takes; WRITE passes the stability the client
//! asked for to the Vfs, which answers only once it holds (a DATA_SYNC or FILE_SYNC write is
//! durable, a node layer's change replicated, before the reply). Not here: byte-range lock
//! checks (locks are advisory: READ and WRITE ignore them, as Linux's server does).

use super::Ctx;
use crate::nfs::state::Stateful;
use crate::nfs::status::Nfs4Status;
use crate::nfs::vfs::{FileType, Handle, Stability};
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
        return Ok(());
    }
    let mut st = cx.state();
    let s = st.lookup_state(&id, cx.minor)?.clone();
    if s.fh() != fh {
        return Err(Nfs4Status::BadStateId);
    }
    let open = match &s {
        Stateful::Open(o) => o.clone(),
        Stateful::Lock(l) => match st.states.get(&l.open) {
            Some(Stateful::Open(o)) => o.clone(),
            _ => return Err(Nfs4Status::BadStateId),
        },
    };
    if write && open.access & 2 == 0 {
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
