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
pub mod fs;
pub mod rpc;
pub mod serve;
pub mod state;
pub mod vfs;
pub mod wire;
pub mod xdr;

/// The files `drover serve` exports over NFS: for now one writable directory,
/// `<state>/nfs/export`, as the pseudo-root (node root views and named exports replace this),
/// with handles sealed by `<state>/nfs/handle.key` so that they survive restarts.
pub fn file_side(state_dir: &std::path::Path) -> anyhow::Result<std::sync::Arc<dyn vfs::Vfs>> {
    use anyhow::Context;
    let dir = state_dir.join("nfs");
    let export = dir.join("export");
    std::fs::create_dir_all(&export).with_context(|| format!("creating {}", export.display()))?;
    let key =
        fs::HandleKey::load_or_create(&dir.join("handle.key")).context("the NFS handle key")?;
    let vfs = fs::DirVfs::new(export.clone(), true, key)
        .with_context(|| format!("serving {}", export.display()))?;
    Ok(std::sync::Arc::new(vfs))
}

#[cfg(test)]
mod core_tests;
#[cfg(test)]
mod memvfs;
