//! Boot timelines: what each node did during its last boots, and the state that follows.
//!
//! Data flow: the services report what a node did, each through a [`Recorder`]: the DHCP
//! server its offers to the node's PXE/iPXE firmware (node found by MAC), the TFTP and HTTP
//! servers the iPXE firmware, boot script, kernel, initrd and root tarball it fetched (node
//! found by MAC in the URL, or by client address through its reservation or lease), and
//! drover's agent what it did (`POST /boot/{mac}/events`: network up, root in place, handing
//! over, failed). `Recorder::record` never blocks and never touches the store: it puts the
//! event on a bounded queue ([`MAX_PENDING`]; a full queue drops the event and counts it), and
//! one writer task ([`Writer::run`]) appends queued events to the nodes' [`BootLog`]s, up to
//! [`MAX_BATCH`] in one store write, keeping the newest [`MAX_EVENTS`] per node. So a flood of
//! DHCP or TFTP requests costs at most one fsync per batch, never one per packet, and never
//! delays a reply. The API, the page and `drover node events NAME` read the logs; [`last_boot`]
//! and [`state`] (pure) cut out the last boot and turn it into up / booting / failed / unknown.
//!
//! A boot starts with this server's DHCP offer to the node's firmware, or with its iPXE
//! script when the offer came from elsewhere. A PXE ROM that chains iPXE gets two offers in
//! one boot (`dhcp`, `firmware`, `dhcp`, `script`, ...); [`last_boot`] keeps them together.
//! Offers to clients that are not network-boot firmware (a booted node renewing its lease or
//! running its own DHCP client) are not boot events.
//!
//! Not here: DHCP ACKs and renewals (the node's lease record shows its address and when it
//! was bound), power state ("off" needs IPMI, another module), events from nodes that boot
//! their own initrd (only what they fetch is seen), delivery of events that were queued when
//! the server stopped (the writer writes what is queued at shutdown; a crash loses them).

