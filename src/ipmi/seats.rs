//! Who may type on a shared console, sans-IO: the clients watching one node's console hold a
//! seat each; at most one of them is the writer (the first client that asked for write and
//! may write), the others read. A client that asks with `force` takes the writer's seat
//! over, and the old writer is told ([`Joined::demoted`]). When the writer leaves, nobody
//! writes until a client asks again (a reader is never promoted behind its back).
//!
//! Not here: roles (the caller decides whether a client may write at all), the console
//! itself, time (the hub keeps an empty console open for a while: `crate::ipmi::hub`).

use std::collections::BTreeSet;

/// Clients on one console at once: more are refused.
pub const MAX_CLIENTS: usize = 32;

/// A client's number, unique within one console.
pub type ClientId = u64;

/// What a client asks for when it joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Read,
    Write,
    /// Write, taking the seat from the current writer.
    Force,
}

/// The outcome of a join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub id: ClientId,
    pub writer: bool,
    /// The writer that lost its seat to this client.
    pub demoted: Option<ClientId>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeatError {
    #[error("{MAX_CLIENTS} clients watch this console already")]
    Full,
}

/// The seats of one console.
#[derive(Debug, Default)]
pub struct Seats {
    clients: BTreeSet<ClientId>,
    writer: Option<ClientId>,
    next: ClientId,
}

impl Seats {
    /// Seats a client. It writes when it asked to and no one writes, or when it forced.
    pub fn join(&mut self, want: Want) -> Result<Joined, SeatError> {
        if self.clients.len() >= MAX_CLIENTS {
            return Err(SeatError::Full);
        }
        self.next += 1;
        let id = self.next;
        self.clients.insert(id);
        let (writer, demoted) = match (want, self.writer) {
            (Want::Read, _) => (false, None),
            (Want::Write, Some(_)) => (false, None),
            (Want::Write | Want::Force, None) => (true, None),
            (Want::Force, Some(old)) => (true, Some(old)),
        };
        if writer {
            self.writer = Some(id);
        }
        Ok(Joined {
            id,
            writer,
            demoted,
        })
    }

    /// Unseats a client; returns whether the console is now empty.
    pub fn leave(&mut self, id: ClientId) -> bool {
        self.clients.remove(&id);
        if self.writer == Some(id) {
            self.writer = None;
        }
        self.clients.is_empty()
    }

    /// Whether `id`'s keystrokes go to the node.
    pub fn may_type(&self, id: ClientId) -> bool {
        self.writer == Some(id)
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_first_come_and_force_takes_over() {
        let mut s = Seats::default();
        let reader = s.join(Want::Read).unwrap();
        assert!(!reader.writer);
        let first = s.join(Want::Write).unwrap();
        assert!(first.writer && s.may_type(first.id));
        let second = s.join(Want::Write).unwrap();
        assert!(
            !second.writer && !s.may_type(second.id),
            "one writer at a time"
        );
        let forced = s.join(Want::Force).unwrap();
        assert_eq!(forced.demoted, Some(first.id));
        assert!(s.may_type(forced.id) && !s.may_type(first.id));
        // The writer leaves: nobody is promoted.
        assert!(!s.leave(forced.id));
        assert!(!s.may_type(second.id) && !s.may_type(reader.id));
        for id in [reader.id, first.id] {
            assert!(!s.leave(id));
        }
        assert!(s.leave(second.id));
        assert!(s.join(Want::Write).unwrap().writer);
    }

    #[test]
    fn too_many_clients_are_refused() {
        let mut s = Seats::default();
        for _ in 0..MAX_CLIENTS {
            s.join(Want::Read).unwrap();
        }
        assert_eq!(s.join(Want::Read), Err(SeatError::Full));
    }
}
