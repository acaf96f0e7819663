//! drover's own NFSv4 server (NFSv4.0, RFC 7530; NFSv4.1, RFC 8881): read-only image roots
//! merged with per-node writable layers ("statelite"), and shared exports.
//!
//! Layout: [`vfs`] is the boundary between the protocol and the files. Being built: the
//! protocol side (ONC RPC record marking, the XDR codec, the COMPOUND pipeline with open
//! state, sessions and leases) and the file side (image trees, per-node layers, exports).
//!
//! The file side: [`fs`] serves one host directory ([`fs::DirVfs`]; kernel file handles
//! sealed with a keyed MAC, AUTH_SYS checks against mode bits, symlinks never followed);
//! [`view`] composes such trees into each caller's pseudo-root ([`view::Views`]: `/root`, a
//! node's image read-only merged with its persistent layer, and `/NAME` shared exports).
//!
//! Not here: NFSv3, NLM, RPCSEC_GSS/Kerberos, pNFS, delegations.

pub mod fs;
pub mod vfs;
pub mod view;
