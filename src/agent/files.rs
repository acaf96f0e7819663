//! The node's own files, rendered from its [`BootParams`] (sans-IO: strings out; the agent
//! writes them into the new root).
//!
//! - `/etc/hostname`: the node name;
//! - `/etc/hosts`: localhost and the node's own address;
//! - `/etc/resolv.conf`: the nameservers and search domain, only when the command line gave any;
//! - time sources, only when the command line named NTP servers: a drop-in for
//!   systemd-timesyncd (`/etc/systemd/timesyncd.conf.d/drover.conf`) and a source file for
//!   chrony (`/etc/chrony/sources.d/drover.sources`, read by Debian's default chrony.conf);
//!   whichever the image runs picks its file up, the other file is inert;
//! - `/etc/drover/node.env`: shell-sourceable `KEY='value'` lines for the image's own scripts
//!   (node, addresses, servers, image, root source and persistent paths).

use super::cmdline::{BootParams, ServerUrl};

pub fn hostname(p: &BootParams) -> String {
    format!("{}\n", p.node)
}

pub fn hosts(p: &BootParams) -> String {
    let names = match &p.domain {
        Some(d) => format!("{}.{d} {}", p.node, p.node),
        None => p.node.clone(),
    };
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{names}\n",
        p.ip
    )
}

/// `None` when there is nothing to say (no nameserver, no domain): the image's own file stays.
pub fn resolv_conf(p: &BootParams) -> Option<String> {
    if p.dns.is_empty() && p.domain.is_none() {
        return None;
    }
    let mut s = String::from("# written by drover-agent at boot\n");
    if let Some(d) = &p.domain {
        s.push_str(&format!("search {d}\n"));
    }
    for ns in &p.dns {
        s.push_str(&format!("nameserver {ns}\n"));
    }
    Some(s)
}

/// The time-source files (path relative to the new root, contents); empty without NTP servers.
pub fn time_sources(p: &BootParams) -> Vec<(&'static str, String)> {
    if p.ntp.is_empty() {
        return Vec::new();
    }
    let list: Vec<String> = p.ntp.iter().map(|a| a.to_string()).collect();
    let chrony: String = list
        .iter()
        .map(|a| format!("server {a} iburst\n"))
        .collect();
    vec![
        (
            "etc/systemd/timesyncd.conf.d/drover.conf",
            format!(
                "# written by drover-agent at boot\n[Time]\nNTP={}\n",
                list.join(" ")
            ),
        ),
        (
            "etc/chrony/sources.d/drover.sources",
            format!("# written by drover-agent at boot\n{chrony}"),
        ),
    ]
}

/// `server` is the member the root filesystem came from; `iface` the configured interface.
pub fn node_env(p: &BootParams, iface: &str, server: &ServerUrl) -> String {
    let opt = |v: Option<String>| v.unwrap_or_default();
    let join = |v: Vec<String>| v.join(",");
    let vars = [
        ("DROVER_NODE", p.node.clone()),
        ("DROVER_IP", p.ip.to_string()),
        ("DROVER_NETMASK", p.netmask.to_string()),
        ("DROVER_GW", opt(p.gw.map(|g| g.to_string()))),
        ("DROVER_IFACE", iface.to_string()),
        ("DROVER_MAC", p.mac.to_string()),
        ("DROVER_SERVER", server.to_string()),
        (
            "DROVER_SERVERS",
            join(p.servers.iter().map(|s| s.to_string()).collect()),
        ),
        ("DROVER_IMAGE", p.image.clone()),
        (
            "DROVER_DNS",
            join(p.dns.iter().map(|d| d.to_string()).collect()),
        ),
        (
            "DROVER_NTP",
            join(p.ntp.iter().map(|d| d.to_string()).collect()),
        ),
        ("DROVER_DOMAIN", opt(p.domain.clone())),
        ("DROVER_ROOT", p.root.to_string()),
        ("DROVER_PERSISTENT", p.persistent.join(",")),
    ];
    vars.iter()
        .map(|(k, v)| format!("{k}={}\n", shell_quote(v)))
        .collect()
}

/// Single-quotes `v` for sh unless it is made only of characters that need no quoting.
pub fn shell_quote(v: &str) -> String {
    let plain = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.,:/@%+=".contains(&b));
    if plain {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::cmdline::parse;
    use super::*;

    fn params(extra: &str) -> BootParams {
        parse(&format!(
            "drover.server=http://10.0.2.2:8080,http://10.0.2.3 drover.image=x drover.node=n1 \
             drover.mac=52:54:00:12:34:56 drover.ip=10.0.2.15 drover.netmask=255.255.255.0 {extra}"
        ))
        .unwrap()
    }

    #[test]
    fn minimal() {
        let p = params("");
        assert_eq!(hostname(&p), "n1\n");
        assert!(hosts(&p).ends_with("10.0.2.15\tn1\n"));
        assert_eq!(resolv_conf(&p), None);
        assert!(time_sources(&p).is_empty());
        let env = node_env(&p, "eth0", &p.servers[0]);
        assert!(env.contains("DROVER_NODE=n1\n"));
        assert!(env.contains("DROVER_GW=''\n"));
        assert!(env.contains("DROVER_IFACE=eth0\n"));
        assert!(env.contains("DROVER_SERVER=http://10.0.2.2:8080\n"));
        assert!(env.contains("DROVER_SERVERS=http://10.0.2.2:8080,http://10.0.2.3:80\n"));
        assert!(env.contains("DROVER_IMAGE=x\n"));
        assert!(env.contains("DROVER_ROOT=ram\n"));
    }

    #[test]
    fn full() {
        let p = params(
            "drover.gw=10.0.2.2 drover.dns=10.0.2.3,1.1.1.1 drover.ntp=10.0.2.2,10.0.2.4 \
             drover.domain=lab",
        );
        assert_eq!(
            time_sources(&p),
            vec![
                (
                    "etc/systemd/timesyncd.conf.d/drover.conf",
                    "# written by drover-agent at boot\n[Time]\nNTP=10.0.2.2 10.0.2.4\n".into()
                ),
                (
                    "etc/chrony/sources.d/drover.sources",
                    "# written by drover-agent at boot\nserver 10.0.2.2 iburst\n\
                     server 10.0.2.4 iburst\n"
                        .into()
                ),
            ]
        );
        assert!(hosts(&p).ends_with("10.0.2.15\tn1.lab n1\n"));
        assert_eq!(
            resolv_conf(&p).unwrap(),
            "# written by drover-agent at boot\nsearch lab\nnameserver 10.0.2.3\nnameserver 1.1.1.1\n"
        );
        let env = node_env(&p, "ens3", &p.servers[1]);
        assert!(env.contains("DROVER_GW=10.0.2.2\n"));
        assert!(env.contains("DROVER_DNS=10.0.2.3,1.1.1.1\n"));
        assert!(env.contains("DROVER_NTP=10.0.2.2,10.0.2.4\n"));
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$(x)"), "'$(x)'");
    }
}
