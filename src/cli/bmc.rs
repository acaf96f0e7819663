//! `drover bmc sensors|sel TARGET...`: resolves targets from the local store as `drover power`
//! does, reads each node's BMC ([`crate::ipmi::sensors::read_all`], IPMI or Redfish as the
//! node's records say) and prints one table (or JSON) for all nodes. A node whose BMC fails
//! gets a row with the failure's class; the command then exits non-zero.
//! `drover console NODE`: the node's serial console over IPMI SOL in this process's own
//! session ([`crate::ipmi::console`]), standard input to the node, its output to standard
//! output. Not through `--server` (no API route yet): these run where the store is.

use super::args::{BmcCmd, BmcReadArgs};
use super::local::Local;
use super::print::{header, table};
use crate::config::Config;
use crate::ipmi::sensors::{self, Found, What};
use anyhow::{bail, Result};
use serde_json::json;
use std::path::Path;

pub fn run(state: &Path, cmd: &BmcCmd) -> Result<()> {
    let (what, args) = match cmd {
        BmcCmd::Sensors(a) => (What::Sensors, a),
        BmcCmd::Sel(a) => (What::Sel, a),
    };
    read(state, what, args)
}

fn read(state: &Path, what: What, args: &BmcReadArgs) -> Result<()> {
    let config = Config::load(args.config.as_deref())?;
    let fan = crate::serve::settings::fan_out(&config.power);
    let parallel = args.parallel.unwrap_or(fan.max_sessions).max(1);
    let store = Local::new(state).store()?;
    let jobs = store.read(|r| crate::ipmi::power::resolve(r, &args.targets.targets))?;
    let results = sensors::read_all(&jobs, &fan.dial, what, parallel);
    let failed = results.iter().filter(|r| r.result.is_err()).count();
    if args.json {
        let items: Vec<serde_json::Value> = results
            .iter()
            .map(|r| match &r.result {
                Ok(Found::Sensors(s)) => json!({"node": r.node, "ok": true, "sensors": s}),
                Ok(Found::Sel(e)) => json!({"node": r.node, "ok": true, "entries": e}),
                Err(e) => json!({
                    "node": r.node, "ok": false, "class": e.class(), "reason": e.to_string()
                }),
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
    } else {
        print!("{}", render(what, &results));
    }
    if failed > 0 {
        bail!("{failed} of {} nodes failed", results.len());
    }
    Ok(())
}

/// One table: a row per sensor or entry, a row per failed node.
fn render(what: What, results: &[sensors::NodeRead]) -> String {
    let mut rows = vec![match what {
        What::Sensors => header(&["NODE", "SENSOR", "TYPE", "READING", "UNIT", "STATUS"]),
        What::Sel => header(&["NODE", "ID", "TIME", "SENSOR", "EVENT"]),
    }];
    for r in results {
        match &r.result {
            Ok(Found::Sensors(list)) => rows.extend(list.iter().map(|s| {
                let unit = if s.unit.is_empty() { "-" } else { &s.unit };
                vec![
                    r.node.clone(),
                    s.name.clone(),
                    s.kind.clone(),
                    s.reading.clone(),
                    unit.to_string(),
                    s.status.clone(),
                ]
            })),
            Ok(Found::Sel(list)) => rows.extend(list.iter().map(|e| {
                vec![
                    r.node.clone(),
                    e.id.clone(),
                    e.time.clone(),
                    e.sensor.clone(),
                    e.event.clone(),
                ]
            })),
            Err(e) => rows.push(vec![
                r.node.clone(),
                format!("failed: {}", e.class()),
                e.to_string(),
            ]),
        }
    }
    table(&rows)
}

/// `drover console NODE`.
pub fn console(state: &Path, node: &str, config: Option<&Path>) -> Result<()> {
    use crate::store::model::BmcProtocol;
    let config = Config::load(config)?;
    let fan = crate::serve::settings::fan_out(&config.power);
    let store = Local::new(state).store()?;
    let jobs = store.read(|r| crate::ipmi::power::resolve(r, &[node.to_string()]))?;
    let [job] = jobs.as_slice() else {
        bail!(
            "{node:?} names {} nodes; the console is of one node",
            jobs.len()
        );
    };
    if job.via.protocol == BmcProtocol::Redfish {
        bail!("{node}: the console needs IPMI Serial-over-LAN; its BMC is set to Redfish");
    }
    let access = job
        .access
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{node}: {e}"))?;
    let (tx, rx) = std::sync::mpsc::sync_channel(64);
    // The reader thread stays blocked on standard input after the console ends; the process
    // exits right after, which ends it.
    std::thread::spawn(move || crate::ipmi::console::read_keys(std::io::stdin(), tx));
    eprintln!(
        "[console of {node} at {}: ~. at the start of a line leaves]",
        access.address()
    );
    let mut out = std::io::stdout();
    crate::ipmi::console::attach(access, &fan.dial, &rx, &mut out)?;
    eprintln!("[console of {node} closed]");
    Ok(())
}
