//! The `drover` command line: parses arguments, opens the store, and calls into the library.
//! When started as PID 1 (as `/init` of drover's initramfs) it runs the node agent instead.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use drover::admin::{self, NodeChange};
use drover::config::Config;
use drover::image::{Blobs, ImageSource};
use drover::store::model::{Ipv4Net, Mac, Network, Node};
use drover::store::Store;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "drover",
    version,
    about = "Boot and manage a cluster of diskless nodes"
)]
struct Cli {
    /// Where the store and image files live.
    #[arg(
        long,
        global = true,
        env = "DROVER_STATE_DIR",
        default_value = "/var/lib/drover"
    )]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve DHCP, TFTP and HTTP on the given interfaces.
    Serve {
        /// TOML configuration; without it the embedded default is used.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Interface to serve on (repeatable); adds to the config's `interfaces`.
        #[arg(long = "interface", short = 'i')]
        interfaces: Vec<String>,
    },
    /// Validate a configuration file and print the first problem, naming the key.
    CheckConfig { file: PathBuf },
    /// Print the embedded default configuration.
    DefaultConfig,
    /// Manage nodes.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Manage boot images.
    #[command(subcommand)]
    Image(ImageCmd),
    /// Manage networks.
    #[command(subcommand)]
    Network(NetworkCmd),
    /// Show DHCP leases.
    #[command(subcommand)]
    Lease(LeaseCmd),
    /// Settings shared by the nodes of a group (BMC credentials).
    #[command(subcommand)]
    Group(GroupCmd),
    /// Power nodes on and off through their BMCs (IPMI over the LAN: RMCP+, or v1.5).
    Power(PowerArgs),
    /// Run the node agent (what drover does as /init of its initramfs).
    Agent,
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Add a node.
    Add {
        name: String,
        #[arg(long)]
        mac: Mac,
        #[arg(long)]
        ip: Option<Ipv4Addr>,
        #[arg(long)]
        image: Option<String>,
        #[arg(long)]
        group: Option<String>,
    },
    /// List nodes.
    List,
    /// Show one node.
    Show { name: String },
    /// Change a node.
    Set {
        name: String,
        #[command(flatten)]
        change: NodeSetArgs,
    },
    /// Remove a node.
    Rm { name: String },
    /// Add nodes from a CSV file with a header (name,mac,ip,image,group, optionally
    /// bmc,bmc_user,bmc_password_file); all or none.
    Import { file: PathBuf },
}

#[derive(Args)]
struct NodeSetArgs {
    #[arg(long)]
    mac: Option<Mac>,
    #[arg(long, conflicts_with = "no_ip")]
    ip: Option<Ipv4Addr>,
    /// Remove the address reservation (the node then takes a dynamic address).
    #[arg(long)]
    no_ip: bool,
    #[arg(long, conflicts_with = "no_image")]
    image: Option<String>,
    #[arg(long)]
    no_image: bool,
    #[arg(long, conflicts_with = "no_group")]
    group: Option<String>,
    #[arg(long)]
    no_group: bool,
    #[command(flatten)]
    bmc: BmcArgs,
}

#[derive(Args)]
struct BmcArgs {
    /// BMC address, HOST[:PORT] (port 623 by default).
    #[arg(long, value_parser = drover::ipmi::parse_host_port)]
    bmc: Option<(String, Option<u16>)>,
    /// BMC user name.
    #[arg(long)]
    bmc_user: Option<String>,
    /// File whose first line is the BMC password (never given on the command line).
    #[arg(long)]
    bmc_password_file: Option<PathBuf>,
    /// Remove the BMC settings.
    #[arg(long, conflicts_with_all = ["bmc", "bmc_user", "bmc_password_file"])]
    no_bmc: bool,
}

impl BmcArgs {
    fn change(&self) -> Result<admin::BmcChange> {
        Ok(admin::BmcChange {
            address: self.bmc.clone(),
            user: self.bmc_user.clone(),
            password: self
                .bmc_password_file
                .as_deref()
                .map(admin::read_password_file)
                .transpose()?,
        })
    }
}

