//! The `drover` command line: parses arguments, opens the store, and calls into the library.
//! When started as PID 1 (as `/init` of drover's initramfs) it runs the node agent instead.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use drover::admin::{self, NodeChange};
use drover::config::Config;
use drover::image::{Blobs, ImageSource};
use drover::store::model::{Ipv4Net, Mac, Network, Node, RootMode};
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
    /// Act on a remote drover through its API (`http://HOST[:PORT]`) instead of the local
    /// store; node, network and lease commands only.
    #[arg(long, global = true, env = "DROVER_SERVER", requires = "token")]
    server: Option<String>,
    /// API token for `--server` (`drover token create` on the appliance).
    #[arg(long, global = true, env = "DROVER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve DHCP, TFTP, HTTP, DNS and NTP on the given interfaces.
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
    /// Ask drover's DNS without the network: what it would answer a cluster client.
    #[command(subcommand)]
    Dns(DnsCmd),
    /// Join drover members into an active-active pool.
    #[command(subcommand)]
    Pool(PoolCmd),
    /// Groups of nodes: a shared image and BMC credentials.
    #[command(subcommand)]
    Group(GroupCmd),
    /// Users of the web page and API.
    #[command(subcommand)]
    Admin(AdminCmd),
    /// API tokens for scripts.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Power nodes on and off through their BMCs (IPMI over the LAN: RMCP+, or v1.5).
    Power(PowerArgs),
    /// Run the node agent (what drover does as /init of its initramfs).
    Agent,
    /// drover's NFSv4 server: clients and shared exports.
    #[command(subcommand)]
    Nfs(NfsCmd),
}

#[derive(Subcommand)]
enum NfsCmd {
    /// List NFS clients of the running server: address, state, lease, opens and locks
    /// (from `<state-dir>/nfs/clients.json`, rewritten every few seconds).
    Clients {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Shared exports: host directories served at /NAME of the pseudo-root.
    #[command(subcommand)]
    Export(ExportCmd),
}

#[derive(Subcommand)]
enum ExportCmd {
    /// Share a directory of this host with the clients in the given networks.
    Add {
        name: String,
        /// The directory to share (absolute).
        #[arg(long)]
        path: PathBuf,
        /// Client networks allowed to mount it, as CIDR (comma-separated or repeated).
        #[arg(long, value_delimiter = ',', required = true, value_name = "CIDR")]
        clients: Vec<Ipv4Net>,
        /// Let the clients write (default: read-only). Root is squashed to nobody.
        #[arg(long)]
        rw: bool,
    },
    /// List shared exports.
    List,
    /// Stop sharing an export.
    Rm { name: String },
}

#[derive(Subcommand)]
enum PoolCmd {
    /// Create the cluster key (`<state-dir>/cluster.key`, mode 0600) on the first member.
    Init,
    /// Join the pool of the member at SEED (`IP` or `IP:PORT`) with a copy of its cluster key.
    Join {
        seed: String,
        /// The pool's cluster key, copied from a member (mode 0600).
        #[arg(long)]
        key_file: PathBuf,
    },
    /// Show the members as the local server sees them: health, what each serves,
    /// replication lag.
    Status {
        /// Print the status as JSON (the form `GET /api/v1/pool` answers with).
        #[arg(long)]
        json: bool,
    },
    /// Leave the pool: takes this member off the roster (its DHCP address share goes back
    /// to the others), removes the cluster key and the recorded seeds; a running server
    /// leaves at once.
    Leave,
    /// Take a member that is gone for good off the roster (ID as `pool status` shows it), so
    /// that its DHCP address share goes to the others at once. Refused while it is alive.
    Forget { id: String },
}

#[derive(Subcommand)]
enum DnsCmd {
    /// Print the answer to NAME (type A, or PTR for an IPv4 address) from the store's zones,
    /// or which upstreams a forwarded name would go to.
    Check {
        name: String,
        /// Record type: A, AAAA, PTR, SOA, NS, CNAME, ANY, ...
        #[arg(name = "TYPE")]
        qtype: Option<String>,
        /// The server's configuration (upstreams, domain, hostname); default: embedded.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Interface the server serves on, for the appliance's own address records.
        #[arg(long = "interface", short = 'i')]
        interfaces: Vec<String>,
    },
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
        /// Further DNS names of the node (CNAMEs), comma-separated or repeated.
        #[arg(long = "alias", value_delimiter = ',')]
        aliases: Vec<String>,
        /// How the node gets its root filesystem; `image` (the default) follows the image.
        #[arg(long, value_enum)]
        root: Option<NodeRoot>,
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
    /// Add nodes from a CSV file with a header (name,mac,ip,image,group[,aliases]); all or none.
    /// Add nodes from a CSV file with a header (name,mac,ip,image,group, optionally
    /// bmc,bmc_user,bmc_password_file); all or none.
    Import { file: PathBuf },
    /// Show a node's boot timeline and state.
    Events {
        name: String,
        /// All kept events, not only the last boot's.
        #[arg(long)]
        all: bool,
    },
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
    /// Replace the node's aliases (comma-separated or repeated).
    #[arg(long = "alias", value_delimiter = ',', conflicts_with = "no_alias")]
    aliases: Vec<String>,
    /// Remove all aliases.
    #[arg(long)]
    no_alias: bool,
    /// How the node gets its root filesystem: `ram`, `nfs`, or `image` to follow its image.
    #[arg(long, value_enum)]
    root: Option<NodeRoot>,
    #[command(flatten)]
    bmc: BmcArgs,
}

/// A node's root mode on the command line.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum NodeRoot {
    /// The agent unpacks the image's rootfs into RAM.
    Ram,
    /// The agent mounts the node's root over NFSv4 from drover.
    Nfs,
    /// Whatever the node's image says.
    Image,
}

