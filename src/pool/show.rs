//! The text `drover pool status` prints from a [`Status`]: three tables (members and their
//! health; what each serves, from its summary; the replication lag of this member behind
//! each) and a few lines of notes. Pure: the time is an argument.
//!
//! Not here: the JSON form (`--json` prints the status file as it is), the terms' definitions
//! (`report`).

use super::status::{MemberStatus, ServiceAddress, Status};
use std::fmt::Write;

/// `12 s`, `5 min`, `3 h`, `2 d`.
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} d", s / 86_400),
    }
}

fn ago(now_ms: u64, at_ms: Option<u64>) -> String {
    at_ms.map_or_else(
        || "-".into(),
        |at| format!("{} ago", duration(now_ms.saturating_sub(at))),
    )
}

fn bytes(n: u64) -> String {
    match n {
        0..10_240 => format!("{n} B"),
        10_240..10_485_760 => format!("{} KiB", n >> 10),
        10_485_760..10_737_418_240 => format!("{} MiB", n >> 20),
        _ => format!("{} GiB", n >> 30),
    }
}

/// Appends the rows as a table (the CLI's one printer).
fn table(out: &mut String, rows: &[Vec<String>]) {
    out.push_str(&crate::cli::print::table(rows));
}

fn header(cells: &[&str]) -> Vec<String> {
    crate::cli::print::header(cells)
}

/// The whole text, as of `now_ms` (unix ms).
pub fn render(status: &Status, now_ms: u64) -> String {
    let mut out = String::new();
    let all: Vec<(&MemberStatus, bool)> = std::iter::once((&status.me, true))
        .chain(status.members.iter().map(|m| (m, false)))
        .collect();

    let mut rows = vec![header(&["MEMBER", "ID", "STATE", "LAST HEARD", "STARTED"])];
    for (m, me) in &all {
        let state = match (*me, m.detail.down_since_ms) {
            (true, _) => "alive (this member)".to_string(),
            (false, Some(since)) if m.state == "down" || m.state == "left" => {
                format!("{} for {}", m.state, duration(now_ms.saturating_sub(since)))
            }
            _ => m.state.clone(),
        };
        let state = match &m.drain {
            Some(drain) => format!("{state}, {drain}"),
            None => state,
        };
        let state = if m.witness {
            format!("{state}, witness")
        } else {
            state
        };
        rows.push(vec![
            m.addr.to_string(),
            format!("{:016x}", m.id),
            state,
            if *me {
                "-".into()
            } else {
                ago(now_ms, m.detail.last_heard_ms)
            },
            ago(now_ms, (m.epoch > 0).then_some(m.epoch)),
        ]);
    }
    table(&mut out, &rows);

    let _ = writeln!(
        out,
        "\nWhat each member serves (as it says itself; SAID = how long ago):"
    );
    let mut rows = vec![header(&[
        "MEMBER",
        "SAID",
        "VERSION",
        "UP",
        "DHCP ADDRS",
        "LEASES",
        "NFS CLIENTS",
        "IMAGE FILES",
        "SERVICES",
    ])];
    for (m, _) in &all {
        let Some(s) = &m.detail.summary else {
            rows.push(vec![m.addr.to_string(), "no summary yet".into()]);
            continue;
        };
        let age = m.detail.summary_age_ms.unwrap_or(0);
        let services: Vec<String> = s
            .services
            .iter()
            .map(|v| {
                if v.floating {
                    let addrs: Vec<String> = v.addrs.iter().map(|a| a.to_string()).collect();
                    format!("{}@{}", v.name, addrs.join(","))
                } else {
                    v.name.clone()
                }
            })
            .collect();
        rows.push(vec![
            m.addr.to_string(),
            format!("{} ago", duration(age)),
            s.version.clone(),
            duration((s.uptime_secs * 1000).saturating_add(age)),
            s.dhcp.map_or("-".into(), |d| d.addresses.to_string()),
            s.dhcp.map_or("-".into(), |d| d.leases.to_string()),
            s.nfs_clients.map_or("-".into(), |n| n.to_string()),
            format!("{} ({})", s.blobs, bytes(s.blob_bytes)),
            if services.is_empty() {
                "-".into()
            } else {
                services.join(" ")
            },
        ]);
    }
    table(&mut out, &rows);

    let _ = writeln!(out, "\nReplication lag of this member behind each:");
    let mut rows = vec![header(&[
        "MEMBER",
        "LAST PULL",
        "ROWS",
        "MERGED",
        "PULLS",
        "FAILED",
        "BEHIND",
    ])];
    for m in &status.members {
        let Some(lag) = &m.detail.lag else { continue };
        let e = &lag.exchanges;
        let behind = match (lag.behind_ms, lag.newest_here, lag.newest_there) {
            (Some(0), _, _) => "0 (has all it wrote)".to_string(),
            (Some(ms), _, _) => format!("{ms} ms of its writes"),
            (None, None, Some(_)) => "nothing of it yet".into(),
            (None, _, _) => "-".into(),
        };
        rows.push(vec![
            m.addr.to_string(),
            ago(now_ms, e.last_ms),
            e.carried.to_string(),
            e.merged.to_string(),
            e.completed.to_string(),
            e.failed.to_string(),
            behind,
        ]);
    }
    table(&mut out, &rows);
    let _ = writeln!(
        out,
        "LAST PULL: this member's last completed exchange with it (it then had every row the\n\
         peer had, up to {}); ROWS/MERGED: rows that exchange carried / that changed the\n\
         store; BEHIND: the newest record it says it wrote against the newest of its records\n\
         here (HLC time)",
        super::sync::MAX_ROWS
    );
    let _ = writeln!(
        out,
        "DHCP address shares: {} member(s) on the roster{}; {}",
        status.roster.len(),
        match status.witnesses.len() {
            0 => String::new(),
            n => format!(" and {n} witness(es), which vote and own nothing"),
        },
        if status.majority {
            "this member sees a majority (may take over dead members' shares)"
        } else {
            "this member sees no majority: it serves only its own share"
        }
    );
    if let Some(sa) = &status.service_address {
        let _ = writeln!(out, "{}", service_address_line(status, sa));
    }
    for m in &status.members {
        if let Some(l) = &m.layers {
            let _ = writeln!(
                out,
                "NFS layer copies on {}: {} pending, {} failed, {} node(s) behind",
                m.addr, l.pending, l.failed, l.behind
            );
        }
    }
    if status.layers_unreplicated > 0 {
        let _ = writeln!(
            out,
            "{} stable NFS layer changes answered before any other member had a copy",
            status.layers_unreplicated
        );
    }
    if status.unauthenticated > 0 {
        let _ = writeln!(
            out,
            "{} datagrams dropped: not signed with this pool's key",
            status.unauthenticated
        );
    }
    out
}