#[derive(Subcommand)]
enum GroupCmd {
    /// Set a group's BMC settings (node settings override them field by field).
    Set {
        name: String,
        #[command(flatten)]
        bmc: BmcArgs,
    },
    /// List groups with BMC settings.
    List,
}

#[derive(Args)]
struct PowerArgs {
    #[command(subcommand)]
    action: PowerAction,
    /// TOML configuration for the `[power]` defaults; without it the embedded default.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// BMC sessions at once (default: power.max-sessions).
    #[arg(long, global = true)]
    parallel: Option<usize>,
    /// Nodes per second that `on` and `cycle` start (default: power.on-rate; 0 = all at once).
    #[arg(long, global = true)]
    rate: Option<f64>,
}

#[derive(Subcommand)]
enum PowerAction {
    /// Power on.
    On(Targets),
    /// Power off at once (hard).
    Off(Targets),
    /// Ask the OS to shut down (ACPI soft off).
    Soft(Targets),
    /// Power off, then on.
    Cycle(Targets),
    /// Hard reset.
    Reset(Targets),
    /// Show the chassis power state.
    Status(Targets),
    /// Set the boot device for the next boot only.
    Bootdev {
        device: BootDev,
        #[command(flatten)]
        targets: Targets,
    },
}

#[derive(Args)]
struct Targets {
    /// Nodes, groups, or ranges like node[001-064].
    #[arg(required = true)]
    targets: Vec<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BootDev {
    Pxe,
    Disk,
}

#[derive(Subcommand)]
enum ImageCmd {
    /// Add an image: a kernel plus its own initrd, or a root filesystem booted from RAM.
    Add {
        name: String,
        #[arg(long)]
        kernel: PathBuf,
        #[arg(long)]
        initrd: Option<PathBuf>,
        #[arg(long, default_value = "")]
        cmdline: String,
        /// Root filesystem (directory or uncompressed tarball) that drover's agent loads
        /// into RAM.
        #[arg(long, conflicts_with = "initrd")]
        rootfs: Option<PathBuf>,
        /// Replace an existing image of the same name.
        #[arg(long)]
        replace: bool,
    },
    /// List images.
    List,
    /// Remove an image (refused while nodes use it).
    Rm { name: String },
}

#[derive(Subcommand)]
enum NetworkCmd {
    /// Add a network.
    Add {
        name: String,
        #[arg(long)]
        subnet: Ipv4Net,
        /// Dynamic range FIRST-LAST for clients without a reservation.
        #[arg(long, value_parser = parse_range)]
        range: Option<(Ipv4Addr, Ipv4Addr)>,
        #[arg(long)]
        gateway: Option<Ipv4Addr>,
        #[arg(long)]
        domain: Option<String>,
    },
    /// List networks.
    List,
    /// Remove a network.
    Rm { name: String },
}

#[derive(Subcommand)]
enum LeaseCmd {
    /// List leases.
    List,
}

fn parse_range(s: &str) -> Result<(Ipv4Addr, Ipv4Addr), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?}: expected FIRST-LAST, like 10.0.0.100-10.0.0.200"))?;
    let parse = |x: &str| {
        x.trim()
            .parse::<Ipv4Addr>()
            .map_err(|_| format!("{x:?} is not an IPv4 address"))
    };
    Ok((parse(a)?, parse(b)?))
}

