//! The node agent: drover running as `/init` (PID 1) of its own initramfs, booting a node
//! into a RAM root or an NFS root.
//!
//! Data flow, one step after the other, each printed to the console as a `drover-agent:` line
//! with the time since the kernel started and the step's own duration:
//!
//! 1. mount `/proc`, `/sys`, devtmpfs on `/dev`, tmpfs on `/run`;
//! 2. parse `/proc/cmdline` into [`cmdline::BootParams`] (server URLs, image, node name, MAC,
//!    IPv4 address, netmask, gateway, DNS, domain) and set the kernel host name to the node
//!    name (before any NFS mount: the kernel's NFSv4 client owner is built from it, and
//!    nodes sharing one owner take each other's state on the server);
//! 3. load the NIC modules listed in `/etc/drover/modules` (written by
//!    [`crate::image::initramfs::build`]) with `finit_module`;
//! 4. wait for the interface whose MAC is `drover.mac`; bring it and `lo` up, set the address,
//!    netmask and default route (ioctls in [`crate::net::sys`]);
//! 5. RAM root: mount a tmpfs on `/newroot` and fill it from the swarm ([`swarm`]: chunks
//!    from peers and members, verified, unpacked in order, and served to peers by [`seed`])
//!    unless `drover.swarm=0`; when that is off or fails, stream
//!    `{server}/images/{image}/rootfs.tar` into it ([`http`], [`crate::image::unpack`]),
//!    trying each server in order with backoff until one works. NFS root (`drover.root=nfs:...`): mount the node's root over NFSv4 on
//!    `/newroot` and make the scratch directories writable ([`nfsroot`]), retrying with
//!    backoff and reporting a `failed` event with the reason while the mount fails;
//! 6. write the node's files ([`files`]) into the new root;
//! 7. switch root: move the API mounts into `/newroot`, free the initramfs, move `/newroot`
//!    onto `/`, chroot, and exec `/sbin/init` (or `/init`, `/bin/sh`).
//!
//! With `drover.mode=appliance` (the rescue stick of `drover usb build`) step 2 hands over to
//! [`appliance`]: mount the data partition, bring up the network, run `drover serve`.
//!
//! In discovery mode (`drover.discover=1`, an unknown machine) step 4 is followed by
//! [`discover`]: report the inventory, wait to be adopted, reboot.
//!
//! In service mode (`drover.service=1`) step 5 is followed by [`service`]: the root stays
//! read-only under `/image`, sshd runs from the initramfs, and the agent reboots once the
//! node's boot script no longer asks for service mode.
//!
//! After steps 4, 5 and 6 (and when switching root fails) the agent posts a boot event
//! (`agent`, `root`, `ready`, `failed`) to `{server}/boot/{mac}/events` for the node's
//! timeline ([`crate::timeline`]); a lost event is printed and never stops the boot.
//!
//! Failures of the network steps are printed and retried forever; a failure nothing can fix
//! (a bad command line, no init in the image) is printed and the agent sleeps: PID 1 must
//! never exit, or the kernel panics and the reason scrolls away.
//!
//! `drover agent simulate` ([`simulate`]) runs steps 4-5 without the kernel parts for the
//! boot-storm bench: DHCP as iPXE, the boot script ([`script`]), then the same download
//! ([`fetch_root`]) into a sink that keeps nothing ([`RootSink`]).
//!
//! Not here yet: other members as NFS fallbacks, DHCP (the
//! address comes from the command line), IPv6 configuration, VLANs and bonds, storage drivers.

pub mod appliance;
pub mod cmdline;
pub mod discover;
pub mod files;
pub mod http;
pub mod nfsroot;
pub mod script;
pub mod seed;
pub mod service;
pub mod sets;
pub mod simulate;
pub mod swarm;

use crate::image::unpack;
use crate::net::sys;
use cmdline::{BootParams, RootSource, ServerUrl};
use std::fmt::Display;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Where the initramfs builder puts the module load order (see `image::initramfs`).
const MODULE_LIST: &str = "/etc/drover/modules";
const MODULE_DIR: &str = "/lib/modules";
const NEWROOT: &str = "/newroot";
/// How long to wait for the boot interface to appear before complaining (then keep waiting).
const IFACE_WAIT: Duration = Duration::from_secs(10);
/// How long to wait for carrier on the boot interface before trying the network anyway.
const CARRIER_WAIT: Duration = Duration::from_secs(5);
/// Backoff between rounds over all servers: doubles from the first to the last value.
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Candidates for the image's init, in order.
const INITS: &[&str] = &["/sbin/init", "/init", "/bin/sh"];

