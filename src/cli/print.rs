//! The one printer: everything the CLI's list and show commands print, as text built from
//! typed data, whichever back end (local store or remote API) fetched it. Pure: the time is an
//! argument, and each function returns the text instead of writing it.
//!
//! Tables are left-aligned columns two spaces apart, sized by characters (not bytes), with
//! `-` for an empty cell; `pool::show` uses [`table`] too. The JSON forms (`--json`) are
//! pretty-printed with [`json`].
//!
//! Not here: fetching the data (`local`, `remote`), messages of commands that change
//! something (`super`).

use crate::admin::{BmcReach, GroupInfo, NodeDetail};
use crate::image::usage::{HistoryEntry, StoreTotals, Usage};
use crate::store::model::{BootEvent, Export, Image, Lease, Network, Node, Role, RootMode, Squash};
use crate::timeline;
use std::fmt::Write;

/// Left-aligned columns, two spaces apart, each as wide as its widest cell in characters;
/// trailing spaces trimmed.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// A header row.
pub fn header(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Pretty JSON with a final newline: the `--json` form of a command.
pub fn json<T: serde::Serialize>(value: &T) -> Result<String, serde_json::Error> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

/// `config show`: every key, its value (TOML-like JSON), where it comes from and when a running
/// server follows a change of it; then why the stored settings are not in force, if so.
pub fn config_show(shown: &crate::overrides::Shown) -> String {
    let mut rows = vec![header(&["KEY", "VALUE", "FROM", "CHANGE TAKES"])];
    for r in &shown.settings {
        rows.push(vec![
            r.key.clone(),
            r.value.to_string(),
            label(&r.source),
            label(&r.takes),
        ]);
    }
    let mut out = table(&rows);
    if let Some(f) = &shown.file {
        let _ = writeln!(out, "file: {}", f.display());
    }
    if let Some(p) = &shown.problem {
        let _ = writeln!(
            out,
            "the store's settings are NOT in force (the server keeps what runs): {p}"
        );
    }
    out
}

/// What `config set|unset|apply` did to each key, and when the running server follows it.
pub fn config_outcomes(outcomes: &[crate::overrides::Outcome]) -> String {
    let mut out = String::new();
    for o in outcomes {
        let did = match (o.removed, o.scope) {
            (true, _) => "removed from the store (the file's or default value counts)",
            (false, crate::config::Scope::Pool) => "set for the whole pool",
            (false, crate::config::Scope::Member) => "set for this member",
        };
        let when = match o.takes {
            crate::config::Takes::Live => "applied live: the services it feeds restart alone",
            crate::config::Takes::Restart => {
                "takes effect at the next restart of drover serve (systemctl restart drover)"
            }
        };
        let _ = writeln!(out, "{}: {did}; {when}", o.key);
    }
    out
}

/// The serde name of a unit enum value (`"pool"`, `"live"`).
fn label<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "-".into(),
    }
}

/// A table of the `keys` of JSON objects, headed by the keys in capitals.
pub fn json_table(items: &[serde_json::Value], keys: &[&str]) -> String {
    let mut rows = vec![keys.iter().map(|k| k.to_uppercase()).collect::<Vec<_>>()];
    for item in items {
        rows.push(
            keys.iter()
                .map(|k| match item.get(k) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(serde_json::Value::Null) | None => "-".into(),
                    Some(v) => v.to_string(),
                })
                .collect(),
        );
    }
    table(&rows)
}

fn or_dash(s: Option<impl ToString>) -> String {
    s.map_or_else(|| "-".into(), |s| s.to_string())
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(",")
    }
}

pub fn root_name(r: RootMode) -> &'static str {
    match r {
        RootMode::Ram => "ram",
        RootMode::Nfs => "nfs",
    }
}

const NODE_HEADER: &[&str] = &["NAME", "MAC", "IP", "IMAGE", "GROUP", "ALIASES", "ROOT"];

