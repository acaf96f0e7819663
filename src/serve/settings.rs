//! The one place where the configuration becomes each service's settings: [`Settings::new`]
//! maps a [`Config`] and the served interfaces to what every `start_<service>` of
//! `crate::serve` needs, so a service never reads the configuration itself.
//!
//! Host facts enter here too: the interfaces' addresses (DHCP boot URLs, DNS records, pool
//! address) and, when `dns.upstreams` is absent, the host's `/etc/resolv.conf`
//! ([`dns`], which `drover dns check` uses as well). The CLI's power commands take
//! [`fan_out`].
//!
//! Not here: sockets, tasks and store handles (`crate::serve`), and parsing (`crate::config`).

use crate::api::Service as Health;
use crate::config::{Config, IpmiVersion};
use crate::ipmi::cache::SessionCache;
use crate::ipmi::client::Dial;
use crate::ipmi::core::{LanVersion, Limits as IpmiLimits};
use crate::ipmi::crypto::Suite;
use crate::ipmi::power::FanOut;
use crate::net::Interface;
use crate::pool::summary;
use anyhow::{Context as _, Result};
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Every service's settings for one run of `drover serve`; `None` or empty: the service is
/// off.
pub struct Settings {
    /// One per served interface, in the order of the interfaces.
    pub dhcp: Vec<crate::dhcp::serve::Settings>,
    pub tftp: Option<Tftp>,
    pub http: Option<Http>,
    pub dns: Option<crate::dns::serve::Settings>,
    pub ntp: Option<crate::ntp::serve::Settings>,
    pub nfs: Option<Nfs>,
    /// Time between router advertisements.
    pub ra: Option<Duration>,
    pub pool: Option<crate::pool::serve::Settings>,
    /// The pool's floating service address (`pool.service-address`).
    pub service_address: Option<Ipv4Addr>,
    pub power: Power,
    /// What `/api/v1/health` says about each service.
    pub health: Vec<Health>,
}

/// The TFTP servers' port and limits.
pub struct Tftp {
    pub port: u16,
    pub limits: crate::tftp::serve::Limits,
}

/// What the HTTP server needs to know of the other services.
pub struct Http {
    pub port: u16,
    /// The served interfaces' addresses, then the admin address (no duplicates).
    pub listen: Vec<Ipv4Addr>,
    /// Where nodes mount an NFS root: the NFS port, and the service address if any.
    pub nfs_port: u16,
    pub nfs_host: Option<Ipv4Addr>,
    /// Whether boot scripts announce this member as name and time server.
    pub dns: bool,
    pub ntp: bool,
    /// HTTPS for the page and API on the same addresses (`[http] https-port`).
    pub https: Option<Https>,
}

/// Where HTTPS listens and with which certificate.
pub struct Https {
    pub port: u16,
    /// The admin's certificate and key files; `None`: the self-signed one of the state dir.
    pub cert_key: Option<(PathBuf, PathBuf)>,
    /// Refuse the API and page over plain HTTP.
    pub api_only: bool,
}

/// The NFSv4 server's settings.
pub struct Nfs {
    pub port: u16,
    /// The protocol core's limits.
    pub limits: crate::nfs::state::Limits,
    /// The grace period after a restart (and after taking the service address over).
    pub grace: Duration,
    /// Where the server lists its clients (read at the next start to decide on a grace
    /// period).
    pub status_file: PathBuf,
    pub shell: crate::nfs::serve::Settings,
    /// The name the server answers as: every member answers as the same server when the
    /// root is served from the service address, so that a client that moves with it may
    /// reclaim its state (RFC 8881 §2.10.4: reclaims need an equal server scope).
    pub server_name: String,
    /// Whether OPEN grants read delegations (`[nfs] delegations`).
    pub delegations: bool,
}

/// BMC sessions of `drover serve`: the poller and `POST /api/v1/power`.
pub struct Power {
    /// Session settings, without the server's session cache.
    pub fan: FanOut,
    pub poller: crate::ipmi::serve::Poller,
    /// How long an unused session stays open.
    pub session_idle: Duration,
}

