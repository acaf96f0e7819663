//! Appliance mode: drover as PID 1 of the rescue stick (`drover usb build`), selected by
//! `drover.mode=appliance` on the kernel command line. Instead of booting a node it turns the
//! machine into a drover server for the segment it is plugged into.
//!
//! Data flow, each step printed as a `drover-agent:` line:
//!
//! 1. read the mode's keys ([`crate::usb::layout::appliance_params`]): the address to serve
//!    on (`drover.address=CIDR`, default [`crate::usb::layout::DEFAULT_ADDRESS`]), an optional
//!    gateway and interface, the data partition's label;
//! 2. load the modules of the initramfs (NICs, disks, USB storage, ext4);
//! 3. find the ext4 partition with that label (block devices appear as their drivers probe,
//!    USB ones late: polled for [`DATA_WAIT`]) and mount it on the state directory
//!    [`STATE_DIR`]; without it, the state lives in RAM and the console says it will be lost;
//! 4. bring up the Ethernet interfaces, pick the named one or the first with a carrier, and
//!    give it the address (and the default route);
//! 5. start `drover --state-dir STATE_DIR serve --interface IFACE` as a child (this same
//!    binary), print the page's address and the first-login password (the file
//!    `drover serve` writes at its first start) on the console, and restart the server with
//!    backoff whenever it exits. PID 1 itself never exits.
//!
//! Not here: a DHCP client (the address is the stick's, so that nodes find the appliance at
//! a known place), serving more than one interface, `pool join`, a clean unmount at power
//! off (every store write is fsynced, and ext4's journal covers the rest).

use super::{
    interfaces, list_or_none, load_modules, Console, BACKOFF_FIRST, BACKOFF_MAX, CARRIER_WAIT,
};
use crate::net::sys;
use crate::usb::layout::{self, ApplianceParams};
use std::fs;
use std::io::Read as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where the data partition is mounted: `drover serve`'s state directory.
pub const STATE_DIR: &str = "/var/lib/drover";
/// How long to look for the data partition before going on with the state in RAM.
const DATA_WAIT: Duration = Duration::from_secs(30);
/// How long to wait for a first Ethernet interface before saying so (then keep waiting).
const IFACE_WAIT: Duration = Duration::from_secs(10);
/// How long `drover serve` may take to write the first-login password at its first start.
const PASSWORD_WAIT: Duration = Duration::from_secs(60);
/// A server that ran this long before exiting restarts without backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Runs appliance mode; returns only with the reason it cannot start at all.
pub(super) fn run(con: &mut Console, cmdline: &str) -> Result<std::convert::Infallible, String> {
    let words = super::cmdline::split(cmdline);
    let p = layout::appliance_params(&words).map_err(|e| e.to_string())?;
    con.say(format_args!(
        "appliance mode: address {}/{} gw {} interface {} data partition {}",
        p.address,
        p.prefix,
        p.gateway.map_or("-".into(), |g| g.to_string()),
        p.interface.as_deref().unwrap_or("(first with a carrier)"),
        p.data_label
    ));
    if let Err(e) = sys::sethostname("drover") {
        con.say(format_args!("sethostname drover: {e}"));
    }
    load_modules(con);
    mount_data(con, &p.data_label);
    let iface = bring_up_network(con, &p);
    supervise(con, &p, &iface)
}

