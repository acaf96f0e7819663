//! `drover bmc sensors|sel TARGET...`: resolves targets from the local store as `drover power`
//! does, reads each node's BMC ([`crate::ipmi::sensors::read_all`], IPMI or Redfish as the
//! node's records say) and prints one table (or JSON) for all nodes. A node whose BMC fails
//! gets a row with the failure's class; the command then exits non-zero.
//! `drover console NODE`: the node's serial console, standard input to the node, its output
//! to standard output. Locally, over IPMI SOL in this process's own session
//! ([`crate::ipmi::console`]); with `--server`, through that member's shared console (a
//! WebSocket on `GET /api/v1/nodes/{name}/console`, `crate::ipmi::hub`), asking to write
//! unless `--read-only`. `--log` prints the console log of the last boot (`--all`: every
//! boot kept), from the state directory or through the API. With `--server`, `bmc
//! sensors|sel` ask the server (`GET /api/v1/bmc/sensors|sel`), which reads the BMCs.

use super::args::{BmcCmd, BmcReadArgs, Command};
use super::local::Local;
use super::print::{header, table};
use super::remote::Remote;
use crate::config::Config;
use crate::ipmi::sensors::{self, What};
use anyhow::{bail, Result};
use serde_json::Value;
use std::io::Write;
use std::path::Path;

fn what(cmd: &BmcCmd) -> (What, &BmcReadArgs) {
    match cmd {
        BmcCmd::Sensors(a) => (What::Sensors, a),
        BmcCmd::Sel(a) => (What::Sel, a),
    }
}

pub fn run(state: &Path, cmd: &BmcCmd) -> Result<()> {
    let (what, args) = what(cmd);
    let config = Config::load(args.config.as_deref())?;
    let fan = crate::serve::settings::fan_out(&config.power);
    let parallel = args.parallel.unwrap_or(fan.max_sessions).max(1);
    let store = Local::new(state).store()?;
    let jobs = store.read(|r| crate::ipmi::power::resolve(r, &args.targets.targets))?;
    let results = sensors::read_all(&jobs, &fan.dial, what, parallel);
    show(what, args.json, &sensors::report(&results))
}

/// `drover --server URL bmc sensors|sel TARGET...`: the server reads the BMCs.
pub fn run_remote(remote: &Remote, cmd: &BmcCmd) -> Result<()> {
    let (what, args) = what(cmd);
    if args.config.is_some() || args.parallel.is_some() {
        bail!("--config and --parallel are the server's own settings ([power]) with --server");
    }
    let path = match what {
        What::Sensors => "sensors",
        What::Sel => "sel",
    };
    let query: Vec<String> = args
        .targets
        .targets
        .iter()
        .map(|t| format!("target={}", query_escape(t)))
        .collect();
    let found = remote.call("GET", &format!("/bmc/{path}?{}", query.join("&")), None)?;
    let items = found["items"].as_array().cloned().unwrap_or_default();
    show(what, args.json, &items)
}

/// Percent-escapes a query value (targets may hold `[`, `]` and `,`).
fn query_escape(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prints the per-node results (`sensors::report`) as JSON or one table; fails when any
/// node failed.
fn show(what: What, json: bool, items: &[Value]) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(items)?);
    } else {
        print!("{}", render(what, items));
    }
    let failed = items.iter().filter(|i| i["ok"] != true).count();
    if failed > 0 {
        bail!("{failed} of {} nodes failed", items.len());
    }
    Ok(())
}

/// One table: a row per sensor or entry, a row per failed node.
fn render(what: What, items: &[Value]) -> String {
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or("-").to_string();
    let mut rows = vec![match what {
        What::Sensors => header(&["NODE", "SENSOR", "TYPE", "READING", "UNIT", "STATUS"]),
        What::Sel => header(&["NODE", "ID", "TIME", "SENSOR", "EVENT"]),
    }];
    for item in items {
        let node = text(item, "node");
        if item["ok"] != true {
            rows.push(vec![
                node,
                format!("failed: {}", text(item, "class")),
                text(item, "reason"),
            ]);
            continue;
        }
        let (list, keys): (_, &[&str]) = match what {
            What::Sensors => (
                &item["sensors"],
                &["name", "kind", "reading", "unit", "status"],
            ),
            What::Sel => (&item["entries"], &["id", "time", "sensor", "event"]),
        };
        for entry in list.as_array().into_iter().flatten() {
            let mut row = vec![node.clone()];
            row.extend(keys.iter().map(|k| match text(entry, k) {
                empty if empty.is_empty() && *k == "unit" => "-".to_string(),
                t => t,
            }));
            rows.push(row);
        }
    }
    table(&rows)
}

