//! `drover lab up | status | console | down | run`: a lab in its own directory, run by an
//! ordinary user.
//!
//! A lab directory holds the lab's drover state (`state/`: store, image blobs, the page's
//! admin password), the segment's socket, each VM's console socket and logs, and, while a
//! lab is up, `lab.json` (the server's PID, the page's address, the VMs). `up` fills the
//! store (the image from the assets directory, nodes `n1..nN` with reserved addresses), then
//! starts `drover lab daemon` in the background, which runs the lab's services
//! (`super::serve`) and its VMs until `down` sends it SIGTERM. `run` does the same in the
//! foreground for one VM, and ends when its console matches a regex or the time is up.
//!
//! Images come from the lab's store, or from the assets directory (`--assets`, made by
//! `scripts/lab-assets`): `kernel/vmlinuz` with `images/NAME/initrd.cpio` (an initramfs
//! image) or `images/NAME/rootfs` (a RAM-root image under drover's agent).
//!
//! Not here: what runs on the segment (`super::serve`), the VM command line (`super::qemu`).

use super::link::Impairment;
use super::progress;
use super::qemu::{Firmware, Netdev, Vm, VmSpec};
use super::segment::Segment;
use super::serve::{self, Paths};
use super::LabError;
use crate::store::model::{Mac, Node};
use crate::store::Store;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long `up` waits for the background server to report.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `down` waits for the server to stop.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How often consoles are read while waiting for a match.
const WATCH_EVERY: Duration = Duration::from_millis(200);
/// How long the services get to finish after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Console lines shown with a failure.
const TAIL_LINES: usize = 25;
/// Nodes in one lab at most (the address plan has room for them; 2 cores run few anyway).
pub const MAX_NODES: u32 = 32;

/// What `up`, `daemon` and `run` are asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    pub nodes: u32,
    pub firmware: Firmware,
    pub image: String,
    pub assets: PathBuf,
    /// The page's localhost port (0: any free one).
    pub port: u16,
    /// Pool members serving the lab; 1: no pool, drover serves in the lab's own process.
    pub members: u8,
    /// How the VMs' NICs join the segment.
    pub netdev: Netdev,
}

/// `lab.json`: a lab that is up.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct LabFile {
    pub pid: u32,
    /// The lab's pool members, when it has a pool (their own processes).
    #[serde(default)]
    pub members: Vec<MemberRecord>,
    pub http: SocketAddr,
    pub vms: Vec<VmRecord>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct VmRecord {
    #[serde(flatten)]
    pub spec: VmSpec,
    pub ip: Ipv4Addr,
    pub pid: u32,
}

/// A pool member of a lab that is up: written by the member (`members/mN/member.json`),
/// copied into `lab.json` by the lab's server.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MemberRecord {
    pub index: u8,
    pub pid: u32,
    /// Its store's member id (what `drover pool status` shows).
    pub id: u64,
    /// Its address on the segment.
    pub addr: Ipv4Addr,
    /// Its page and API on localhost.
    pub http: SocketAddr,
}

/// The lab directory when `--dir` is not given: `$XDG_RUNTIME_DIR/drover-lab`, else
/// `~/.local/state/drover-lab`, else one under the temporary directory.
pub fn default_dir() -> PathBuf {
    if let Some(run) = std::env::var_os("XDG_RUNTIME_DIR") {
        return PathBuf::from(run).join("drover-lab");
    }
    match std::env::var_os("HOME") {
        Some(home) if Path::new(&home).is_dir() => {
            PathBuf::from(home).join(".local/state/drover-lab")
        }
        _ => std::env::temp_dir().join(format!("drover-lab-{}", whoami())),
    }
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "user".into())
}

