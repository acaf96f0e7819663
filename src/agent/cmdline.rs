//! The kernel command line, as the agent reads it from `/proc/cmdline` (sans-IO: text in,
//! typed [`BootParams`] out).
//!
//! drover's HTTP server renders these keys into each node's iPXE script:
//! `drover.server=URL[,URL...] drover.image= drover.node= drover.mac= drover.ip= drover.netmask=`
//! and optionally `drover.gw= drover.dns=IP[,IP] drover.ntp=IP[,IP] drover.domain=` (absent or
//! empty = none) and `drover.root=nfs:HOST[:PORT]:/PATH` (absent or `ram` = RAM root; HOST a
//! literal address, IPv6 in brackets) with `drover.persistent=PATH[,PATH...]` (the image's
//! persistent paths, which the NFS root lets the node write). `drover.discover=1` (the
//! discovery script of an unknown machine) makes `drover.image` and `drover.node` optional.
//! `drover.swarm=0` fetches a RAM root from members only (absent or any other value: swarm).
//! Splitting follows the kernel's own rules (`lib/cmdline.c`, `next_arg`): words are separated
//! by spaces, double quotes group spaces into a word and are removed, the first `=` splits a
//! key from its value, and a later duplicate key wins.

use crate::store::model::PersistentPath;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// What the agent needs to know from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootParams {
    /// drover members to fetch from, in the order to try them.
    pub servers: Vec<ServerUrl>,
    pub image: String,
    pub node: String,
    pub mac: Mac,
    pub ip: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub gw: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub ntp: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    pub root: RootSource,
    /// Absolute paths the NFS root keeps per node (empty for a RAM root).
    pub persistent: Vec<String>,
    /// `drover.discover=1`: an unknown machine reports its inventory and waits to be
    /// adopted (`super::discover`); image and node are then not needed (empty, `discover`).
    pub discover: bool,
    /// `drover.service=1`: stay in the initramfs with an ssh server, the image read-only
    /// under `/image` (`super::service`), instead of switching to the image.
    pub service: bool,
    /// RAM root from the swarm (peers and members, `crate::swarm`); `drover.swarm=0` turns
    /// it off (the image, node or group has `swarm = false`): members only.
    pub swarm: bool,
}

/// Where the root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootSource {
    /// The rootfs tar from the servers, unpacked into RAM.
    Ram,
    /// An NFSv4 export: the server's address (port 2049 unless given) and the path.
    Nfs { server: SocketAddr, path: String },
}

/// NFS's well-known port.
pub const NFS_PORT: u16 = 2049;

impl RootSource {
    /// Parses `ram` or `nfs:HOST[:PORT]:/PATH`.
    pub fn parse(s: &str) -> Result<RootSource, &'static str> {
        if s == "ram" {
            return Ok(RootSource::Ram);
        }
        let rest = s
            .strip_prefix("nfs:")
            .ok_or("expected ram or nfs:HOST:/PATH")?;
        let (host, path) = rest
            .find(":/")
            .map(|i| (&rest[..i], &rest[i + 1..]))
            .ok_or("expected nfs:HOST:/PATH")?;
        let server = if let Ok(a) = host.parse::<SocketAddr>() {
            a
        } else {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let ip: IpAddr = bare.parse().map_err(|_| {
                "the NFS host must be an IP address (the agent has no DNS resolver)"
            })?;
            SocketAddr::new(ip, NFS_PORT)
        };
        if server.port() == 0 {
            return Err("port 0");
        }
        if path.len() > 1024
            || path
                .bytes()
                .any(|b| b <= b' ' || b == b',' || b == b'"' || b >= 0x7f)
            || path.split('/').any(|c| c == "..")
        {
            return Err("the NFS path has characters or parts the agent does not mount");
        }
        Ok(RootSource::Nfs {
            server,
            path: path.to_string(),
        })
    }
}

impl fmt::Display for RootSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RootSource::Ram => f.write_str("ram"),
            RootSource::Nfs { server, path } => write!(f, "nfs:{server}:{path}"),
        }
    }
}

