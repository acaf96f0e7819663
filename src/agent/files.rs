//! The node's own files, rendered from its [`BootParams`] (sans-IO: strings out; the agent
//! writes them into the new root).
//!
//! - `/etc/hostname`: the node name;
//! - `/etc/hosts`: localhost and the node's own address;
//! - `/etc/resolv.conf`: the nameservers and search domain, only when the command line gave any;
//!   with it a NetworkManager drop-in (`/etc/NetworkManager/conf.d/90-drover-dns.conf`,
//!   `dns=none`) so that a RHEL-family image's NetworkManager leaves that file alone (inert
//!   where there is no NetworkManager, as on a Debian image);
//! - time sources, only when the command line named NTP servers: a drop-in for
//!   systemd-timesyncd (`/etc/systemd/timesyncd.conf.d/drover.conf`) and a source file for
//!   chrony in both layouts: Debian's (`/etc/chrony/sources.d/drover.sources`, which Debian's
//!   default chrony.conf reads) and the RHEL family's (`/etc/chrony.d/drover.sources`, which
//!   RHEL 9's `/etc/chrony.conf` does not read by itself: [`chrony_conf_rhel`] adds the one
//!   `sourcedir` line it needs); whichever the image runs picks its file up, the others are
//!   inert;
//! - `/root/.ssh/authorized_keys`: the image's own keys plus the pool's node key, when the
//!   server has one ([`authorized_keys`]), so that `drover exec` reaches the node;
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

/// The NetworkManager drop-in that keeps [`resolv_conf`]'s file in place (RHEL family).
pub const NM_DNS_DROPIN: (&str, &str) = (
    "etc/NetworkManager/conf.d/90-drover-dns.conf",
    "# written by drover-agent at boot: /etc/resolv.conf is drover's\n[main]\ndns=none\n",
);

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
        (
            RHEL_CHRONY_SOURCES,
            format!("# written by drover-agent at boot\n{chrony}"),
        ),
    ]
}

/// The RHEL-family chrony source file [`time_sources`] writes.
const RHEL_CHRONY_SOURCES: &str = "etc/chrony.d/drover.sources";
/// The line that makes RHEL's chrony read it.
const RHEL_SOURCEDIR: &str = "sourcedir /etc/chrony.d";

/// A RHEL-family `/etc/chrony.conf` (`existing`) that also reads drover's sources:
/// `None` when it already does (a kept NFS root boots again), else the file with one
/// `sourcedir` line added at the end. Everything else in it stays as the image has it.
pub fn chrony_conf_rhel(existing: &str) -> Option<String> {
    let reads = existing
        .lines()
        .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["sourcedir", "/etc/chrony.d"]);
    if reads {
        return None;
    }
    let mut out = existing.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!(
        "# added by drover-agent: drover's time sources\n{RHEL_SOURCEDIR}\n"
    ));
    Some(out)
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

/// The comment that marks the node key's line (`crate::exec::key` makes it so).
const NODE_KEY_COMMENT: &str = "drover-nodes";
/// Longest node key line accepted from the server.
const MAX_NODE_KEY: usize = 1024;

/// `/root/.ssh/authorized_keys` with the node key `key` (as the server sent it): the image's
/// own lines kept, an older node key (same comment) replaced. `None` when `key` is not one
/// ed25519 public key line marked as drover's, so nothing else is ever written there.
pub fn authorized_keys(existing: &str, key: &str) -> Option<String> {
    let key = key.trim();
    let fields: Vec<&str> = key.split(' ').collect();
    let valid = key.len() <= MAX_NODE_KEY
        && matches!(fields.as_slice(), ["ssh-ed25519", b64, NODE_KEY_COMMENT]
            if !b64.is_empty()
                && b64.bytes().all(|c| c.is_ascii_alphanumeric() || b"+/=".contains(&c)));
    if !valid {
        return None;
    }
    let mut out: String = existing
        .lines()
        .filter(|l| l.split_whitespace().last() != Some(NODE_KEY_COMMENT))
        .flat_map(|l| [l, "\n"])
        .collect();
    out.push_str(key);
    out.push('\n');
    Some(out)
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
                (
                    "etc/chrony.d/drover.sources",
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
    fn rhel_chrony_conf_reads_drovers_sources_once() {
        // As RHEL 9 ships it (abridged): no confdir, no sourcedir for /etc/chrony.d.
        let rhel = "pool 2.rhel.pool.ntp.org iburst\nsourcedir /run/chrony-dhcp\n\
                    driftfile /var/lib/chrony/drift\nmakestep 1.0 3\nrtcsync\n";
        let added = chrony_conf_rhel(rhel).unwrap();
        assert_eq!(
            added,
            format!(
                "{rhel}# added by drover-agent: drover's time sources\nsourcedir /etc/chrony.d\n"
            )
        );
        // A second boot onto a kept root leaves it alone; so does an admin's own line.
        assert_eq!(chrony_conf_rhel(&added), None);
        assert_eq!(chrony_conf_rhel("sourcedir   /etc/chrony.d\n"), None);
        // A last line without its newline keeps its own line.
        assert_eq!(
            chrony_conf_rhel("rtcsync").unwrap(),
            "rtcsync\n# added by drover-agent: drover's time sources\nsourcedir /etc/chrony.d\n"
        );
        assert!(NM_DNS_DROPIN.1.contains("\n[main]\ndns=none\n"));
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$(x)"), "'$(x)'");
    }

    #[test]
    fn authorized_keys_adds_the_node_key_once() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIabc+/= drover-nodes\n";
        let own = "ssh-rsa AAAAB3 admin@desk\n";
        let first = authorized_keys(own, key).unwrap();
        assert_eq!(
            first,
            "ssh-rsa AAAAB3 admin@desk\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIabc+/= drover-nodes\n"
        );
        // Written again (a reboot onto a kept root): still one node key line.
        assert_eq!(authorized_keys(&first, key).unwrap(), first);
        // A new node key replaces the old one.
        let new = "ssh-ed25519 BBBB drover-nodes";
        let rotated = authorized_keys(&first, new).unwrap();
        assert_eq!(
            rotated,
            "ssh-rsa AAAAB3 admin@desk\nssh-ed25519 BBBB drover-nodes\n"
        );
        // Anything but one ed25519 line of drover's is refused.
        assert!(authorized_keys("", "ssh-ed25519 AAAA other").is_none());
        assert!(authorized_keys("", "command=\"sh\" ssh-ed25519 AAAA drover-nodes").is_none());
        assert!(authorized_keys("", "ssh-ed25519 AA\nAA drover-nodes").is_none());
        assert!(authorized_keys("", "<html>not found</html>").is_none());
    }
}