impl NodeRoot {
    fn mode(self) -> Option<RootMode> {
        match self {
            NodeRoot::Ram => Some(RootMode::Ram),
            NodeRoot::Nfs => Some(RootMode::Nfs),
            NodeRoot::Image => None,
        }
    }
}

/// An image's root mode on the command line.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ImageRoot {
    /// The agent unpacks the rootfs into RAM (the default).
    Ram,
    /// The agent mounts the node's root view over NFSv4 from drover (needs --rootfs).
    Nfs,
}

impl From<ImageRoot> for RootMode {
    fn from(r: ImageRoot) -> RootMode {
        match r {
            ImageRoot::Ram => RootMode::Ram,
            ImageRoot::Nfs => RootMode::Nfs,
        }
    }
}

/// How an image boots its nodes: shared by `image add` and `image set`.
#[derive(Args)]
struct ImageBootArgs {
    /// How nodes get the root filesystem: `ram` (unpacked into RAM) or `nfs` (mounted over
    /// NFSv4 from drover); nodes may override it with `node set --root`.
    #[arg(long, value_enum)]
    root: Option<ImageRoot>,
    /// Paths each node keeps across reboots in its own layer when its root is NFS
    /// ("statelite"), comma-separated or repeated: absolute, like /var/log,/etc/ssh.
    #[arg(long, value_delimiter = ',', conflicts_with = "no_persistent")]
    persistent: Vec<String>,
    /// Remove all persistent paths.
    #[arg(long)]
    no_persistent: bool,
}

