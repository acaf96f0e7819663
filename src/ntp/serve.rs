//! The tokio shell of the NTP server: UDP sockets, the system clock, counters.
//!
//! Data flow: [`run_group`] owns the sockets the caller bound to one address (`IFACE_IP:123`,
//! or any address in tests): one per worker core, joined with SO_REUSEPORT
//! ([`crate::net::reuseport`]); [`run`] serves a single socket. Each socket has its own task,
//! one `select!` over {shutdown, new clock state, datagram}; all of them share one
//! [`RateLimiter`] behind a mutex (held for one receive batch's parses and table lookups), so
//! a client's allowance does not grow with the number of sockets:
//! - up to [`sys::MAX_BATCH`] datagrams come in one recvmmsg and are stamped with
//!   CLOCK_REALTIME right after it returns (the earliest point user space sees them), handed
//!   to [`core::handle`] with the current [`ClockState`] and the [`RateLimiter`]; the replies
//!   get their transmit timestamp from a second clock read immediately before one
//!   non-blocking sendmmsg (a full socket buffer drops a reply rather than delay it and make
//!   the timestamp wrong; clients retry);
//! - every [`CLOCK_REFRESH`] the group's own task reads the kernel's synchronisation state
//!   with adjtimex (read-only), turns it into the announced [`ClockState`] with a
//!   [`ClockTracker`] and publishes it to the receive loops (a watch channel): a syscall per
//!   packet would cost more than the rest of the work, and the state changes slowly.
//!
//! Counters ([`Stats`]) count every datagram once, by outcome.
//!
//! Not here: kernel or hardware receive timestamps (SO_TIMESTAMPNS), which would remove the
//! scheduling delay between arrival and `recv_from` from the receive timestamp; interleaved
//! mode; per-interface sockets (the caller binds one group per address it serves).

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::core::{
    self, precision_from_nanos, Action, ClockState, ClockTracker, DropReason, HostClock,
    RateLimiter, RateLimits, Reply, ReplyKind, MAX_REPLY,
};
use super::wire::{Leap, NtpTimestamp, WireError, MAX_PACKET};
use crate::net::datagram::Datagram;
use crate::net::sys;

/// How often the host clock's synchronisation state is read.
pub const CLOCK_REFRESH: Duration = Duration::from_secs(4);
/// Pause after a receive error, so a persistent error cannot spin.
const RECV_BACKOFF: Duration = Duration::from_millis(50);

/// Server settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// UDP port to bind (123); [`run`] serves whatever socket it is given, this is for the
    /// caller that binds it.
    pub port: u16,
    /// Announce the host clock as the cluster's reference (stratum
    /// [`core::LOCAL_STRATUM`], reference ID `LOCL`) while it is not synchronised.
    pub local_reference: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            port: 123,
            local_reference: false,
        }
    }
}

crate::counters::counter_set! {
    /// Counters, updated with relaxed atomics; read them with [`Stats::snapshot`].
    pub struct Stats, snapshot StatsSnapshot, sorted {
        received,
        replies,
        kisses,
        dropped_malformed,
        dropped_mode,
        dropped_rate,
        dropped_source,
        send_errors,
        recv_errors,
        clock_reads,
        clock_read_errors,
        /// 1 while the announced clock is one clients accept (synchronised or local reference).
        serving_synchronized,
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Serves NTP on `socket` until `shutdown` is cancelled.
pub async fn run(
    socket: UdpSocket,
    settings: Settings,
    shutdown: CancellationToken,
) -> io::Result<()> {
    run_with_stats(socket, settings, Arc::new(Stats::default()), shutdown).await
}

/// [`run`] with counters the caller can read.
pub async fn run_with_stats(
    socket: UdpSocket,
    settings: Settings,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    run_group(vec![socket], settings, stats, shutdown).await
}

/// Serves NTP on a group of sockets bound to one address (SO_REUSEPORT, one per worker core:
/// [`crate::net::reuseport`]) until `shutdown` is cancelled: a receive loop per socket, one
/// clock reader and one rate limiter for all of them, so a client's allowance is the same
/// whichever socket the kernel hands its requests to.
pub async fn run_group(
    sockets: Vec<UdpSocket>,
    settings: Settings,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let Some(first) = sockets.first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NTP: no socket to serve",
        ));
    };
    let local = first.local_addr()?;
    let count = sockets.len();
    serve(
        local,
        count,
        settings,
        stats,
        shutdown,
        |clock, common, workers, token| {
            for socket in sockets {
                let worker = Worker {
                    socket,
                    clock: clock.clone(),
                    common: common.clone(),
                };
                workers.spawn(worker.run(token.clone()));
            }
        },
    )
    .await
}