use crate::store::model::{BootEvent, BootLog, BootStage, Lease, Mac, Node};
use crate::store::{SharedView, Store, StoreError, View};
use serde::Serialize;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Events kept per node (the store's merge of two copies keeps as many).
pub const MAX_EVENTS: usize = BootLog::MAX_EVENTS;
/// Longest event detail kept (longer ones are cut).
pub const MAX_DETAIL: usize = 200;
/// A boot with no event for this long is reported as failed (stalled).
pub const STALL_MS: u64 = 15 * 60 * 1000;
/// Events queued for the writer at most; more are dropped (and counted), so a flood of
/// boot-path requests cannot queue unbounded work.
pub const MAX_PENDING: usize = 256;
/// Events written in one store transaction at most.
pub const MAX_BATCH: usize = 64;
/// A DHCP offer or firmware fetch that repeats the node's newest event (same stage and
/// detail) within this time is a client's retry, not a new step, and is not kept.
pub const REPEAT_MS: u64 = 10_000;

/// What a recorder counted, per stage of [`BootStage::ALL`].
#[derive(Debug, Default)]
pub struct Counts {
    queued: [AtomicU64; BootStage::ALL.len()],
    dropped: AtomicU64,
    refused: AtomicU64,
}

impl Counts {
    /// Events queued for writing, by stage (same order as [`BootStage::ALL`]).
    pub fn queued(&self) -> [u64; BootStage::ALL.len()] {
        std::array::from_fn(|i| self.queued[i].load(Ordering::Relaxed))
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Agent events refused because they came from another address than the node's.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// The services' handle for reporting boot events (cheap to clone). Events go to a bounded
/// queue that one [`Writer`] drains; nothing here waits.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<(String, BootEvent)>,
    view: Arc<SharedView>,
    counts: Arc<Counts>,
}

/// The one task that writes queued boot events to the store.
pub struct Writer {
    rx: mpsc::Receiver<(String, BootEvent)>,
    store: Arc<Store>,
}

impl Recorder {
    /// A recorder that finds nodes in `view`, and the writer that stores its events in
    /// `view`'s store.
    pub fn new(view: Arc<SharedView>) -> (Recorder, Writer) {
        let (tx, rx) = mpsc::channel(MAX_PENDING);
        let store = view.store().clone();
        let recorder = Recorder {
            tx,
            view,
            counts: Arc::new(Counts::default()),
        };
        (recorder, Writer { rx, store })
    }

    /// Queues an event of `node` that happened now (dropped when the queue is full).
    pub fn record(&self, node: String, stage: BootStage, source: &str, detail: String) {
        let event = BootEvent {
            at_ms: crate::clock::unix_ms(),
            stage,
            source: source.to_string(),
            detail,
        };
        match self.tx.try_send((node, event)) {
            Ok(()) => {
                if let Some(i) = BootStage::ALL.iter().position(|s| *s == stage) {
                    self.counts.queued[i].fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(mpsc::error::TrySendError::Full((node, _))) => {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%node, stage = stage.name(), "boot event dropped: too many pending");
            }
            // The writer stopped: the server is shutting down.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    /// [`Recorder::record`] for the node with `mac`, if there is one.
    pub fn record_mac(&self, mac: Mac, stage: BootStage, source: &str, detail: String) {
        let node = self.read_view(|v| v.node_by_mac(mac).map(|n| n.name.clone()));
        if let Some(node) = node {
            self.record(node, stage, source, detail);
        }
    }

    /// [`Recorder::record`] for the node at client address `ip` (its reservation, else the
    /// holder of the lease on `ip`), if there is one.
    pub fn record_addr(&self, ip: Ipv4Addr, stage: BootStage, source: &str, detail: String) {
        let node = self.read_view(|v| node_at(v, ip).map(str::to_string));
        if let Some(node) = node {
            self.record(node, stage, source, detail);
        }
    }

    /// What this recorder (and its clones) counted.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    /// Counts an agent event refused by [`may_report`].
    pub fn refuse(&self) {
        self.counts.refused.fetch_add(1, Ordering::Relaxed);
    }

    fn read_view<R>(&self, f: impl FnOnce(&View) -> R) -> R {
        f(&self.view.snapshot())
    }
}

/// Whether a caller at `from` may report boot events of `node`: `from` is the node's
/// reservation, or `lease` (the lease on `from`) is held by the node's MAC at unix time `now`.
/// So a host elsewhere on the boot network cannot mark another node `ready` or `failed`.
pub fn may_report(node: &Node, lease: Option<&Lease>, from: Ipv4Addr, now: u64) -> bool {
    node.ip == Some(from)
        || lease.is_some_and(|l| l.ip == from && node.mac == l.mac && l.holds(now))
}

/// The node at client address `ip`: the node that reserved it, else the node whose MAC holds
/// the lease on it.
fn node_at(view: &View, ip: Ipv4Addr) -> Option<&str> {
    view.node_by_ip(ip)
        .or_else(|| view.leases.get(&ip).and_then(|l| view.node_by_mac(l.mac)))
        .map(|n| n.name.as_str())
}

impl Writer {
    /// Writes queued events until `shutdown`, then what is still queued. A failed write is
    /// logged and its events are lost (they are a record of the past, not state to keep).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let open = tokio::select! {
                _ = shutdown.cancelled() => false,
                n = self.rx.recv_many(&mut batch, MAX_BATCH) => n > 0,
            };
            if !open {
                self.rx.close();
                while self.rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                    self.write(std::mem::take(&mut batch)).await;
                }
                return;
            }
            self.write(std::mem::take(&mut batch)).await;
        }
    }

    async fn write(&self, batch: Vec<(String, BootEvent)>) {
        let store = self.store.clone();
        let count = batch.len();
        let written = tokio::task::spawn_blocking(move || record_all(&store, batch)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(count, error = %e, "cannot record boot events"),
            Err(e) => tracing::error!(count, error = %e, "boot event writer failed"),
        }
    }
}

/// Appends `events` to their nodes' logs in one store write.
fn record_all(store: &Store, events: Vec<(String, BootEvent)>) -> Result<(), StoreError> {
    store.write(|w| {
        let mut logs: std::collections::BTreeMap<String, BootLog> = Default::default();
        for (node, event) in events {
            let log = match logs.entry(node) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let log = w.get::<BootLog>(e.key())?.unwrap_or_else(|| BootLog {
                        name: e.key().clone(),
                        events: Vec::new(),
                    });
                    e.insert(log)
                }
            };
            append(log, event);
        }
        for log in logs.values() {
            w.put(log)?;
        }
        Ok(())
    })
}

/// Adds `event` to `log` in time order, keeping the newest [`MAX_EVENTS`]; cuts its detail to
/// [`MAX_DETAIL`] bytes and leaves out a client's retry (see [`REPEAT_MS`]).
fn append(log: &mut BootLog, mut event: BootEvent) {
    if event.detail.len() > MAX_DETAIL {
        let mut cut = MAX_DETAIL;
        while !event.detail.is_char_boundary(cut) {
            cut -= 1;
        }
        event.detail.truncate(cut);
    }
    if let Some(last) = log.events.last() {
        if matches!(event.stage, BootStage::Dhcp | BootStage::Firmware)
            && last.stage == event.stage
            && last.detail == event.detail
            && event.at_ms.saturating_sub(last.at_ms) < REPEAT_MS
        {
            return;
        }
    }
    // Events are written in the background and may arrive out of order; keep them sorted by
    // when they happened.
    let at = log.events.partition_point(|e| e.at_ms <= event.at_ms);
    log.events.insert(at, event);
    let excess = log.events.len().saturating_sub(MAX_EVENTS);
    log.events.drain(..excess);
}

