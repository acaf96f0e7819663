//! The pool: several drover members serving one cluster.
//!
//! - [`key`]: the cluster key in `<state>/cluster.key` and the MAC every pool datagram
//!   carries;
//! - [`membership`]: SWIM membership and failure detection (foca), sans IO, behind the key;
//! - [`serve`]: the tokio shell: one UDP socket, timers, and the status file that
//!   `drover pool status` reads.
//!
//! Built so far: membership only. Not built yet: store replication, DHCP range shares and
//! their fencing, floating service addresses, image replication (see ARCHITECTURE.md).

pub mod key;
pub mod membership;
pub mod serve;
pub mod sync;