fn node_row(n: &Node) -> Vec<String> {
    vec![
        n.name.clone(),
        n.mac.to_string(),
        or_dash(n.ip),
        or_dash(n.image.as_deref()),
        or_dash(n.group.as_deref()),
        list_or_dash(&n.aliases),
        // `image`: the node follows its image's root mode.
        n.root.map_or("image", root_name).into(),
    ]
}

/// `node list`, and the changed node of `node set`.
pub fn nodes(nodes: &[Node]) -> String {
    let mut rows = vec![header(NODE_HEADER)];
    rows.extend(nodes.iter().map(node_row));
    table(&rows)
}

/// `node show`, as of unix time `now` (the power state's age).
pub fn node_show(n: &Node, d: &NodeDetail, now: u64) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("name:  {}", n.name));
    line(format!("mac:   {}", n.mac));
    line(format!(
        "ip:    {}",
        n.ip.map_or_else(|| "(dynamic)".into(), |i| i.to_string())
    ));
    line(format!("image: {}", n.image.as_deref().unwrap_or("-")));
    line(format!("group: {}", n.group.as_deref().unwrap_or("-")));
    line(format!("aliases: {}", list_or_dash(&n.aliases)));
    match (n.root, &d.boot_image) {
        (Some(own), _) => line(format!("root:  {} (node setting)", root_name(own))),
        (None, Some(i)) => line(format!(
            "root:  {} (from image {})",
            root_name(i.root),
            i.name
        )),
        (None, None) => line("root:  - (no image)".into()),
    }
    if let Some(i) = &d.boot_image {
        line(match &i.pinned {
            Some((v, by)) => format!("version: {v} (pinned by {by}; latest {})", i.latest_version),
            None => format!("version: {} (latest)", i.latest_version),
        });
    }
    if let Some(i) = d.boot_image.as_ref().filter(|i| !i.persistent.is_empty()) {
        line(format!(
            "persistent: {} (NFS root only)",
            i.persistent.join(",")
        ));
    }
    line(format!(
        "mode:  {}",
        if d.service {
            "service (stays in drover's initramfs with ssh; leave with --no-service)"
        } else {
            "normal"
        }
    ));
    match &d.bmc {
        BmcReach::Set { address, user } => {
            line(format!("bmc:   {address} user {user} (password set)"))
        }
        BmcReach::Missing { why } => line(format!("bmc:   - ({why})")),
    }
    // What `drover serve`'s poller saw last.
    match &d.power_state {
        Some(p) => {
            let state = match (p.on, &p.error) {
                (Some(true), _) => "on".to_string(),
                (Some(false), _) => "off".to_string(),
                (None, Some(e)) => format!("unknown ({e})"),
                (None, None) => "unknown".to_string(),
            };
            let ago = now.saturating_sub(p.since);
            line(format!("power: {state} (polled; since {ago}s ago)"));
        }
        None => line("power: - (not polled yet)".into()),
    }
    out
}

/// `node events`: the state as of `now_ms`, then the last boot's events (or all of them).
pub fn node_events(name: &str, events: &[BootEvent], all: bool, now_ms: u64) -> String {
    let mut out = format!("{name}: {}\n", timeline::state(events, now_ms).name());
    let shown = if all {
        events
    } else {
        timeline::last_boot(events)
    };
    let Some(first) = shown.first() else {
        out.push_str("no boot events yet\n");
        return out;
    };
    let mut rows = vec![header(&["TIME (UTC)", "+S", "STAGE", "FROM", "DETAIL"])];
    for e in shown {
        rows.push(vec![
            timeline::format_utc(e.at_ms),
            format!("{:.1}", e.at_ms.saturating_sub(first.at_ms) as f64 / 1000.0),
            e.stage.name().into(),
            e.source.clone(),
            e.detail.clone(),
        ]);
    }
    out + &table(&rows)
}