/// The assets directory when `--assets` is not given: `$DROVER_LAB_ASSETS`, else `./lab`.
pub fn default_assets() -> PathBuf {
    std::env::var_os("DROVER_LAB_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("lab"))
}

/// Node `i` (from 1): its name, Ethernet address and reserved address.
fn node_spec(i: u32, opts: &Options) -> (VmSpec, Ipv4Addr) {
    let [.., a, b, c, _] = u32::from(serve::SERVER).to_be_bytes();
    let spec = VmSpec {
        name: format!("n{i}"),
        mac: Mac([0x52, 0x54, 0x00, 0x1a, 0xb0, i as u8]),
        firmware: opts.firmware,
        netdev: opts.netdev,
    };
    (spec, Ipv4Addr::new(a, b, c, 10 + i as u8))
}

/// Fills the lab's store: its network, the image (imported from the assets when the store
/// lacks it) and nodes `n1..nN` booting it. Returns the VMs to start.
pub fn prepare(
    store: &Store,
    state: &Path,
    opts: &Options,
) -> Result<Vec<(VmSpec, Ipv4Addr)>, LabError> {
    serve::record_network(store)?;
    let images = store.read(|r| r.all::<crate::store::model::Image>())?;
    if !images.iter().any(|i| i.name == opts.image) {
        import_image(store, state, opts)?;
    }
    let nodes = store.read(|r| r.all::<Node>())?;
    let specs: Vec<_> = (1..=opts.nodes.clamp(1, MAX_NODES))
        .map(|i| node_spec(i, opts))
        .collect();
    let new: Vec<Node> = specs
        .iter()
        .filter(|(s, _)| !nodes.iter().any(|n| n.name == s.name))
        .map(|(s, ip)| Node {
            name: s.name.clone(),
            mac: s.mac,
            ip: Some(*ip),
            image: Some(opts.image.clone()),
            group: None,
            aliases: Vec::new(),
            root: None,
            image_version: None,
            swarm: None,
        })
        .collect();
    if !new.is_empty() {
        crate::admin::add_nodes(store, &new)?;
    }
    Ok(specs)
}

fn import_image(store: &Store, state: &Path, opts: &Options) -> Result<(), LabError> {
    let dir = opts.assets.join("images").join(&opts.image);
    let initrd = dir.join("initrd.cpio");
    let rootfs = dir.join("rootfs");
    let (initrd, rootfs) = match (initrd.is_file(), rootfs.is_dir()) {
        (true, _) => (Some(initrd), None),
        (false, true) => (None, Some(rootfs)),
        (false, false) => {
            return Err(LabError::NoImage {
                image: opts.image.clone(),
                tried: format!("{} or {}", initrd.display(), rootfs.display()),
            })
        }
    };
    let src = crate::image::ImageSource {
        kernel: opts.assets.join("kernel/vmlinuz"),
        initrd,
        rootfs,
        cmdline: "console=ttyS0".into(),
    };
    let agent = std::env::current_exe().map_err(LabError::io("finding", "drover's own binary"))?;
    let add = crate::admin::AddImage {
        replace: false,
        settings: crate::admin::ImageChange::default(),
        made: crate::admin::Made::local("lab"),
    };
    let blobs = crate::image::Blobs::new(state);
    crate::admin::add_image(store, &blobs, &opts.image, &src, &agent, &add)?;
    Ok(())
}

fn open_store(paths: &Paths) -> Result<Arc<Store>, LabError> {
    let state = paths.state();
    std::fs::create_dir_all(&state).map_err(LabError::io("creating", state.display()))?;
    Ok(Arc::new(Store::open(&state)?))
}

fn runtime() -> Result<tokio::runtime::Runtime, LabError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(LabError::io("starting", "the async runtime"))
}

/// Opens the lab's store, fills it ([`prepare`]), starts the services, runs `body` with the
/// VMs to start and the page's address, then stops the services.
fn with_services<T>(
    opts: &Options,
    body: impl AsyncFnOnce(&Paths, &[(VmSpec, Ipv4Addr)], &serve::Running) -> Result<T, LabError>,
) -> Result<T, LabError> {
    let paths = Paths::new(&opts.dir);
    let store = open_store(&paths)?;
    let specs = prepare(&store, &paths.state(), opts)?;
    runtime()?.block_on(async {
        let shutdown = CancellationToken::new();
        let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, opts.port));
        let running = serve::start(&paths, store, admin, shutdown.clone()).await?;
        let result = body(&paths, &specs, &running).await;
        stop(running, shutdown).await;
        result
    })
}

/// `lab run`: boots one VM and waits for `expect` on its console. Returns the matching
/// line.
pub fn run(opts: &Options, expect: &str, timeout: Duration) -> Result<String, LabError> {
    if opts.members > 1 {
        return Err(LabError::RunWithMembers);
    }
    let regex = regex_lite::Regex::new(expect).map_err(|e| LabError::BadRegex(e.to_string()))?;
    with_services(opts, async |paths, specs, _| {
        let (spec, _) = &specs[0];
        let mut vm = Vm::start(paths, spec)?;
        watch(paths, &mut vm, &regex, timeout).await
    })
}