const RAMFS_MAGIC: i64 = 0x8584_58f6;
const TMPFS_MAGIC: i64 = 0x0102_1994;

/// Console output with boot timing.
struct Console {
    last: Instant,
}

impl Console {
    fn new() -> Self {
        Console {
            last: Instant::now(),
        }
    }

    /// Prints `drover-agent: [  2.345s +0.012s] msg` (time since kernel start, step time).
    fn say(&mut self, msg: impl Display) {
        let now = Instant::now();
        let step = now.duration_since(self.last);
        self.last = now;
        let up = sys::boottime();
        // Nothing useful can be done if the console is gone; keep booting.
        let _ = writeln!(
            io::stderr(),
            "drover-agent: [{:>4}.{:03}s +{}.{:03}s] {msg}",
            up.as_secs(),
            up.subsec_millis(),
            step.as_secs(),
            step.subsec_millis()
        );
    }
}

/// Whether this process is the `/init` of drover's initramfs: PID 1, on a ramfs/tmpfs root
/// that has the initramfs builder's module list. `main` checks this, so that drover as PID 1
/// of a container (`drover serve` in Docker) is not taken for the agent.
pub fn is_initramfs_init() -> bool {
    std::process::id() == 1 && on_initramfs() && Path::new(MODULE_LIST).exists()
}

/// Runs the agent. Never returns: it execs the image's init, or sleeps forever on a failure
/// it cannot fix. Refuses to run unless it is PID 1 on an initramfs.
pub fn run() -> ! {
    if !is_initramfs_init() {
        eprintln!(
            "drover agent: runs only as /init (PID 1) of drover's initramfs; \
             refusing to mount and switch root on this system"
        );
        std::process::exit(2);
    }
    std::panic::set_hook(Box::new(|info| {
        // panic = "abort" would end PID 1 and panic the kernel; print and park instead.
        eprintln!("drover-agent: BUG: {info}");
        halt_forever();
    }));
    let mut con = Console::new();
    con.say(format_args!(
        "drover {} agent starting (kernel up {:.3}s)",
        env!("CARGO_PKG_VERSION"),
        sys::boottime().as_secs_f64()
    ));
    let reason = match boot(&mut con) {
        Ok(never) => match never {},
        Err(reason) => reason,
    };
    con.say(format_args!("FATAL: {reason}"));
    con.say("nothing more can be done; halting here (PID 1 must not exit)");
    halt_forever()
}