/// A MAC address, printed as `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub fn parse(s: &str) -> Option<Mac> {
        let mut out = [0u8; 6];
        let mut parts = s.trim().split([':', '-']);
        for b in &mut out {
            let p = parts.next()?;
            if p.len() != 2 {
                return None;
            }
            *b = u8::from_str_radix(p, 16).ok()?;
        }
        parts.next().is_none().then_some(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// `http://IP[:PORT][/PREFIX]`. A literal address only: the agent has no DNS resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    pub addr: SocketAddr,
    /// Path prefix without a trailing `/` (usually empty).
    pub prefix: String,
}

impl ServerUrl {
    pub fn parse(s: &str) -> Result<ServerUrl, &'static str> {
        let rest = s
            .strip_prefix("http://")
            .ok_or("must start with http:// (no TLS in the agent)")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let addr = if let Ok(a) = authority.parse::<SocketAddr>() {
            a
        } else {
            let host = authority.trim_start_matches('[').trim_end_matches(']');
            let ip: IpAddr = host
                .parse()
                .map_err(|_| "host must be an IP address (the agent has no DNS resolver)")?;
            SocketAddr::new(ip, 80)
        };
        if addr.port() == 0 {
            return Err("port 0");
        }
        if path
            .bytes()
            .any(|b| b <= b' ' || b == b'?' || b == b'#' || b >= 0x7f)
        {
            return Err("path has characters the agent does not send");
        }
        Ok(ServerUrl {
            addr,
            prefix: path.trim_end_matches('/').to_string(),
        })
    }

    /// The request target of an image's rootfs on this server.
    pub fn rootfs_path(&self, image: &str) -> String {
        format!("{}/images/{image}/rootfs.tar", self.prefix)
    }

    /// The `Host` header value.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.addr, self.prefix)
    }
}

/// Why the command line cannot boot this node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdlineError {
    #[error("the kernel command line has no {0}= (drover's iPXE script passes it)")]
    Missing(&'static str),
    #[error("{key}={value:?}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// Splits a command line into (key, value) words, kernel style.
pub fn split(cmdline: &str) -> Vec<(String, Option<String>)> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut in_quote = false;
    for c in cmdline.chars() {
        match c {
            '"' => {
                in_quote = !in_quote;
                in_word = true;
            }
            c if c.is_whitespace() && !in_quote => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (w, None),
        })
        .collect()
}