impl Settings {
    /// Maps `config` for a server on `interfaces` with store id `member` and its state in
    /// `state_dir`. Fails when the pool is on and has no address to gossip from.
    pub fn new(
        config: &Config,
        interfaces: &[Interface],
        member: u64,
        state_dir: &Path,
    ) -> Result<Settings> {
        let own: Vec<Ipv4Addr> = interfaces.iter().map(|i| i.addr).collect();
        let c = config;
        let dhcp = match c.dhcp.enabled {
            true => interfaces.iter().map(|i| dhcp(c, i.addr)).collect(),
            false => Vec::new(),
        };
        let pool = match c.pool.enabled {
            true => Some(pool(c, interfaces, member)?),
            false => None,
        };
        Ok(Settings {
            dhcp,
            tftp: c.tftp.enabled.then(|| Tftp {
                port: c.tftp.port,
                limits: crate::tftp::serve::Limits {
                    max_transfers: c.tftp.max_transfers,
                    max_transfers_per_client: c.tftp.max_transfers_per_client,
                    max_blksize: c.tftp.max_blksize,
                    max_windowsize: c.tftp.max_windowsize,
                    ..crate::tftp::serve::Limits::default()
                },
            }),
            http: c.http.enabled.then(|| Http {
                port: c.http.port,
                listen: http_addresses(c, &own),
                nfs_port: c.nfs.port,
                nfs_host: c.pool.service_address,
                dns: c.dns.enabled,
                ntp: c.ntp.enabled,
                https: c.http.https_port.map(|port| Https {
                    port,
                    cert_key: c.http.tls_cert.clone().zip(c.http.tls_key.clone()),
                    api_only: c.http.api_https_only,
                }),
            }),
            dns: c.dns.enabled.then(|| dns(c, &own, member)),
            ntp: c.ntp.enabled.then_some(crate::ntp::serve::Settings {
                port: c.ntp.port,
                local_reference: c.ntp.local_reference,
            }),
            nfs: c.nfs.enabled.then(|| nfs(c, &own, state_dir)),
            ra: c.ra.enabled.then_some(c.ra.interval),
            pool,
            service_address: c.pool.service_address,
            power: Power {
                fan: fan_out(&c.power),
                poller: crate::ipmi::serve::Poller {
                    interval: c.power.poll_interval,
                    rate: c.power.poll_rate,
                },
                session_idle: c.power.session_idle,
            },
            health: health(c, interfaces),
        })
    }

    /// The server's BMC session cache.
    pub fn session_cache(&self) -> Arc<SessionCache> {
        Arc::new(SessionCache::new(
            self.power.fan.max_sessions,
            self.power.session_idle,
        ))
    }
}

/// The DHCP server's settings on the interface with address `addr`.
fn dhcp(c: &Config, addr: Ipv4Addr) -> crate::dhcp::serve::Settings {
    let http_base = match c.http.port {
        80 => format!("http://{addr}"),
        port => format!("http://{addr}:{port}"),
    };
    crate::dhcp::serve::Settings {
        port: c.dhcp.port,
        client_port: c.dhcp.client_port,
        lease_time: c.dhcp.lease_time,
        http_base,
        uefi_loader: c.dhcp.uefi_loader.file_name().to_string(),
        services: crate::dhcp::core::Services {
            dns: c.dns.enabled,
            ntp: c.ntp.enabled,
            default_domain: Some(c.dns.domain.clone()),
        },
    }
}

