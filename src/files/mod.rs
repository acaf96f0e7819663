//! Cluster-wide files: named file sets (`drover files add SET --path P --from F|--template F`)
//! assigned to images, groups and nodes, delivered by the agent at every boot (RAM and NFS
//! roots) and pushed to running nodes by `drover files sync`.
//!
//! Data flow: the admin's change -> [`ops`] (checked, one write) -> the store's `files` table
//! (replicated and backed up like every table) -> at boot, `GET /boot/{mac}/files` (only from
//! the MAC's own lease, `crate::http::files`) -> [`ops::for_node`] -> [`core::effective`] (node
//! beats group beats image on the same path; templates filled; the node's stable ssh host key
//! added) -> the agent writes each file with its mode and owner into the new root.
//!
//! Not here: the node files drover writes from the kernel command line (hostname, hosts,
//! resolver, time sources: `crate::agent::files`), ssh (`crate::exec`).

pub mod core;
pub mod ops;