/// The events of the last boot (all, when no start is seen): from the last DHCP offer or
/// iPXE script on, together with the DHCP offers and firmware fetches right before it (a PXE
/// ROM's offer and the iPXE it fetched belong to the boot that iPXE goes on with).
pub fn last_boot(events: &[BootEvent]) -> &[BootEvent] {
    let Some(mut start) = events
        .iter()
        .rposition(|e| matches!(e.stage, BootStage::Dhcp | BootStage::Script))
    else {
        return events;
    };
    while start > 0
        && matches!(
            events[start - 1].stage,
            BootStage::Dhcp | BootStage::Firmware
        )
    {
        start -= 1;
    }
    &events[start..]
}

crate::labels::labels! {
    /// What a node is doing, as far as its boot events tell. Serialised by its name.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum NodeState {
        /// No boot seen yet.
        Unknown = "unknown",
        Booting = "booting",
        Up = "up",
        Failed = "failed",
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
    fn node_states_serialise_by_their_names() {
        for st in NodeState::ALL {
            let json = serde_json::to_string(st).unwrap();
            assert_eq!(json, format!("\"{}\"", st.name()));
        }
    }

    #[test]
    fn only_the_nodes_own_address_may_report() {
        let ip = |a: &str| a.parse::<Ipv4Addr>().unwrap();
        let mut node = Node {
            name: "n1".into(),
            mac: "52:54:00:00:00:01".parse().unwrap(),
            ip: Some(ip("198.18.0.11")),
            image: None,
            group: None,
            aliases: Vec::new(),
            root: None,
            image_version: None,
            swarm: None,
        };
        let lease = |at: &str, mac: &str, expires: u64| Lease {
            ip: ip(at),
            mac: mac.parse().unwrap(),
            client_id: None,
            hostname: None,
            state: crate::store::model::LeaseState::Bound,
            start: 0,
            expires,
            network: "lab".into(),
            relay: Default::default(),
        };
        assert!(may_report(&node, None, ip("198.18.0.11"), 10));
        assert!(!may_report(&node, None, ip("198.18.0.12"), 10));
        // Another node's lease, an expired lease, or a lease on another address is not enough.
        let mine = lease("198.18.0.100", "52:54:00:00:00:01", 100);
        let other = lease("198.18.0.100", "52:54:00:00:00:02", 100);
        assert!(may_report(&node, Some(&mine), ip("198.18.0.100"), 10));
        assert!(!may_report(&node, Some(&other), ip("198.18.0.100"), 10));
        assert!(!may_report(&node, Some(&mine), ip("198.18.0.100"), 100));
        assert!(!may_report(&node, Some(&mine), ip("198.18.0.101"), 10));
        node.ip = None;
        assert!(may_report(&node, Some(&mine), ip("198.18.0.100"), 10));
        assert!(!may_report(&node, None, ip("198.18.0.11"), 10));
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
    fn a_dhcp_offer_starts_a_boot_and_a_chained_firmware_stays_in_it() {
        use BootStage::*;
        let stages = |evs: &[BootEvent]| evs.iter().map(|e| e.stage).collect::<Vec<_>>();
        // Up, then a reboot through a PXE ROM that chains iPXE: two offers, one boot.
        let events: Vec<BootEvent> = [
            Dhcp, Script, Kernel, Agent, Ready, Dhcp, Firmware, Dhcp, Script, Kernel,
        ]
        .iter()
        .enumerate()
        .map(|(i, s)| ev(i as u64, *s))
        .collect();
        assert_eq!(
            stages(last_boot(&events)),
            [Dhcp, Firmware, Dhcp, Script, Kernel]
        );
        assert_eq!(state(&events, 10), NodeState::Booting);
        // A fresh offer after "up" is a new boot that has only just begun.
        assert_eq!(stages(last_boot(&events[..6])), [Dhcp]);
        assert_eq!(state(&events[..6], 10), NodeState::Booting);
        // Two scripts are two boots; an offer from another server leaves only the script.
        let events = [ev(1, Script), ev(2, Script), ev(3, Kernel)];
        assert_eq!(stages(last_boot(&events)), [Script, Kernel]);
        let events = [ev(1, Dhcp), ev(2, Script), ev(3, Ready), ev(4, Script)];
        assert_eq!(stages(last_boot(&events)), [Script]);
    }

    #[test]
    fn append_keeps_order_cap_and_skips_retries() {
        let mut log = BootLog {
            name: "n1".into(),
            events: Vec::new(),
        };
        let offer = |at_ms, ip: &str| BootEvent {
            detail: format!("offer {ip}"),
            ..ev(at_ms, BootStage::Dhcp)
        };
        append(&mut log, offer(1000, "198.18.0.11"));
        // The ROM's retransmitted DISCOVER got the same offer: not a new step.
        append(&mut log, offer(3000, "198.18.0.11"));
        assert_eq!(log.events.len(), 1);
        // A different offer, or the same one much later, is kept.
        append(&mut log, offer(3500, "198.18.0.12"));
        append(&mut log, offer(3500 + REPEAT_MS, "198.18.0.12"));
        assert_eq!(log.events.len(), 3);
        // Late arrivals are sorted in; details are cut at a character boundary.
        append(
            &mut log,
            BootEvent {
                detail: "é".repeat(MAX_DETAIL),
                ..ev(2000, BootStage::Script)
            },
        );
        assert_eq!(log.events[1].stage, BootStage::Script);
        assert!(log.events[1].detail.len() <= MAX_DETAIL);
        for i in 0..2 * MAX_EVENTS as u64 {
            append(&mut log, ev(100_000 + i, BootStage::Kernel));
        }
        assert_eq!(log.events.len(), MAX_EVENTS);
        assert_eq!(log.events[0].at_ms, 100_000 + MAX_EVENTS as u64);
    }

    fn temp_store() -> (Arc<Store>, std::path::PathBuf) {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "drover-timeline-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        (Arc::new(Store::open(&dir).unwrap()), dir)
    }

    #[test]
    fn recorder_finds_nodes_bounds_its_queue_and_the_writer_batches() {
        use crate::store::model::{Lease, LeaseState, Node};
        let (store, dir) = temp_store();
        let node = |name: &str, mac: &str, ip: Option<&str>| Node {
            name: name.into(),
            mac: mac.parse().unwrap(),
            ip: ip.map(|i| i.parse().unwrap()),
            image: None,
            group: None,
            aliases: Vec::new(),
            root: None,
            image_version: None,
            swarm: None,
        };
        store
            .write(|w| {
                w.put(&node("n1", "52:54:00:00:00:01", Some("198.18.0.11")))?;
                w.put(&node("n2", "52:54:00:00:00:02", None))?;
                w.put(&Lease {
                    ip: "198.18.0.100".parse().unwrap(),
                    mac: "52:54:00:00:00:02".parse().unwrap(),
                    client_id: None,
                    hostname: None,
                    state: LeaseState::Bound,
                    start: 0,
                    expires: u64::MAX,
                    network: "lab".into(),
                    relay: Default::default(),
                })
            })
            .unwrap();
        let view = Arc::new(SharedView::load(store.clone()).unwrap());
        let (recorder, writer) = Recorder::new(view);
        let mac = |m: &str| m.parse::<Mac>().unwrap();
        let ip = |a: &str| a.parse::<Ipv4Addr>().unwrap();
        recorder.record_mac(
            mac("52:54:00:00:00:01"),
            BootStage::Dhcp,
            "dhcp",
            "a".into(),
        );
        recorder.record_addr(ip("198.18.0.11"), BootStage::Firmware, "tftp", "b".into());
        recorder.record_addr(ip("198.18.0.100"), BootStage::Firmware, "http", "c".into());
        // Unknown machines are not recorded.
        recorder.record_mac(
            mac("52:54:00:00:00:09"),
            BootStage::Dhcp,
            "dhcp",
            "x".into(),
        );
        recorder.record_addr(ip("198.18.0.200"), BootStage::Firmware, "tftp", "x".into());
        for i in 0..MAX_PENDING {
            recorder.record("n2".into(), BootStage::Kernel, "http", i.to_string());
        }
        assert_eq!(
            recorder.counts().dropped(),
            3,
            "the queue holds MAX_PENDING"
        );
        let queued = recorder.counts().queued();
        assert_eq!(queued.iter().sum::<u64>(), MAX_PENDING as u64);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        // Cancelled at once: the writer still writes everything that was queued.
        rt.block_on(writer.run(shutdown));
        let logs = store.read(|r| r.all::<BootLog>()).unwrap();
        let events = |n: &str| {
            logs.iter()
                .find(|l| l.name == n)
                .map(|l| {
                    l.events
                        .iter()
                        .map(|e| e.detail.clone())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        assert_eq!(events("n1"), ["a", "b"]);
        assert_eq!(events("n2").len(), MAX_EVENTS);
        // The first event and 252 of the others were queued; the newest 64 are kept.
        let n2 = events("n2");
        assert_eq!(n2.last().map(String::as_str), Some("252"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn utc() {
        assert_eq!(format_utc(0), "1970-01-01 00:00:00.000");
        assert_eq!(format_utc(951_782_400_123), "2000-02-29 00:00:00.123");
        assert_eq!(format_utc(1_795_976_456_368), "2026-11-29 18:20:56.368");
    }
}
