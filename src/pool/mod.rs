//! The pool: several drover members serving one cluster.
//!
//! - [`key`]: the cluster key in `<state>/cluster.key` and the MAC every pool datagram
//!   carries;
//! - [`membership`]: SWIM membership and failure detection (foca), sans IO, behind the key;
//! - [`sync`]: store anti-entropy (digest -> missing batches -> merge) over any transport;
//! - [`replication`]: that exchange over TCP on the pool port, sealed with the key;
//! - [`serve`]: the tokio shell: the UDP socket and timers, one exchange per second with a
//!   random live member, and the status file that `drover pool status` reads.
//!
//! Built so far: membership and store replication. Not built yet: DHCP range shares and their
//! fencing (every member still serves the whole dynamic range: do not run two members with
//! dynamic ranges on one segment yet), floating service addresses, encryption of pool
//! traffic.

pub mod key;
pub mod membership;
pub mod replication;
pub mod serve;
pub mod sync;