/// Serves NTP on any [`Datagram`] socket bound to `local`, one datagram at a time (the lab
/// serves on its smoltcp interface this way; receive timestamps are taken when the datagram
/// reaches this task, as on kernel sockets).
pub async fn run_on<S: Datagram>(
    socket: S,
    local: SocketAddr,
    settings: Settings,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    serve(
        local,
        1,
        settings,
        stats,
        shutdown,
        |clock, common, workers, token| {
            workers.spawn(one_at_a_time(
                socket,
                clock.clone(),
                common.clone(),
                token.clone(),
            ));
        },
    )
    .await
}

/// The clock reader and the rate limiter; `spawn` starts the receive loops on them.
async fn serve(
    local: SocketAddr,
    sockets: usize,
    settings: Settings,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    spawn: impl FnOnce(&watch::Receiver<ClockState>, &Common, &mut JoinSet<()>, &CancellationToken),
) -> io::Result<()> {
    let precision = measure_precision();
    let mut tracker = ClockTracker::new(settings.local_reference, precision);
    let mut clock = refresh_clock(&mut tracker, None, &stats);
    let (publish, clock_rx) = watch::channel(clock);
    let common = Common {
        limiter: Arc::new(Mutex::new(RateLimiter::new(
            RateLimits::DEFAULT,
            random_seed(),
        ))),
        stats: stats.clone(),
    };
    info!(
        %local,
        sockets,
        local_reference = settings.local_reference,
        precision,
        stratum = clock.stratum,
        "NTP server listening"
    );
    let mut workers = JoinSet::new();
    spawn(&clock_rx, &common, &mut workers, &shutdown);
    let mut ticker = tokio::time::interval(CLOCK_REFRESH);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {
                clock = refresh_clock(&mut tracker, Some(&clock), &stats);
                publish.send_replace(clock);
            }
        }
    }
    while workers.join_next().await.is_some() {}
    Ok(())
}

/// What every receive loop shares: the rate limiter and the counters.
#[derive(Clone)]
struct Common {
    limiter: Arc<Mutex<RateLimiter>>,
    stats: Arc<Stats>,
}

/// One receive loop: its socket, the announced clock as the reader last published it, and
/// the shared rate limiter.
struct Worker {
    socket: UdpSocket,
    clock: watch::Receiver<ClockState>,
    common: Common,
}

/// Bytes per receive slot: one more than the largest accepted packet, so that an over-long
/// datagram (which the kernel truncates silently) is recognised.
const SLOT: usize = MAX_PACKET + 1;