impl ImageBootArgs {
    fn change(self, cmdline: Option<String>) -> admin::ImageChange {
        admin::ImageChange {
            cmdline,
            root: self.root.map(RootMode::from),
            persistent: if self.no_persistent {
                Some(Vec::new())
            } else {
                (!self.persistent.is_empty()).then_some(self.persistent)
            },
        }
    }
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
        /// Replace an existing image of the same name (its root mode and persistent paths
        /// are kept unless given here).
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        boot: ImageBootArgs,
    },
    /// Change how an image boots: command line, root mode, persistent paths.
    Set {
        name: String,
        #[arg(long)]
        cmdline: Option<String>,
        #[command(flatten)]
        boot: ImageBootArgs,
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

#[derive(Subcommand)]
enum GroupCmd {
    /// Add or replace a group.
    Add {
        name: String,
        /// Image for the group's nodes that name none themselves.
        #[arg(long)]
        image: Option<String>,
    },
    /// Set a group's BMC settings (node settings override them field by field).
    Set {
        name: String,
        #[command(flatten)]
        bmc: BmcArgs,
    },
    /// List groups: image and BMC settings.
    List,
    /// Remove a group.
    Rm { name: String },
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Set a user's password (read from standard input; asked twice on a terminal). Creates
    /// the user if needed.
    Passwd {
        #[arg(default_value = drover::auth::ADMIN)]
        user: String,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Make an API token; prints it once, as the last word of the output.
    Create {
        #[arg(long)]
        name: String,
    },
    /// List API tokens (names only; tokens are not kept).
    List,
    /// Revoke an API token.
    Rm { name: String },
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
    if let (Some(server), Some(token)) = (&cli.server, &cli.token) {
        let remote = drover::remote::Remote::new(server, token)?;
        return remote_run(&remote, cli.command);
    }
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
        Command::Dns(DnsCmd::Check {
            name,
            qtype,
            config,
            interfaces,
        }) => {
            let mut config = Config::load(config.as_deref())?;
            config.interfaces.extend(interfaces);
            let mut own = Vec::new();
            for i in &config.interfaces {
                own.push(
                    drover::net::interface(i)
                        .with_context(|| format!("interface {i}"))?
                        .addr,
                );
            }
            let store = open_store(state)?;
            let settings = config.dns.settings(&own, store.member());
            let view = drover::store::View::load(&store)?;
            let bind = own
                .first()
                .map_or(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| (*a).into());
            let text = drover::dns::explain(
                &view,
                &settings.identity(bind),
                &settings.policy(),
                &settings.upstreams,
                &name,
                qtype.as_deref(),
            )?;
            print!("{text}");
            Ok(())
        }
        Command::Pool(cmd) => pool(state, cmd),
        Command::Group(cmd) => group(&open_store(state)?, cmd),
        Command::Admin(AdminCmd::Passwd { user }) => {
            let store = open_store(state)?;
            let password = read_password(&user)?;
            drover::auth::set_password(&store, &user, &password)?;
            println!("password of {user} set");
            Ok(())
        }
        Command::Token(cmd) => token(&open_store(state)?, cmd),
        Command::Power(args) => power(&open_store(state)?, args),
        Command::Agent => drover::agent::run(),
        Command::Nfs(NfsCmd::Clients { json }) => nfs_clients(state, json),
        Command::Nfs(NfsCmd::Export(cmd)) => export(&open_store(state)?, cmd),
    }
}

fn nfs_clients(state: &Path, json: bool) -> Result<()> {
    let path = state.join("nfs").join("clients.json");
    let status = drover::nfs::serve::read_status(&path).with_context(|| {
        format!(
            "reading {} (is `drover serve` running with [nfs] enabled?)",
            path.display()
        )
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    let items: Vec<serde_json::Value> = status
        .clients
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    print_json_table(
        &items,
        &[
            "addr",
            "clientid",
            "minor_version",
            "confirmed",
            "lease_remaining_secs",
            "sessions",
            "opens",
            "locks",
            "owner",
        ],
    );
    Ok(())
}

fn export(store: &Store, cmd: ExportCmd) -> Result<()> {
    use drover::store::model::Export;
    match cmd {
        ExportCmd::Add {
            name,
            path,
            clients,
            rw,
        } => {
            let e = admin::add_export(
                store,
                &Export {
                    name,
                    path: path.to_string_lossy().into_owned(),
                    clients,
                    rw,
                },
            )?;
            let mode = if e.rw { "read-write" } else { "read-only" };
            println!(
                "added export {} ({}, {mode}) at /{}",
                e.name, e.path, e.name
            );
        }
        ExportCmd::List => {
            let mut rows = vec![row(&["NAME", "PATH", "CLIENTS", "MODE"])];
            for e in store.read(|r| r.all::<Export>())? {
                let clients: Vec<String> = e.clients.iter().map(|c| c.to_string()).collect();
                rows.push(vec![
                    e.name,
                    e.path,
                    clients.join(","),
                    if e.rw { "rw" } else { "ro" }.to_string(),
                ]);
            }
            print_table(&rows);
        }
        ExportCmd::Rm { name } => {
            admin::remove_export(store, &name)?;
            println!("removed export {name}");
        }
    }
    Ok(())
}

fn pool(state: &Path, cmd: PoolCmd) -> Result<()> {
    use drover::pool::key::ClusterKey;
    use drover::pool::serve as ps;
    use drover::store::model::PoolMember;
    let key_path = ClusterKey::path(state);
    match cmd {
        PoolCmd::Init => {
            std::fs::create_dir_all(state)
                .with_context(|| format!("creating {}", state.display()))?;
            ClusterKey::generate()
                .context("reading random bytes")?
                .save_new(&key_path)?;
            println!("created the cluster key {}", key_path.display());
            println!(
                "copy it (mode 0600) to each further member and run there: \
                 drover pool join THIS_MEMBER_IP --key-file FILE"
            );
        }
        PoolCmd::Join { seed, key_file } => {
            let addr = ps::parse_seed(&seed)
                .with_context(|| format!("{seed:?} is neither IP nor IP:PORT"))?;
            let key = ClusterKey::load(&key_file)?;
            std::fs::create_dir_all(ps::pool_dir(state))
                .with_context(|| format!("creating {}", ps::pool_dir(state).display()))?;
            match ClusterKey::load_state(state)? {
                Some(existing) if existing != key => bail!(
                    "{} holds another pool's key; run `drover pool leave` first",
                    key_path.display()
                ),
                Some(_) => {}
                None => key.save_new(&key_path)?,
            }
            let mut seeds = ps::recorded_seeds(state);
            if !seeds.contains(&addr) {
                seeds.push(addr);
            }
            let text: String = seeds.iter().map(|s| format!("{s}\n")).collect();
            std::fs::write(ps::seeds_file(state), text)
                .with_context(|| format!("writing {}", ps::seeds_file(state).display()))?;
            println!("joining the pool through {addr}: a running `drover serve` joins within {} s, otherwise at its start", ps::ANNOUNCE_EVERY.as_secs());
        }
        PoolCmd::Status { json } => {
            if ClusterKey::load_state(state)?.is_none() {
                bail!(
                    "not in a pool: {} does not exist (`drover pool init` or `drover pool join`)",
                    key_path.display()
                );
            }
            let status = drover::pool::status::read_status(state).with_context(|| {
                format!(
                    "no pool status in {}: is `drover serve` running with this state directory?",
                    drover::pool::status::status_file(state).display()
                )
            })?;
            let age = ps::unix_ms().saturating_sub(status.updated_ms) / 1000;
            if age > 3 * ps::STATUS_EVERY.as_secs() {
                eprintln!("warning: the status is {age} s old; is `drover serve` still running?");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", drover::pool::show::render(&status, ps::unix_ms()));
            }
        }
        PoolCmd::Leave => {
            let store = open_store(state)?;
            store.write(|w| w.delete::<PoolMember>(&PoolMember::key_of(store.member())))?;
            let mut removed = Vec::new();
            for p in [key_path, ps::seeds_file(state)] {
                match std::fs::remove_file(&p) {
                    Ok(()) => removed.push(p.display().to_string()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
                }
            }
            if removed.is_empty() {
                bail!("not in a pool: no cluster key in {}", state.display());
            }
            println!(
                "left the pool (removed {}); a running server leaves within {} s",
                removed.join(", "),
                ps::ANNOUNCE_EVERY.as_secs()
            );
        }
        PoolCmd::Forget { id } => {
            let id = u64::from_str_radix(id.trim(), 16)
                .with_context(|| format!("{id:?} is not a member id (16 hex digits)"))?;
            let store = open_store(state)?;
            if id == store.member() {
                bail!("that is this member: use `drover pool leave`");
            }
            if let Ok(status) = drover::pool::status::read_status(state) {
                if status
                    .members
                    .iter()
                    .any(|m| m.id == id && matches!(m.state.as_str(), "alive" | "suspect"))
                {
                    bail!("member {id:016x} is not down; stop it first (or `drover pool leave` there)");
                }
            }
            if !store.write(|w| w.delete::<PoolMember>(&PoolMember::key_of(id)))? {
                bail!("member {id:016x} is not on the roster");
            }
            println!(
                "member {id:016x} taken off the roster; its DHCP address share goes to the others"
            );
        }
    }
    Ok(())
}

fn group(store: &Store, cmd: GroupCmd) -> Result<()> {
    use drover::store::model::{Bmc, BmcOwner, Group};
    match cmd {
        GroupCmd::Add { name, image } => {
            admin::put_group(
                store,
                &Group {
                    name: name.clone(),
                    image,
                },
            )?;
            println!("added group {name}");
        }
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
            let (groups, bmcs) = store.read(|r| {
                Ok::<_, drover::store::StoreError>((r.all::<Group>()?, r.all::<Bmc>()?))
            })?;
            let bmc_of = |g: &str| {
                bmcs.iter()
                    .find(|b| matches!(&b.owner, BmcOwner::Group(n) if n == g))
            };
            let mut names: Vec<String> = groups.iter().map(|g| g.name.clone()).collect();
            for b in &bmcs {
                if let BmcOwner::Group(g) = &b.owner {
                    names.push(g.clone());
                }
            }
            names.sort();
            names.dedup();
            let mut rows = vec![row(&[
                "GROUP", "IMAGE", "BMC HOST", "BMC PORT", "BMC USER", "PASSWORD",
            ])];
            for name in names {
                let image = groups
                    .iter()
                    .find(|g| g.name == name)
                    .and_then(|g| g.image.clone());
                let b = bmc_of(&name);
                rows.push(vec![
                    name.clone(),
                    image.unwrap_or_else(|| "-".into()),
                    b.and_then(|b| b.host.clone()).unwrap_or_else(|| "-".into()),
                    b.and_then(|b| b.port)
                        .map_or_else(|| "-".into(), |p| p.to_string()),
                    b.and_then(|b| b.user.clone()).unwrap_or_else(|| "-".into()),
                    if b.is_some_and(|b| b.password.is_some()) {
                        "set"
                    } else {
                        "-"
                    }
                    .into(),
                ]);
            }
            print_table(&rows);
        }
        GroupCmd::Rm { name } => {
            admin::remove_group(store, &name)?;
            println!("removed group {name}");
        }
    }
    Ok(())
}

fn token(store: &Store, cmd: TokenCmd) -> Result<()> {
    match cmd {
        TokenCmd::Create { name } => {
            let token = drover::auth::create_token(store, &name, unix_now())?;
            // Scripts take the last word: keep the token last.
            println!("created API token {name} (shown only now): {token}");
        }
        TokenCmd::List => {
            let mut rows = vec![row(&["NAME", "CREATED (UNIX)"])];
            for t in drover::auth::tokens(store)? {
                rows.push(vec![t.name, t.created.to_string()]);
            }
            print_table(&rows);
        }
        TokenCmd::Rm { name } => {
            drover::auth::remove_token(store, &name)?;
            println!("removed API token {name}");
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

/// Reads a new password from standard input: one line, or on a terminal typed twice without
/// echo (`stty -echo`).
fn read_password(user: &str) -> Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    let line = |prompt: &str| -> Result<String> {
        if stdin.is_terminal() {
            eprint!("{prompt}");
            let _ = std::io::stderr().flush();
        }
        let mut s = String::new();
        stdin
            .lock()
            .read_line(&mut s)
            .context("reading the password")?;
        if stdin.is_terminal() {
            eprintln!();
        }
        Ok(s.trim_end_matches(['\r', '\n']).to_string())
    };
    if !stdin.is_terminal() {
        return line("");
    }
    let stty = |arg: &str| {
        let _ = std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status();
    };
    stty("-echo");
    let first = line(&format!("new password for {user}: "));
    let second = line("again: ");
    stty("echo");
    let (first, second) = (first?, second?);
    if first != second {
        bail!("the passwords differ; nothing changed");
    }
    Ok(first)
}

fn node(store: &Store, cmd: NodeCmd) -> Result<()> {
    match cmd {
        NodeCmd::Add {
            name,
            mac,
            ip,
            image,
            group,
            aliases,
            root,
        } => {
            admin::add_nodes(
                store,
                &[Node {
                    name: name.clone(),
                    mac,
                    ip,
                    image,
                    group,
                    aliases,
                    root: root.and_then(NodeRoot::mode),
                }],
            )?;
            println!("added node {name}");
        }
        NodeCmd::List => {
            let mut rows = vec![row(NODE_HEADER)];
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
            println!("aliases: {}", aliases_cell(&n));
            // The boot path's choice: the node's own image, else its group's.
            let image = store.read(|r| {
                let name = match &n.image {
                    Some(i) => Some(i.clone()),
                    None => match &n.group {
                        Some(g) => r
                            .get::<drover::store::model::Group>(g)?
                            .and_then(|g| g.image),
                        None => None,
                    },
                };
                match name {
                    Some(name) => r.get::<drover::store::model::Image>(&name),
                    None => Ok(None),
                }
            })?;
            match (n.root, &image) {
                (Some(own), _) => println!("root:  {} (node setting)", root_name(own)),
                (None, Some(i)) => println!("root:  {} (from image {})", root_name(i.root), i.name),
                (None, None) => println!("root:  - (no image)"),
            }
            if let Some(i) = image.filter(|i| !i.persistent.is_empty()) {
                println!("persistent: {} (NFS root only)", i.persistent.join(","));
            }
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
                aliases: if change.no_alias {
                    Some(Vec::new())
                } else {
                    (!change.aliases.is_empty()).then_some(change.aliases)
                },
                root: change.root.map(NodeRoot::mode),
            };
            let owner = drover::store::model::BmcOwner::Node(name.clone());
            let bmc = change.bmc.change()?;
            let n = admin::set_node(store, &name, &c)?;
            print_table(&[row(NODE_HEADER), node_row(&n)]);
            if change.bmc.no_bmc {
                admin::remove_bmc(store, &owner)?;
            } else if !bmc.is_empty() {
                admin::set_bmc(store, &owner, &bmc)?;
            }
        }
        NodeCmd::Rm { name } => {
            admin::remove_node(store, &name)?;
            println!("removed node {name}");
        }
        NodeCmd::Import { file } => {
            let n = admin::import_nodes(store, &file)?;
            println!("imported {n} nodes from {}", file.display());
        }
        NodeCmd::Events { name, all } => node_events(store, &name, all)?,
    }
    Ok(())
}

/// The commands that work through the API of a remote drover.
fn remote_run(remote: &drover::remote::Remote, command: Command) -> Result<()> {
    use serde_json::{json, Value};
    let nodes_of = |items: Vec<Value>| -> Result<Vec<Node>> {
        items
            .into_iter()
            .map(|v| serde_json::from_value(v).context("the server sent a malformed node"))
            .collect()
    };
    match command {
        Command::Node(NodeCmd::List) => {
            let mut rows = vec![row(NODE_HEADER)];
            for n in nodes_of(remote.list("/nodes")?)? {
                rows.push(node_row(&n));
            }
            print_table(&rows);
        }
        Command::Node(NodeCmd::Show { name }) => {
            let v = remote.call("GET", &format!("/nodes/{name}"), None)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Command::Node(NodeCmd::Add {
            name,
            mac,
            ip,
            image,
            group,
            aliases,
            root,
        }) => {
            let body = json!({"name": name, "mac": mac, "ip": ip, "image": image,
                              "group": group, "aliases": aliases,
                              "root": root.and_then(NodeRoot::mode)});
            remote.call(
                "POST",
                "/nodes",
                Some(("application/json", body.to_string().as_bytes())),
            )?;
            println!("added node {name}");
        }
        Command::Node(NodeCmd::Set { name, change }) => {
            let mut body = serde_json::Map::new();
            if let Some(mac) = change.mac {
                body.insert("mac".into(), json!(mac));
            }
            let mut optional = |key: &str, clear: bool, value: Option<String>| {
                if clear {
                    body.insert(key.into(), Value::Null);
                } else if let Some(v) = value {
                    body.insert(key.into(), json!(v));
                }
            };
            optional("ip", change.no_ip, change.ip.map(|i| i.to_string()));
            optional("image", change.no_image, change.image);
            optional("group", change.no_group, change.group);
            if change.no_alias || !change.aliases.is_empty() {
                body.insert("aliases".into(), json!(change.aliases));
            }
            if let Some(root) = change.root {
                body.insert("root".into(), json!(root.mode()));
            }
            let v = remote.call(
                "PATCH",
                &format!("/nodes/{name}"),
                Some((
                    "application/json",
                    Value::Object(body).to_string().as_bytes(),
                )),
            )?;
            let n: Node = serde_json::from_value(v).context("the server sent a malformed node")?;
            print_table(&[row(NODE_HEADER), node_row(&n)]);
        }
        Command::Node(NodeCmd::Rm { name }) => {
            remote.call("DELETE", &format!("/nodes/{name}"), None)?;
            println!("removed node {name}");
        }
        Command::Node(NodeCmd::Import { file }) => {
            let text =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let v = remote.call("POST", "/nodes/import", Some(("text/csv", &text)))?;
            let n = v.get("imported").and_then(Value::as_u64).unwrap_or(0);
            println!("imported {n} nodes from {}", file.display());
        }
        Command::Network(NetworkCmd::List) => print_json_table(
            &remote.list("/networks")?,
            &["name", "subnet", "range", "gateway", "domain"],
        ),
        Command::Lease(LeaseCmd::List) => print_json_table(
            &remote.list("/leases")?,
            &["ip", "mac", "state", "expires", "hostname", "network"],
        ),
        Command::Pool(PoolCmd::Status { json }) => {
            let v = remote.call("GET", "/pool", None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let status: drover::pool::status::Status =
                    serde_json::from_value(v).context("the server sent a malformed pool status")?;
                // Ages as of the server's status, whatever this machine's clock says.
                print!("{}", drover::pool::show::render(&status, status.updated_ms));
            }
        }
        _ => bail!(
            "this command works only on the appliance itself; through --server: node \
             list|show|add|set|rm|import, network list, lease list, pool status"
        ),
    }
    Ok(())
}

/// A table of the `keys` of JSON objects, headed by the keys in capitals.
fn print_json_table(items: &[serde_json::Value], keys: &[&str]) {
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
    print_table(&rows);
}

const NODE_HEADER: &[&str] = &["NAME", "MAC", "IP", "IMAGE", "GROUP", "ALIASES", "ROOT"];

fn root_name(r: RootMode) -> &'static str {
    match r {
        RootMode::Ram => "ram",
        RootMode::Nfs => "nfs",
    }
}
fn node_events(store: &Store, name: &str, all: bool) -> Result<()> {
    use drover::store::model::BootLog;
    use drover::timeline;
    let (node, log) = store.read(|r| {
        Ok::<_, drover::store::StoreError>((r.get::<Node>(name)?, r.get::<BootLog>(name)?))
    })?;
    node.ok_or_else(|| admin::AdminError::Unknown {
        kind: "node",
        name: name.to_string(),
    })?;
    let events = log.map(|l| l.events).unwrap_or_default();
    let now_ms = unix_now() * 1000;
    println!("{name}: {}", timeline::state(&events, now_ms).name());
    let shown = if all {
        &events[..]
    } else {
        timeline::last_boot(&events)
    };
    let Some(first) = shown.first() else {
        println!("no boot events yet");
        return Ok(());
    };
    let mut rows = vec![row(&["TIME (UTC)", "+S", "STAGE", "FROM", "DETAIL"])];
    for e in shown {
        rows.push(vec![
            timeline::format_utc(e.at_ms),
            format!("{:.1}", e.at_ms.saturating_sub(first.at_ms) as f64 / 1000.0),
            e.stage.name().into(),
            e.source.clone(),
            e.detail.clone(),
        ]);
    }
    print_table(&rows);
    Ok(())
}

fn node_row(n: &Node) -> Vec<String> {
    vec![
        n.name.clone(),
        n.mac.to_string(),
        n.ip.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
        n.image.clone().unwrap_or_else(|| "-".into()),
        n.group.clone().unwrap_or_else(|| "-".into()),
        aliases_cell(n),
        // `image`: the node follows its image's root mode.
        n.root.map_or("image", root_name).into(),
    ]
}

fn aliases_cell(n: &Node) -> String {
    if n.aliases.is_empty() {
        "-".into()
    } else {
        n.aliases.join(",")
    }
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
            boot,
        } => {
            let agent =
                std::env::current_exe().context("finding drover's own binary for the initramfs")?;
            let src = ImageSource {
                kernel,
                initrd,
                rootfs,
                cmdline,
            };
            let img = admin::add_image(
                &store,
                &Blobs::new(state),
                &name,
                &src,
                &agent,
                replace,
                &boot.change(None),
            )?;
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
            println!("added image {name}: {}", parts.join(", "));
        }
        ImageCmd::Set {
            name,
            cmdline,
            boot,
        } => {
            let img = admin::set_image(&store, &name, &boot.change(cmdline))?;
            let mut rows = vec![row(IMAGE_HEADER)];
            rows.push(image_row(&img));
            print_table(&rows);
        }
        ImageCmd::List => {
            let mut rows = vec![row(IMAGE_HEADER)];
            for i in store.read(|r| r.all::<drover::store::model::Image>())? {
                rows.push(image_row(&i));
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

const IMAGE_HEADER: &[&str] = &["NAME", "BOOT", "PERSISTENT", "KERNEL", "CMDLINE"];

fn image_row(i: &drover::store::model::Image) -> Vec<String> {
    vec![
        i.name.clone(),
        // ram-root or nfs-root for a rootfs image: its root mode.
        i.boot_kind().into(),
        if i.persistent.is_empty() {
            "-".into()
        } else {
            i.persistent.join(",")
        },
        format!("{} bytes", i.kernel.size),
        i.cmdline.clone(),
    ]
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