fn main() {
    if drover::agent::is_initramfs_init() {
        drover::agent::run();
    }
    let cli = Cli::parse();
    init_logging();
    if let Err(e) = run(cli) {
        eprintln!("drover: error: {e:#}");
        std::process::exit(1);
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DROVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn open_store(state_dir: &Path) -> Result<Store> {
    Store::open(state_dir).with_context(|| format!("opening the store in {}", state_dir.display()))
}

fn run(cli: Cli) -> Result<()> {
    let state = cli.state_dir.as_path();
    match cli.command {
        Command::Serve { config, interfaces } => {
            let mut config = Config::load(config.as_deref())?;
            for i in interfaces {
                if !config.interfaces.contains(&i) {
                    config.interfaces.push(i);
                }
            }
            if config.interfaces.is_empty() {
                bail!("no interface to serve on: pass --interface IFACE or set `interfaces` in the config");
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(drover::serve::run(state, config))
        }
        Command::CheckConfig { file } => {
            Config::load(Some(&file))?;
            println!("{}: ok", file.display());
            Ok(())
        }
        Command::DefaultConfig => {
            print!("{}", drover::config::DEFAULT_TOML);
            Ok(())
        }
        Command::Node(cmd) => node(&open_store(state)?, cmd),
        Command::Image(cmd) => image(state, cmd),
        Command::Network(cmd) => network(&open_store(state)?, cmd),
        Command::Lease(LeaseCmd::List) => {
            let store = open_store(state)?;
            let now = unix_now();
            let mut rows = vec![row(&[
                "IP",
                "MAC",
                "STATE",
                "EXPIRES IN",
                "HOSTNAME",
                "NETWORK",
                "RELAY",
            ])];
            for l in admin::leases(&store)? {
                let left = l.expires.saturating_sub(now);
                let state = if l.holds(now) {
                    format!("{:?}", l.state).to_lowercase()
                } else {
                    "expired".into()
                };
                rows.push(vec![
                    l.ip.to_string(),
                    l.mac.to_string(),
                    state,
                    format!("{left}s"),
                    l.hostname.unwrap_or_else(|| "-".into()),
                    l.network,
                    l.relay
                        .giaddr
                        .map(|g| g.to_string())
                        .unwrap_or_else(|| "-".into()),
                ]);
            }
            print_table(&rows);
            Ok(())
        }
        Command::Group(cmd) => group(&open_store(state)?, cmd),
        Command::Power(args) => power(&open_store(state)?, args),
        Command::Agent => drover::agent::run(),
    }
}

fn group(store: &Store, cmd: GroupCmd) -> Result<()> {
    use drover::store::model::{Bmc, BmcOwner};
    match cmd {
        GroupCmd::Set { name, bmc } => {
            let owner = BmcOwner::Group(name.clone());
            if bmc.no_bmc {
                admin::remove_bmc(store, &owner)?;
                println!("removed BMC settings of group {name}");
                return Ok(());
            }
            let change = bmc.change()?;
            if change.is_empty() {
                bail!("nothing to set: give --bmc, --bmc-user or --bmc-password-file");
            }
            admin::set_bmc(store, &owner, &change)?;
            println!("set BMC settings of group {name}");
        }
        GroupCmd::List => {
            let mut rows = vec![row(&[
                "GROUP", "BMC HOST", "BMC PORT", "BMC USER", "PASSWORD",
            ])];
            for b in store.read(|r| r.all::<Bmc>())? {
                if let BmcOwner::Group(g) = &b.owner {
                    rows.push(vec![
                        g.clone(),
                        b.host.clone().unwrap_or_else(|| "-".into()),
                        b.port.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                        b.user.clone().unwrap_or_else(|| "-".into()),
                        if b.password.is_some() { "set" } else { "-" }.into(),
                    ]);
                }
            }
            print_table(&rows);
        }
    }
    Ok(())
}

fn power(store: &Store, args: PowerArgs) -> Result<()> {
    use drover::ipmi::core::BootDevice;
    use drover::ipmi::power::{self, Action};
    let config = Config::load(args.config.as_deref())?;
    let mut fan = drover::ipmi::serve::fan_out(&config.power);
    if let Some(p) = args.parallel {
        fan.max_sessions = p.max(1);
    }
    if let Some(r) = args.rate {
        if !(r >= 0.0 && r.is_finite()) {
            bail!("--rate must be 0 or more");
        }
        fan.on_rate = r;
    }
    let (action, targets) = match args.action {
        PowerAction::On(t) => (Action::On, t.targets),
        PowerAction::Off(t) => (Action::Off, t.targets),
        PowerAction::Soft(t) => (Action::Soft, t.targets),
        PowerAction::Cycle(t) => (Action::Cycle, t.targets),
        PowerAction::Reset(t) => (Action::Reset, t.targets),
        PowerAction::Status(t) => (Action::Status, t.targets),
        PowerAction::Bootdev { device, targets } => {
            let d = match device {
                BootDev::Pxe => BootDevice::Pxe,
                BootDev::Disk => BootDevice::Disk,
            };
            (Action::Bootdev(d), targets.targets)
        }
    };
    let jobs = store.read(|r| power::resolve(r, &targets))?;
    let outcomes = power::run_all(&jobs, action, &fan);
    let mut rows = vec![row(&["NODE", "BMC", "RESULT", "DETAIL"])];
    let mut failed = 0;
    for o in &outcomes {
        let (result, detail) = match &o.result {
            Ok(reply) => ("ok".to_string(), reply.text.clone()),
            Err(f) => {
                failed += 1;
                (f.class.to_string(), f.reason.clone())
            }
        };
        rows.push(vec![o.node.clone(), o.bmc.clone(), result, detail]);
    }
    print_table(&rows);
    if failed > 0 {
        bail!("{failed} of {} nodes failed", outcomes.len());
    }
    Ok(())
}

fn node(store: &Store, cmd: NodeCmd) -> Result<()> {
    match cmd {
        NodeCmd::Add {
            name,
            mac,
            ip,
            image,
            group,
        } => {
            admin::add_nodes(
                store,
                &[Node {
                    name: name.clone(),
                    mac,
                    ip,
                    image,
                    group,
                }],
            )?;
            println!("added node {name}");
        }
        NodeCmd::List => {
            let mut rows = vec![row(&["NAME", "MAC", "IP", "IMAGE", "GROUP"])];
            for n in store.read(|r| r.all::<Node>())? {
                rows.push(node_row(&n));
            }
            print_table(&rows);
        }
        NodeCmd::Show { name } => {
            let n = store.read(|r| r.get::<Node>(&name))?.ok_or_else(|| {
                admin::AdminError::Unknown {
                    kind: "node",
                    name: name.clone(),
                }
            })?;
            println!("name:  {}", n.name);
            println!("mac:   {}", n.mac);
            println!(
                "ip:    {}",
                n.ip.map(|i| i.to_string())
                    .unwrap_or_else(|| "(dynamic)".into())
            );
            println!("image: {}", n.image.as_deref().unwrap_or("-"));
            println!("group: {}", n.group.as_deref().unwrap_or("-"));
            let access = store.read(|r| drover::ipmi::access(r, &n.name, n.group.as_deref()))?;
            match access {
                Ok(a) => println!("bmc:   {} user {} (password set)", a.address(), a.user),
                Err(why) => println!("bmc:   - ({why})"),
            }
            // What `drover serve`'s poller saw last.
            let power = store.read(|r| r.get::<drover::store::model::PowerState>(&n.name))?;
            match power {
                Some(p) => {
                    let state = match (p.on, &p.error) {
                        (Some(true), _) => "on".to_string(),
                        (Some(false), _) => "off".to_string(),
                        (None, Some(e)) => format!("unknown ({e})"),
                        (None, None) => "unknown".to_string(),
                    };
                    let ago = unix_now().saturating_sub(p.since);
                    println!("power: {state} (polled; since {ago}s ago)");
                }
                None => println!("power: - (not polled yet)"),
            }
        }
        NodeCmd::Set { name, change } => {
            let c = NodeChange {
                mac: change.mac,
                ip: if change.no_ip {
                    Some(None)
                } else {
                    change.ip.map(Some)
                },
                image: if change.no_image {
                    Some(None)
                } else {
                    change.image.map(Some)
                },
                group: if change.no_group {
                    Some(None)
                } else {
                    change.group.map(Some)
                },
            };
            let owner = drover::store::model::BmcOwner::Node(name.clone());
            let bmc = change.bmc.change()?;
            let n = admin::set_node(store, &name, &c)?;
            if change.bmc.no_bmc {
                admin::remove_bmc(store, &owner)?;
            } else if !bmc.is_empty() {
                admin::set_bmc(store, &owner, &bmc)?;
            }
            print_table(&[row(&["NAME", "MAC", "IP", "IMAGE", "GROUP"]), node_row(&n)]);
        }
        NodeCmd::Rm { name } => {
            admin::remove_node(store, &name)?;
            println!("removed node {name}");
        }
        NodeCmd::Import { file } => {
            let n = admin::import_nodes(store, &file)?;
            println!("imported {n} nodes from {}", file.display());
        }
    }
    Ok(())
}

fn node_row(n: &Node) -> Vec<String> {
    vec![
        n.name.clone(),
        n.mac.to_string(),
        n.ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
        n.image.clone().unwrap_or_else(|| "-".into()),
        n.group.clone().unwrap_or_else(|| "-".into()),
    ]
}

fn image(state: &Path, cmd: ImageCmd) -> Result<()> {
    let store = open_store(state)?;
    match cmd {
        ImageCmd::Add {
            name,
            kernel,
            initrd,
            cmdline,
            rootfs,
            replace,
        } => {
            let agent =
                std::env::current_exe().context("finding drover's own binary for the initramfs")?;
            let src = ImageSource {
                kernel,
                initrd,
                rootfs,
                cmdline,
            };
            let img = admin::add_image(&store, &Blobs::new(state), &name, &src, &agent, replace)?;
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
            println!("added image {name}: {}", parts.join(", "));
        }
        ImageCmd::List => {
            let mut rows = vec![row(&["NAME", "BOOT", "KERNEL", "CMDLINE"])];
            for i in store.read(|r| r.all::<drover::store::model::Image>())? {
                let boot = if i.rootfs.is_some() {
                    "ram-root"
                } else if i.initrd.is_some() {
                    "kernel+initrd"
                } else {
                    "kernel"
                };
                rows.push(vec![
                    i.name,
                    boot.into(),
                    format!("{} bytes", i.kernel.size),
                    i.cmdline,
                ]);
            }
            print_table(&rows);
        }
        ImageCmd::Rm { name } => {
            admin::remove_image(&store, &name)?;
            println!("removed image {name}");
        }
    }
    Ok(())
}

fn network(store: &Store, cmd: NetworkCmd) -> Result<()> {
    match cmd {
        NetworkCmd::Add {
            name,
            subnet,
            range,
            gateway,
            domain,
        } => {
            admin::add_network(
                store,
                &Network {
                    name: name.clone(),
                    subnet,
                    range,
                    gateway,
                    domain,
                },
            )?;
            println!("added network {name}");
        }
        NetworkCmd::List => {
            let mut rows = vec![row(&["NAME", "SUBNET", "RANGE", "GATEWAY", "DOMAIN"])];
            for n in store.read(|r| r.all::<Network>())? {
                rows.push(vec![
                    n.name,
                    n.subnet.to_string(),
                    n.range
                        .map(|(a, b)| format!("{a}-{b}"))
                        .unwrap_or_else(|| "-".into()),
                    n.gateway
                        .map(|g| g.to_string())
                        .unwrap_or_else(|| "-".into()),
                    n.domain.unwrap_or_else(|| "-".into()),
                ]);
            }
            print_table(&rows);
        }
        NetworkCmd::Rm { name } => {
            admin::remove_network(store, &name)?;
            println!("removed network {name}");
        }
    }
    Ok(())
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

fn print_table(rows: &[Vec<String>]) {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.len())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
