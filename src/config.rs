//! Start-up settings: one TOML file, parsed into typed values, with an embedded default
//! (`assets/default.toml`) so that `drover serve` needs no file at all.
//!
//! Only what a server needs to start lives here (interfaces, ports, limits); fleet data
//! (nodes, networks, images) lives in the store. Values are parsed, not validated later:
//! addresses, seeds and upstreams are socket addresses, the UEFI loader and the IPMI version
//! are enums, durations are [`Duration`]s. Unknown keys are errors, and every error names
//! the key. `drover check-config FILE` runs the same parser.
//!
//! Run-time settings (`drover config set KEY VALUE`, kept in the store by `crate::overrides`)
//! are laid over the file's table here ([`Config::layered`]) and go through the same parser
//! and checks, so a value the file would refuse is refused at `config set` too, naming the
//! key. [`key_scope`] says which keys belong to one member (its interfaces and addresses)
//! and [`key_takes`] which ones a running server applies without a restart.
//!
//! Not here: what a service makes of these values (`crate::serve::settings` maps them to
//! each service's settings, and reads the host's resolv.conf when `dns.upstreams` is
//! absent), and any file but the one given to [`Config::load`]. This module imports nothing
//! of the crate but plain data types of `store::model`.

use crate::store::model::{valid_name, Ipv4Net};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The embedded default configuration.
pub const DEFAULT_TOML: &str = include_str!("../assets/default.toml");

/// The pool's UDP port when `pool.port` is not set, and of seeds given without a port.
pub const DEFAULT_POOL_PORT: u16 = 7946;
/// The DNS port of upstreams given without a port.
const DNS_PORT: u16 = 53;

/// The file's sections; a run-time key is `interfaces` or `SECTION.FIELD`.
pub const SECTIONS: [&str; 9] = [
    "dhcp", "tftp", "http", "ra", "dns", "ntp", "nfs", "pool", "power",
];

/// Keys that belong to one member (what it is plugged into and reached at); every other key
/// is pool-wide.
const MEMBER_KEYS: [&str; 5] = [
    "interfaces",
    "pool.address",
    "http.admin-address",
    "http.tls-cert",
    "http.tls-key",
];

/// Sections whose services a running server restarts alone, interface by interface, when
/// their settings change (`crate::serve` compares each service's settings, so a key of
/// another section that feeds them, such as `dns.domain` into DHCP, restarts them too).
const LIVE_SECTIONS: [&str; 5] = ["dhcp", "tftp", "dns", "ntp", "ra"];

/// Where a run-time setting is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Replicated to every pool member.
    Pool,
    /// This member's own.
    Member,
}

/// When a running `drover serve` follows a changed key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Takes {
    /// Within a second: the services it feeds restart alone.
    Live,
    /// At the next start of `drover serve` (HTTP, NFS, the pool and the power poller hold
    /// sockets, sessions and state that a restart of their own would lose).
    Restart,
}

/// The scope of run-time key `key`, or why it is not one.
pub fn key_scope(key: &str) -> Result<Scope, ConfigError> {
    let known = key == "interfaces"
        || key.split_once('.').is_some_and(|(section, field)| {
            SECTIONS.contains(&section)
                && !field.is_empty()
                && field.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        });
    if !known {
        return Err(ConfigError::UnknownKey {
            key: key.to_string(),
        });
    }
    Ok(match MEMBER_KEYS.contains(&key) {
        true => Scope::Member,
        false => Scope::Pool,
    })
}

/// When a running server follows a change of `key`. `interfaces` is live for the services
/// that [`LIVE_SECTIONS`] names; HTTP and NFS listen on a new interface's address after a
/// restart.
pub fn key_takes(key: &str) -> Takes {
    let section = key.split_once('.').map_or(key, |(s, _)| s);
    match key == "interfaces" || LIVE_SECTIONS.contains(&section) {
        true => Takes::Live,
        false => Takes::Restart,
    }
}