impl Worker {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut clock = *self.clock.borrow_and_update();
        let mut buf = vec![0u8; SLOT * sys::MAX_BATCH];
        let mut got = Vec::with_capacity(sys::MAX_BATCH);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                Ok(()) = self.clock.changed() => clock = *self.clock.borrow_and_update(),
                ready = self.socket.readable() => {
                    let received = ready.and_then(|()| {
                        self.socket.try_io(Interest::READABLE, || {
                            sys::recv_batch(self.socket.as_fd(), &mut buf, SLOT, &mut got)
                        })
                    });
                    let rx = now();
                    match received {
                        Ok(()) => self.serve_batch(rx, &buf, &got, &clock),
                        // Readiness was stale: the kernel had nothing queued after all.
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => {
                            if !self.common.receive_failed(e, &shutdown).await {
                                return;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Decides on every datagram of one receive batch (one lock of the limiter for all), then
    /// sends the replies in one batch, stamped right before it goes out.
    fn serve_batch(&self, rx: NtpTimestamp, buf: &[u8], got: &[sys::Received], clock: &ClockState) {
        let datagrams = got
            .iter()
            .enumerate()
            .map(|(i, r)| (&buf[i * SLOT..i * SLOT + r.len.min(SLOT)], r));
        let replies = self.common.decide(rx, datagrams, clock);
        if replies.is_empty() {
            return;
        }
        let mut out = vec![[0u8; MAX_REPLY]; replies.len()];
        let transmit = now();
        let lens: Vec<usize> = replies
            .iter()
            .zip(out.iter_mut())
            .map(|((reply, _), out)| reply.emit(transmit, out))
            .collect();
        let datagrams: Vec<(&[u8], SocketAddr)> = out
            .iter()
            .zip(&lens)
            .zip(&replies)
            .map(|((o, &len), (_, to))| (&o[..len], *to))
            .collect();
        let sent = self.socket.try_io(Interest::WRITABLE, || {
            sys::send_batch(self.socket.as_fd(), &datagrams)
        });
        let sent = match sent {
            Ok(n) => n,
            Err(e) => {
                debug!(error = %e, "NTP send failed");
                0
            }
        };
        self.common.count_sent(&replies, sent);
    }
}

/// The receive loop of [`run_on`]: one datagram per receive, its reply sent before the next.
async fn one_at_a_time<S: Datagram>(
    socket: S,
    mut clock: watch::Receiver<ClockState>,
    common: Common,
    shutdown: CancellationToken,
) {
    let mut announced = *clock.borrow_and_update();
    let mut buf = vec![0u8; SLOT];
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            Ok(()) = clock.changed() => announced = *clock.borrow_and_update(),
            received = socket.recv_from(&mut buf) => {
                let rx = now();
                let (len, from) = match received {
                    Ok(got) => got,
                    Err(e) => {
                        if !common.receive_failed(e, &shutdown).await {
                            return;
                        }
                        continue;
                    }
                };
                // A datagram longer than the buffer arrives as a full slot: too long.
                let got = sys::Received { len, truncated: len >= SLOT, from: Some(from) };
                let datagram = &buf[..len.min(SLOT)];
                let replies = common.decide(rx, std::iter::once((datagram, &got)), &announced);
                let mut sent = 0;
                for (reply, to) in &replies {
                    let mut out = [0u8; MAX_REPLY];
                    let len = reply.emit(now(), &mut out);
                    match socket.send_to(&out[..len], *to).await {
                        Ok(_) => sent += 1,
                        Err(e) => debug!(error = %e, "NTP send failed"),
                    }
                }
                common.count_sent(&replies, sent);
            }
        }
    }
}

impl Common {
    /// The core's decision on each datagram, under one lock of the limiter; drops counted.
    fn decide<'a>(
        &self,
        rx: NtpTimestamp,
        datagrams: impl Iterator<Item = (&'a [u8], &'a sys::Received)>,
        clock: &ClockState,
    ) -> Vec<(Reply, SocketAddr)> {
        let mut replies = Vec::new();
        // A poisoned lock only means a panic elsewhere mid-update of one table entry;
        // with panic = "abort" it cannot happen, and the table stays usable anyway.
        let mut limiter = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
        for (datagram, r) in datagrams {
            bump(&self.stats.received);
            let action = match r.from {
                None => Action::Drop(DropReason::BadSource),
                Some(_) if r.truncated || r.len > MAX_PACKET => {
                    Action::Drop(DropReason::Malformed(WireError::TooLong(r.len)))
                }
                Some(from) => core::handle(rx, datagram, clock, &mut limiter, from),
            };
            match action {
                Action::Reply(reply) => {
                    if let Some(from) = r.from {
                        replies.push((reply, from));
                    }
                }
                Action::Drop(reason) => self.count_drop(reason, r.from),
            }
        }
        replies
    }

    /// Counts the first `sent` of `replies` as sent and the rest as lost: a full socket
    /// buffer drops them rather than delay them and make their timestamps wrong; clients
    /// retry.
    fn count_sent(&self, replies: &[(Reply, SocketAddr)], sent: usize) {
        for (i, (reply, from)) in replies.iter().enumerate() {
            if i >= sent {
                bump(&self.stats.send_errors);
                continue;
            }
            match reply.kind() {
                ReplyKind::Time => bump(&self.stats.replies),
                ReplyKind::RateKiss => {
                    bump(&self.stats.kisses);
                    debug!(%from, "NTP kiss-o'-death RATE");
                }
            }
        }
    }

    /// Counts a receive error and backs off; false when shut down meanwhile.
    async fn receive_failed(&self, e: io::Error, shutdown: &CancellationToken) -> bool {
        bump(&self.stats.recv_errors);
        debug!(error = %e, "NTP receive failed");
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(RECV_BACKOFF) => true,
        }
    }

