//! Parallel commands on nodes: `drover exec TARGET -- CMD` and `drover cp FILE... TARGET:DEST`
//! over the system OpenSSH client, logging in as root with the pool's node key ([`key`]).
//!
//! - [`hosts`] turns targets (nodes, groups, ranges, as `drover power` takes them) into node
//!   addresses: the reserved address, else the node's bound lease;
//! - [`run`] starts ssh or scp per node with a fan-out limit and a per-node timeout;
//! - [`core`] (pure) folds identical outputs, compacts node lists and sums up statuses.
//!
//! It does NOT manage node host keys beyond an optional first-use file, keep sessions open, or
//! go through the API: it runs on a pool member, from its store.

pub mod core;
pub mod grab;
pub mod key;
pub mod run;

use crate::ipmi::power::{pick_nodes, TargetError};
use crate::store::model::{Lease, LeaseState};
use crate::store::Store;
use run::Host;

/// Default number of nodes reached at once.
pub const DEFAULT_FANOUT: usize = 32;

/// The nodes that `targets` name, each with the address ssh should use.
pub fn hosts(store: &Store, targets: &[String]) -> Result<Vec<Host>, TargetError> {
    store.read(|r| {
        let nodes = pick_nodes(r, targets)?;
        let leases = r.all::<Lease>()?;
        Ok(nodes
            .into_iter()
            .map(|n| {
                let leased = || {
                    leases
                        .iter()
                        .filter(|l| l.mac == n.mac && l.state == LeaseState::Bound)
                        .max_by_key(|l| l.expires)
                        .map(|l| l.ip)
                };
                Host {
                    addr: n.ip.or_else(leased),
                    node: n.name,
                }
            })
            .collect())
    })
}
