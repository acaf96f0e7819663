//! drover's own NFSv4 server (NFSv4.0, RFC 7530; NFSv4.1, RFC 8881; NFSv4.2, RFC 7862):
//! read-only image roots
//! merged with per-node writable layers ("statelite"), and shared exports.
//!
//! Layout: [`vfs`] is the boundary between the protocol and the files; [`fs`] is the file
//! side. The protocol side: [`xdr`] (XDR primitives), [`rpc`] (ONC RPC record marking and
//! call/reply headers, decoded once per call), [`status`] (`nfsstat4` as [`status::Nfs4Status`]),
//! [`wire`] (COMPOUND operations and attributes), [`state`] (clients, sessions, stateids,
//! locks, leases), `ops` (the operations, one file per family: filehandles, attributes, I/O,
//! open, lock, session, directories), [`core`] (the COMPOUND pipeline) and [`serve`] (the
//! tokio shell), [`cb`] (the callbacks' calls and replies). `xdr`, `rpc`, `status`,
//! `wire`, `cb`, `state`, `ops` and `core` do no I/O and read no clock.
//!
//! Protocol: what works (proven by `core_tests` on the in-memory test Vfs, `integration/nfs.rs`
//! with libnfs against the binary, and `qemu-tests/nfs.rs` with the Linux 6.1 kernel client
//! mounting vers=4.0 and vers=4.1 in one VM):
//! - ONC RPC over TCP with record marking; AUTH_SYS and AUTH_NONE (nobody); other flavours
//!   get AUTH_ERROR/AUTH_TOOWEAK, a bad AUTH_SYS body AUTH_BADCRED, RPC version 3+
//!   RPC_MISMATCH, other programs PROG_UNAVAIL, NFS versions but 4 PROG_MISMATCH (4..4),
//!   procedures but NULL/COMPOUND PROC_UNAVAIL, undecodable COMPOUND headers GARBAGE_ARGS.
//!   Records over 1 MiB + 64 KiB close the connection.
//! - COMPOUND for minor versions 0, 1 and 2 (3+ is NFS4ERR_MINOR_VERS_MISMATCH), at most 64
//!   operations (more: NFS4ERR_RESOURCE in 4.0, NFS4ERR_TOO_MANY_OPS in 4.1); an operation
//!   whose arguments do not decode is NFS4ERR_BADXDR, an unknown one NFS4ERR_OP_ILLEGAL;
//!   replies larger than the session's (or 4.0's record) limit end in NFS4ERR_REP_TOO_BIG.
//! - File operations: PUTROOTFH, PUTPUBFH, PUTFH, GETFH, SAVEFH, RESTOREFH, LOOKUP, LOOKUPP,
//!   GETATTR, SETATTR, VERIFY, NVERIFY, ACCESS, READ, WRITE (stable flags passed to the Vfs),
//!   COMMIT, CREATE (directories, symlinks, devices, fifos, sockets), OPEN (claim null,
//!   previous, fh; create unchecked, guarded, exclusive and 4.1 exclusive4_1 with the verifier
//!   kept in atime/mtime), OPEN_CONFIRM, OPEN_DOWNGRADE, CLOSE, LOCK, LOCKT, LOCKU,
//!   RELEASE_LOCKOWNER, REMOVE, RENAME, LINK, READDIR (cookie verifier, dircount and maxcount),
//!   READLINK, SECINFO, SECINFO_NO_NAME (AUTH_SYS). PUTFH checks the handle (BADHANDLE for
//!   one drover did not seal, STALE for one out of the caller's reach). Objects of the wrong
//!   type get the status of the minor version (`ops::regular_only`: OPEN ISDIR/SYMLINK in
//!   4.0, WRONG_TYPE for special files in 4.1; LOCKT INVAL in 4.0); ACCESS supports only
//!   the bits that mean something for the object's type. CREATE, LINK, REMOVE and RENAME
//!   fsync the directories they change before answering.
//! - NFSv4.2: SEEK (data/hole), ALLOCATE, DEALLOCATE, READ_PLUS (data as one segment),
//!   synchronous intra-server COPY (at most 64 MiB per call) and CLONE (reflinks, else
//!   NOTSUPP) on shared exports; on a node's layer the changes answer NOTSUPP (the client
//!   falls back to WRITE, which is replicated). The other 4.2 and xattr operations: NOTSUPP.
//! - Attributes: supported_attrs, type, fh_expire_type (persistent), change, size,
//!   link/symlink support, fsid, unique_handles, lease_time, rdattr_error, aclsupport (none),
//!   filehandle, fileid, mounted_on_fileid, files_*, space_*, maxfilesize, maxlink, maxname,
//!   maxread/maxwrite (1 MiB), mode, numlinks, owner and owner_group as numeric strings,
//!   rawdev, time_access/metadata/modify/delta, time_*_set, suppattr_exclcreat (4.1).
//!   GETATTR answers the known ones of what it is asked (its bitmap says which); SETATTR
//!   refuses read-only attributes, times with nseconds >= 10^9 and mode bits beyond 07777
//!   (INVAL), empty owners (INVAL), owner names (BADOWNER) and unknown attributes
//!   (ATTRNOTSUPP).
//! - State: 4.0 SETCLIENTID/SETCLIENTID_CONFIRM/RENEW with per-owner seqids and a replay of
//!   the owner's last reply; 4.1 EXCHANGE_ID, CREATE_SESSION (with its own replay),
//!   DESTROY_SESSION, SEQUENCE (slot table, whole-reply replay cache), DESTROY_CLIENTID,
//!   RECLAIM_COMPLETE, BIND_CONN_TO_SESSION (fore channel), TEST_STATEID, FREE_STATEID, the
//!   current stateid. Share reservations (deny modes), POSIX byte-range locks held in the core
//!   (split and merge per owner), leases (a client that stops renewing loses its state),
//!   a grace period after a restart when the previous run had clients (`clients.json`), and
//!   each time this member takes over the pool's service address (`Server::begin_grace`).
//!   Bounded: clients (and per client address), sessions per client, slots, open+lock
//!   states per client (and per address), locks per file. Idle connections close after 6
//!   minutes; record buffers grow as bytes arrive.
//!
//! - Read delegations (`[nfs] delegations`, on by default): OPEN for reading grants one to
//!   a client whose callback path works (4.0: SETCLIENTID's callback at the client's own
//!   address, probed with CB_NULL; 4.1: the back channel on the session's connection,
//!   CREATE_SESSION CONN_BACK_CHAN or BIND_CONN_TO_SESSION), outside grace and with no
//!   writer. Another client's OPEN for writing, SETATTR, anonymous WRITE, REMOVE or RENAME
//!   recalls it (CB_RECALL; 4.1 after CB_SEQUENCE) and gets NFS4ERR_DELAY until
//!   DELEGRETURN; one not returned within a lease is revoked (4.1: DELEG_REVOKED and
//!   SEQUENCE's RECALLABLE_STATE_REVOKED until FREE_STATEID). Opens under a delegation
//!   (CLAIM_DELEGATE_CUR, CLAIM_DELEG_CUR_FH) and BACKCHANNEL_CTL work.
//!
//! What does not (yet): write delegations (a node's layer is copied to the pool's other
//! members as it changes; writes cached under a delegation would be on no copy),
//! directory delegations, CLAIM_DELEGATE_PREV and DELEGPURGE (NOTSUPP); pNFS, named
//! attributes, ACLs, SP4_MACH_CRED/SSV state protection (EXCHANGE_ID answers NFS4ERR_ENCR_ALG_UNSUPP),
//! RPCSEC_GSS, owner names other than numbers (NFS4ERR_BADOWNER), mandatory locks (READ and
//! WRITE ignore byte-range locks, as Linux's server does), client state surviving a restart
//! (clients reclaim during the grace period; reclaims are not checked against the previous
//! run's list). The READDIR cookie verifier is the Vfs's
//! write verifier: a listing resumed after a restart gets NFS4ERR_NOT_SAME. Share and lock
//! lookups scan the state table (fine for hundreds of clients, not tuned for many thousands).
//!
//! The file side: [`fs`] serves one host directory ([`fs::DirVfs`]; kernel file handles
//! sealed with a keyed MAC, AUTH_SYS checks against mode bits, symlinks never followed);
//! [`view`] composes such trees into each caller's pseudo-root ([`view::Views`]: `/root`, a
//! node's image read-only merged with its persistent layer, and `/NAME` shared exports);
//! `ids` gives root-view objects ids, handles and fileids that every pool member computes
//! alike, so that a node's root survives the move of its server address to another member.
//! [`replica`] ships every change of a node's layer to the other pool members' copies before
//! a stable change is answered (`pool::layers` carries it).
//!
//! Not here: NFSv3, NLM, RPCSEC_GSS/Kerberos, pNFS, write delegations.

pub mod cb;
pub mod core;
pub mod fs;
pub(crate) mod ids;
mod ops;
pub mod replica;
pub mod rpc;
pub mod serve;
pub mod state;
pub mod status;
pub mod vfs;
pub mod view;
pub mod wire;
pub mod xdr;

/// The files `drover serve` exports over NFS: every caller's view ([`view::Views`]: its
/// node's root at `/root`, the shared exports open to its address at `/NAME`), over the
/// server's `view` of the store and `<state>/nfs/`; changes of node layers go to `replica`
/// (the pool's copies) if given.
pub fn file_side(
    state_dir: &std::path::Path,
    view: std::sync::Arc<crate::store::SharedView>,
    replica: Option<std::sync::Arc<dyn replica::Replica>>,
) -> anyhow::Result<std::sync::Arc<dyn vfs::Vfs>> {
    let mut views = view::Views::over(view, state_dir)?;
    if let Some(r) = replica {
        views = views.with_replica(r);
    }
    Ok(std::sync::Arc::new(views))
}

#[cfg(test)]
mod core_tests;
#[cfg(any(test, feature = "fuzz"))]
pub(crate) mod memvfs;