/// `image list`, and the changed image of `image set`.
pub fn images(images: &[Image]) -> String {
    let mut rows = vec![header(&["NAME", "BOOT", "PERSISTENT", "KERNEL", "CMDLINE"])];
    for i in images {
        rows.push(vec![
            i.name.clone(),
            // ram-root or nfs-root for a rootfs image: its root mode.
            i.boot_kind().into(),
            list_or_dash(&i.persistent),
            format!("{} bytes", i.kernel.size),
            i.cmdline.clone(),
        ]);
    }
    table(&rows)
}

/// `image list`'s last line: the blob store's totals.
pub fn store_totals(t: &StoreTotals) -> String {
    format!(
        "store: {} blobs, {} bytes of image files in {} bytes on disk\n",
        t.blobs, t.logical, t.stored
    )
}

/// `image history`: one row per version, oldest first. SIZE is the bytes of its files, NEW
/// what it added to the blob store (chunks no earlier version has), SHARED the bytes of its
/// chunks that earlier versions have too; `-` from a server that does not say.
pub fn image_history(entries: &[HistoryEntry]) -> String {
    let mut rows = vec![header(&[
        "VERSION", "CREATED", "BY", "WHAT", "SIZE", "NEW", "SHARED", "FILES",
    ])];
    for HistoryEntry { version: v, stored } in entries {
        let figure = |f: fn(&Usage) -> u64| {
            stored
                .as_ref()
                .map_or("-".into(), |u| format!("{} bytes", f(u)))
        };
        let files: Vec<String> = [
            Some(("kernel", &v.files.kernel)),
            v.files.initrd.as_ref().map(|f| ("initrd", f)),
            v.files.rootfs.as_ref().map(|f| ("rootfs", f)),
        ]
        .into_iter()
        .flatten()
        .map(|(what, f)| format!("{what}:{}", &f.blob[..f.blob.len().min(12)]))
        .collect();
        rows.push(vec![
            v.number.to_string(),
            if v.created_ms == 0 {
                "-".into()
            } else {
                timeline::format_utc(v.created_ms)
            },
            if v.by.is_empty() {
                "-".into()
            } else {
                v.by.clone()
            },
            v.what.clone(),
            format!("{} bytes", v.files.size()),
            figure(|u| u.new),
            figure(|u| u.shared),
            files.join(" "),
        ]);
    }
    table(&rows)
}

/// `image add`'s one line about what it stored.
pub fn image_added(img: &Image) -> String {
    let mut parts = vec![format!("kernel {} bytes", img.kernel.size)];
    if let Some(i) = &img.initrd {
        parts.push(format!("initrd {} bytes", i.size));
    }
    if let Some(r) = &img.rootfs {
        parts.push(format!("rootfs {} bytes", r.size));
    }
    if let Some(i) = &img.initramfs {
        parts.push(format!("agent initramfs {} bytes", i.size));
    }
    parts.push(format!("root {}", root_name(img.root)));
    if !img.persistent.is_empty() {
        parts.push(format!("persistent {}", img.persistent.join(",")));
    }
    format!("added image {}: {}\n", img.name, parts.join(", "))
}

/// `network list`.
pub fn networks(networks: &[Network]) -> String {
    let mut rows = vec![header(&["NAME", "SUBNET", "RANGE", "GATEWAY", "DOMAIN"])];
    for n in networks {
        rows.push(vec![
            n.name.clone(),
            n.subnet.to_string(),
            or_dash(n.range.map(|(a, b)| format!("{a}-{b}"))),
            or_dash(n.gateway),
            or_dash(n.domain.as_deref()),
        ]);
    }
    table(&rows)
}

/// `lease list`, as of unix time `now` (state and time left).
pub fn leases(leases: &[Lease], now: u64) -> String {
    let mut rows = vec![header(&[
        "IP",
        "MAC",
        "STATE",
        "EXPIRES IN",
        "HOSTNAME",
        "NETWORK",
        "RELAY",
    ])];
    for l in leases {
        let state = if l.holds(now) {
            format!("{:?}", l.state).to_lowercase()
        } else {
            "expired".into()
        };
        rows.push(vec![
            l.ip.to_string(),
            l.mac.to_string(),
            state,
            format!("{}s", l.expires.saturating_sub(now)),
            or_dash(l.hostname.as_deref()),
            l.network.clone(),
            or_dash(l.relay.giaddr),
        ]);
    }
    table(&rows)
}

