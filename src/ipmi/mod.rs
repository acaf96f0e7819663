//! IPMI power control over the LAN: power on/off/soft/cycle/reset/status and the next boot
//! device of nodes, through their BMCs, with IPMI v2.0 RMCP+ (`ipmitool -I lanplus`).
//!
//! Data flow: the CLI (`drover power`), the API (`POST /api/v1/power`) and the server's
//! poller resolve targets to nodes and each node to a [`BmcAccess`] (node BMC record over
//! group BMC record, from the store); [`power::run_all`] runs the action per node on a capped
//! set of threads, pacing power-on. Each exchange is a [`client::Conn`]: a UDP socket driving
//! the sans-IO [`core::Session`], which uses [`wire`] for bytes and [`crypto`] for RAKP,
//! session keys and v1.5 MD5 codes. The CLI logs in, runs the commands and closes the session
//! ([`client::run`]); `drover serve` keeps sessions open in a [`cache::SessionCache`], one
//! per BMC, reused by the poller and the API, serialised per session, logged in again after
//! the BMC lost one, and closed with Close Session when idle for `power.session-idle`, when
//! evicted, when the node's BMC settings change or the node goes, and at shutdown.
//! [`serve::poll`] is the `drover serve` task that polls power state at a bounded rate and
//! writes each change to the store's `power` table; [`serve::keep_sessions`] looks after the
//! cache.
//!
//! Own RMCP+ code instead of ipmi-rs 0.6: ipmi-rs does the RMCP+ handshake with suite 3 only,
//! has no chassis commands, never raises the session privilege, owns a blocking socket (no
//! sans-IO core to test on virtual time), does not retransmit lost datagrams, does not close
//! sessions, and panics on some malformed BMC answers (`unwrap` on the RAKP 4 read, `todo!` at
//! sequence wrap), which under `panic = "abort"` would take `drover serve` down. What it
//! would have given us is small (the RAKP and AES-CBC code, ~600 lines); the same RustCrypto
//! primitives it uses (hmac, sha1, sha2, aes) are used here directly.
//!
//! Supported: RMCP+ with cipher suites 3 (HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128) and 17
//! (HMAC-SHA256, HMAC-SHA256-128, AES-CBC-128), tried in the configured order; IPMI v1.5 LAN
//! sessions (MD5, else straight-password authentication; no encryption) for BMCs without
//! RMCP+, only when `power.ipmi-version = "1.5"` (never as an automatic fallback); user lookup by name; privilege raised to
//! ADMINISTRATOR; Get Chassis Status, Chassis Control (on, off, cycle, hard reset, ACPI soft
//! off); boot flags (parameter 5) for the next boot only: PXE, disk, with a read-back;
//! retransmission; Close Session; in `drover serve`, sessions kept open and reused (no
//! keep-alive traffic: a session lives while used at least every `power.session-idle` s).
//!
//! Sensors and the System Event Log (`drover bmc sensors|sel`): [`sdr`] builds the requests
//! and decodes the SDR records, readings and SEL entries (pure); [`sensors`] runs them in one
//! session (and reads Redfish BMCs through `crate::redfish`).
//!
//! Serial-over-LAN (`drover console NODE`, RMCP+ only): [`sol`] (pure) and [`console`]
//! (one session, blocking); in `drover serve`, [`hub`] shares one session per node between
//! the API's WebSocket clients (one writer: [`seats`], pure) and logs each boot ([`conlog`]).
//!
//! Not supported: a BMC key Kg distinct from the password, suites other than 3 and 17, MD2
//! and "none" authentication of IPMI v1.5, persistent or UEFI boot flags, SOL over IPMI
//! v1.5, console logs replicated between members, clearing the event log or
//! setting sensor thresholds. Redfish is `crate::redfish`, chosen per node in [`power`].
//! `ipmi_sim`, the test BMC, refuses suite 17; it is checked
//! by `ipmitool -I lanplus -C 17` logging in to drover's own test BMC (`fake_bmc.rs`), which
//! drover's client then talks to as well. A v1.5 BMC ignores a wrong
//! password (no answer to Activate Session), so that timeout is reported as an
//! authentication failure.

pub mod cache;
pub mod client;
pub mod conlog;
pub mod console;
pub mod core;
pub mod crypto;
#[cfg(test)]
pub(crate) mod fake_bmc;
pub mod hub;
pub mod power;
pub mod sdr;
pub mod seats;
pub mod sensors;
pub mod serve;
pub mod sol;
pub mod wire;

use crate::store::model::{Bmc, BmcOwner, Secret};
use crate::store::{Reader, StoreError};

/// The standard RMCP port.
pub const DEFAULT_PORT: u16 = 623;

/// Everything needed to log in to one node's BMC.
#[derive(Clone, PartialEq, Eq)]
pub struct BmcAccess {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
}

