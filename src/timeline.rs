//! Boot timelines: what each node did during its last boots, and the state that follows.
//!
//! Data flow: the HTTP server records what a node fetched (its iPXE script, kernel, initrd,
//! root tarball) and drover's agent posts what it did (`POST /boot/{mac}/events`: network up,
//! root in place, handing over, failed); each event is appended to the node's [`BootLog`] in
//! one store write, keeping the newest [`MAX_EVENTS`]. The API, the page and
//! `drover node events NAME` read the log; [`state`] (pure) turns it into up / booting /
//! failed / unknown.
//!
//! Not here: DHCP events (the node's lease record shows its address and when it was bound),
//! power state ("off" needs IPMI, another module), events from nodes that boot their own
//! initrd (only what they fetch over HTTP is seen).

use crate::store::model::{BootEvent, BootLog, BootStage};
use crate::store::{Store, StoreError};
use serde::Serialize;

/// Events kept per node.
pub const MAX_EVENTS: usize = 64;
/// Longest event detail kept (longer ones are cut).
pub const MAX_DETAIL: usize = 200;
/// A boot with no event for this long is reported as failed (stalled).
pub const STALL_MS: u64 = 15 * 60 * 1000;

/// Appends `event` to `node`'s log (creating it), keeping the newest [`MAX_EVENTS`].
pub fn record(store: &Store, node: &str, mut event: BootEvent) -> Result<(), StoreError> {
    if event.detail.len() > MAX_DETAIL {
        let mut cut = MAX_DETAIL;
        while !event.detail.is_char_boundary(cut) {
            cut -= 1;
        }
        event.detail.truncate(cut);
    }
    store.write(|w| {
        let mut log = w.get::<BootLog>(node)?.unwrap_or_else(|| BootLog {
            name: node.to_string(),
            events: Vec::new(),
        });
        // Events are written in the background and may arrive out of order; keep them
        // sorted by when they happened.
        let at = log.events.partition_point(|e| e.at_ms <= event.at_ms);
        log.events.insert(at, event);
        let excess = log.events.len().saturating_sub(MAX_EVENTS);
        log.events.drain(..excess);
        w.put(&log)
    })
}

/// The events of the last boot: from the last `script` event on (all, when there is none).
pub fn last_boot(events: &[BootEvent]) -> &[BootEvent] {
    let start = events
        .iter()
        .rposition(|e| e.stage == BootStage::Script)
        .unwrap_or(0);
    &events[start..]
}

/// What a node is doing, as far as its boot events tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// No boot seen yet.
    Unknown,
    Booting,
    Up,
    Failed,
}

impl NodeState {
    pub fn name(self) -> &'static str {
        match self {
            NodeState::Unknown => "unknown",
            NodeState::Booting => "booting",
            NodeState::Up => "up",
            NodeState::Failed => "failed",
        }
    }
}

/// The state after `events` at unix time `now_ms`: the last event decides; a boot that has
/// made no progress for [`STALL_MS`] counts as failed.
pub fn state(events: &[BootEvent], now_ms: u64) -> NodeState {
    match events.last() {
        None => NodeState::Unknown,
        Some(e) => match e.stage {
            BootStage::Ready => NodeState::Up,
            BootStage::Failed => NodeState::Failed,
            _ if now_ms.saturating_sub(e.at_ms) > STALL_MS => NodeState::Failed,
            _ => NodeState::Booting,
        },
    }
}

/// Unix milliseconds as `YYYY-MM-DD hh:mm:ss.mmm` (UTC).
pub fn format_utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(at_ms: u64, stage: BootStage) -> BootEvent {
        BootEvent {
            at_ms,
            stage,
            source: "http".into(),
            detail: String::new(),
        }
    }

    #[test]
    fn state_follows_the_last_event_and_stalls_fail() {
        assert_eq!(state(&[], 0), NodeState::Unknown);
        let booting = [ev(1000, BootStage::Script), ev(2000, BootStage::Kernel)];
        assert_eq!(state(&booting, 3000), NodeState::Booting);
        assert_eq!(state(&booting, 2000 + STALL_MS + 1), NodeState::Failed);
        let up = [ev(1000, BootStage::Script), ev(9000, BootStage::Ready)];
        assert_eq!(state(&up, u64::MAX), NodeState::Up);
        assert_eq!(state(&[ev(1, BootStage::Failed)], 2), NodeState::Failed);
    }

    #[test]
    fn last_boot_starts_at_the_last_script() {
        let events = [
            ev(1, BootStage::Script),
            ev(2, BootStage::Ready),
            ev(3, BootStage::Script),
            ev(4, BootStage::Kernel),
        ];
        assert_eq!(last_boot(&events).len(), 2);
        assert_eq!(last_boot(&events[1..2]).len(), 1);
    }

    #[test]
    fn utc() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00.000");
        assert_eq!(format_utc(951_782_400_123), "2000-02-29 00:00:00.123");
        assert_eq!(format_utc(1_795_976_456_368), "2026-11-29 18:20:56.368");
    }
}