/// `node discovered`: one row per machine (boot MAC, address, DMI identity, CPUs, memory,
/// disks, NICs, LLDP neighbours, adoption), then the duplicates.
pub fn discovered(list: &crate::discover::inventory::DiscoveredList) -> String {
    let mut rows = vec![header(&[
        "MAC", "IP", "VENDOR", "PRODUCT", "SERIAL", "CPUS", "MEMORY", "DISKS", "NICS", "LLDP",
        "ADOPTED",
    ])];
    for d in &list.machines {
        let inv = &d.inventory;
        let disks: Vec<String> = inv
            .disks
            .iter()
            .map(|k| {
                format!(
                    "{}:{}G:{}",
                    k.name,
                    k.size_bytes >> 30,
                    or_dash(k.serial.as_deref())
                )
            })
            .collect();
        let nics: Vec<String> = inv
            .nics
            .iter()
            .map(|n| format!("{}:{}:{}", n.name, n.mac, or_dash(n.speed_mbps)))
            .collect();
        let lldp: Vec<String> = inv
            .nics
            .iter()
            .filter_map(|n| {
                let l = n.lldp.as_ref()?;
                let switch = l.system_name.as_deref().unwrap_or(&l.chassis_id);
                Some(format!("{}={switch}/{}", n.name, l.port_id))
            })
            .collect();
        rows.push(vec![
            d.mac.to_string(),
            d.ip.to_string(),
            or_dash(inv.dmi.vendor.as_deref()),
            or_dash(inv.dmi.product.as_deref()),
            or_dash(inv.dmi.serial.as_deref()),
            inv.cpus.to_string(),
            format!("{}M", inv.memory_kib >> 10),
            list_or_dash(&disks),
            list_or_dash(&nics),
            list_or_dash(&lldp),
            or_dash(d.adopted.as_ref().map(|a| match a.replaced {
                Some(old) => format!("{} (replaced {old})", a.node),
                None => a.node.clone(),
            })),
        ]);
    }
    let mut out = table(&rows);
    for dup in &list.duplicates {
        let _ = writeln!(
            out,
            "duplicate {} {}: {}",
            dup.what,
            dup.value,
            dup.claimed_by.join(", ")
        );
    }
    out
}

/// `rule list`.
pub fn rules(rules: &[crate::discover::rule::NamingRule]) -> String {
    let mut rows = vec![header(&["RULE", "GROUP", "IMAGE"])];
    for r in rules {
        rows.push(vec![
            r.rule.clone(),
            or_dash(r.group.as_deref()),
            or_dash(r.image.as_deref()),
        ]);
    }
    table(&rows)
}

/// `group list`: image and BMC settings.
pub fn groups(groups: &[GroupInfo]) -> String {
    let mut rows = vec![header(&[
        "GROUP", "IMAGE", "BMC HOST", "BMC PORT", "BMC USER", "PASSWORD",
    ])];
    for g in groups {
        let b = g.bmc.as_ref();
        rows.push(vec![
            g.name.clone(),
            or_dash(g.image.as_deref()),
            or_dash(b.and_then(|b| b.host.as_deref())),
            or_dash(b.and_then(|b| b.port)),
            or_dash(b.and_then(|b| b.user.as_deref())),
            if b.is_some_and(|b| b.password_set) {
                "set"
            } else {
                "-"
            }
            .into(),
        ]);
    }
    table(&rows)
}