/// A value as typed on the command line: TOML (`false`, `8080`, `["eth0"]`, `"x"`), else the
/// text itself as a string (`snponly.efi`, `10.0.0.1`).
pub fn parse_value(text: &str) -> toml::Value {
    let table = toml::from_str::<toml::Table>(&format!("v = {text}"));
    match table.map(|mut t| (t.len(), t.remove("v"))) {
        Ok((1, Some(v))) => v,
        _ => toml::Value::String(text.to_string()),
    }
}

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
    /// Seconds a lease lasts (a protocol value: option 51 carries seconds).
    pub lease_time: u32,
    pub uefi_loader: UefiLoader,
}

impl Default for Dhcp {
    fn default() -> Self {
        Dhcp {
            enabled: true,
            port: 67,
            client_port: 68,
            lease_time: 3600,
            uefi_loader: UefiLoader::Ipxe,
        }
    }
}

/// The first-stage loader offered to x86-64 UEFI clients (`dhcp.uefi-loader`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum UefiLoader {
    /// `ipxe.efi`: iPXE with its own NIC drivers.
    Ipxe,
    /// `snponly.efi`: iPXE on the firmware's network stack (SNP).
    Snponly,
}

impl UefiLoader {
    /// The file name clients fetch over TFTP.
    pub fn file_name(self) -> &'static str {
        match self {
            UefiLoader::Ipxe => "ipxe.efi",
            UefiLoader::Snponly => "snponly.efi",
        }
    }
}