/// The first console line that matches `regex`.
fn matching(console: &str, regex: &regex_lite::Regex) -> Option<String> {
    console
        .split('\n')
        .map(progress::clean)
        .find(|l| regex.is_match(l))
}

/// Reads `vm`'s console log until a line matches `regex`, QEMU exits or `timeout` passes.
async fn watch(
    paths: &Paths,
    vm: &mut Vm,
    regex: &regex_lite::Regex,
    timeout: Duration,
) -> Result<String, LabError> {
    let started = Instant::now();
    let log = paths.serial_log(&vm.spec.name);
    let read = || async {
        let bytes = tokio::fs::read(&log).await.unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    loop {
        let text = read().await;
        if let Some(line) = matching(&text, regex) {
            return Ok(line);
        }
        if let Some(status) = vm.exited() {
            // A last look: the line may have come with the exit.
            let text = read().await;
            if let Some(line) = matching(&text, regex) {
                return Ok(line);
            }
            return Err(LabError::VmExited {
                node: vm.spec.name.clone(),
                regex: regex.to_string(),
                status,
                tail: progress::tail(&text, TAIL_LINES),
            });
        }
        if started.elapsed() >= timeout {
            return Err(LabError::Timeout {
                node: vm.spec.name.clone(),
                regex: regex.to_string(),
                secs: timeout.as_secs(),
                tail: progress::tail(&text, TAIL_LINES),
            });
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

/// Stops the services and waits a little for them.
async fn stop(mut running: serve::Running, shutdown: CancellationToken) {
    shutdown.cancel();
    let drain = async { while running.tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        running.tasks.abort_all();
    }
}

/// `lab daemon`: the background server of `up`: services (or the pool members' processes)
/// and VMs until SIGTERM or SIGINT.
pub fn daemon(opts: &Options) -> Result<(), LabError> {
    if opts.members > 1 {
        return pool_daemon(opts);
    }
    with_services(opts, async |paths, specs, running| {
        run_vms(paths, specs, running.http, &running.segment, Vec::new()).await
    })
}

/// Starts the VMs, records the lab in `lab.json`, and waits for SIGTERM or SIGINT, applying
/// `lab link` changes to `segment` meanwhile.
async fn run_vms(
    paths: &Paths,
    specs: &[(VmSpec, Ipv4Addr)],
    http: SocketAddr,
    segment: &Segment,
    members: Vec<MemberRecord>,
) -> Result<(), LabError> {
    let mut vms = Vec::new();
    let mut records = Vec::new();
    for (spec, ip) in specs {
        let vm = Vm::start(paths, spec)?;
        records.push(VmRecord {
            spec: spec.clone(),
            ip: *ip,
            pid: vm.pid(),
        });
        vms.push(vm);
    }
    let file = LabFile {
        pid: std::process::id(),
        members,
        http,
        vms: records,
    };
    write_json(&lab_file(paths), &file)?;
    tokio::select! {
        done = until_terminated() => done?,
        // It only ends with an error: the segment stopped.
        gone = watch_links(paths, specs, segment) => gone?,
    }
    tracing::info!("lab: stopping");
    drop(vms);
    let _ = std::fs::remove_file(lab_file(paths));
    Ok(())
}

/// `links.json`: the impaired links of a lab that is up, by node (`lab link`).
type Links = std::collections::BTreeMap<String, Impairment>;

fn links_file(paths: &Paths) -> PathBuf {
    paths.dir.join("links.json")
}

/// Applies `links.json` to the segment whenever it changes.
async fn watch_links(
    paths: &Paths,
    specs: &[(VmSpec, Ipv4Addr)],
    segment: &Segment,
) -> Result<(), LabError> {
    let path = links_file(paths);
    let mut applied: Option<String> = None;
    loop {
        let text = tokio::fs::read_to_string(&path).await.unwrap_or_default();
        if applied.as_ref() != Some(&text) {
            let links: Links = serde_json::from_str(&text).unwrap_or_default();
            for (spec, _) in specs {
                let impairment = links.get(&spec.name).copied().unwrap_or_default();
                segment
                    .impair(spec.mac.0, impairment)
                    .await
                    .map_err(LabError::io("impairing a link on", path.display()))?;
            }
            applied = Some(text);
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

/// `lab link NODE`: from now on, `node`'s link loses `impairment.drop_percent` of its
/// frames and delays the others by `impairment.delay_ms` (both 0: a healthy link again).
pub fn link(dir: &Path, node: &str, impairment: Impairment) -> Result<String, LabError> {
    let file = read_lab_file(dir)?;
    if !file.vms.iter().any(|v| v.spec.name == node) {
        return Err(LabError::NoNode(node.into()));
    }
    let path = links_file(&Paths::new(dir));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let mut links: Links = serde_json::from_str(&text).unwrap_or_default();
    if impairment.is_none() {
        links.remove(node);
    } else {
        links.insert(node.to_string(), impairment);
    }
    write_json(&path, &links)?;
    Ok(match impairment.is_none() {
        true => format!("{node}: healthy link"),
        false => format!(
            "{node}: {}% of frames dropped, the others delayed {} ms",
            impairment.drop_percent, impairment.delay_ms
        ),
    })
}

async fn until_terminated() -> Result<(), LabError> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(LabError::io("waiting for", "SIGTERM"))?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

/// Member `index`'s pool address: loopback (no root needed), `127.77.H.index` with `H` from
/// the lab's directory, so that two labs on one machine do not share addresses.
pub fn pool_address(dir: &Path, index: u8) -> SocketAddrV4 {
    let h = dir
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(*b)));
    // 1..=250: never the network or broadcast octet.
    let h = (h % 250) as u8 + 1;
    SocketAddrV4::new(
        Ipv4Addr::new(127, 77, h, index),
        crate::pool::serve::DEFAULT_PORT,
    )
}

/// Fills every member's store as [`prepare`] fills a lab's, and puts them in one pool: member
/// 1 makes the cluster key, the others join through it. Returns the VMs to start.
pub fn prepare_members(paths: &Paths, opts: &Options) -> Result<Vec<(VmSpec, Ipv4Addr)>, LabError> {
    let mut specs = Vec::new();
    let first = paths.member_state(1);
    for index in 1..=opts.members {
        let state = paths.member_state(index);
        std::fs::create_dir_all(&state).map_err(LabError::io("creating", state.display()))?;
        let store = Store::open(&state)?;
        specs = prepare(&store, &state, opts)?;
        let key = crate::pool::key::ClusterKey::path(&state);
        if index == 1 {
            if !key.exists() {
                crate::pool::setup::init(&state)?;
            }
        } else {
            let seed = pool_address(&paths.dir, 1).to_string();
            let first_key = crate::pool::key::ClusterKey::path(&first);
            crate::pool::setup::join(&state, &seed, &first_key)?;
        }
    }
    Ok(specs)
}

/// `lab daemon --members M`: the segment in this process, each member in its own
/// (`lab member`), then the VMs.
fn pool_daemon(opts: &Options) -> Result<(), LabError> {
    let paths = Paths::new(&opts.dir);
    let specs = prepare_members(&paths, opts)?;
    runtime()?.block_on(async {
        let shutdown = CancellationToken::new();
        let (segment, mut tasks) = serve::start_segment(&paths, &shutdown).await?;
        let mut children = Vec::new();
        let result = async {
            for index in 1..=opts.members {
                let _ = std::fs::remove_file(paths.member_file(index));
                let port = if index == 1 { opts.port } else { 0 };
                children.push((index, spawn_member(&paths, index, port)?));
            }
            let mut members = Vec::new();
            for (index, child) in &mut children {
                members.push(wait_for_member(&paths, *index, child).await?);
            }
            wait_for_pool(&paths, &members).await?;
            // Member 1's page is the lab's (on `--port`).
            let http = members[0].http;
            run_vms(&paths, &specs, http, &segment, members).await
        }
        .await;
        for (_, child) in &children {
            let _ = crate::net::sys::terminate(child.id());
        }
        for (_, child) in &mut children {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                tokio::time::sleep(WATCH_EVERY).await;
            }
        }
        shutdown.cancel();
        while tasks.join_next().await.is_some() {}
        drop(segment);
        result
    })
}

/// Starts `drover lab member` for member `index`, its output in its directory's log.
fn spawn_member(paths: &Paths, index: u8, port: u16) -> Result<std::process::Child, LabError> {
    let (exe, log, err) = drover_logging_to(&paths.member_log(index))?;
    std::process::Command::new(exe)
        .args(["lab", "member", "--dir"])
        .arg(&paths.dir)
        .args(["--index", &index.to_string(), "--port", &port.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(LabError::io("starting", format!("lab member {index}")))
}

/// drover's own binary, and `log` (created) twice, for a child's stdout and stderr.
fn drover_logging_to(log: &Path) -> Result<(PathBuf, std::fs::File, std::fs::File), LabError> {
    let out = std::fs::File::create(log).map_err(LabError::io("creating", log.display()))?;
    let err = out
        .try_clone()
        .map_err(LabError::io("opening", log.display()))?;
    let exe = std::env::current_exe().map_err(LabError::io("finding", "drover's own binary"))?;
    Ok((exe, out, err))
}

/// Member `index`'s record, once it wrote one.
async fn wait_for_member(
    paths: &Paths,
    index: u8,
    child: &mut std::process::Child,
) -> Result<MemberRecord, LabError> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(text) = std::fs::read_to_string(paths.member_file(index)) {
            if let Ok(record) = serde_json::from_str::<MemberRecord>(&text) {
                return Ok(record);
            }
        }
        if matches!(child.try_wait(), Ok(Some(_))) || Instant::now() >= deadline {
            return Err(LabError::NotStarted {
                secs: START_TIMEOUT.as_secs(),
                log: paths.member_log(index).display().to_string(),
            });
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
}

/// Waits until every member's pool sees all the others alive: VMs boot through a pool that
/// has formed, and a member killed later is one the survivors knew.
async fn wait_for_pool(paths: &Paths, members: &[MemberRecord]) -> Result<(), LabError> {
    let deadline = Instant::now() + START_TIMEOUT;
    let formed = || {
        members.iter().all(|m| {
            let now = crate::clock::unix_ms();
            let Ok((status, _)) = crate::pool::setup::status(&paths.member_state(m.index), now)
            else {
                return false;
            };
            members.iter().filter(|o| o.index != m.index).all(|o| {
                status.roster.contains(&o.id)
                    && status
                        .members
                        .iter()
                        .any(|s| s.id == o.id && s.state == "alive")
            })
        })
    };
    while !formed() {
        if Instant::now() >= deadline {
            return Err(LabError::NoPool {
                secs: START_TIMEOUT.as_secs(),
                log: paths.member_log(1).display().to_string(),
            });
        }
        tokio::time::sleep(WATCH_EVERY).await;
    }
    Ok(())
}

/// `lab member`: pool member `index` of the lab in `dir`, until SIGTERM or SIGINT; its page
/// on localhost `port` (0: any free one).
pub fn member(dir: &Path, index: u8, port: u16) -> Result<(), LabError> {
    let paths = Paths::new(dir);
    let state = paths.member_state(index);
    let store = Arc::new(Store::open(&state)?);
    let id = store.member();
    let seat = serve::Seat::member(index);
    let config = crate::config::Config::embedded();
    let pool = crate::pool::serve::Settings {
        addr: pool_address(dir, index),
        // The seeds `prepare_members` recorded.
        seeds: Vec::new(),
        member_id: id,
        lease_time: u64::from(config.dhcp.lease_time),
        service_address: None,
        services: vec![crate::pool::summary::Service {
            name: "http".into(),
            addrs: vec![seat.addr],
            port: 80,
            floating: false,
        }],
    };
    runtime()?.block_on(async {
        let shutdown = CancellationToken::new();
        let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let running =
            serve::start_member(&paths, &state, store, seat, pool, admin, shutdown.clone()).await?;
        let record = MemberRecord {
            index,
            pid: std::process::id(),
            id,
            addr: seat.addr,
            http: running.http,
        };
        let result = match write_json(&paths.member_file(index), &record) {
            Ok(()) => until_terminated().await,
            Err(e) => Err(e),
        };
        stop(running, shutdown).await;
        result
    })
}

/// How long `kill-member` waits for the survivor of a two-member lab to see the killed
/// member down (failure detection takes a few seconds).
const MARK_DEAD_TIMEOUT: Duration = Duration::from_secs(60);

/// `lab kill-member M`: kills member `index` (SIGKILL: a crash, so the pool sees a member
/// die rather than leave; its place on the segment and its pool traffic end). In a
/// two-member lab the survivor alone is no
/// majority, so it is then told the member is dead, as `drover pool mark-dead` would: its
/// pool can then move what the dead member owned. Returns what was done.
pub fn kill_member(dir: &Path, index: u8) -> Result<String, LabError> {
    let file = read_lab_file(dir)?;
    let Some(killed) = file.members.iter().find(|m| m.index == index).cloned() else {
        return Err(LabError::NoMember(index));
    };
    if alive(killed.pid) {
        crate::net::sys::kill(killed.pid).map_err(LabError::io("killing", killed.pid))?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while alive(killed.pid) && Instant::now() < deadline {
            std::thread::sleep(WATCH_EVERY);
        }
    }
    let mut done = format!("member {index} ({:016x}) killed", killed.id);
    let survivors: Vec<&MemberRecord> = file
        .members
        .iter()
        .filter(|m| m.index != index && alive(m.pid))
        .collect();
    if let ([survivor], 2) = (survivors.as_slice(), file.members.len()) {
        let state = Paths::new(dir).member_state(survivor.index);
        mark_dead(&state, killed.id)?;
        done.push_str(&format!(
            "; marked dead through member {} (two members have no majority)",
            survivor.index
        ));
    }
    Ok(done)
}

/// Marks member `id` dead in the pool of the member at `state`, once that member's pool sees
/// it down.
fn mark_dead(state: &Path, id: u64) -> Result<(), LabError> {
    use crate::pool::setup::SetupError;
    let store = Store::open(state)?;
    let deadline = Instant::now() + MARK_DEAD_TIMEOUT;
    loop {
        let now = crate::clock::unix_ms();
        match crate::pool::setup::mark_dead(&store, state, &format!("{id:016x}"), now) {
            Ok(_) => return Ok(()),
            // Not yet seen down, or the status file is between two writes.
            Err(SetupError::Reachable { .. } | SetupError::StaleStatus(_))
                if Instant::now() < deadline =>
            {
                std::thread::sleep(WATCH_EVERY);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn lab_file(paths: &Paths) -> PathBuf {
    paths.dir.join("lab.json")
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), LabError> {
    // Serialising plain data cannot fail.
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    crate::durable::write(path, text.as_bytes(), 0o644)
        .map_err(LabError::io("writing", path.display()))
}

/// The lab that is up in `dir`, if any.
pub fn read_lab_file(dir: &Path) -> Result<LabFile, LabError> {
    let path = lab_file(&Paths::new(dir));
    let text =
        std::fs::read_to_string(&path).map_err(|_| LabError::NoLab(dir.display().to_string()))?;
    serde_json::from_str(&text).map_err(|_| LabError::NoLab(dir.display().to_string()))
}

/// Whether process `pid` runs: it exists and is not a zombie (an exited VM stays one until
/// the lab's server stops).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `PID (COMM) STATE ...`: the state follows the last ')'.
    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
    !state.starts_with('Z')
}

/// `lab up`: prepares the store, starts the background server and its VMs, and returns
/// once it reports (the lab file).
pub fn up(opts: &Options) -> Result<LabFile, LabError> {
    let paths = Paths::new(&opts.dir);
    if let Ok(file) = read_lab_file(&opts.dir) {
        if alive(file.pid) {
            return Ok(file);
        }
    }
    // Fail early, in the foreground, on a missing image or QEMU.
    super::qemu::find("qemu-system-x86_64", "qemu-system-x86")?;
    if opts.members > 1 {
        prepare_members(&paths, opts)?;
    } else {
        let store = open_store(&paths)?;
        prepare(&store, &paths.state(), opts)?;
    }
    let log_path = paths.dir.join("drover.log");
    let (exe, log, err) = drover_logging_to(&log_path)?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["lab", "daemon", "--dir"])
        .arg(&opts.dir)
        .args(["--nodes", &opts.nodes.to_string(), "--image", &opts.image])
        .args(["--port", &opts.port.to_string()])
        .args(["--members", &opts.members.to_string()])
        .arg("--netdev")
        .arg(match opts.netdev {
            Netdev::Stream => "stream",
            Netdev::Dgram => "dgram",
        })
        .arg("--assets")
        .arg(&opts.assets)
        .arg("--firmware")
        .arg(match opts.firmware {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
        })
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err);
    // Its own process group: a Ctrl-C in the user's terminal does not reach the lab.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .spawn()
        .map_err(LabError::io("starting", "the lab's server"))?;
    let deadline = Instant::now() + START_TIMEOUT;
    let not_started = || LabError::NotStarted {
        secs: START_TIMEOUT.as_secs(),
        log: log_path.display().to_string(),
    };
    loop {
        if let Ok(file) = read_lab_file(&opts.dir) {
            if file.pid == child.id() {
                return Ok(file);
            }
        }
        if matches!(child.try_wait(), Ok(Some(_))) || Instant::now() >= deadline {
            return Err(not_started());
        }
        std::thread::sleep(WATCH_EVERY);
    }
}

/// `lab status`: the server and, per VM, whether it runs, its boot phase and its console's
/// last line.
pub fn status(dir: &Path) -> Result<String, LabError> {
    let file = read_lab_file(dir)?;
    let paths = Paths::new(dir);
    let server = if alive(file.pid) { "running" } else { "gone" };
    // With a pool: the page of the first member still running (each has its own password).
    let (http, state) = match file.members.iter().find(|m| alive(m.pid)) {
        Some(m) => (m.http, paths.member_state(m.index)),
        None => (file.http, paths.state()),
    };
    let mut out = format!(
        "lab {} (server pid {}, {server}): page http://{http} (user admin, password in {})\n",
        dir.display(),
        file.pid,
        state.join("initial-admin-password").display()
    );
    if !file.members.is_empty() {
        out.push_str("MEMBER  ID                ADDRESS       PROCESS  PAGE\n");
    }
    for m in &file.members {
        out.push_str(&format!(
            "m{:<6} {:016x}  {:<13} {:<8} http://{}\n",
            m.index,
            m.id,
            m.addr.to_string(),
            if alive(m.pid) { "running" } else { "stopped" },
            m.http
        ));
    }
    out.push_str("NODE  FIRMWARE  MAC                IP            VM       PHASE     CONSOLE\n");
    for vm in &file.vms {
        let text = std::fs::read(paths.serial_log(&vm.spec.name)).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let firmware = match vm.spec.firmware {
            Firmware::Bios => "bios",
            Firmware::Uefi => "uefi",
        };
        out.push_str(&format!(
            "{:<5} {:<9} {:<18} {:<13} {:<8} {:<9} {}\n",
            vm.spec.name,
            firmware,
            vm.spec.mac.to_string(),
            vm.ip.to_string(),
            if alive(vm.pid) { "running" } else { "stopped" },
            progress::phase(&text).unwrap_or("-"),
            progress::last_line(&text, 60)
        ));
    }
    Ok(out)
}

/// `lab console NODE`: the VM's serial console on this terminal until end of input.
pub fn console(dir: &Path, node: &str) -> Result<(), LabError> {
    let file = read_lab_file(dir)?;
    let Some(vm) = file.vms.iter().find(|v| v.spec.name == node) else {
        return Err(LabError::NoNode(node.into()));
    };
    let paths = Paths::new(dir);
    if !alive(vm.pid) {
        return Err(LabError::Stopped {
            node: node.into(),
            log: paths.serial_log(node).display().to_string(),
        });
    }
    let path = paths.console(node);
    let socket = std::os::unix::net::UnixStream::connect(&path)
        .map_err(LabError::io("connecting to", path.display()))?;
    let mut from = socket
        .try_clone()
        .map_err(LabError::io("connecting to", path.display()))?;
    eprintln!("console of {node} (end of input, Ctrl-D, leaves)");
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut std::io::stdout());
    });
    let mut to = socket;
    let _ = std::io::copy(&mut std::io::stdin(), &mut to);
    Ok(())
}

/// `lab down`: stops the server (and with it the VMs) and waits for it.
pub fn down(dir: &Path) -> Result<(), LabError> {
    let file = read_lab_file(dir)?;
    if alive(file.pid) {
        crate::net::sys::terminate(file.pid).map_err(LabError::io("stopping", file.pid))?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while alive(file.pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let _ = std::fs::remove_file(lab_file(&Paths::new(dir)));
    Ok(())
}