    fn count_drop(&self, reason: DropReason, from: Option<SocketAddr>) {
        let stats = &self.stats;
        let counter = match reason {
            DropReason::Malformed(_) | DropReason::WouldAmplify => &stats.dropped_malformed,
            DropReason::Mode(_) => &stats.dropped_mode,
            DropReason::RateLimited => &stats.dropped_rate,
            DropReason::BadSource => &stats.dropped_source,
        };
        bump(counter);
        debug!(?from, %reason, "NTP request dropped");
    }
}

/// CLOCK_REALTIME as an NTP timestamp.
fn now() -> NtpTimestamp {
    let (secs, nanos) = sys::realtime();
    NtpTimestamp::from_unix(secs, nanos)
}

/// Reads adjtimex and derives the announced state; logs changes of synchronisation.
fn refresh_clock(
    tracker: &mut ClockTracker,
    previous: Option<&ClockState>,
    stats: &Stats,
) -> ClockState {
    bump(&stats.clock_reads);
    let host = match sys::adjtimex_read() {
        Ok(k) => host_clock(&k),
        Err(e) => {
            // Without the kernel's word the clock must be assumed unsynchronised.
            if stats.clock_read_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                warn!(error = %e, "adjtimex failed: announcing the clock as unsynchronised");
            }
            HostClock {
                synchronized: false,
                leap: Leap::NoWarning,
                max_error_us: u64::MAX,
                est_error_us: u64::MAX,
            }
        }
    };
    let state = tracker.update(now(), &host);
    let serving = state.is_synchronized();
    stats
        .serving_synchronized
        .store(u64::from(serving), Ordering::Relaxed);
    let changed = previous.is_none_or(|p| {
        (p.stratum, p.leap, p.reference_id) != (state.stratum, state.leap, state.reference_id)
    });
    if changed {
        info!(
            stratum = state.stratum,
            leap = ?state.leap,
            reference_id = ?state.reference_id,
            host_synchronized = host.synchronized,
            "NTP clock state"
        );
    }
    state
}

/// What adjtimex's answer means for the announced clock. The kernel reports TIME_ERROR (and
/// sets STA_UNSYNC) until a daemon disciplines the clock, after a step, and once the maximum
/// error has grown past 16 s without updates.
pub fn host_clock(k: &sys::KernelClock) -> HostClock {
    let synchronized = k.state != libc::TIME_ERROR && k.status & libc::STA_UNSYNC == 0;
    let leap = if k.status & libc::STA_INS != 0
        || k.state == libc::TIME_INS
        || k.state == libc::TIME_OOP
    {
        Leap::Insert
    } else if k.status & libc::STA_DEL != 0 || k.state == libc::TIME_DEL {
        Leap::Delete
    } else {
        Leap::NoWarning
    };
    HostClock {
        synchronized,
        leap,
        max_error_us: k.maxerror_us.max(0) as u64,
        est_error_us: k.esterror_us.max(0) as u64,
    }
}

/// The clock's precision: its resolution or the cost of reading it, whichever is larger
/// (ntpd and chrony measure the latter too).
fn measure_precision() -> i8 {
    let resolution = sys::realtime_resolution_nanos();
    let mut best = u64::MAX;
    for _ in 0..64 {
        let (s1, n1) = sys::realtime();
        let (s2, n2) = sys::realtime();
        let d = (s2 - s1) * 1_000_000_000 + i64::from(n2) - i64::from(n1);
        if d > 0 {
            best = best.min(d as u64);
        }
    }
    precision_from_nanos(if best == u64::MAX {
        resolution
    } else {
        resolution.max(best)
    })
}