/// `drover pool status`'s line about the floating service address.
fn service_address_line(status: &Status, sa: &ServiceAddress) -> String {
    let Some(holder) = sa.holder else {
        return format!(
            "service address {}: no holder (this member sees no majority)",
            sa.addr
        );
    };
    let who = std::iter::once(&status.me)
        .chain(&status.members)
        .find(|m| m.id == holder)
        .map_or_else(|| format!("{holder:016x}"), |m| m.addr.ip().to_string());
    match (holder == status.me.id, sa.here) {
        (true, true) => format!("service address {}: held by {who} (this member)", sa.addr),
        (true, false) => format!(
            "service address {}: taken by {who} (this member) after its safety wait",
            sa.addr
        ),
        (false, _) => format!("service address {}: held by {who}", sa.addr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::report::{Exchanges, Lag};
    use crate::pool::status::LayerCounts;
    use crate::pool::status::MemberDetail;
    use crate::pool::summary::{DhcpShare, Service, Summary};
    use crate::store::Version;
    use std::net::{Ipv4Addr, SocketAddrV4};

    fn member(last: u8, state: &str) -> MemberStatus {
        MemberStatus {
            addr: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, last), 7946),
            id: u64::from(last),
            epoch: 1_000,
            state: state.into(),
            last_sync_ms: None,
            addresses: Some(10),
            layers: None,
            drain: None,
            witness: false,
            detail: MemberDetail::default(),
        }
    }

    #[test]
    fn the_tables_show_health_serves_and_lag() {
        let now = 100_000;
        let mut me = member(1, "alive");
        me.detail.summary = Some(Summary {
            id: 1,
            addr: me.addr,
            epoch: 1_000,
            seq: 4,
            version: "0.1.0".into(),
            uptime_secs: 60,
            dhcp: Some(DhcpShare {
                addresses: 10,
                leases: 2,
            }),
            services: vec![
                Service {
                    name: "nfs".into(),
                    addrs: vec![Ipv4Addr::new(198, 18, 0, 1)],
                    port: 2049,
                    floating: false,
                },
                Service {
                    name: "nfs".into(),
                    addrs: vec![Ipv4Addr::new(198, 18, 0, 100)],
                    port: 2049,
                    floating: true,
                },
            ],
            nfs_clients: Some(3),
            holds_service_address: false,
            nfs_known: None,
            blobs: 2,
            blob_bytes: 20 << 20,
            newest_own: None,
            has: Default::default(),
            feed_floor: 0,
            drained: None,
        });
        me.detail.summary_age_ms = Some(0);
        let mut b = member(2, "alive");
        b.detail.last_heard_ms = Some(now - 500);
        b.detail.lag = Some(Lag::new(
            Exchanges {
                last_ms: Some(now - 1_000),
                carried: 12,
                merged: 11,
                completed: 40,
                failed: 1,
                last_failure_ms: None,
            },
            Some(Version {
                wall_ms: 5_000,
                logical: 0,
                member: 2,
            }),
            Some(Version {
                wall_ms: 5_300,
                logical: 0,
                member: 2,
            }),
        ));
        b.layers = Some(LayerCounts {
            pending: 1,
            failed: 0,
            behind: 2,
        });
        let mut c = member(3, "down");
        c.detail.down_since_ms = Some(now - 12_000);
        c.detail.lag = Some(Lag::default());
        let status = Status {
            me,
            updated_ms: now,
            members: vec![b, c],
            unauthenticated: 0,
            roster: vec![1, 2, 3],
            witnesses: Vec::new(),
            majority: true,
            layers_unreplicated: 4,
            recovering_since: None,
            service_address: Some(ServiceAddress {
                addr: Ipv4Addr::new(198, 18, 0, 100),
                holder: Some(1),
                here: true,
                takeovers: 1,
            }),
        };
        let text = render(&status, now);
        let line = |needle: &str, nth: usize| {
            text.lines()
                .filter(|l| l.starts_with(needle))
                .nth(nth)
                .unwrap_or_else(|| panic!("no line {nth} for {needle} in\n{text}"))
                .to_string()
        };
        assert!(
            line("198.18.0.1:7946", 0).contains("alive (this member)"),
            "{text}"
        );
        assert!(
            line("198.18.0.3:7946", 0).contains("down for 12 s"),
            "{text}"
        );
        assert!(line("198.18.0.2:7946", 0).contains("0 s ago"), "{text}");
        let serves = line("198.18.0.1:7946", 1);
        for part in [
            "0.1.0",
            "60 s",
            "10",
            "3",
            "2 (20 MiB)",
            "nfs nfs@198.18.0.100",
        ] {
            assert!(serves.contains(part), "{part:?} not in {serves:?}");
        }
        assert!(line("198.18.0.2:7946", 1).contains("no summary yet"));
        let lag = line("198.18.0.2:7946", 2);
        for part in ["1 s ago", "12", "11", "40", "300 ms of its writes"] {
            assert!(lag.contains(part), "{part:?} not in {lag:?}");
        }
        assert!(line("198.18.0.3:7946", 2).contains("  -"), "{text}");
        for note in [
            "service address 198.18.0.100: held by 198.18.0.1 (this member)",
            "NFS layer copies on 198.18.0.2:7946: 1 pending, 0 failed, 2 node(s) behind",
            "4 stable NFS layer changes answered before any other member had a copy",
        ] {
            assert!(text.contains(note), "{note:?} not in\n{text}");
        }
    }

    #[test]
    fn durations_pick_a_readable_unit() {
        assert_eq!(duration(999), "0 s");
        assert_eq!(duration(119_000), "119 s");
        assert_eq!(duration(600_000), "10 min");
        assert_eq!(duration(3 * 3_600_000), "3 h");
        assert_eq!(duration(5 * 86_400_000), "5 d");
        assert_eq!(bytes(20 << 20), "20 MiB");
    }
}
