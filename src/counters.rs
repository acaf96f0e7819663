//! The counters of the running protocol servers, for `/metrics`: each server's shell keeps its
//! own `Stats` (relaxed atomics), declared once with [`counter_set!`] (fields, snapshot and
//! names from one list); `drover serve` registers them here per service and interface, and
//! the metrics endpoint reads them all at scrape time.
//!
//! Not here: rendering (`api::metrics`), counting itself (each service's shell), label enums
//! (`crate::labels`).

use std::sync::{Arc, Mutex, OnceLock};

/// A source of named counters.
pub trait Counters: Send + Sync {
    /// `(name, value)` pairs, every counter including zeros, in a stable order.
    fn counters(&self) -> Vec<(String, u64)>;
}

/// One registered counter set.
#[derive(Clone)]
pub struct Entry {
    /// `dhcp`, `tftp`, `dns`, `ntp`.
    pub service: &'static str,
    /// The interface (or `all`).
    pub iface: String,
    pub source: Arc<dyn Counters>,
}

fn registry() -> &'static Mutex<Vec<Entry>> {
    static REGISTRY: OnceLock<Mutex<Vec<Entry>>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

/// Adds a counter set (a server that restarts registers again; the old set stays with its
/// final values).
pub fn register(service: &'static str, iface: &str, source: Arc<dyn Counters>) {
    if let Ok(mut r) = registry().lock() {
        r.push(Entry {
            service,
            iface: iface.to_string(),
            source,
        });
    }
}

/// Every registered set.
pub fn entries() -> Vec<Entry> {
    registry().lock().map(|r| r.clone()).unwrap_or_default()
}