/// A per-process random seed for the rate limiter's table hash (std's hash seed is drawn
/// from the OS's random source).
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(u64::from(std::process::id()));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ntp::wire::{Mode, Packet, ReferenceId};

    fn kernel(state: i32, status: i32) -> sys::KernelClock {
        sys::KernelClock {
            state,
            status,
            maxerror_us: 12_000,
            esterror_us: 30,
        }
    }

    #[test]
    fn kernel_state_mapping() {
        let synced = host_clock(&kernel(libc::TIME_OK, libc::STA_PLL));
        assert!(synced.synchronized);
        assert_eq!(synced.leap, Leap::NoWarning);
        assert_eq!(synced.max_error_us, 12_000);
        assert!(!host_clock(&kernel(libc::TIME_ERROR, libc::STA_UNSYNC)).synchronized);
        assert!(!host_clock(&kernel(libc::TIME_OK, libc::STA_UNSYNC)).synchronized);
        assert!(!host_clock(&kernel(libc::TIME_ERROR, 0)).synchronized);
        let ins = host_clock(&kernel(libc::TIME_INS, libc::STA_INS));
        assert_eq!((ins.synchronized, ins.leap), (true, Leap::Insert));
        assert_eq!(
            host_clock(&kernel(libc::TIME_DEL, libc::STA_DEL)).leap,
            Leap::Delete
        );
    }

    #[test]
    fn precision_is_plausible() {
        let p = measure_precision();
        assert!((-30..=-10).contains(&p), "{p}");
    }

    /// The shell answers on a real socket with receive <= transmit and the host clock.
    #[tokio::test]
    async fn answers_on_loopback() {
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let token = CancellationToken::new();
        let settings = Settings {
            port: addr.port(),
            local_reference: true,
        };
        let task = tokio::spawn(run_with_stats(
            server,
            settings,
            stats.clone(),
            token.clone(),
        ));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut req = [0u8; 48];
        req[0] = 0x23;
        req[40..48].copy_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        client.send_to(&req, addr).await.unwrap();
        let mut buf = [0u8; 100];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let h = Packet::parse(&buf[..n]).unwrap().header;
        assert_eq!(h.mode, Mode::Server);
        assert_eq!(h.origin_ts.to_bits(), 0x0102_0304_0506_0708);
        assert!(h.transmit_ts.wrapping_diff(h.receive_ts) >= 0);
        let (host, _) = sys::realtime();
        let (secs, _) = h.transmit_ts.to_unix(host);
        assert!((secs - host).abs() <= 1);
        if !host_clock(&sys::adjtimex_read().unwrap()).synchronized {
            assert_eq!(h.reference_id, ReferenceId::LOCL);
        }
        token.cancel();
        task.await.unwrap().unwrap();
        let s = stats.snapshot();
        assert_eq!((s.received, s.replies), (1, 1));
    }

    /// Requests from one address spread over a socket group by their source ports still meet
    /// one allowance: the group shares its limiter.
    #[tokio::test]
    async fn a_group_shares_one_limiter() {
        let group =
            crate::net::reuseport::bind_udp_group("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let addr = group[0].local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let token = CancellationToken::new();
        let settings = Settings {
            port: addr.port(),
            local_reference: true,
        };
        let task = tokio::spawn(run_group(group, settings, stats.clone(), token.clone()));
        let limits = RateLimits::DEFAULT;
        let total = u64::from(limits.burst + limits.kod_burst) + 20;
        let mut clients = Vec::new();
        for i in 0..total {
            let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut req = [0u8; 48];
            req[0] = 0x23;
            req[40..48].copy_from_slice(&i.to_be_bytes());
            client.send_to(&req, addr).await.unwrap();
            clients.push(client);
        }
        let counted = tokio::time::timeout(Duration::from_secs(5), async {
            while stats.snapshot().received < total {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        token.cancel();
        task.await.unwrap().unwrap();
        assert!(counted.is_ok(), "{:?}", stats.snapshot());
        let s = stats.snapshot();
        assert_eq!(s.replies, u64::from(limits.burst), "{s:?}");
        assert_eq!(s.kisses, u64::from(limits.kod_burst), "{s:?}");
        assert_eq!(s.dropped_rate, total - s.replies - s.kisses, "{s:?}");
    }
}