/// Mounts the data partition on [`STATE_DIR`], or a tmpfs when there is none.
fn mount_data(con: &mut Console, label: &str) {
    let _ = fs::create_dir_all(STATE_DIR);
    let start = Instant::now();
    loop {
        if let Some(dev) = find_label(label) {
            match sys::mount(&dev, STATE_DIR, Some("ext4"), libc::MS_NOATIME, None) {
                Ok(()) => {
                    con.say(format_args!(
                        "mounted {dev} ({label}) on {STATE_DIR}: the state persists"
                    ));
                    return;
                }
                Err(e) => con.say(format_args!("mounting {dev} ({label}): {e}")),
            }
        }
        if start.elapsed() >= DATA_WAIT {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = sys::mount("tmpfs", STATE_DIR, Some("tmpfs"), 0, Some("mode=0700"));
    con.say(format_args!(
        "WARNING: no partition labelled {label} after {}s; the state is in RAM and will be \
         LOST at power off",
        DATA_WAIT.as_secs()
    ));
}

/// The `/dev` path of the block device whose ext4 label is `label`.
fn find_label(label: &str) -> Option<String> {
    let mut names: Vec<String> = fs::read_dir("/sys/class/block")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.into_iter().find_map(|n| {
        let dev = format!("/dev/{n}");
        let mut head = vec![0u8; layout::EXT4_PROBE_LEN];
        fs::File::open(&dev).ok()?.read_exact(&mut head).ok()?;
        (layout::ext4_label(&head)? == label).then_some(dev)
    })
}

/// Ethernet interfaces (ARPHRD_ETHER), sorted by name.
fn ethernet() -> Vec<String> {
    interfaces()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|n| {
            fs::read_to_string(format!("/sys/class/net/{n}/type")).is_ok_and(|t| t.trim() == "1")
        })
        .collect()
}

fn has_carrier(iface: &str) -> bool {
    fs::read_to_string(format!("/sys/class/net/{iface}/carrier")).is_ok_and(|c| c.trim() == "1")
}

/// Brings up every Ethernet interface, picks one and gives it the address; returns its name.
fn bring_up_network(con: &mut Console, p: &ApplianceParams) -> String {
    let _ = sys::interface_up("lo");
    let start = Instant::now();
    let mut next_report = IFACE_WAIT;
    let all = loop {
        let all = ethernet();
        let named_there = p
            .interface
            .as_ref()
            .is_none_or(|want| all.iter().any(|n| n == want));
        if !all.is_empty() && named_there {
            break all;
        }
        if start.elapsed() >= next_report {
            con.say(format_args!(
                "no {} after {}s (have: {}); is its driver in the initramfs? still waiting",
                p.interface.as_deref().unwrap_or("Ethernet interface"),
                start.elapsed().as_secs(),
                list_or_none(&all)
            ));
            next_report += IFACE_WAIT;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for n in &all {
        if let Err(e) = sys::interface_up(n) {
            con.say(format_args!("bringing {n} up: {e}"));
        }
    }
    let iface = match &p.interface {
        Some(want) => want.clone(),
        None => {
            let start = Instant::now();
            loop {
                if let Some(n) = all.iter().find(|n| has_carrier(n)) {
                    break n.clone();
                }
                if start.elapsed() >= CARRIER_WAIT {
                    con.say(format_args!(
                        "no interface has a carrier after {CARRIER_WAIT:?}; using {}",
                        all[0]
                    ));
                    break all[0].clone();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    let netmask = Ipv4Addr::from(u32::MAX << (32 - u32::from(p.prefix)));
    super::set_address(con, &iface, p.address, netmask, p.gateway);
    con.say(format_args!(
        "{iface} up with {}/{} (of {})",
        p.address,
        p.prefix,
        all.join(" ")
    ));
    iface
}

/// Runs `drover serve` and restarts it whenever it exits. Never returns.
fn supervise(
    con: &mut Console,
    p: &ApplianceParams,
    iface: &str,
) -> Result<std::convert::Infallible, String> {
    let mut delay = BACKOFF_FIRST;
    let mut first = true;
    loop {
        let started = Instant::now();
        let child = Command::new("/proc/self/exe")
            .args(["--state-dir", STATE_DIR, "serve", "--interface", iface])
            .env("DROVER_LOG", "info")
            .stdin(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                con.say(format_args!(
                    "starting drover serve: {e}; retrying in {delay:?}"
                ));
                std::thread::sleep(delay);
                delay = (delay * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        con.say(format_args!("drover serve started (pid {})", child.id()));
        if first {
            announce(con, p);
            first = false;
        }
        let status = child.wait();
        if started.elapsed() >= HEALTHY_RUN {
            delay = BACKOFF_FIRST;
        }
        con.say(format_args!(
            "drover serve exited ({}); restarting in {delay:?}",
            status.map_or_else(|e| e.to_string(), |s| s.to_string())
        ));
        std::thread::sleep(delay);
        delay = (delay * 2).min(BACKOFF_MAX);
    }
}

/// Prints where the page is and how to log in the first time.
fn announce(con: &mut Console, p: &ApplianceParams) {
    let path = Path::new(STATE_DIR).join(crate::auth::INITIAL_PASSWORD_FILE);
    let start = Instant::now();
    let password = loop {
        match fs::read_to_string(&path) {
            Ok(s) if !s.trim().is_empty() => break Some(s.trim().to_string()),
            _ if start.elapsed() >= PASSWORD_WAIT => break None,
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    con.say(format_args!(
        "DROVER-APPLIANCE page http://{}/ user {}",
        p.address,
        crate::auth::ADMIN
    ));
    match password {
        Some(pw) => con.say(format_args!("DROVER-APPLIANCE first-login password {pw}")),
        None => con.say(
            "DROVER-APPLIANCE no first-login password: the admin password was set before \
             (it is on the data partition)",
        ),
    }
}
