//! The pool: several drover members serving one cluster.
//!
//! - [`key`]: the cluster key in `<state>/cluster.key`, from which every pool secret is
//!   derived;
//! - [`seal`]: the handshake of pool-port connections, their per-connection AEAD sessions,
//!   and the sealing of membership datagrams (sans IO);
//! - [`membership`]: SWIM membership and failure detection (foca), sans IO, behind the key;
//! - [`sync`]: store anti-entropy (digest -> missing batches -> merge) over any transport;
//! - [`frame`]: the messages of the pool port (TCP) and their bytes (sans IO);
//!   [`conn`] carries them over one connection, with typed errors and time limits;
//! - [`replication`]: the store exchange (pull, summaries, missing image files) on one
//!   connection, and the listener of the pool port;
//! - [`layers`]: copies of nodes' writable NFS layers on the other live members, shipped
//!   over the same port before stable changes are answered;
//! - [`peers`]: the other live members' addresses, which the boot path lists as fallbacks;
//! - [`shares`]: which DHCP clients and addresses this member serves (`dhcp::share`), from
//!   the roster, membership and completed pulls;
//! - [`drain`]: the hand-over of a drained member's DHCP share (`drover pool drain`), a
//!   handshake of roster rows, summaries and version vectors (sans IO);
//! - [`floating`]: whether this member holds the floating service address (`[pool]
//!   service-address`), from the roster, membership and time; `net::floating` carries it out;
//! - [`summary`]: what each member serves, as it says itself, passed on with every exchange
//!   (sans IO);
//! - [`report`]: health and replication lag as `drover pool status` defines them (pure);
//!   [`status`] the status file's types; [`show`] renders a status as the tables that
//!   command prints;
//! - [`tick`]: the pool task's core (sans IO): membership events, pulls, facts and time in;
//!   shares, peers, the floating address decision, the summary and the status out;
//!   [`facts`] gathers its facts from the store and counts shares (blocking);
//! - [`serve`]: the tokio shell: the UDP socket and timers, one exchange per second with a
//!   random live member, the tick's blocking work off the async workers, and carrying out
//!   the core's actions;
//! - [`witness`]: `drover witness`, a vote-only member (membership only: no store, no
//!   services), so that a pool of two fails over by itself.
//!
//! Built so far: membership, store replication, DHCP address shares, the boot path across
//! members, one floating service address, draining a member for maintenance, the pool
//! status (health, summaries, lag), pool traffic authenticated before anything is held and
//! encrypted. Not built yet: several
//! service addresses.

pub mod compact;
pub mod conn;
pub mod drain;
pub mod facts;
pub mod floating;
pub mod frame;
pub mod key;
pub mod layers;
pub mod membership;
pub mod peers;
pub mod replication;
pub mod report;
pub mod seal;
pub mod serve;
pub mod setup;
pub mod shares;
pub mod show;
pub mod status;
pub mod summary;
pub mod sync;
pub mod tick;
pub mod witness;

#[cfg(test)]
mod pool_sim_tests;