/// Declares a set of counters once: the struct of relaxed atomics (`$stats`, one public
/// field per counter), its plain copy (`$snap`, from `$stats::snapshot()`), the names
/// (`$stats::NAMES`, the field names) and the [`Counters`] impl that `/metrics` reads. With
/// `sorted` the metrics list them by name (as the earlier serde-based listing did for NTP,
/// TFTP and NFS), else in declaration order.
///
/// ```ignore
/// crate::counters::counter_set! {
///     /// Counters of one server.
///     pub struct Stats, snapshot StatsSnapshot {
///         received,
///         /// Replies sent.
///         replies,
///     }
/// }
/// ```
macro_rules! counter_set {
    (
        $(#[$meta:meta])*
        pub struct $stats:ident, snapshot $snap:ident $(, $sorted:ident)? {
            $( $(#[$fmeta:meta])* $field:ident ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub struct $stats {
            $( $(#[$fmeta])* pub $field: ::std::sync::atomic::AtomicU64, )+
        }

        #[doc = concat!("A copy of [`", stringify!($stats), "`] at one moment.")]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $snap {
            $( $(#[$fmeta])* pub $field: u64, )+
        }

        impl $stats {
            /// The counters' names, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($field)),+];

            pub fn snapshot(&self) -> $snap {
                $snap {
                    $( $field: self.$field.load(::std::sync::atomic::Ordering::Relaxed), )+
                }
            }
        }

        impl $snap {
            /// `(name, value)` of every counter, zeros included, in metrics order.
            pub fn pairs(&self) -> Vec<(&'static str, u64)> {
                #[allow(unused_mut)]
                let mut all = vec![$((stringify!($field), self.$field)),+];
                $( $crate::counters::counter_set!(@$sorted all); )?
                all
            }
        }

        impl $crate::counters::Counters for $stats {
            fn counters(&self) -> Vec<(String, u64)> {
                self.snapshot()
                    .pairs()
                    .into_iter()
                    .map(|(name, v)| (name.to_string(), v))
                    .collect()
            }
        }
    };
    (@sorted $all:ident) => {
        $all.sort_by_key(|(name, _)| *name)
    };
}
pub(crate) use counter_set;

#[cfg(test)]
mod tests {
    use super::Counters;

    /// The `event` labels of `drover_service_events_total`, in order, as /metrics printed
    /// them before the counter sets were declared with [`counter_set!`](super::counter_set).
    #[test]
    fn metric_names_are_stable() {
        let dhcp_drops = [
            "truncated",
            "too_long",
            "bad_cookie",
            "not_request",
            "unsupported_hardware",
            "option_overrun",
            "bad_option_length",
            "undecodable_option",
            "bad_header",
            "no_message_type",
            "unsupported_message_type",
            "unknown_relay_network",
            "unknown_client_network",
            "reservation_outside_network",
            "reserved_address_in_use",
            "no_dynamic_range",
            "range_exhausted",
            "offers_full",
            "other_server",
            "missing_address",
            "not_holder",
            "inform_without_address",
            "other_member",
            "drained",
        ];
        let dhcp: Vec<String> = [
            "received",
            "offers",
            "acks",
            "naks",
            "informs",
            "commits",
            "commit_batches",
            "coalesced",
            "commit_conflicts",
            "commit_queue_full",
            "store_errors",
            "send_errors",
            "encode_errors",
        ]
        .iter()
        .map(|n| n.to_string())
        .chain(dhcp_drops.iter().map(|n| format!("dropped_{n}")))
        .collect();
        let golden: [(&str, &dyn Counters, Vec<String>); 5] = [
            ("dhcp", &crate::dhcp::serve::Stats::default(), dhcp),
            (
                "dns",
                &crate::dns::serve::Stats::default(),
                names(&[
                    "udp_queries",
                    "tcp_queries",
                    "answered",
                    "refused",
                    "formerr",
                    "dropped",
                    "truncated",
                    "transfers",
                    "forwarded",
                    "cache_hits",
                    "upstream_failures",
                    "servfail",
                    "overload",
                    "tcp_rejected",
                    "tcp_rejected_per_client",
                    "send_errors",
                ]),
            ),
            (
                "ntp",
                &crate::ntp::serve::Stats::default(),
                names(&[
                    "clock_read_errors",
                    "clock_reads",
                    "dropped_malformed",
                    "dropped_mode",
                    "dropped_rate",
                    "dropped_source",
                    "kisses",
                    "received",
                    "recv_errors",
                    "replies",
                    "send_errors",
                    "serving_synchronized",
                ]),
            ),
            (
                "tftp",
                &crate::tftp::serve::Stats::default(),
                names(&[
                    "busy",
                    "busy_per_client",
                    "bytes_sent",
                    "dropped",
                    "malformed",
                    "not_found",
                    "refused",
                    "requests",
                    "timeouts",
                    "transfers_completed",
                    "transfers_failed",
                    "transfers_started",
                    "write_requests",
                ]),
            ),
            (
                "nfs",
                &crate::nfs::serve::Stats::default(),
                names(&[
                    "callbacks",
                    "callbacks_failed",
                    "calls_compound",
                    "calls_null",
                    "calls_refused",
                    "connections",
                    "connections_idle",
                    "connections_refused",
                    "delegations_revoked",
                    "errors_meta",
                    "errors_read",
                    "errors_state",
                    "errors_write",
                    "leases_expired",
                    "ops_meta",
                    "ops_read",
                    "ops_state",
                    "ops_write",
                    "records_oversized",
                ]),
            ),
        ];
        for (service, stats, want) in golden {
            let got: Vec<String> = stats.counters().into_iter().map(|(n, _)| n).collect();
            assert_eq!(got, want, "{service}");
        }
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_counter_set_counts_and_lists() {
        crate::counters::counter_set! {
            /// Two counters.
            pub struct Two, snapshot TwoSnapshot, sorted {
                zebra,
                /// Documented.
                apple,
            }
        }
        let t = Two::default();
        t.zebra.fetch_add(3, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(Two::NAMES, ["zebra", "apple"]);
        assert_eq!(t.snapshot(), TwoSnapshot { zebra: 3, apple: 0 });
        let listed = t.counters();
        assert_eq!(listed, [("apple".to_string(), 0), ("zebra".to_string(), 3)]);
    }
}