/// The DNS server's settings on an appliance with addresses `own` and store id `member`:
/// upstreams from the config, else from the host's resolv.conf without `own`.
pub fn dns(c: &Config, own: &[Ipv4Addr], member: u64) -> crate::dns::serve::Settings {
    let d = &c.dns;
    let upstreams = d.upstreams.clone().unwrap_or_else(|| {
        let own_ips: Vec<IpAddr> = own.iter().copied().map(IpAddr::V4).collect();
        crate::dns::serve::system_upstreams(&own_ips)
    });
    crate::dns::serve::Settings {
        port: d.port,
        upstreams,
        axfr_allow: d.axfr_allow.clone(),
        forward_from: d.forward_from.clone(),
        hostname: d.hostname.clone(),
        domain: d.domain.clone(),
        addrs: own.to_vec(),
        member,
        upstream_timeout: d.upstream_timeout,
        max_in_flight: d.max_in_flight,
        max_tcp: d.max_tcp,
        max_tcp_per_client: d.max_tcp_per_client,
        tcp_idle: d.tcp_idle,
        cache_entries: d.cache_entries,
    }
}

fn nfs(c: &Config, own: &[Ipv4Addr], state_dir: &Path) -> Nfs {
    let n = &c.nfs;
    let status_file = state_dir.join("nfs").join("clients.json");
    let server_name = match (c.pool.service_address, own.first()) {
        (Some(a), _) | (None, Some(&a)) => a.to_string(),
        (None, None) => "drover".to_string(),
    };
    Nfs {
        port: n.port,
        limits: crate::nfs::state::Limits {
            max_clients: n.max_clients,
            max_clients_per_addr: n.max_clients_per_addr,
            max_states_per_client: n.max_states_per_client,
            max_states_per_addr: n.max_states_per_addr,
            max_slots: n.max_slots,
            lease: n.lease,
            ..crate::nfs::state::Limits::default()
        },
        grace: n.grace,
        shell: crate::nfs::serve::Settings {
            max_connections: n.max_connections,
            status_file: Some(status_file.clone()),
            ..crate::nfs::serve::Settings::default()
        },
        status_file,
        server_name,
        delegations: n.delegations,
    }
}

fn pool(c: &Config, interfaces: &[Interface], member: u64) -> Result<crate::pool::serve::Settings> {
    let addr = c
        .pool
        .address
        .or_else(|| interfaces.first().map(|i| i.addr))
        .context("pool: no address to gossip from (set `pool.address`)")?;
    Ok(crate::pool::serve::Settings {
        addr: SocketAddrV4::new(addr, c.pool.port),
        seeds: c.pool.seeds.clone(),
        member_id: member,
        lease_time: u64::from(c.dhcp.lease_time),
        service_address: c.pool.service_address,
        services: pool_services(c, interfaces),
    })
}

/// Where HTTP listens: every served interface's address, and the admin address.
fn http_addresses(c: &Config, own: &[Ipv4Addr]) -> Vec<Ipv4Addr> {
    let mut listen = own.to_vec();
    if !listen.contains(&c.http.admin_address) {
        listen.push(c.http.admin_address);
    }
    listen
}

/// What this member serves where, as its pool summary says (`pool::summary`).
fn pool_services(c: &Config, interfaces: &[Interface]) -> Vec<summary::Service> {
    let addrs: Vec<Ipv4Addr> = interfaces
        .iter()
        .map(|i| i.addr)
        .take(summary::MAX_ADDRS)
        .collect();
    [
        ("dhcp", c.dhcp.enabled, c.dhcp.port),
        ("tftp", c.tftp.enabled, c.tftp.port),
        ("http", c.http.enabled, c.http.port),
        ("dns", c.dns.enabled, c.dns.port),
        ("ntp", c.ntp.enabled, c.ntp.port),
        ("nfs", c.nfs.enabled, c.nfs.port),
    ]
    .into_iter()
    .filter(|(_, on, _)| *on)
    .map(|(name, _, port)| summary::Service {
        name: name.into(),
        addrs: addrs.clone(),
        port,
        floating: false,
    })
    .collect()
}