/// Parses the `drover.*` keys of a kernel command line.
pub fn parse(cmdline: &str) -> Result<BootParams, CmdlineError> {
    let words = split(cmdline);
    // Later duplicates win, as for the kernel's own parameters.
    let get = |key: &'static str| -> Option<&str> {
        words
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_deref().unwrap_or("").trim())
    };
    let required = |key: &'static str| -> Result<&str, CmdlineError> {
        match get(key) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(CmdlineError::Missing(key)),
        }
    };
    let optional = |key: &'static str| get(key).filter(|v| !v.is_empty());
    let invalid = |key: &'static str, value: &str, reason: &'static str| CmdlineError::Invalid {
        key,
        value: value.to_string(),
        reason,
    };
    let ipv4 = |key: &'static str, v: &str| {
        v.parse::<Ipv4Addr>()
            .map_err(|_| invalid(key, v, "not an IPv4 address"))
    };

    let raw = required("drover.server")?;
    let servers = raw
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| ServerUrl::parse(s.trim()).map_err(|r| invalid("drover.server", s, r)))
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err(CmdlineError::Missing("drover.server"));
    }

    let discover = get("drover.discover") == Some("1");
    let image = match (discover, optional("drover.image")) {
        (true, None) => "",
        _ => required("drover.image")?,
    };
    // `@` names a pinned version (`NAME@N`, see `http::ipxe::image_path_name`).
    if !image
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
        || image.starts_with('.')
    {
        return Err(invalid(
            "drover.image",
            image,
            "letters, digits, `-`, `_`, `.`, `@` only",
        ));
    }
    let node = match (discover, optional("drover.node")) {
        (true, None) => "discover",
        _ => required("drover.node")?,
    };
    if !valid_hostname(node) {
        return Err(invalid(
            "drover.node",
            node,
            "not a host name (letters, digits, `-`, `.`; at most 64 characters)",
        ));
    }
    let mac_s = required("drover.mac")?;
    let mac =
        Mac::parse(mac_s).ok_or_else(|| invalid("drover.mac", mac_s, "not aa:bb:cc:dd:ee:ff"))?;
    let ip = ipv4("drover.ip", required("drover.ip")?)?;
    let mask_s = required("drover.netmask")?;
    let netmask = parse_netmask(mask_s).ok_or_else(|| {
        invalid(
            "drover.netmask",
            mask_s,
            "not a netmask (255.255.255.0 or 24)",
        )
    })?;
    let gw = optional("drover.gw")
        .map(|v| ipv4("drover.gw", v))
        .transpose()?;
    let ipv4_list = |key: &'static str| {
        optional(key)
            .map(|v| {
                v.split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| ipv4(key, s.trim()))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let dns = ipv4_list("drover.dns")?;
    let ntp = ipv4_list("drover.ntp")?;
    let domain = optional("drover.domain")
        .map(|d| {
            let d = d.trim_end_matches('.');
            if valid_hostname(d) {
                Ok(d.to_string())
            } else {
                Err(invalid("drover.domain", d, "not a domain name"))
            }
        })
        .transpose()?;
    let root = match optional("drover.root") {
        None => RootSource::Ram,
        Some(v) => RootSource::parse(v).map_err(|r| invalid("drover.root", v, r))?,
    };
    let persistent = optional("drover.persistent")
        .map(|v| {
            v.split(',')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    // A trailing slash is tolerated here: the path came through a boot
                    // loader, and `/var/log/` means `/var/log`.
                    PersistentPath::parse(p.trim_end_matches('/'))
                        .map(|p| p.as_str().to_string())
                        .map_err(|_| {
                            invalid(
                                "drover.persistent",
                                p,
                                "not a persistent path (absolute, normalised)",
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    Ok(BootParams {
        servers,
        image: image.to_string(),
        node: node.to_string(),
        mac,
        ip,
        netmask,
        gw,
        dns,
        ntp,
        domain,
        root,
        persistent,
        discover,
        service: get("drover.service") == Some("1"),
        swarm: get("drover.swarm") != Some("0"),
    })
}

/// A dotted netmask with contiguous ones, or a prefix length 0..=32.
pub fn parse_netmask(s: &str) -> Option<Ipv4Addr> {
    let bits = if let Ok(len) = s.trim_start_matches('/').parse::<u8>() {
        if len > 32 {
            return None;
        }
        u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
    } else {
        let m = u32::from(s.parse::<Ipv4Addr>().ok()?);
        if m.leading_ones() + m.trailing_zeros() != 32 {
            return None;
        }
        m
    };
    Some(Ipv4Addr::from(bits))
}

/// Letters, digits, `-` and `.` in non-empty labels; 1..=64 characters (HOST_NAME_MAX).
pub fn valid_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str =
        "initrd=initramfs drover.server=http://10.0.2.2:8080,http://10.0.2.3:80/pfx/ \
        drover.image=deb12 drover.node=n1 drover.mac=52:54:00:12:34:56 drover.ip=10.0.2.15 \
        drover.netmask=255.255.255.0 drover.gw=10.0.2.2 drover.dns=10.0.2.3,10.0.2.4 \
        drover.domain=cluster.lan console=ttyS0\n";

    #[test]
    fn service_mode_only_when_asked() {
        assert!(!parse(FULL).unwrap().service);
        let on = format!("{FULL} drover.service=1");
        assert!(parse(&on).unwrap().service);
        let other = format!("{FULL} drover.service=yes");
        assert!(!parse(&other).unwrap().service);
    }

    #[test]
    fn swarm_is_on_unless_turned_off() {
        assert!(parse(FULL).unwrap().swarm);
        assert!(!parse(&format!("{FULL} drover.swarm=0")).unwrap().swarm);
        assert!(parse(&format!("{FULL} drover.swarm=1")).unwrap().swarm);
    }

    #[test]
    fn discovery_needs_no_image_or_node() {
        let line = "initrd=initramfs drover.discover=1 drover.server=http://10.0.2.2 \
            drover.mac=52:54:00:12:34:56 drover.ip=10.0.2.15 drover.netmask=24 drover.dns=";
        let p = parse(line).unwrap();
        assert!(p.discover);
        assert_eq!((p.image.as_str(), p.node.as_str()), ("", "discover"));
        assert!(!parse(FULL).unwrap().discover);
        // Without discovery both stay required.
        let plain = line.replace("drover.discover=1 ", "");
        assert!(matches!(
            parse(&plain),
            Err(CmdlineError::Missing("drover.image"))
        ));
    }

    #[test]
    fn full_command_line() {
        let p = parse(FULL).unwrap();
        assert_eq!(p.servers.len(), 2);
        assert_eq!(p.servers[0].addr, "10.0.2.2:8080".parse().unwrap());
        assert_eq!(p.servers[1].prefix, "/pfx");
        assert_eq!(
            p.servers[1].rootfs_path("deb12"),
            "/pfx/images/deb12/rootfs.tar"
        );
        assert_eq!(p.servers[0].to_string(), "http://10.0.2.2:8080");
        assert_eq!(p.image, "deb12");
        assert_eq!(p.node, "n1");
        // A pinned version (`NAME@N`) is fetched under that name.
        let pinned = parse(&FULL.replace("drover.image=deb12", "drover.image=deb12@3")).unwrap();
        assert_eq!(pinned.image, "deb12@3");
        assert_eq!(p.mac.to_string(), "52:54:00:12:34:56");
        assert_eq!(p.ip, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(p.netmask, Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(p.gw, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(
            p.dns,
            [Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(10, 0, 2, 4)]
        );
        assert_eq!(p.domain.as_deref(), Some("cluster.lan"));
    }

    #[test]
    fn optional_keys_absent_or_empty() {
        let base = "drover.server=http://1.2.3.4 drover.image=x drover.node=n \
            drover.mac=AA:BB:CC:DD:EE:FF drover.ip=1.2.3.5 drover.netmask=24";
        let p = parse(base).unwrap();
        assert_eq!(p.servers[0].addr.port(), 80);
        assert_eq!(p.gw, None);
        assert!(p.dns.is_empty());
        assert_eq!(p.domain, None);
        assert_eq!(p.netmask, Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(p.mac.0, [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
        let p = parse(&format!("{base} drover.gw= drover.dns= drover.domain=")).unwrap();
        assert_eq!((p.gw, p.dns.len(), p.domain), (None, 0, None));
    }

    #[test]
    fn quoting_follows_the_kernel() {
        let w = split(r#"a="b c" "d=e f" g h= "i" j"k l"m"#);
        let w: Vec<(&str, Option<&str>)> =
            w.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        assert_eq!(
            w,
            [
                ("a", Some("b c")),
                ("d", Some("e f")),
                ("g", None),
                ("h", Some("")),
                ("i", None),
                ("jk lm", None),
            ]
        );
        let p = parse(&FULL.replace("drover.node=n1", "\"drover.node=n2\"")).unwrap();
        assert_eq!(p.node, "n2");
    }

    #[test]
    fn later_duplicate_wins() {
        let p = parse(&format!("{FULL} drover.node=n9")).unwrap();
        assert_eq!(p.node, "n9");
    }

    #[test]
    fn missing_keys_are_named() {
        for key in [
            "drover.server",
            "drover.image",
            "drover.node",
            "drover.mac",
            "drover.ip",
            "drover.netmask",
        ] {
            let line: String = FULL
                .split_whitespace()
                .filter(|w| !w.starts_with(&format!("{key}=")))
                .collect::<Vec<_>>()
                .join(" ");
            let err = parse(&line).unwrap_err();
            assert_eq!(err, CmdlineError::Missing(key));
            assert!(err.to_string().contains(key));
        }
        assert_eq!(
            parse(&FULL.replace("drover.node=n1", "drover.node=")).unwrap_err(),
            CmdlineError::Missing("drover.node")
        );
    }

    #[test]
    fn invalid_values_are_named() {
        for (from, to, key) in [
            ("drover.ip=10.0.2.15", "drover.ip=10.0.2", "drover.ip"),
            (
                "drover.netmask=255.255.255.0",
                "drover.netmask=255.0.255.0",
                "drover.netmask",
            ),
            (
                "drover.mac=52:54:00:12:34:56",
                "drover.mac=52:54:00:12:34",
                "drover.mac",
            ),
            ("drover.node=n1", "drover.node=bad_name!", "drover.node"),
            ("drover.image=deb12", "drover.image=../x", "drover.image"),
            ("http://10.0.2.2:8080", "https://10.0.2.2", "drover.server"),
            (
                "http://10.0.2.2:8080",
                "http://boot.example:80",
                "drover.server",
            ),
            ("drover.gw=10.0.2.2", "drover.gw=gw", "drover.gw"),
        ] {
            let err = parse(&FULL.replace(from, to)).unwrap_err();
            match &err {
                CmdlineError::Invalid { key: k, .. } => assert_eq!(*k, key, "{err}"),
                other => panic!("{to}: {other}"),
            }
        }
    }

    #[test]
    fn netmasks() {
        assert_eq!(parse_netmask("0"), Some(Ipv4Addr::UNSPECIFIED));
        assert_eq!(parse_netmask("32"), Some(Ipv4Addr::BROADCAST));
        assert_eq!(parse_netmask("/16"), Some(Ipv4Addr::new(255, 255, 0, 0)));
        assert_eq!(parse_netmask("33"), None);
        assert_eq!(
            parse_netmask("255.255.254.0"),
            Some(Ipv4Addr::new(255, 255, 254, 0))
        );
        assert_eq!(parse_netmask("255.255.255.1"), None);
    }

    #[test]
    fn root_sources() {
        assert_eq!(parse(FULL).unwrap().root, RootSource::Ram);
        let p = parse(&format!("{FULL} drover.root=nfs:10.0.2.2:/root")).unwrap();
        assert_eq!(
            p.root,
            RootSource::Nfs {
                server: "10.0.2.2:2049".parse().unwrap(),
                path: "/root".into()
            }
        );
        assert_eq!(p.root.to_string(), "nfs:10.0.2.2:2049:/root");
        assert_eq!(
            RootSource::parse("nfs:10.0.2.2:20049:/a/b").unwrap(),
            RootSource::Nfs {
                server: "10.0.2.2:20049".parse().unwrap(),
                path: "/a/b".into()
            }
        );
        assert_eq!(
            RootSource::parse("nfs:[fd00::1]:/root").unwrap(),
            RootSource::Nfs {
                server: "[fd00::1]:2049".parse().unwrap(),
                path: "/root".into()
            }
        );
        assert_eq!(RootSource::parse("ram").unwrap(), RootSource::Ram);
        for bad in [
            "nfs",
            "nfs:10.0.2.2",
            "nfs:server.example:/root",
            "nfs:10.0.2.2:/a,b",
            "nfs:10.0.2.2:/../x",
            "nfs:10.0.2.2:0:/root",
            "tmpfs",
        ] {
            assert!(RootSource::parse(bad).is_err(), "{bad}");
        }
        let p = parse(&format!("{FULL} drover.persistent=/var/log,/etc/ssh")).unwrap();
        assert_eq!(p.persistent, ["/var/log", "/etc/ssh"]);
        assert!(parse(&format!("{FULL} drover.persistent=/var/../x")).is_err());
        assert!(parse(&format!("{FULL} drover.persistent=var")).is_err());
        let p = parse(&format!("{FULL} drover.persistent=/var/log/")).unwrap();
        assert_eq!(p.persistent, ["/var/log"]);
        assert!(parse(&format!("{FULL} drover.persistent=/var//log")).is_err());
        assert!(parse(&format!("{FULL} drover.persistent=/")).is_err());
        let e = parse(&format!("{FULL} drover.root=nfs:x:/root")).unwrap_err();
        assert!(
            matches!(
                e,
                CmdlineError::Invalid {
                    key: "drover.root",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn ipv6_server() {
        let s = ServerUrl::parse("http://[fd00::1]:8080").unwrap();
        assert_eq!(s.host(), "[fd00::1]:8080");
        let s = ServerUrl::parse("http://[fd00::1]").unwrap();
        assert_eq!(s.addr.port(), 80);
    }
}
