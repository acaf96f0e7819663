//! NTP server for the cluster: nodes take their time from drover (RFC 5905 NTPv4 server mode;
//! NTPv3 and SNTP v1-v4 clients (RFC 4330) are answered too).
//!
//! drover serves the host's clock as it is: whatever disciplines that clock (chrony,
//! systemd-timesyncd, ptp4l, nothing) stays outside drover. Replies tell the truth about it:
//! leap, stratum, reference ID and root dispersion follow the kernel's synchronisation state
//! (adjtimex), and an unsynchronised clock is announced as such (leap 3, stratum 16) unless the
//! admin declares drover the cluster's reference (`local_reference`, for isolated clusters).
//!
//! Layout and data flow:
//! - [`wire`]: datagram bytes <-> [`wire::Packet`]; length-checked, no panics; extension
//!   fields and MACs are carried but not interpreted. NTP timestamp formats and era handling.
//! - [`core`]: [`core::handle`] turns (receive time, datagram, [`core::ClockState`], rate
//!   limiter, client address) into [`core::Action`]: drop with a reason, or a reply whose
//!   transmit timestamp is filled in by [`core::Reply::emit`] at send time.
//!   [`core::ClockTracker`] derives the announced clock state from the kernel's.
//! - [`serve`]: the tokio shell: a UDP socket per worker core (SO_REUSEPORT), CLOCK_REALTIME stamps right after receive and
//!   right before send, an adjtimex read every few seconds, counters.
//!
//! Not supported: acting as an NTP client or syncing from upstream servers (drover does not
//! discipline the clock), NTS (RFC 8915), symmetric active/passive and broadcast modes, control
//! (mode 6, ntpq) and private (mode 7, ntpdc) messages, autokey and symmetric-key (MAC)
//! authentication (signed requests get a crypto-NAK), kernel/hardware receive timestamps.

pub mod core;
pub mod serve;
pub mod wire;
