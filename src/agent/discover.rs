//! The agent's discovery mode (`drover.discover=1`), for a machine drover does not know:
//! gather the inventory from `/proc` and `/sys`, listen on every NIC for the switch's LLDP
//! frame, post the inventory to `{server}/boot/{mac}/inventory`, then poll
//! `{server}/boot/{mac}/standing` until the machine is adopted as a node, and reboot so it
//! network-boots again, now as that node.
//!
//! The shell only: parsing and decoding are pure (`crate::discover::inventory`,
//! `crate::discover::lldp`). Servers are tried in order with backoff, forever: PID 1 never
//! gives up. Not here: the BMC's address (needs the IPMI device; not gathered yet), LLDP on
//! VLANs or bonds.

use super::cmdline::{BootParams, ServerUrl};
use super::{http, Console, BACKOFF_FIRST, BACKOFF_MAX};
use crate::discover::adopt::Standing;
use crate::discover::inventory::{self, Dmi, Inventory, Nic, MAX_DEVICES};
use crate::discover::lldp;
use crate::net::sys;
use std::fs;
use std::io::Read;
use std::time::{Duration, Instant};

/// How long to listen for LLDP: switches send every 30 s by default, so one whole interval
/// and a margin.
const LLDP_LISTEN: Duration = Duration::from_secs(35);
/// Between two polls of the machine's standing.
const POLL: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest standing answer read.
const MAX_STANDING: u64 = 4096;

/// Reports this machine and waits to be adopted; reboots then. Never returns.
pub(super) fn run(con: &mut Console, p: &BootParams) -> ! {
    let mut inv = gather();
    con.say(format_args!(
        "discovery: {} CPUs, {} MiB, {} disks, {} NICs; listening for LLDP for {} s",
        inv.cpus,
        inv.memory_kib >> 10,
        inv.disks.len(),
        inv.nics.len(),
        LLDP_LISTEN.as_secs()
    ));
    listen_lldp(&mut inv.nics);
    for n in &inv.nics {
        if let Some(l) = &n.lldp {
            let switch = l.system_name.as_deref().unwrap_or(&l.chassis_id);
            con.say(format_args!(
                "LLDP on {}: {switch} port {}",
                n.name, l.port_id
            ));
        }
    }
    // Serialising these plain types cannot fail (no maps with non-string keys).
    let body = serde_json::to_string(&inv).unwrap_or_default();
    let report = format!("/boot/{}/inventory", p.mac);
    let mut standing = until_answered(con, p, |server| {
        match http::post_json(
            server,
            &format!("{}{report}", server.prefix),
            &body,
            REQUEST_TIMEOUT,
        ) {
            Ok(200) => Ok(Standing::Waiting),
            Ok(status) => Err(format!("{server} answered {status} to the inventory")),
            Err(e) => Err(format!("{server}: {e}")),
        }
    });
    con.say("discovery: inventory reported; waiting to be adopted (`drover node discovered`)");
    let poll = format!("/boot/{}/standing", p.mac);
    loop {
        if let Standing::Adopted(node) = &standing {
            con.say(format_args!("discovery: adopted as node {node}; rebooting"));
            let e = sys::reboot();
            con.say(format_args!("reboot: {e}"));
            super::halt_forever();
        }
        std::thread::sleep(POLL);
        standing = until_answered(con, p, |server| {
            let path = format!("{}{poll}", server.prefix);
            let mut text = String::new();
            http::get(server, &path)
                .map_err(|e| format!("{server}: {e}"))?
                .take(MAX_STANDING)
                .read_to_string(&mut text)
                .map_err(|e| format!("{server}: {e}"))?;
            serde_json::from_str(&text).map_err(|e| format!("{server}: bad standing: {e}"))
        });
    }
}

/// Runs `ask` against each server in order until one answers, with backoff between rounds.
fn until_answered<T>(
    con: &mut Console,
    p: &BootParams,
    mut ask: impl FnMut(&ServerUrl) -> Result<T, String>,
) -> T {
    let mut delay = BACKOFF_FIRST;
    loop {
        for server in &p.servers {
            match ask(server) {
                Ok(answer) => return answer,
                Err(e) => con.say(format_args!("discovery: {e}")),
            }
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(BACKOFF_MAX);
    }
}

fn read(path: &str) -> Option<String> {
    fs::read_to_string(path).ok()
}

/// Entry names of a sysfs directory, sorted, at most [`MAX_DEVICES`].
fn entries(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names.truncate(MAX_DEVICES);
    names
}

/// The inventory from `/proc` and `/sys` (NICs without LLDP neighbours yet).
fn gather() -> Inventory {
    let (cpu_model, cpus) = inventory::parse_cpuinfo(&read("/proc/cpuinfo").unwrap_or_default());
    let memory_kib = read("/proc/meminfo")
        .as_deref()
        .and_then(inventory::parse_meminfo)
        .unwrap_or(0);
    let disks = entries("/sys/block")
        .into_iter()
        .filter_map(|name| {
            let size = read(&format!("/sys/block/{name}/size"))?;
            // SCSI/SATA disks name their serial under device/, virtio disks beside size.
            let serial = read(&format!("/sys/block/{name}/device/serial"))
                .or_else(|| read(&format!("/sys/block/{name}/serial")));
            inventory::disk(&name, &size, serial.as_deref())
        })
        .collect();
    let nics = entries("/sys/class/net")
        .into_iter()
        .filter_map(|name| {
            let address = read(&format!("/sys/class/net/{name}/address"))?;
            let speed = read(&format!("/sys/class/net/{name}/speed"));
            inventory::nic(&name, &address, speed.as_deref())
        })
        .collect();
    let dmi = |file: &str| {
        read(&format!("/sys/class/dmi/id/{file}")).and_then(|t| inventory::sysfs_text(&t))
    };
    Inventory {
        cpu_model,
        cpus,
        memory_kib,
        disks,
        nics,
        dmi: Dmi {
            vendor: dmi("sys_vendor"),
            product: dmi("product_name"),
            serial: dmi("product_serial"),
        },
    }
}

/// Listens on every NIC at once for [`LLDP_LISTEN`]; fills in the first neighbour each saw.
fn listen_lldp(nics: &mut [Nic]) {
    let deadline = Instant::now() + LLDP_LISTEN;
    let listeners: Vec<_> = nics
        .iter()
        .map(|n| {
            let name = n.name.clone();
            std::thread::spawn(move || {
                // A NIC that stays down hears nothing; the others are still heard.
                let _ = sys::interface_up(&name);
                let index = sys::interface_index(&name)?;
                let mut socket = sys::frame_socket(index, lldp::ETHERTYPE, POLL).ok()?;
                let mut frame = vec![0u8; 1600];
                while Instant::now() < deadline {
                    // Timeouts and frames that do not decode: keep listening.
                    if let Ok(n) = socket.read(&mut frame) {
                        if let Ok(neighbour) = lldp::decode_frame(&frame[..n]) {
                            return Some(neighbour);
                        }
                    }
                }
                None
            })
        })
        .collect();
    for (nic, listener) in nics.iter_mut().zip(listeners) {
        nic.lldp = listener.join().ok().flatten();
    }
}