fn halt_forever() -> ! {
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn on_initramfs() -> bool {
    matches!(sys::fs_magic("/"), Ok(RAMFS_MAGIC | TMPFS_MAGIC))
}

/// The boot sequence; returns only with the reason it cannot go on.
fn boot(con: &mut Console) -> Result<std::convert::Infallible, String> {
    mount_api_filesystems(con);

    let text = fs::read_to_string("/proc/cmdline").map_err(|e| format!("/proc/cmdline: {e}"))?;
    if crate::usb::layout::is_appliance(&cmdline::split(&text)) {
        return appliance::run(con, &text);
    }
    let params = cmdline::parse(&text).map_err(|e| e.to_string())?;
    con.say(format_args!(
        "node {} image {} mac {} ip {}/{} gw {} servers {}",
        params.node,
        params.image,
        params.mac,
        params.ip,
        params.netmask,
        params.gw.map_or("-".into(), |g| g.to_string()),
        params
            .servers
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(",")
    ));

    // Before any NFS mount: the kernel's NFSv4 client names itself to the server by the host
    // name at mount time ("Linux NFSv4.1 HOSTNAME"). Left at the kernel's "(none)", every node
    // would present the same client owner, and the server would hand each node's client
    // record and open state to the next node that mounts.
    if let Err(e) = sys::sethostname(&params.node) {
        con.say(format_args!("sethostname {}: {e}", params.node));
    }
    load_modules(con);
    let iface = wait_for_interface(con, &params);
    configure_network(con, &params, &iface);
    if params.discover {
        discover::run(con, &params);
    }
    if let Some(first) = params.servers.first() {
        report(
            con,
            first,
            &params,
            "agent",
            &format!("network up on {iface}"),
        );
    }
    let server = match &params.root {
        RootSource::Ram => {
            let fetched = fetch_root(con, &params, &mut NewRoot);
            report(con, &fetched.server, &params, "root", &fetched.detail);
            fetched.server
        }
        RootSource::Nfs { server, path } => {
            let detail = nfs_root(con, &params, *server, path);
            // `cmdline::parse` refuses a command line without servers.
            let first = params.servers[0].clone();
            report(con, &first, &params, "root", &detail);
            first
        }
    };
    if params.service {
        service::run(con, &params, &server);
    }
    write_node_files(con, &params, &iface, &server);
    report(
        con,
        &server,
        &params,
        "ready",
        "switching to the image's init",
    );
    let Err(reason) = switch_root(con);
    report(con, &server, &params, "failed", &reason);
    Err(reason)
}

/// How long a boot event may take to deliver, per step.
const EVENT_TIMEOUT: Duration = Duration::from_secs(2);

/// Reports a boot step to drover's timeline for this node. Best effort: a lost event is
/// noted on the console and never stops the boot.
fn report(con: &mut Console, server: &ServerUrl, p: &BootParams, stage: &str, detail: &str) {
    let body = serde_json::json!({ "stage": stage, "detail": detail }).to_string();
    let path = format!("{}/boot/{}/events", server.prefix, p.mac);
    match http::post_json(server, &path, &body, EVENT_TIMEOUT) {
        Ok(204) => {}
        Ok(status) => con.say(format_args!(
            "boot event {stage}: {server} answered {status}"
        )),
        Err(e) => con.say(format_args!("boot event {stage}: {server}: {e}")),
    }
}

fn mount_api_filesystems(con: &mut Console) {
    let nosuid = libc::MS_NOSUID | libc::MS_NODEV;
    let mounts: [(&str, &str, &str, libc::c_ulong, Option<&str>); 4] = [
        ("proc", "/proc", "proc", nosuid | libc::MS_NOEXEC, None),
        ("sysfs", "/sys", "sysfs", nosuid | libc::MS_NOEXEC, None),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            libc::MS_NOSUID,
            Some("mode=0755"),
        ),
        ("tmpfs", "/run", "tmpfs", nosuid, Some("mode=0755")),
    ];
    let mut failed = Vec::new();
    for (src, target, fstype, flags, data) in mounts {
        let _ = fs::create_dir_all(target);
        match sys::mount(src, target, Some(fstype), flags, data) {
            Ok(()) => {}
            // The kernel may have mounted devtmpfs already (CONFIG_DEVTMPFS_MOUNT).
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) => failed.push(format!("{target}: {e}")),
        }
    }
    // Without /dev/console in the initramfs the kernel starts init with no stdio.
    if !sys::fd_is_open(2) {
        if let Ok(c) = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/console")
        {
            let _ = sys::set_stdio(&c);
        }
    }
    if failed.is_empty() {
        con.say("mounted /proc /sys /dev /run");
    } else {
        con.say(format_args!(
            "mount failures (going on): {}",
            failed.join("; ")
        ));
    }
}

/// Loads the modules listed for the running kernel. Failures are logged, not fatal: the NIC
/// driver may be built in.
fn load_modules(con: &mut Console) {
    let kver = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let list = match fs::read_to_string(MODULE_LIST) {
        Ok(l) => l,
        Err(e) => {
            con.say(format_args!(
                "no module list ({MODULE_LIST}: {e}); assuming built-in drivers"
            ));
            return;
        }
    };
    let (mut loaded, mut present, mut failed) = (0, 0, 0);
    let mut other_kernels = std::collections::BTreeSet::new();
    for line in list.lines() {
        let Some((k, path)) = line.trim().split_once(' ') else {
            continue;
        };
        if k != kver {
            other_kernels.insert(k.to_string());
            continue;
        }
        let full = format!("{MODULE_DIR}/{kver}/{path}");
        let compressed = path.ends_with(".xz") || path.ends_with(".zst");
        let flags = if compressed {
            sys::MODULE_INIT_COMPRESSED_FILE
        } else {
            0
        };
        let result = fs::File::open(&full).and_then(|f| sys::finit_module(&f, "", flags));
        match result {
            Ok(()) => loaded += 1,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => present += 1,
            Err(e) => {
                failed += 1;
                let hint = if compressed && e.raw_os_error() == Some(libc::EINVAL) {
                    " (kernels before 6.4 cannot load compressed modules: decompress them in \
                     the image)"
                } else {
                    ""
                };
                con.say(format_args!("module {path}: {e}{hint}"));
            }
        }
    }
    if loaded + present + failed == 0 && !other_kernels.is_empty() {
        con.say(format_args!(
            "no modules for kernel {kver} (the initramfs has modules for {}); \
             assuming built-in drivers",
            other_kernels.into_iter().collect::<Vec<_>>().join(", ")
        ));
    } else {
        con.say(format_args!(
            "modules for {kver}: {loaded} loaded, {present} already there, {failed} failed"
        ));
    }
}