/// The services as configured, for `/api/v1/health` and the page. A service task that
/// fails stops the whole server, so while the API answers, every enabled service is running.
fn health(c: &Config, interfaces: &[Interface]) -> Vec<Health> {
    let names: Vec<String> = interfaces
        .iter()
        .map(|i| format!("{} ({})", i.name, i.addr))
        .collect();
    let on_ifaces = |port: u16| format!("port {port} on {}", names.join(", "));
    let svc = |name: &str, enabled: bool, detail: String| Health {
        name: name.into(),
        enabled,
        detail: if enabled { detail } else { "disabled".into() },
    };
    vec![
        svc("dhcp", c.dhcp.enabled, on_ifaces(c.dhcp.port)),
        svc("tftp", c.tftp.enabled, on_ifaces(c.tftp.port)),
        svc(
            "http",
            c.http.enabled,
            format!(
                "port {} on {} and {}",
                c.http.port,
                names.join(", "),
                c.http.admin_address
            ),
        ),
        svc(
            "ra",
            c.ra.enabled,
            format!(
                "every {} s on {}",
                c.ra.interval.as_secs(),
                names.join(", ")
            ),
        ),
        svc("dns", c.dns.enabled, on_ifaces(c.dns.port)),
        svc("ntp", c.ntp.enabled, on_ifaces(c.ntp.port)),
        svc(
            "pool",
            c.pool.enabled,
            format!(
                "port {} once the state directory has a cluster key",
                c.pool.port
            ),
        ),
    ]
}

/// The BMC session settings of `[power]`, without a session cache (the CLI's power
/// commands; `drover serve` adds its cache).
pub fn fan_out(p: &crate::config::Power) -> FanOut {
    FanOut {
        max_sessions: p.max_sessions,
        on_rate: p.on_rate,
        dial: Dial {
            suites: p
                .cipher_suites
                .iter()
                .filter_map(|s| Suite::from_id(*s))
                .collect(),
            version: match p.ipmi_version {
                IpmiVersion::Auto => LanVersion::Auto,
                IpmiVersion::V20 => LanVersion::V20,
                IpmiVersion::V15 => LanVersion::V15,
            },
            limits: IpmiLimits {
                timeout: p.timeout,
                retries: p.retries,
            },
        },
        cache: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration's defaults are the services' own defaults, where they have them.
    #[test]
    fn config_defaults_are_the_services_defaults() {
        let c = Config::embedded();
        let dns = dns(
            &Config::parse("[dns]\nupstreams = []\n", "t").unwrap(),
            &[],
            0,
        );
        assert_eq!(
            format!("{dns:?}"),
            format!("{:?}", crate::dns::serve::Settings::default())
        );
        let Err(e) = Settings::new(&c, &[], 0, Path::new("/s")) else {
            panic!("a pool without an address to gossip from");
        };
        assert!(e.to_string().contains("pool.address"), "{e}");
        let mut c = c;
        c.pool.enabled = false;
        c.nfs.enabled = true;
        let s = Settings::new(&c, &[], 7, Path::new("/s")).unwrap();
        let nfs = s.nfs.unwrap();
        assert_eq!(
            format!("{:?}", nfs.limits),
            format!("{:?}", crate::nfs::state::Limits::default())
        );
        assert_eq!(
            nfs.shell.max_connections,
            crate::nfs::serve::Settings::default().max_connections
        );
        assert_eq!(nfs.server_name, "drover");
        assert_eq!(s.ntp, Some(crate::ntp::serve::Settings::default()));
        assert_eq!(
            format!("{:?}", s.tftp.unwrap().limits),
            format!("{:?}", crate::tftp::serve::Limits::default())
        );
        assert_eq!(c.pool.port, crate::pool::serve::DEFAULT_PORT);
        assert_eq!(
            dhcp(&c, Ipv4Addr::new(10, 0, 0, 1)).uefi_loader,
            crate::dhcp::core::DEFAULT_UEFI_LOADER
        );
        assert_eq!(
            u64::from(c.dhcp.lease_time),
            u64::from(crate::dhcp::core::DEFAULT_LEASE_TIME)
        );
    }
}