/// How long the remote console waits for output before it looks at the keyboard again.
const KEY_WAIT: std::time::Duration = std::time::Duration::from_millis(30);

/// The arguments of `drover console`.
struct ConsoleArgs<'a> {
    node: &'a str,
    log: bool,
    all: bool,
    read_only: bool,
    force: bool,
    config: Option<&'a Path>,
}

fn console_args(command: &Command) -> Result<ConsoleArgs<'_>> {
    let Command::Console {
        node,
        log,
        all,
        read_only,
        force,
        config,
    } = command
    else {
        bail!("internal: not a console command");
    };
    Ok(ConsoleArgs {
        node,
        log: *log,
        all: *all,
        read_only: *read_only,
        force: *force,
        config: config.as_deref(),
    })
}

/// Prints kept boots `(boot_ms, bytes)`: the last one, or all with a line before each.
fn print_boots(node: &str, boots: &[(u64, Vec<u8>)], all: bool) -> Result<()> {
    let Some(last) = boots.len().checked_sub(1) else {
        bail!("no console log of {node} on this member (its console was never open here)");
    };
    let shown = if all { boots } else { &boots[last..] };
    let mut out = std::io::stdout().lock();
    for (boot_ms, bytes) in shown {
        if all {
            let when = match boot_ms {
                0 => "before any boot event".to_string(),
                ms => crate::timeline::format_utc(*ms),
            };
            writeln!(out, "---- {node}: boot of {when} ----")?;
        }
        out.write_all(bytes)?;
    }
    out.flush()?;
    Ok(())
}

/// `drover console NODE` through a server's shared console.
pub fn console_remote(remote: &Remote, command: &Command) -> Result<()> {
    use tungstenite::Message;
    let a = console_args(command)?;
    let node = a.node;
    if a.log {
        let all = if a.all { "?all=true" } else { "" };
        let found = remote.call("GET", &format!("/nodes/{node}/console/log{all}"), None)?;
        let boots: Vec<(u64, Vec<u8>)> = found["boots"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                let text = b["text"].as_str().unwrap_or_default();
                (b["boot_ms"].as_u64().unwrap_or(0), text.as_bytes().to_vec())
            })
            .collect();
        return print_boots(node, &boots, a.all);
    }
    let mut query = Vec::new();
    if !a.read_only {
        query.push("write=true");
    }
    if a.force {
        query.push("force=true");
    }
    let path = format!("/nodes/{node}/console?{}", query.join("&"));
    let mut ws = remote.websocket(&path, KEY_WAIT)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(64);
    // As in the local console: the reader thread ends with the process.
    std::thread::spawn(move || crate::ipmi::console::read_keys(std::io::stdin(), tx));
    eprintln!("[console of {node} through the server: ~. at the start of a line leaves]");
    let mut out = std::io::stdout();
    loop {
        loop {
            match rx.try_recv() {
                Ok(keys) => ws.send(Message::Binary(keys.into()))?,
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    // Leaving: a failed goodbye changes nothing for the user.
                    let _ = ws.close(None).and_then(|()| ws.flush());
                    eprintln!("[console of {node} closed]");
                    return Ok(());
                }
            }
        }
        match ws.read() {
            Ok(Message::Binary(bytes)) => {
                out.write_all(&bytes)?;
                out.flush()?;
            }
            Ok(Message::Text(text)) => {
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if let Some(why) = v["ended"].as_str() {
                    bail!("the console of {node} ended: {why}");
                }
                if let Some(notice) = v["notice"].as_str() {
                    eprintln!("[{notice}]");
                }
            }
            Ok(Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed) => {
                eprintln!("[console of {node} closed by the server]");
                return Ok(());
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => bail!("console of {node}: {e}"),
        }
    }
}

/// `drover console NODE` on the appliance: its own SOL session, or the log.
pub fn console(state: &Path, command: &Command) -> Result<()> {
    use crate::store::model::BmcProtocol;
    let a = console_args(command)?;
    let node = a.node;
    if a.log {
        let boots: Vec<(u64, Vec<u8>)> = crate::ipmi::conlog::read(state, node)?
            .into_iter()
            .map(|b| (b.boot_ms, b.bytes))
            .collect();
        return print_boots(node, &boots, a.all);
    }
    if a.read_only || a.force {
        bail!("--read-only and --force choose a seat on a server's shared console: use --server");
    }
    let config = Config::load(a.config)?;
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
