//! Start-up settings: one TOML file, parsed into validated types, with an embedded default
//! (`assets/default.toml`) so that `drover serve` needs no file at all.
//!
//! Only what a server needs to start lives here (interfaces, ports, limits); fleet data
//! (nodes, networks, images) lives in the store. Unknown keys are errors, and every error
//! names the key. `drover check-config FILE` runs the same parser.

use crate::store::model::Ipv4Net;
use serde::Deserialize;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

/// The embedded default configuration.
pub const DEFAULT_TOML: &str = include_str!("../assets/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    #[serde(default)]
    pub interfaces: Vec<String>,
    #[serde(default)]
    pub dhcp: Dhcp,
    #[serde(default)]
    pub tftp: Tftp,
    #[serde(default)]
    pub http: Http,
    #[serde(default)]
    pub ra: Ra,
    #[serde(default)]
    pub dns: Dns,
    #[serde(default)]
    pub ntp: Ntp,
    #[serde(default)]
    pub pool: Pool,
    #[serde(default)]
    pub power: Power,
    #[serde(default)]
    pub nfs: Nfs,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Dhcp {
    pub enabled: bool,
    pub port: u16,
    pub client_port: u16,
    pub lease_time: u32,
    pub uefi_loader: String,
}

impl Default for Dhcp {
    fn default() -> Self {
        Dhcp {
            enabled: true,
            port: 67,
            client_port: 68,
            lease_time: 3600,
            uefi_loader: "ipxe.efi".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Tftp {
    pub enabled: bool,
    pub port: u16,
    pub max_transfers: usize,
    pub max_blksize: u16,
    pub max_windowsize: u16,
}

impl Default for Tftp {
    fn default() -> Self {
        Tftp {
            enabled: true,
            port: 69,
            max_transfers: 64,
            max_blksize: 1468,
            max_windowsize: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Http {
    pub enabled: bool,
    pub port: u16,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            enabled: true,
            port: 80,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Ra {
    pub enabled: bool,
    /// Seconds between unsolicited advertisements.
    pub interval: u32,
}

impl Default for Ra {
    fn default() -> Self {
        Ra {
            enabled: true,
            interval: 3,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Dns {
    pub enabled: bool,
    pub port: u16,
    /// Resolvers for names outside the cluster zones, `IP` or `IP:PORT`. Absent: the host's
    /// `/etc/resolv.conf`; empty: no forwarding (such names are refused).
    pub upstreams: Option<Vec<String>>,
    /// Addresses allowed to transfer the cluster zones (AXFR over TCP).
    pub axfr_allow: Vec<IpAddr>,
    /// Networks allowed to use the forwarder besides the store's networks.
    pub forward_from: Vec<Ipv4Net>,
    /// Domain of networks that have none.
    pub domain: String,
    /// The appliance's own name in every cluster zone.
    pub hostname: String,
    pub upstream_timeout_ms: u64,
    pub max_in_flight: usize,
    pub max_tcp: usize,
    pub tcp_idle_secs: u64,
    pub cache_entries: usize,
}

impl Default for Dns {
    fn default() -> Self {
        let d = crate::dns::serve::Settings::default();
        Dns {
            enabled: true,
            port: d.port,
            upstreams: None,
            axfr_allow: d.axfr_allow,
            forward_from: d.forward_from,
            domain: d.domain,
            hostname: d.hostname,
            upstream_timeout_ms: d.upstream_timeout.as_millis() as u64,
            max_in_flight: d.max_in_flight,
            max_tcp: d.max_tcp,
            tcp_idle_secs: d.tcp_idle.as_secs(),
            cache_entries: d.cache_entries,
        }
    }
}

impl Dns {
    /// The configured upstreams (validated by [`Config::parse`]); `None` when absent.
    pub fn upstream_addrs(&self) -> Option<Vec<SocketAddr>> {
        self.upstreams
            .as_ref()
            .map(|list| list.iter().filter_map(|u| parse_upstream(u)).collect())
    }

    /// The DNS server's settings on an appliance with addresses `own` and store id `member`:
    /// upstreams from the config, else from the host's resolv.conf without `own`.
    pub fn settings(&self, own: &[Ipv4Addr], member: u64) -> crate::dns::serve::Settings {
        let own_ips: Vec<IpAddr> = own.iter().copied().map(IpAddr::V4).collect();
        crate::dns::serve::Settings {
            port: self.port,
            upstreams: self
                .upstream_addrs()
                .unwrap_or_else(|| crate::dns::serve::system_upstreams(&own_ips)),
            axfr_allow: self.axfr_allow.clone(),
            forward_from: self.forward_from.clone(),
            hostname: self.hostname.clone(),
            domain: self.domain.clone(),
            addrs: own.to_vec(),
            member,
            upstream_timeout: Duration::from_millis(self.upstream_timeout_ms),
            max_in_flight: self.max_in_flight,
            max_tcp: self.max_tcp,
            tcp_idle: Duration::from_secs(self.tcp_idle_secs),
            cache_entries: self.cache_entries,
        }
    }
}

/// `IP` (port 53) or `IP:PORT` / `[IPv6]:PORT`.
fn parse_upstream(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

/// The NFSv4 server (`[nfs]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Nfs {
    pub enabled: bool,
    pub port: u16,
    /// Seconds a client's lease lasts without renewal.
    pub lease_secs: u32,
    /// Seconds after a restart during which clients of the previous run reclaim their state
    /// (only when the previous run had clients).
    pub grace_secs: u32,
    pub max_clients: usize,
    pub max_connections: usize,
    /// Open and lock states per client.
    pub max_states_per_client: usize,
    /// Slots per NFSv4.1 session.
    pub max_slots: u32,
}

impl Default for Nfs {
    fn default() -> Self {
        let l = crate::nfs::state::Limits::default();
        Nfs {
            enabled: false,
            port: 2049,
            lease_secs: l.lease.as_secs() as u32,
            grace_secs: l.lease.as_secs() as u32,
            max_clients: l.max_clients,
            max_connections: crate::nfs::serve::Settings::default().max_connections,
            max_states_per_client: l.max_states_per_client,
            max_slots: l.max_slots,
        }
    }
}

impl Nfs {
    /// The core's limits.
    pub fn limits(&self) -> crate::nfs::state::Limits {
        crate::nfs::state::Limits {
            max_clients: self.max_clients,
            max_states_per_client: self.max_states_per_client,
            max_slots: self.max_slots,
            lease: Duration::from_secs(u64::from(self.lease_secs)),
            ..crate::nfs::state::Limits::default()
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Ntp {
    pub enabled: bool,
    pub port: u16,
    /// Announce the host clock as the cluster's time reference even when it is not
    /// synchronised (isolated clusters).
    pub local_reference: bool,
}

impl Default for Ntp {
    fn default() -> Self {
        let d = crate::ntp::serve::Settings::default();
        Ntp {
            enabled: true,
            port: d.port,
            local_reference: d.local_reference,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Pool {
    /// Take part in a pool once the state directory has a cluster key.
    pub enabled: bool,
    /// UDP port of pool traffic.
    pub port: u16,
    /// The address other members reach this one at; default: the first interface's address.
    pub address: Option<Ipv4Addr>,
    /// Members to join through (`IP` or `IP:PORT`), besides those `drover pool join` recorded.
    pub seeds: Vec<String>,
    /// The floating address one live member holds and nodes mount their NFS root from
    /// (`pool::floating`); a free address of the subnet of one of `interfaces`.
    pub service_address: Option<Ipv4Addr>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            enabled: true,
            port: crate::pool::serve::DEFAULT_PORT,
            address: None,
            seeds: Vec::new(),
            service_address: None,
        }
    }
}

/// IPMI power control: session limits, pacing, the server's power-state poller.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Power {
    /// BMC sessions at once (CLI and poller each).
    pub max_sessions: usize,
    /// Nodes per second that `drover power on` (and `cycle`) starts.
    pub on_rate: f64,
    /// Milliseconds to wait for a BMC's answer before sending again.
    pub timeout_ms: u64,
    /// Retransmissions before a BMC counts as timed out.
    pub retries: u32,
    /// RMCP+ cipher suites to try, in order (3 and 17 are supported).
    pub cipher_suites: Vec<u8>,
    /// "auto" (RMCP+ when the BMC offers it, else IPMI v1.5), "2.0" or "1.5".
    pub ipmi_version: String,
    /// Seconds between power-state polls of `drover serve`; 0 switches the poller off.
    pub poll_interval: u32,
    /// BMC sessions per second that the poller starts at most.
    pub poll_rate: f64,
    /// Seconds `drover serve` keeps an unused BMC session open before closing it; 0 closes
    /// each session after use. Below the BMCs' inactivity timeout (ipmi_sim 30 s, the IPMI
    /// spec 60 s), so a session is closed by drover, not dropped by the BMC.
    pub session_idle: u32,
}

impl Default for Power {
    fn default() -> Self {
        Power {
            max_sessions: 32,
            on_rate: 10.0,
            timeout_ms: 1000,
            retries: 3,
            cipher_suites: vec![3, 17],
            ipmi_version: "auto".into(),
            poll_interval: 15,
            poll_rate: 20.0,
            session_idle: 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: `{key}` {problem}")]
    Invalid {
        path: String,
        key: &'static str,
        problem: String,
    },
}

impl Config {
    /// The embedded default.
    pub fn embedded() -> Config {
        // The embedded default is checked by a unit test; failing here is a build defect.
        Config::parse(DEFAULT_TOML, "embedded default").expect("embedded default config is valid")
    }

    /// Reads and validates `path`, or the embedded default when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Ok(Config::embedded()),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                Config::parse(&text, &p.display().to_string())
            }
        }
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |key: &'static str, problem: String| ConfigError::Invalid {
            path: origin.to_string(),
            key,
            problem,
        };
        for name in &self.interfaces {
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                return Err(bad(
                    "interfaces",
                    format!("has an invalid interface name {name:?}"),
                ));
            }
        }
        if self.dhcp.port == 0 || self.dhcp.client_port == 0 {
            return Err(bad(
                "dhcp.port",
                "and dhcp.client-port must not be 0".into(),
            ));
        }
        if self.dhcp.lease_time < 60 {
            return Err(bad(
                "dhcp.lease-time",
                format!("is {} s; the minimum is 60", self.dhcp.lease_time),
            ));
        }
        if !["ipxe.efi", "snponly.efi"].contains(&self.dhcp.uefi_loader.as_str()) {
            return Err(bad(
                "dhcp.uefi-loader",
                format!(
                    "is {:?}; expected \"ipxe.efi\" or \"snponly.efi\"",
                    self.dhcp.uefi_loader
                ),
            ));
        }
        if self.tftp.port == 0 {
            return Err(bad("tftp.port", "must not be 0".into()));
        }
        if !(8..=65464).contains(&self.tftp.max_blksize) {
            return Err(bad(
                "tftp.max-blksize",
                format!("is {}; RFC 2348 allows 8 to 65464", self.tftp.max_blksize),
            ));
        }
        if !(1..=65535).contains(&self.tftp.max_windowsize) {
            return Err(bad("tftp.max-windowsize", "must be at least 1".into()));
        }
        if self.tftp.max_transfers == 0 {
            return Err(bad("tftp.max-transfers", "must be at least 1".into()));
        }
        if self.http.port == 0 {
            return Err(bad("http.port", "must not be 0".into()));
        }
        if self.ra.interval == 0 {
            return Err(bad("ra.interval", "must be at least 1 second".into()));
        }
        if self.dns.port == 0 {
            return Err(bad("dns.port", "must not be 0".into()));
        }
        if self.nfs.port == 0 {
            return Err(bad("nfs.port", "must not be 0".into()));
        }
        if !(10..=3600).contains(&self.nfs.lease_secs) {
            return Err(bad(
                "nfs.lease-secs",
                format!("is {}; expected 10 to 3600", self.nfs.lease_secs),
            ));
        }
        if self.nfs.grace_secs > 3600 {
            return Err(bad("nfs.grace-secs", "must be at most 3600".into()));
        }
        if self.nfs.max_clients == 0 || self.nfs.max_connections == 0 {
            return Err(bad(
                "nfs.max-clients",
                "and nfs.max-connections must be at least 1".into(),
            ));
        }
        if self.nfs.max_states_per_client == 0 {
            return Err(bad(
                "nfs.max-states-per-client",
                "must be at least 1".into(),
            ));
        }
        if !(1..=1024).contains(&self.nfs.max_slots) {
            return Err(bad("nfs.max-slots", "must be 1 to 1024".into()));
        }
        for u in self.dns.upstreams.iter().flatten() {
            if parse_upstream(u).is_none() {
                return Err(bad(
                    "dns.upstreams",
                    format!("has {u:?}, which is neither IP nor IP:PORT"),
                ));
            }
        }
        if crate::dns::core::domain_name(&self.dns.domain).is_none() {
            return Err(bad(
                "dns.domain",
                format!("is {:?}, not a domain name", self.dns.domain),
            ));
        }
        if crate::admin::check_name(&self.dns.hostname).is_err() {
            return Err(bad(
                "dns.hostname",
                format!(
                    "is {:?}; expected one label of letters, digits and '-'",
                    self.dns.hostname
                ),
            ));
        }
        let positive = [
            ("dns.upstream-timeout-ms", self.dns.upstream_timeout_ms),
            ("dns.max-in-flight", self.dns.max_in_flight as u64),
            ("dns.max-tcp", self.dns.max_tcp as u64),
            ("dns.tcp-idle-secs", self.dns.tcp_idle_secs),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(bad(key, "must be at least 1".into()));
        }
        if self.ntp.port == 0 {
            return Err(bad("ntp.port", "must not be 0".into()));
        }
        if self.pool.port == 0 {
            return Err(bad("pool.port", "must not be 0".into()));
        }
        if let Some(s) = self
            .pool
            .seeds
            .iter()
            .find(|s| crate::pool::serve::parse_seed(s).is_none())
        {
            return Err(bad(
                "pool.seeds",
                format!("has {s:?}, which is neither IP nor IP:PORT"),
            ));
        }
        if let Some(a) = self.pool.service_address {
            if a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast() {
                return Err(bad(
                    "pool.service-address",
                    format!("is {a}; expected a unicast address of a served subnet"),
                ));
            }
            if Some(a) == self.pool.address {
                return Err(bad(
                    "pool.service-address",
                    format!("is {a}, the member's own `pool.address`; it must be a free address"),
                ));
            }
        }
        let p = &self.power;
        if !(1..=1024).contains(&p.max_sessions) {
            return Err(bad("power.max-sessions", "must be 1 to 1024".into()));
        }
        if !(p.on_rate >= 0.0 && p.on_rate.is_finite()) {
            return Err(bad("power.on-rate", "must be 0 (no pacing) or more".into()));
        }
        if !(p.poll_rate > 0.0 && p.poll_rate.is_finite()) {
            return Err(bad("power.poll-rate", "must be more than 0".into()));
        }
        if p.session_idle > 600 {
            return Err(bad("power.session-idle", "must be at most 600".into()));
        }
        if !(50..=60_000).contains(&p.timeout_ms) {
            return Err(bad("power.timeout-ms", "must be 50 to 60000".into()));
        }
        if p.retries > 10 {
            return Err(bad("power.retries", "must be at most 10".into()));
        }
        if !["auto", "2.0", "1.5"].contains(&p.ipmi_version.as_str()) {
            return Err(bad(
                "power.ipmi-version",
                format!(
                    "is {:?}; expected \"auto\", \"2.0\" or \"1.5\"",
                    p.ipmi_version
                ),
            ));
        }
        if p.cipher_suites.is_empty() || p.cipher_suites.iter().any(|s| ![3, 17].contains(s)) {
            return Err(bad(
                "power.cipher-suites",
                format!("is {:?}; supported suites are 3 and 17", p.cipher_suites),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid_and_matches_the_code_defaults() {
        let c = Config::embedded();
        assert_eq!(c.dhcp.port, Dhcp::default().port);
        assert_eq!(c.dhcp.lease_time, Dhcp::default().lease_time);
        assert_eq!(c.tftp.max_blksize, Tftp::default().max_blksize);
        assert_eq!(c.http.port, Http::default().port);
        assert_eq!(c.ra.interval, Ra::default().interval);
        assert_eq!(c.dns.port, 53);
        assert!(c.dns.upstreams.is_none());
        assert_eq!(c.dns.domain, "cluster");
        assert_eq!(c.ntp.port, 123);
        assert!(!c.ntp.local_reference);
        assert_eq!(c.power.max_sessions, Power::default().max_sessions);
        assert_eq!(c.power.on_rate, Power::default().on_rate);
        assert_eq!(c.power.cipher_suites, Power::default().cipher_suites);
        assert_eq!(c.power.poll_interval, Power::default().poll_interval);
        assert!(c.interfaces.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        let e = Config::parse("[dhcp]\nlease-tme = 5\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lease-tme"), "{e}");
        let e = Config::parse("[dhcp]\nlease-time = 5\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("dhcp.lease-time"), "{e}");
        let e = Config::parse("[tftp]\nmax-blksize = 70000\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max-blksize"), "{e}");
        let e = Config::parse("bogus = 1\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = Config::parse("[dns]\nupstreams = [\"resolver\"]\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("dns.upstreams"), "{e}");
        let e = Config::parse("[dns]\nforward-from = [\"10.0.0.0/33\"]\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("forward-from"), "{e}");
        let e = Config::parse("[ntp]\nport = 0\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ntp.port"), "{e}");
        let c = Config::parse(
            "[dns]\nupstreams = [\"192.0.2.1\", \"192.0.2.2:5353\"]\n",
            "f.toml",
        )
        .unwrap();
        assert_eq!(
            c.dns.upstream_addrs().unwrap(),
            vec![
                "192.0.2.1:53".parse().unwrap(),
                "192.0.2.2:5353".parse().unwrap()
            ]
        );
        let e = Config::parse("[power]\nsession-idle = 601\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("power.session-idle"), "{e}");
        let e = Config::parse("[power]\ncipher-suites = [1]\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("power.cipher-suites"), "{e}");
        for bad in ["0.0.0.0", "127.0.0.9", "224.0.0.1", "255.255.255.255"] {
            let e = Config::parse(&format!("[pool]\nservice-address = \"{bad}\"\n"), "f.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains("pool.service-address"), "{e}");
        }
        let e = Config::parse("[pool]\nservice-address = \"10.0.0\"\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("service-address"), "{e}");
        let c = Config::parse("[pool]\nservice-address = \"10.0.0.9\"\n", "f.toml").unwrap();
        assert_eq!(c.pool.service_address, Some(Ipv4Addr::new(10, 0, 0, 9)));
        let ok = Config::parse("interfaces = [\"br0\"]\n[http]\nport = 8080\n", "f.toml").unwrap();
        assert_eq!(ok.http.port, 8080);
        assert_eq!(ok.dhcp.port, 67);
    }
}