impl TryFrom<String> for UefiLoader {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "ipxe.efi" => Ok(UefiLoader::Ipxe),
            "snponly.efi" => Ok(UefiLoader::Snponly),
            _ => Err(format!(
                "`dhcp.uefi-loader` is {s:?}; expected \"ipxe.efi\" or \"snponly.efi\""
            )),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Tftp {
    pub enabled: bool,
    pub port: u16,
    pub max_transfers: usize,
    pub max_transfers_per_client: usize,
    pub max_blksize: u16,
    pub max_windowsize: u16,
}

impl Default for Tftp {
    fn default() -> Self {
        Tftp {
            enabled: true,
            port: 69,
            max_transfers: 64,
            max_transfers_per_client: 8,
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
    /// Where the admin reaches the API and page besides the served interfaces'
    /// addresses (`admin-address`): HTTP listens on those and this, never on 0.0.0.0.
    pub admin_address: Ipv4Addr,
    /// HTTPS for the page and API on the same addresses (`https-port`); off when absent.
    pub https_port: Option<u16>,
    /// The admin's certificate chain and key (PEM, `tls-cert`/`tls-key`, both or neither);
    /// without them a self-signed certificate is made in the state directory.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Refuse the API and page over plain HTTP (`api-https-only`); the boot path stays.
    pub api_https_only: bool,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            enabled: true,
            port: 80,
            admin_address: Ipv4Addr::LOCALHOST,
            https_port: None,
            tls_cert: None,
            tls_key: None,
            api_https_only: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Ra {
    pub enabled: bool,
    /// Time between unsolicited advertisements (`interval`, seconds).
    #[serde(deserialize_with = "secs")]
    pub interval: Duration,
}

impl Default for Ra {
    fn default() -> Self {
        Ra {
            enabled: true,
            interval: Duration::from_secs(3),
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
    #[serde(deserialize_with = "upstreams")]
    pub upstreams: Option<Vec<SocketAddr>>,
    /// Addresses allowed to transfer the cluster zones (AXFR over TCP).
    pub axfr_allow: Vec<IpAddr>,
    /// Networks allowed to use the forwarder besides the store's networks.
    pub forward_from: Vec<Ipv4Net>,
    /// Domain of networks that have none.
    pub domain: String,
    /// The appliance's own name in every cluster zone.
    pub hostname: String,
    #[serde(rename = "upstream-timeout-ms", deserialize_with = "millis")]
    pub upstream_timeout: Duration,
    pub max_in_flight: usize,
    pub max_tcp: usize,
    pub max_tcp_per_client: usize,
    #[serde(rename = "tcp-idle-secs", deserialize_with = "secs")]
    pub tcp_idle: Duration,
    pub cache_entries: usize,
}

impl Default for Dns {
    fn default() -> Self {
        Dns {
            enabled: true,
            port: DNS_PORT,
            upstreams: None,
            axfr_allow: Vec::new(),
            // Loopback: a /8 always exists, so this is one network.
            forward_from: Ipv4Net::containing(Ipv4Addr::LOCALHOST, 8)
                .into_iter()
                .collect(),
            domain: "cluster".into(),
            hostname: "drover".into(),
            upstream_timeout: Duration::from_millis(1500),
            max_in_flight: 1024,
            max_tcp: 128,
            max_tcp_per_client: 16,
            tcp_idle: Duration::from_secs(10),
            cache_entries: 10_000,
        }
    }
}

/// `IP` (port 53) or `IP:PORT` / `[IPv6]:PORT`.
fn parse_upstream(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>().ok().or_else(|| {
        s.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, DNS_PORT))
    })
}

fn upstreams<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<SocketAddr>>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    list.iter()
        .map(|u| {
            parse_upstream(u).ok_or_else(|| {
                D::Error::custom(format!(
                    "`dns.upstreams` has {u:?}, which is neither IP nor IP:PORT"
                ))
            })
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// The NFSv4 server (`[nfs]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Nfs {
    pub enabled: bool,
    pub port: u16,
    /// How long a client's lease lasts without renewal (`lease-secs`).
    #[serde(rename = "lease-secs", deserialize_with = "secs")]
    pub lease: Duration,
    /// How long after a restart clients of the previous run may reclaim their state (only
    /// when the previous run had clients; `grace-secs`).
    #[serde(rename = "grace-secs", deserialize_with = "secs")]
    pub grace: Duration,
    pub max_clients: usize,
    /// Client records of one address (`max-clients-per-addr`): a flood of records from one
    /// address takes that address's room only.
    pub max_clients_per_addr: usize,
    pub max_connections: usize,
    /// Open and lock states per client.
    pub max_states_per_client: usize,
    /// Open and lock states of all the clients of one address (`max-states-per-addr`).
    pub max_states_per_addr: usize,
    /// Slots per NFSv4.1 session.
    pub max_slots: u32,
    /// Whether OPEN grants read delegations to clients whose callback path works (a 4.0
    /// callback address that answers CB_NULL, a 4.1 back channel). On by default: the Linux
    /// client's battery (qemu_nfs, 4.0 to 4.2) runs with it. Turn it off for servers whose
    /// exports are changed on the host while clients have them open (no recall for those).
    pub delegations: bool,
}

impl Default for Nfs {
    fn default() -> Self {
        Nfs {
            enabled: false,
            port: 2049,
            lease: Duration::from_secs(90),
            grace: Duration::from_secs(90),
            max_clients: 1024,
            max_clients_per_addr: 16,
            max_connections: 1024,
            max_states_per_client: 4096,
            max_states_per_addr: 8192,
            max_slots: 64,
            delegations: true,
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
        Ntp {
            enabled: true,
            port: 123,
            local_reference: false,
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
    /// Members to join through (`IP` or `IP:PORT`; the port defaults to
    /// [`DEFAULT_POOL_PORT`]), besides those `drover pool join` recorded.
    #[serde(deserialize_with = "seeds")]
    pub seeds: Vec<SocketAddrV4>,
    /// The floating address one live member holds and nodes mount their NFS root from
    /// (`pool::floating`); a free address of the subnet of one of `interfaces`.
    pub service_address: Option<Ipv4Addr>,
}

impl Default for Pool {
    fn default() -> Self {
        Pool {
            enabled: true,
            port: DEFAULT_POOL_PORT,
            address: None,
            seeds: Vec::new(),
            service_address: None,
        }
    }
}

fn seeds<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SocketAddrV4>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    list.iter()
        .map(|s| {
            let t = s.trim();
            t.parse::<SocketAddrV4>()
                .ok()
                .or_else(|| Some(SocketAddrV4::new(t.parse().ok()?, DEFAULT_POOL_PORT)))
                .ok_or_else(|| {
                    D::Error::custom(format!(
                        "`pool.seeds` has {s:?}, which is neither IP nor IP:PORT"
                    ))
                })
        })
        .collect()
}

/// IPMI power control: session limits, pacing, the server's power-state poller.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Power {
    /// BMC sessions at once (CLI and poller each).
    pub max_sessions: usize,
    /// Nodes per second that `drover power on` (and `cycle`) starts.
    pub on_rate: f64,
    /// How long to wait for a BMC's answer before sending again (`timeout-ms`).
    #[serde(rename = "timeout-ms", deserialize_with = "millis")]
    pub timeout: Duration,
    /// Retransmissions before a BMC counts as timed out.
    pub retries: u32,
    /// RMCP+ cipher suites to try, in order (3 and 17 are supported); nothing else is ever
    /// negotiated, so this is also the minimum.
    pub cipher_suites: Vec<u8>,
    pub ipmi_version: IpmiVersion,
    /// Time between power-state polls of `drover serve`; zero switches the poller off.
    #[serde(deserialize_with = "secs")]
    pub poll_interval: Duration,
    /// BMC sessions per second that the poller starts at most.
    pub poll_rate: f64,
    /// How long `drover serve` keeps an unused BMC session open before closing it; zero
    /// closes each session after use. Below the BMCs' inactivity timeout (ipmi_sim 30 s,
    /// the IPMI spec 60 s), so a session is closed by drover, not dropped by the BMC.
    #[serde(deserialize_with = "secs")]
    pub session_idle: Duration,
}

impl Default for Power {
    fn default() -> Self {
        Power {
            max_sessions: 32,
            on_rate: 10.0,
            timeout: Duration::from_millis(1000),
            retries: 3,
            cipher_suites: vec![3, 17],
            ipmi_version: IpmiVersion::Auto,
            poll_interval: Duration::from_secs(15),
            poll_rate: 20.0,
            session_idle: Duration::from_secs(20),
        }
    }
}

/// Which IPMI LAN protocol to speak to BMCs (`power.ipmi-version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum IpmiVersion {
    /// `"auto"`: RMCP+ (IPMI v2.0); a BMC that offers only IPMI v1.5 is reported as such,
    /// never talked to with it (its capabilities reply is unauthenticated and can be forged).
    Auto,
    /// `"2.0"`: RMCP+ only.
    V20,
    /// `"1.5"`: IPMI v1.5 only.
    V15,
}

impl TryFrom<String> for IpmiVersion {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "auto" => Ok(IpmiVersion::Auto),
            "2.0" => Ok(IpmiVersion::V20),
            "1.5" => Ok(IpmiVersion::V15),
            _ => Err(format!(
                "`power.ipmi-version` is {s:?}; expected \"auto\", \"2.0\" or \"1.5\""
            )),
        }
    }
}

/// Sets run-time key `key` in `table` (see [`key_scope`]).
fn lay(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), ConfigError> {
    key_scope(key)?;
    let Some((section, field)) = key.split_once('.') else {
        table.insert(key.to_string(), value);
        return Ok(());
    };
    let entry = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match entry {
        toml::Value::Table(t) => {
            t.insert(field.to_string(), value);
            Ok(())
        }
        // A base that parsed as a configuration has tables for its sections.
        _ => Err(ConfigError::UnknownKey {
            key: key.to_string(),
        }),
    }
}

/// A duration written as whole seconds.
fn secs<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_secs)
}

/// A duration written as whole milliseconds.
fn millis<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    u64::deserialize(d).map(Duration::from_millis)
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong type or form (the message names
    /// the key and its line).
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: `{key}` {problem}")]
    Invalid {
        path: String,
        key: &'static str,
        problem: String,
    },
    #[error(
        "`{key}` is not a setting: expected `interfaces` or SECTION.KEY, SECTION one of \
         dhcp, tftp, http, ra, dns, ntp, nfs, pool, power"
    )]
    UnknownKey { key: String },
    /// A run-time value of the wrong type or form, or an unknown field.
    #[error("{path}: `{key}`: {message}")]
    Value {
        path: String,
        key: String,
        message: String,
    },
}

