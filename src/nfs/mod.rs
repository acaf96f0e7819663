//! drover's own NFSv4 server (NFSv4.0, RFC 7530; NFSv4.1, RFC 8881): read-only image roots
//! merged with per-node writable layers ("statelite"), and shared exports.
//!
//! Layout: [`vfs`] is the boundary between the protocol and the files. The protocol side:
//! [`xdr`] (XDR primitives), [`rpc`] (ONC RPC record marking and call/reply headers),
//! [`wire`] (COMPOUND operations and attributes), [`state`] (clients, sessions, stateids,
//! locks, leases), [`core`] (the COMPOUND pipeline) and [`serve`] (the tokio shell).
//!
//! Not here: NFSv3, NLM, RPCSEC_GSS/Kerberos, pNFS, delegations.

pub mod core;
pub mod rpc;
pub mod serve;
pub mod state;
pub mod vfs;
pub mod wire;
pub mod xdr;

/// The files `drover serve` exports over NFS.
pub fn file_side(_state_dir: &std::path::Path) -> anyhow::Result<std::sync::Arc<dyn vfs::Vfs>> {
    anyhow::bail!("the NFS file side is not built yet")
}

#[cfg(test)]
mod core_tests;
#[cfg(test)]
mod memvfs;