impl BmcAccess {
    /// `host:port` as shown in tables.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Debug for BmcAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BmcAccess")
            .field("address", &self.address())
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Why a node has no usable BMC settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoBmc {
    #[error("no BMC address (drover node set NAME --bmc HOST)")]
    Host,
    #[error("no BMC user (--bmc-user on the node or its group)")]
    User,
    #[error("no BMC password (--bmc-password-file on the node or its group)")]
    Password,
}

/// Merges a node's own BMC record over its group's, field by field.
pub fn merge(node: Option<&Bmc>, group: Option<&Bmc>) -> Result<BmcAccess, NoBmc> {
    let pick = |f: fn(&Bmc) -> Option<String>| node.and_then(f).or_else(|| group.and_then(f));
    let host = pick(|b| b.host.clone()).ok_or(NoBmc::Host)?;
    let user = pick(|b| b.user.clone()).ok_or(NoBmc::User)?;
    let password = node
        .and_then(|b| b.password.clone())
        .or_else(|| group.and_then(|b| b.password.clone()))
        .ok_or(NoBmc::Password)?;
    let port = node
        .and_then(|b| b.port)
        .or_else(|| group.and_then(|b| b.port))
        .unwrap_or(DEFAULT_PORT);
    Ok(BmcAccess {
        host,
        port,
        user,
        password,
    })
}

/// The BMC access of node `name` (in group `group`) from the store.
pub fn access(
    r: &Reader<'_>,
    name: &str,
    group: Option<&str>,
) -> Result<Result<BmcAccess, NoBmc>, StoreError> {
    let own = r.get::<Bmc>(&BmcOwner::Node(name.to_string()).key())?;
    let grp = match group {
        Some(g) => r.get::<Bmc>(&BmcOwner::Group(g.to_string()).key())?,
        None => None,
    };
    Ok(merge(own.as_ref(), grp.as_ref()))
}

/// Parses `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT`.
pub fn parse_host_port(s: &str) -> Result<(String, Option<u16>), String> {
    let bad = || format!("{s:?} is not HOST[:PORT]");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(bad)?;
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(bad()),
        }
    } else if s.matches(':').count() == 1 {
        let (h, p) = s.split_once(':').ok_or_else(bad)?;
        (h, Some(p))
    } else {
        (s, None)
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    let port = port
        .map(|p| p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad))
        .transpose()?;
    Ok((host.to_string(), port))
}

/// Expands `node[001-064]`, `rack[1-2]n[01-04]` and `n[1,3,5-7]` into names; a name without
/// brackets is itself. Zero padding follows the first number of each range.
pub fn expand_range(s: &str) -> Result<Vec<String>, String> {
    /// More names than any rack: a typo such as `n[1-1000000]` is an error, not a hang.
    const MAX_NAMES: usize = 100_000;
    let Some(open) = s.find('[') else {
        return Ok(vec![s.to_string()]);
    };
    let close = s[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or_else(|| format!("{s:?}: '[' without ']'"))?;
    let (prefix, body, rest) = (&s[..open], &s[open + 1..close], &s[close + 1..]);
    let tails = expand_range(rest)?;
    let mut out = Vec::new();
    for part in body.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let width = a.len();
        let (lo, hi) = match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(lo), Ok(hi)) if lo <= hi => (lo, hi),
            _ => return Err(format!("{s:?}: bad range {part:?} (expected like 001-064)")),
        };
        if (hi - lo) as usize * tails.len().max(1) + out.len() > MAX_NAMES {
            return Err(format!("{s:?}: more than {MAX_NAMES} names"));
        }
        for n in lo..=hi {
            for t in &tails {
                out.push(format!("{prefix}{n:0width$}{t}"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_expand_with_padding() {
        assert_eq!(expand_range("n1").unwrap(), ["n1"]);
        assert_eq!(
            expand_range("node[008-011]").unwrap(),
            ["node008", "node009", "node010", "node011"]
        );
        assert_eq!(expand_range("n[1,3-4]x").unwrap(), ["n1x", "n3x", "n4x"]);
        assert_eq!(
            expand_range("r[1-2]n[1-2]").unwrap(),
            ["r1n1", "r1n2", "r2n1", "r2n2"]
        );
        assert!(expand_range("n[3-1]").is_err());
        assert!(expand_range("n[1-").is_err());
        assert!(expand_range("n[a-b]").is_err());
        assert!(expand_range("n[1-10000000]").is_err());
    }

    #[test]
    fn host_port_and_merge() {
        assert_eq!(
            parse_host_port("10.0.0.5").unwrap(),
            ("10.0.0.5".into(), None)
        );
        assert_eq!(
            parse_host_port("bmc1:6230").unwrap(),
            ("bmc1".into(), Some(6230))
        );
        assert_eq!(
            parse_host_port("[fd00::1]:623").unwrap(),
            ("fd00::1".into(), Some(623))
        );
        assert!(parse_host_port("h:0").is_err());
        assert!(parse_host_port("").is_err());
        let group = Bmc {
            owner: BmcOwner::Group("g".into()),
            host: None,
            port: Some(700),
            user: Some("admin".into()),
            password: Some(Secret::new("pw".into())),
            protocol: None,
            tls_pin: None,
        };
        let node = Bmc {
            owner: BmcOwner::Node("n".into()),
            host: Some("10.0.0.9".into()),
            port: None,
            user: None,
            password: None,
            protocol: None,
            tls_pin: None,
        };
        let a = merge(Some(&node), Some(&group)).unwrap();
        assert_eq!(a.address(), "10.0.0.9:700");
        assert_eq!(a.user, "admin");
        assert!(!format!("{a:?}").contains("pw"));
        assert!(!format!("{group:?}").contains("pw"));
        assert_eq!(merge(None, Some(&group)), Err(NoBmc::Host));
    }
}