impl Config {
    /// The embedded default.
    pub fn embedded() -> Config {
        // The embedded default is checked by a unit test; failing here is a build defect.
        Config::parse(DEFAULT_TOML, "embedded default").expect("embedded default config is valid")
    }

    /// Reads and parses `path`, or the embedded default when `path` is `None`.
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

    /// Parses TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.check_ranges(origin)?;
        Ok(config)
    }

    /// The table of `text` (TOML), after checking that it parses as a configuration.
    pub fn table(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
        Config::parse(text, origin)?;
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// `base` with `overrides` laid over it in order (a later one wins), parsed and checked
    /// as a file is. An error of type or form names the first override that has it.
    pub fn layered(
        base: &toml::Table,
        overrides: &[(String, toml::Value)],
        origin: &str,
    ) -> Result<Config, ConfigError> {
        let mut table = base.clone();
        for (key, value) in overrides {
            lay(&mut table, key, value.clone())?;
        }
        let config = match Config::deserialize(toml::Value::Table(table)) {
            Ok(c) => c,
            Err(e) => {
                // Which override brings the error: each alone over the base.
                for (key, value) in overrides {
                    let mut alone = base.clone();
                    lay(&mut alone, key, value.clone())?;
                    if let Err(e) = Config::deserialize(toml::Value::Table(alone)) {
                        return Err(ConfigError::Value {
                            path: origin.to_string(),
                            key: key.clone(),
                            message: e.to_string().trim_end().to_string(),
                        });
                    }
                }
                return Err(ConfigError::Parse {
                    path: origin.to_string(),
                    message: e.to_string().trim_end().to_string(),
                });
            }
        };
        config.check_ranges(origin)?;
        Ok(config)
    }

    /// The limits that the types do not carry.
    fn check_ranges(&self, origin: &str) -> Result<(), ConfigError> {
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
        if self.http.https_port == Some(0) || self.http.https_port == Some(self.http.port) {
            return Err(bad(
                "http.https-port",
                "must not be 0 nor the same as http.port".into(),
            ));
        }
        if self.http.tls_cert.is_some() != self.http.tls_key.is_some() {
            return Err(bad(
                "http.tls-cert",
                "and http.tls-key go together: give both or neither".into(),
            ));
        }
        if self.http.api_https_only && self.http.https_port.is_none() {
            return Err(bad(
                "http.api-https-only",
                "needs http.https-port (else the API would be nowhere)".into(),
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
        if self.tftp.max_transfers_per_client == 0 {
            return Err(bad(
                "tftp.max-transfers-per-client",
                "must be at least 1".into(),
            ));
        }
        if self.http.port == 0 {
            return Err(bad("http.port", "must not be 0".into()));
        }
        if self.ra.interval.is_zero() {
            return Err(bad("ra.interval", "must be at least 1 second".into()));
        }
        if self.dns.port == 0 {
            return Err(bad("dns.port", "must not be 0".into()));
        }
        if self.nfs.port == 0 {
            return Err(bad("nfs.port", "must not be 0".into()));
        }
        if !(10..=3600).contains(&self.nfs.lease.as_secs()) {
            return Err(bad(
                "nfs.lease-secs",
                format!("is {}; expected 10 to 3600", self.nfs.lease.as_secs()),
            ));
        }
        if self.nfs.grace.as_secs() > 3600 {
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
        if !(1..=self.nfs.max_clients).contains(&self.nfs.max_clients_per_addr) {
            return Err(bad(
                "nfs.max-clients-per-addr",
                format!(
                    "is {}; expected 1 to nfs.max-clients ({})",
                    self.nfs.max_clients_per_addr, self.nfs.max_clients
                ),
            ));
        }
        if self.nfs.max_states_per_addr < self.nfs.max_states_per_client {
            return Err(bad(
                "nfs.max-states-per-addr",
                format!(
                    "is {}; it must be at least nfs.max-states-per-client ({})",
                    self.nfs.max_states_per_addr, self.nfs.max_states_per_client
                ),
            ));
        }
        if !(1..=1024).contains(&self.nfs.max_slots) {
            return Err(bad("nfs.max-slots", "must be 1 to 1024".into()));
        }
        let domain = hickory_proto::rr::Name::from_ascii(self.dns.domain.trim_end_matches('.'));
        if domain.map_or(true, |d| d.is_root()) {
            return Err(bad(
                "dns.domain",
                format!("is {:?}, not a domain name", self.dns.domain),
            ));
        }
        if !valid_name(&self.dns.hostname) {
            return Err(bad(
                "dns.hostname",
                format!(
                    "is {:?}; expected one label of letters, digits and '-'",
                    self.dns.hostname
                ),
            ));
        }
        let positive = [
            (
                "dns.upstream-timeout-ms",
                self.dns.upstream_timeout.as_millis() as u64,
            ),
            ("dns.max-in-flight", self.dns.max_in_flight as u64),
            ("dns.max-tcp", self.dns.max_tcp as u64),
            ("dns.max-tcp-per-client", self.dns.max_tcp_per_client as u64),
            ("dns.tcp-idle-secs", self.dns.tcp_idle.as_secs()),
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
        if p.session_idle.as_secs() > 600 {
            return Err(bad("power.session-idle", "must be at most 600".into()));
        }
        if !(50..=60_000).contains(&p.timeout.as_millis()) {
            return Err(bad("power.timeout-ms", "must be 50 to 60000".into()));
        }
        if p.retries > 10 {
            return Err(bad("power.retries", "must be at most 10".into()));
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
        // Every key of the embedded file holds the value the code uses without it.
        let empty = Config::parse("", "empty").unwrap();
        assert_eq!(format!("{c:?}"), format!("{empty:?}"));
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
        for (text, key) in [
            ("[http]\ntls-cert = \"/c.pem\"\n", "http.tls-cert"),
            ("[http]\napi-https-only = true\n", "http.api-https-only"),
            (
                "[http]\nport = 8080\nhttps-port = 8080\n",
                "http.https-port",
            ),
        ] {
            let e = Config::parse(text, "f.toml").unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
        let c = Config::parse(
            "[dns]\nupstreams = [\"192.0.2.1\", \"192.0.2.2:5353\"]\n",
            "f.toml",
        )
        .unwrap();
        assert_eq!(
            c.dns.upstreams.unwrap(),
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
        let e = Config::parse("[dhcp]\nuefi-loader = \"grub.efi\"\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("dhcp.uefi-loader") && e.contains("snponly.efi"),
            "{e}"
        );
        let e = Config::parse("[power]\nipmi-version = \"3\"\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("power.ipmi-version"), "{e}");
        let e = Config::parse("[pool]\nseeds = [\"host:1\"]\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pool.seeds"), "{e}");
        let e = Config::parse("[nfs]\nlease-secs = 5\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nfs.lease-secs"), "{e}");
        for (toml, key) in [
            (
                "[nfs]\nmax-clients-per-addr = 0\n",
                "nfs.max-clients-per-addr",
            ),
            (
                "[nfs]\nmax-clients = 8\nmax-clients-per-addr = 9\n",
                "nfs.max-clients-per-addr",
            ),
            (
                "[nfs]\nmax-states-per-client = 100\nmax-states-per-addr = 99\n",
                "nfs.max-states-per-addr",
            ),
        ] {
            let e = Config::parse(toml, "f.toml").unwrap_err().to_string();
            assert!(e.contains(key), "{toml}: {e}");
        }
        let ok = Config::parse("interfaces = [\"br0\"]\n[http]\nport = 8080\n", "f.toml").unwrap();
        assert_eq!(ok.http.port, 8080);
        assert_eq!(ok.dhcp.port, 67);
    }

    #[test]
    fn values_are_typed_at_load() {
        let c = Config::parse(
            "[dhcp]\nuefi-loader = \"snponly.efi\"\n\
             [pool]\nseeds = [\" 10.0.0.1 \", \"10.0.0.2:9000\"]\n\
             [power]\nipmi-version = \"1.5\"\ntimeout-ms = 250\n[nfs]\ngrace-secs = 0\n",
            "f.toml",
        )
        .unwrap();
        assert_eq!(c.dhcp.uefi_loader, UefiLoader::Snponly);
        assert_eq!(c.dhcp.uefi_loader.file_name(), "snponly.efi");
        assert_eq!(
            c.pool.seeds,
            vec![
                SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), DEFAULT_POOL_PORT),
                SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 9000),
            ]
        );
        assert_eq!(c.power.ipmi_version, IpmiVersion::V15);
        assert_eq!(c.power.timeout, Duration::from_millis(250));
        assert_eq!(c.nfs.grace, Duration::ZERO);
        assert_eq!(c.nfs.lease, Duration::from_secs(90));
        let c = Config::parse(
            "[nfs]\nmax-clients-per-addr = 4\nmax-states-per-addr = 5000\n",
            "f.toml",
        )
        .unwrap();
        assert_eq!(
            (c.nfs.max_clients_per_addr, c.nfs.max_states_per_addr),
            (4, 5000)
        );
    }

    #[test]
    fn run_time_keys_are_layered_and_checked_as_the_file_is() {
        let base = Config::table("interfaces = [\"eth0\"]\n[dns]\nport = 5353\n", "f").unwrap();
        let over = |k: &str, v: &str| (k.to_string(), parse_value(v));
        let c = Config::layered(&base, &[over("dns.enabled", "false")], "f").unwrap();
        assert!(!c.dns.enabled);
        assert_eq!(c.dns.port, 5353, "the file's value stays");
        // A later override wins; a member's list replaces the file's.
        let c = Config::layered(
            &base,
            &[
                over("dns.port", "53"),
                over("dns.port", "54"),
                over("interfaces", "[\"a\", \"b\"]"),
            ],
            "f",
        )
        .unwrap();
        assert_eq!((c.dns.port, c.interfaces.len()), (54, 2));
        assert_eq!(
            parse_value("snponly.efi"),
            toml::Value::String("snponly.efi".into())
        );
        let c = Config::layered(&base, &[over("dhcp.uefi-loader", "snponly.efi")], "f").unwrap();
        assert_eq!(c.dhcp.uefi_loader, UefiLoader::Snponly);
        for (key, value) in [
            ("dns.enabled", "maybe"),
            ("dns.enabeld", "false"),
            ("dhcp.lease-time", "5"),
            ("tftp.max-blksize", "70000"),
            ("dhcp.uefi-loader", "grub.efi"),
        ] {
            let e = Config::layered(&base, &[over("ntp.port", "124"), over(key, value)], "f")
                .unwrap_err()
                .to_string();
            let named = key.split_once('.').unwrap().1;
            assert!(e.contains(named), "{key} = {value}: {e}");
            assert!(!e.contains("ntp.port"), "{key} = {value}: {e}");
        }
        for bad in ["dns", "bogus.enabled", "dns.", "dns.Port", "interfaces.x"] {
            assert!(key_scope(bad).is_err(), "{bad}");
        }
        assert_eq!(key_scope("interfaces").unwrap(), Scope::Member);
        assert_eq!(key_scope("dns.upstreams").unwrap(), Scope::Pool);
        // The floating service address is one for the whole pool (`pool::floating`).
        assert_eq!(key_scope("pool.service-address").unwrap(), Scope::Pool);
        let set = Config::layered(&base, &[over("pool.service-address", "10.0.0.9")], "f");
        assert_eq!(
            set.map(|c| c.pool.service_address).ok().flatten(),
            Some(Ipv4Addr::new(10, 0, 0, 9))
        );
        assert_eq!(key_takes("dns.enabled"), Takes::Live);
        assert_eq!(key_takes("interfaces"), Takes::Live);
        assert_eq!(key_takes("http.port"), Takes::Restart);
        // Cross-key checks see every override at once.
        let both = [
            over("nfs.max-clients", "8"),
            over("nfs.max-clients-per-addr", "4"),
        ];
        assert!(Config::layered(&base, &both, "f").is_ok());
        let e = Config::layered(&base, &both[..1], "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nfs.max-clients-per-addr"), "{e}");
    }
}