/// Interface names with their MAC addresses, from sysfs.
fn interfaces() -> Vec<(String, String)> {
    let Ok(dir) = fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let mac = fs::read_to_string(e.path().join("address")).ok()?;
            Some((name, mac.trim().to_ascii_lowercase()))
        })
        .collect();
    out.sort();
    out
}

/// Polls sysfs until the interface with the boot MAC appears. Keeps waiting past
/// [`IFACE_WAIT`] (the driver may be slow), saying what it sees every 10 s.
fn wait_for_interface(con: &mut Console, p: &BootParams) -> String {
    let want = p.mac.to_string();
    let start = Instant::now();
    let mut next_report = IFACE_WAIT;
    loop {
        if let Some((name, _)) = interfaces().into_iter().find(|(_, mac)| *mac == want) {
            con.say(format_args!("interface {name} has {want}"));
            return name;
        }
        if start.elapsed() >= next_report {
            let seen: Vec<String> = interfaces()
                .into_iter()
                .map(|(n, m)| format!("{n}={m}"))
                .collect();
            con.say(format_args!(
                "no interface with MAC {want} after {}s (have: {}); is its driver in the \
                 image's lib/modules? still waiting",
                start.elapsed().as_secs(),
                list_or_none(&seen)
            ));
            next_report += IFACE_WAIT;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `a b c`, or `none` for an empty list (what the console says it sees).
fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(" ")
    }
}

/// Brings up `lo` and the boot interface with the address, netmask and default route,
/// retrying until the kernel accepts all of it.
fn configure_network(con: &mut Console, p: &BootParams, iface: &str) {
    set_address(con, iface, p.ip, p.netmask, p.gw);
    con.say(format_args!("{iface} up with {}/{}", p.ip, p.netmask));
    let carrier = format!("/sys/class/net/{iface}/carrier");
    let start = Instant::now();
    while start.elapsed() < CARRIER_WAIT {
        if fs::read_to_string(&carrier).is_ok_and(|c| c.trim() == "1") {
            con.say(format_args!("{iface} has carrier"));
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    con.say(format_args!(
        "{iface} has no carrier after {CARRIER_WAIT:?}; trying anyway"
    ));
}

/// Brings up `lo` and `iface`, sets its address and the default route, retrying with
/// backoff until the kernel accepts all of it.
fn set_address(
    con: &mut Console,
    iface: &str,
    ip: std::net::Ipv4Addr,
    netmask: std::net::Ipv4Addr,
    gw: Option<std::net::Ipv4Addr>,
) {
    let mut delay = BACKOFF_FIRST;
    loop {
        let result = (|| -> io::Result<()> {
            sys::interface_up("lo")?;
            sys::set_ipv4(iface, ip, netmask)?;
            sys::interface_up(iface)?;
            if let Some(gw) = gw {
                match sys::add_default_route(gw) {
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                    other => other?,
                }
            }
            Ok(())
        })();
        match result {
            Ok(()) => return,
            Err(e) => {
                con.say(format_args!(
                    "configuring {iface}: {e}; retrying in {delay:?}"
                ));
                std::thread::sleep(delay);
                delay = (delay * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Where a downloaded root filesystem goes: the agent unpacks it into a tmpfs on /newroot
/// ([`NewRoot`]); the boot-storm simulator walks the same archive and keeps nothing
/// ([`simulate`]). The download itself ([`fetch_root`]) is the same for both.
trait RootSink {
    /// Where the root goes, for messages.
    fn name(&self) -> &str;
    /// Whether this root may come from the swarm, seeding to peers. The simulator's nodes
    /// share one file system (the seeder's chunk directory): they fetch from members only.
    fn seeds(&self) -> bool {
        false
    }
    /// Makes the destination empty again before each try.
    fn fresh(&mut self) -> io::Result<()>;
    /// Consumes one archive (the caller checks that the rest of the body arrives).
    fn take(&mut self, body: &mut dyn Read) -> io::Result<unpack::Stats>;
}

/// The agent's root: a tmpfs on /newroot.
struct NewRoot;

impl RootSink for NewRoot {
    fn name(&self) -> &str {
        NEWROOT
    }

    fn seeds(&self) -> bool {
        true
    }

    /// (Re)mounts an empty tmpfs on /newroot.
    fn fresh(&mut self) -> io::Result<()> {
        let _ = sys::umount_detach(NEWROOT);
        fs::create_dir_all(NEWROOT)?;
        sys::mount("tmpfs", NEWROOT, Some("tmpfs"), 0, Some("mode=0755"))
    }

    fn take(&mut self, body: &mut dyn Read) -> io::Result<unpack::Stats> {
        unpack::unpack(body, Path::new(NEWROOT), true)
    }
}

/// A root filesystem fetched: from which server, the archive's size, the `root` event's detail.
pub(crate) struct Fetched {
    pub server: ServerUrl,
    pub bytes: u64,
    pub detail: String,
}

/// Puts the rootfs into `sink`: from the swarm when it is on, the sink takes swarm roots and
/// the members serve a manifest; else (or when the swarm download fails) streamed from the
/// first server that delivers it whole, retrying every server in order, forever, with backoff
/// between rounds.
fn fetch_root(con: &mut Console, p: &BootParams, sink: &mut dyn RootSink) -> Fetched {
    if p.swarm && sink.seeds() {
        if let Some(done) = swarm_root(con, p, sink) {
            return done;
        }
    }
    let mut delay = BACKOFF_FIRST;
    loop {
        for server in &p.servers {
            if let Err(e) = sink.fresh() {
                con.say(format_args!("preparing {}: {e}", sink.name()));
                continue;
            }
            let path = server.rootfs_path(&p.image);
            con.say(format_args!("fetching {server}{path}"));
            let start = Instant::now();
            match fetch_from(server, &path, sink) {
                Ok((stats, length)) => {
                    let secs = start.elapsed().as_secs_f64().max(0.001);
                    con.say(format_args!(
                        "unpacked {} entries, {:.1} MiB in {secs:.2}s ({:.1} MiB/s){}",
                        stats.entries,
                        stats.bytes as f64 / (1 << 20) as f64,
                        stats.bytes as f64 / (1 << 20) as f64 / secs,
                        if stats.refused > 0 {
                            format!("; refused {} escaping entries", stats.refused)
                        } else {
                            String::new()
                        }
                    ));
                    return Fetched {
                        server: server.clone(),
                        bytes: length,
                        detail: "root filesystem in RAM".into(),
                    };
                }
                Err(e) => con.say(format_args!("{server}: {e}")),
            }
        }
        con.say(format_args!(
            "no server delivered the root filesystem; retrying in {delay:?}"
        ));
        std::thread::sleep(delay);
        delay = (delay * 2).min(BACKOFF_MAX);
    }
}

/// One swarm download of the rootfs into /newroot (`swarm`, `crate::swarm`), seeding what
/// it holds to peers (`seed`). `None`: it did not work (said on the console); the caller
/// downloads from members alone.
fn swarm_root(con: &mut Console, p: &BootParams, sink: &mut dyn RootSink) -> Option<Fetched> {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let plan = match swarm::manifest(&p.servers, &p.image) {
        Ok(plan) => plan,
        Err(e) => {
            con.say(format_args!("swarm: {e}; fetching the tarball instead"));
            return None;
        }
    };
    if let Err(e) = sink.fresh() {
        con.say(format_args!("preparing {}: {e}", sink.name()));
        return None;
    }
    let dir = Path::new(seed::SWARM_DIR);
    // Started while the agent has no other thread (fork); once per boot: the fallback
    // download does not come back here.
    let peers = match seed::start(dir, seed::SEED_PORT) {
        Ok(pid) => {
            con.say(format_args!(
                "swarm: seeding chunks on port {} (pid {pid}, for {} min at most)",
                seed::SEED_PORT,
                seed::SEED_LIFETIME.as_secs() / 60
            ));
            let mac = p.mac.to_string();
            let (peers, errors) = swarm::announce(&p.servers, &mac, &plan.blob, seed::SEED_PORT);
            if !errors.is_empty() {
                con.say(format_args!("swarm: announce: {}", errors.join("; ")));
            }
            peers
        }
        Err(e) => {
            // Without a seeder this node must not announce (peers would ask it in vain),
            // and it cannot ask without announcing: members only.
            con.say(format_args!(
                "swarm: cannot seed ({e}); fetching from members only"
            ));
            Vec::new()
        }
    };
    con.say(format_args!(
        "swarm: {} chunks, {:.1} MiB, from {} peer(s) and {} member(s)",
        plan.manifest.chunks.len(),
        mib(plan.manifest.size),
        peers.len(),
        p.servers.len()
    ));
    let start = Instant::now();
    let outcome = match swarm::download(&p.servers, &peers, &plan.manifest, dir, sink) {
        Ok(o) => o,
        Err(e) => {
            con.say(format_args!("swarm: {e}; fetching the tarball instead"));
            let _ = sink.fresh();
            return None;
        }
    };
    let secs = start.elapsed().as_secs_f64().max(0.001);
    let detail = format!(
        "root filesystem in RAM: swarm {:.1} MiB from members, {:.1} MiB from peers ({} peers, {} usable at the end, {} retries)",
        mib(outcome.from_members),
        mib(outcome.from_peers),
        outcome.peers,
        outcome.peers_left,
        outcome.retries
    );
    con.say(format_args!(
        "unpacked {} entries, {:.1} MiB in {secs:.2}s{}; {detail}",
        outcome.stats.entries,
        mib(outcome.stats.bytes),
        if outcome.stats.refused > 0 {
            format!("; refused {} escaping entries", outcome.stats.refused)
        } else {
            String::new()
        }
    ));
    if let Err(e) = swarm::report(&p.servers, &p.mac.to_string(), &outcome) {
        con.say(format_args!("swarm: report: {e}"));
    }
    Some(Fetched {
        server: plan.server,
        bytes: plan.manifest.size,
        detail,
    })
}

/// How long a mount may go unanswered before the console and the timeline hear about it.
const MOUNT_PATIENCE: Duration = Duration::from_secs(30);

/// Mounts the NFS root on /newroot, retrying forever with backoff, then sets up the scratch
/// directories. Returns the detail of the `root` event.
fn nfs_root(con: &mut Console, p: &BootParams, server: std::net::SocketAddr, path: &str) -> String {
    let mut delay = BACKOFF_FIRST;
    let mut reported = String::new();
    // `cmdline::parse` refuses a command line without servers.
    let events = &p.servers[0];
    let version = loop {
        let _ = fs::create_dir_all(NEWROOT);
        con.say(format_args!(
            "mounting {} over NFSv4 on {NEWROOT}",
            nfsroot::mount_source(server, path)
        ));
        // A hard mount of a server that accepted TCP but never answers blocks for good: run
        // it aside, so that the admin hears about the wait.
        let (tx, rx) = std::sync::mpsc::channel();
        let (client, owned_path) = (std::net::IpAddr::V4(p.ip), path.to_string());
        std::thread::spawn(move || {
            let _ = tx.send(nfsroot::mount_root(server, &owned_path, client, NEWROOT));
        });
        let result = loop {
            match rx.recv_timeout(MOUNT_PATIENCE) {
                Ok(r) => break r,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let why = format!(
                        "NFS mount of {server} not answered after {}s; still waiting",
                        MOUNT_PATIENCE.as_secs()
                    );
                    con.say(&why);
                    if why != reported {
                        report(con, events, p, "failed", &why);
                        reported = why;
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    break Err(nfsroot::MountError::Unreachable {
                        server,
                        source: io::Error::other("the mount thread died"),
                    })
                }
            }
        };
        match result {
            Ok(version) => break version,
            Err(e) => {
                let why = e.to_string();
                con.say(format_args!("{why}; retrying in {delay:?}"));
                // Once per distinct reason: the timeline keeps only 64 events.
                if why != reported {
                    report(con, events, p, "failed", &why);
                    reported = why;
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(BACKOFF_MAX);
            }
        }
    };
    con.say(format_args!("mounted {server}:{path} (NFSv{version})"));
    let mut tmpfs = Vec::new();
    let mut writable = Vec::new();
    for (dir, outcome) in nfsroot::setup_scratch(NEWROOT, &p.persistent) {
        match outcome {
            nfsroot::Scratch::Absent => {}
            nfsroot::Scratch::Writable => writable.push(dir.to_string()),
            nfsroot::Scratch::Tmpfs { bytes, binds } => {
                con.say(format_args!(
                    "{dir}: node-local tmpfs ({:.1} MiB copied from the image, {binds} \
                     persistent path(s) inside)",
                    bytes as f64 / (1 << 20) as f64
                ));
                tmpfs.push(dir.to_string());
            }
            nfsroot::Scratch::Failed(why) => {
                con.say(format_args!("{dir}: stays read-only ({why})"));
            }
        }
    }
    if !writable.is_empty() {
        con.say(format_args!(
            "writable on the server (persistent): {}",
            writable.join(" ")
        ));
    }
    format!(
        "NFSv{version} root {server}:{path}; tmpfs {}; persistent {}",
        if tmpfs.is_empty() {
            "-".into()
        } else {
            tmpfs.join(",")
        },
        if p.persistent.is_empty() {
            "-".into()
        } else {
            p.persistent.join(",")
        }
    )
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{0}")]
    Http(#[from] http::HttpError),
    #[error("unpacking: {0}")]
    Unpack(io::Error),
}

/// One download of the archive at `path` into `sink`: its stats and the archive's length.
fn fetch_from(
    server: &ServerUrl,
    path: &str,
    sink: &mut dyn RootSink,
) -> Result<(unpack::Stats, u64), FetchError> {
    let mut body = http::get(server, path)?;
    let stats = sink.take(&mut body).map_err(FetchError::Unpack)?;
    body.finish().map_err(FetchError::Unpack)?;
    Ok((stats, body.length()))
}

/// Writes the node's files into the new root (`boot` has set the kernel host name). Failures are
/// reported and skipped: the image may still boot, and the admin sees why names are wrong.
fn write_node_files(con: &mut Console, p: &BootParams, iface: &str, server: &ServerUrl) {
    let root = Path::new(NEWROOT);
    let mut written = Vec::new();
    let mut write = |rel: &str, text: String| {
        let path = root.join(rel);
        let result = path
            .parent()
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|()| {
                // A symlink (say, to systemd-resolved's stub) is replaced, not followed.
                if fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                    fs::remove_file(&path)?;
                }
                fs::write(&path, text)
            });
        match result {
            Ok(()) => written.push(format!("/{rel}")),
            Err(e) => written.push(format!("/{rel} FAILED ({e})")),
        }
    };
    write("etc/hostname", files::hostname(p));
    write("etc/hosts", files::hosts(p));
    if let Some(r) = files::resolv_conf(p) {
        write("etc/resolv.conf", r);
        write(files::NM_DNS_DROPIN.0, files::NM_DNS_DROPIN.1.to_string());
    }
    let sources = files::time_sources(p);
    for (path, text) in &sources {
        write(path, text.clone());
    }
    // A RHEL-family image: its chrony.conf learns to read the sources just written.
    let rhel_chrony = root.join("etc/chrony.conf");
    if !sources.is_empty() {
        if let Some(text) = fs::read_to_string(&rhel_chrony)
            .ok()
            .and_then(|t| files::chrony_conf_rhel(&t))
        {
            write("etc/chrony.conf", text);
        }
    }
    write("etc/drover/node.env", files::node_env(p, iface, server));
    con.say(format_args!("wrote {}", written.join(" ")));
    match sets::write(server, p, root) {
        Ok(done) if done.is_empty() => {}
        Ok(done) => con.say(format_args!("wrote from file sets: {}", done.join(" "))),
        Err(e) => con.say(format_args!("no files from file sets: {e}")),
    }
    match write_node_key(server, Path::new(NEWROOT)) {
        Ok(true) => con.say("wrote /root/.ssh/authorized_keys (the pool's node key)"),
        Ok(false) => {}
        Err(e) => con.say(format_args!("/root/.ssh/authorized_keys not written: {e}")),
    }
}

/// Adds the pool's node key to `/root/.ssh/authorized_keys` under `root` (the new root, or
/// `/` in service mode): `drover exec` logs in with it. `Ok(false)`: the server has no node
/// key yet.
fn write_node_key(server: &ServerUrl, root: &Path) -> Result<bool, String> {
    /// A public key line is far shorter; a longer answer is not one.
    const MAX_BODY: u64 = 4096;
    let mut body = match http::get(server, crate::exec::key::HTTP_PATH) {
        Ok(b) => b,
        Err(http::HttpError::Status { status: 404, .. }) => return Ok(false),
        Err(e) => return Err(e.to_string()),
    };
    if body.length() > MAX_BODY {
        return Err(format!("the server sent {} bytes for a key", body.length()));
    }
    let mut key = String::new();
    body.read_to_string(&mut key).map_err(|e| e.to_string())?;
    let dir = root.join("root/.ssh");
    let path = dir.join("authorized_keys");
    let existing = fs::read_to_string(&path).unwrap_or_default();
    let text = files::authorized_keys(&existing, &key)
        .ok_or_else(|| "the server's node key is not an ed25519 key of drover's".to_string())?;
    fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(|e| e.to_string())?;
    fs::write(&path, text).map_err(|e| e.to_string())?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(|e| e.to_string())?;
    Ok(true)
}

/// Moves everything into /newroot and execs the image's init. Returns only if no init
/// could be started.
fn switch_root(con: &mut Console) -> Result<std::convert::Infallible, String> {
    let Some(init) = INITS
        .iter()
        .find(|i| fs::metadata(format!("{NEWROOT}{i}")).is_ok_and(|m| m.is_file()))
    else {
        return Err(format!("the image has none of {INITS:?}: nothing to start"));
    };
    for m in ["/dev", "/proc", "/sys", "/run"] {
        let target = format!("{NEWROOT}{m}");
        let _ = fs::create_dir_all(&target);
        if let Err(e) = sys::mount(m, &target, None, libc::MS_MOVE, None) {
            con.say(format_args!("moving {m} into the new root: {e} (going on)"));
        }
    }
    let freed = free_initramfs();
    std::env::set_current_dir(NEWROOT).map_err(|e| format!("chdir {NEWROOT}: {e}"))?;
    sys::mount(".", "/", None, libc::MS_MOVE, None)
        .map_err(|e| format!("moving {NEWROOT} onto /: {e}"))?;
    std::os::unix::fs::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    con.say(format_args!(
        "switched root (freed {:.1} MiB of initramfs); exec {init}",
        freed as f64 / (1 << 20) as f64
    ));
    let mut last = String::new();
    for candidate in INITS.iter().skip_while(|i| *i != init) {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let err = std::process::Command::new(candidate)
            .arg0(candidate)
            .args(&args)
            .exec();
        con.say(format_args!("exec {candidate}: {err}"));
        last = format!("exec {candidate}: {err}");
    }
    Err(format!("could not start the image's init: {last}"))
}

/// Deletes the initramfs's files (they would pin RAM forever), staying on its file system
/// (so /newroot and anything mounted is left alone). Returns the bytes freed.
fn free_initramfs() -> u64 {
    use std::os::unix::fs::MetadataExt;
    fn remove_tree(dir: &Path, dev: u64) -> u64 {
        let mut freed = 0;
        let Ok(entries) = fs::read_dir(dir) else {
            return 0;
        };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.dev() != dev || path == Path::new(NEWROOT) {
                continue;
            }
            if meta.is_dir() {
                freed += remove_tree(&path, dev);
                let _ = fs::remove_dir(&path);
            } else {
                freed += meta.len();
                let _ = fs::remove_file(&path);
            }
        }
        freed
    }
    if !on_initramfs() {
        return 0;
    }
    match fs::symlink_metadata("/") {
        Ok(root) => remove_tree(Path::new("/"), root.dev()),
        Err(_) => 0,
    }
}
