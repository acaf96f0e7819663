//! Per-client-address caps on held resources (connections, transfers): at most `total` at
//! once and at most `per_address` from one address, so one address holding its share cannot
//! block another. A [`Slot`] is one held resource and gives its place back when dropped.
//!
//! Used by the HTTP, DNS-over-TCP and TFTP shells. Not here: counting refusals (each service
//! counts [`Refused`] in its own counter set), rates over time, or anything that waits: a
//! caller over a cap refuses at once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// Which cap a refused [`Caps::take`] hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerAddress,
}

/// Open slots, in total and per client address.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// The caps and what is held under them; share it as `Arc<Caps>`.
#[derive(Debug)]
pub struct Caps {
    total: usize,
    per_address: usize,
    open: Mutex<Open>,
}

impl Caps {
    /// At most `total` slots at once and `per_address` from one address (0: none at all).
    pub fn new(total: usize, per_address: usize) -> Arc<Caps> {
        Arc::new(Caps {
            total,
            per_address,
            open: Mutex::new(Open::default()),
        })
    }

    fn open(&self) -> MutexGuard<'_, Open> {
        // A poisoned lock only means a panic elsewhere mid-update of two counters; with
        // panic = "abort" it cannot happen, and the counts stay usable anyway.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for `ip`, or which cap it is over.
    pub fn take(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let mut open = self.open();
        if open.total >= self.total {
            return Err(Refused::Total);
        }
        let mine = open.per_address.entry(ip).or_default();
        if *mine >= self.per_address {
            return Err(Refused::PerAddress);
        }
        *mine += 1;
        open.total += 1;
        Ok(Slot {
            caps: self.clone(),
            ip,
        })
    }
}

/// One held slot; gives its place back when dropped.
#[derive(Debug)]
pub struct Slot {
    caps: Arc<Caps>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.caps.open();
        open.total -= 1;
        if let Some(n) = open.per_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.per_address.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_in_total() {
        let caps = Caps::new(3, 2);
        let a: IpAddr = "198.18.0.10".parse().unwrap();
        let b: IpAddr = "198.18.0.11".parse().unwrap();
        let a1 = caps.take(a).unwrap();
        let _a2 = caps.take(a).unwrap();
        assert_eq!(caps.take(a).unwrap_err(), Refused::PerAddress);
        let b1 = caps.take(b).unwrap();
        assert_eq!(caps.take(b).unwrap_err(), Refused::Total);
        drop(a1);
        assert!(caps.take(a).is_ok(), "a slot given back is free again");
        drop(b1);
        assert!(
            !caps.open().per_address.contains_key(&b),
            "no entry left behind"
        );
    }
}