/// `nfs export list`.
pub fn exports(exports: &[Export]) -> String {
    let mut rows = vec![header(&[
        "NAME",
        "PATH",
        "CLIENTS",
        "MODE",
        "RO-CLIENTS",
        "SQUASH",
    ])];
    let nets = |n: &[crate::store::model::Ipv4Net]| {
        let all: Vec<String> = n.iter().map(|c| c.to_string()).collect();
        if all.is_empty() {
            "-".to_string()
        } else {
            all.join(",")
        }
    };
    for e in exports {
        let squash = match e.squash {
            Squash::None => "none".to_string(),
            Squash::Root => format!("root->{}:{}", e.anon_uid, e.anon_gid),
            Squash::All => format!("all->{}:{}", e.anon_uid, e.anon_gid),
        };
        rows.push(vec![
            e.name.clone(),
            e.path.clone(),
            nets(&e.clients),
            if e.rw { "rw" } else { "ro" }.to_string(),
            nets(&e.ro_clients),
            squash,
        ]);
    }
    table(&rows)
}

/// An API token as listed: its name and when it was made (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct TokenInfo {
    pub name: String,
    pub created: u64,
    #[serde(default)]
    pub role: Role,
}

/// `token list`.
pub fn tokens(tokens: &[TokenInfo]) -> String {
    let mut rows = vec![header(&["NAME", "CREATED (UNIX)", "ROLE"])];
    for t in tokens {
        rows.push(vec![
            t.name.clone(),
            t.created.to_string(),
            t.role.to_string(),
        ]);
    }
    table(&rows)
}

/// `audit`: one line per change, oldest first.
pub fn audit(entries: &[crate::store::model::AuditEntry]) -> String {
    let mut rows = vec![header(&["AT (UNIX)", "WHO", "FROM", "WHAT"])];
    for e in entries {
        rows.push(vec![
            e.at.to_string(),
            e.who.clone(),
            e.from.clone(),
            e.what.clone(),
        ]);
    }
    table(&rows)
}

/// A user as `user list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct UserInfo {
    pub name: String,
    pub role: Role,
}

/// `user list`.
pub fn users(users: &[UserInfo]) -> String {
    let mut rows = vec![header(&["NAME", "ROLE"])];
    for u in users {
        rows.push(vec![u.name.clone(), u.role.to_string()]);
    }
    table(&rows)
}

/// One node's result of `drover power`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerRow {
    pub node: String,
    pub bmc: String,
    /// `ok`, or the failure's class (timeout, authentication, ...).
    pub result: String,
    pub detail: String,
}

/// `power ...`'s table.
pub fn power(rows: &[PowerRow]) -> String {
    let mut out = vec![header(&["NODE", "BMC", "RESULT", "DETAIL"])];
    for r in rows {
        out.push(vec![
            r.node.clone(),
            r.bmc.clone(),
            r.result.clone(),
            r.detail.clone(),
        ]);
    }
    table(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_sized_by_characters_not_bytes() {
        let text = table(&[
            header(&["NAME", "X"]),
            vec!["Grüße".into(), "1".into()],
            vec!["ab".into(), "-".into()],
        ]);
        assert_eq!(text, "NAME   X\nGrüße  1\nab     -\n");
    }

    #[test]
    fn json_tables_show_dashes_for_missing_fields() {
        let items = vec![
            serde_json::json!({"a": "x", "b": 3}),
            serde_json::json!({"a": null}),
        ];
        assert_eq!(json_table(&items, &["a", "b"]), "A  B\nx  3\n-  -\n");
    }

    #[test]
    fn leases_show_the_time_left_and_expired_ones() {
        let lease = |ip: [u8; 4], expires| Lease {
            ip: ip.into(),
            mac: "52:54:00:00:00:01".parse().unwrap(),
            client_id: None,
            hostname: Some("n1".into()),
            state: crate::store::model::LeaseState::Bound,
            start: 0,
            expires,
            network: "lab".into(),
            relay: Default::default(),
        };
        let text = leases(
            &[lease([10, 0, 0, 5], 1_600), lease([10, 0, 0, 6], 900)],
            1_000,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("EXPIRES IN"), "{text}");
        assert!(
            lines[1].contains("bound") && lines[1].contains("600s"),
            "{text}"
        );
        assert!(
            lines[2].contains("expired") && lines[2].contains(" 0s"),
            "{text}"
        );
    }
}
