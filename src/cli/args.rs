//! The command line's arguments (clap definitions) and how a few of them map to the
//! library's change types. Parsing only: what a command does is in [`super`].

use crate::admin;
use crate::store::model::{Ipv4Net, Mac, Role, RootMode};
use clap::{Args, Parser, Subcommand};
use std::net::Ipv4Addr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "drover",
    version,
    about = "Boot and manage a cluster of diskless nodes"
)]
pub struct Cli {
    /// Where the store and image files live.
    #[arg(
        long,
        global = true,
        env = "DROVER_STATE_DIR",
        default_value = "/var/lib/drover"
    )]
    pub state_dir: PathBuf,
    /// Act on a remote drover through its API (`http[s]://HOST[:PORT]`) instead of the local
    /// store: every command that has an API endpoint.
    #[arg(long, global = true, env = "DROVER_SERVER", requires = "token")]
    pub server: Option<String>,
    /// API token for `--server` (`drover token create` on the appliance).
    #[arg(long, global = true, env = "DROVER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// For an `https://` server: the SHA-256 fingerprint of its certificate (`drover tls
    /// show` on the appliance). Without it, the one kept in ~/.config/drover/known-servers,
    /// else the one the server presents at first use (then kept there).
    #[arg(long, global = true, env = "DROVER_FINGERPRINT")]
    pub fingerprint: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Users of the web page and API, and their roles (admin, operator, viewer).
    #[command(subcommand)]
    User(UserCmd),
    /// The audit log: who changed what, when, from where (API and local CLI).
    Audit {
        /// Only entries since: unix seconds, or an age (`90s`, `30m`, `12h`, `7d`).
        #[arg(long)]
        since: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Power nodes on and off through their BMCs (IPMI over the LAN: RMCP+, or v1.5).
    Power(PowerArgs),
    /// Read nodes' BMCs: sensors and the event log (IPMI or Redfish, as `power` does).
    #[command(subcommand)]
    Bmc(BmcCmd),
    /// Attach to a node's serial console over IPMI Serial-over-LAN; `~.` at the start of a
    /// line leaves. With `--server`, through that member's shared console (one writer, many
    /// readers; the BMC credentials stay on the pool); without, in this process's own session.
    Console {
        node: String,
        /// Print the console log of the node's last boot instead of attaching.
        #[arg(long)]
        log: bool,
        /// With `--log`: every boot kept, oldest first.
        #[arg(long, requires = "log")]
        all: bool,
        /// With `--server`: watch without asking to write.
        #[arg(long, conflicts_with_all = ["force", "log"])]
        read_only: bool,
        /// With `--server`: take the writer's seat over from the client that holds it.
        #[arg(long, conflicts_with = "log")]
        force: bool,
        /// TOML configuration for the `[power]` session settings; without it the embedded
        /// default.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run a command on nodes over ssh as root with the pool's node key; identical outputs
    /// are printed once (as `dshbak -c`), then a summary of exit statuses.
    Exec(ExecArgs),
    /// Copy local files to nodes over scp as root with the pool's node key.
    Cp(CpArgs),
    /// Naming rules: name discovered machines by the switch port they are plugged into.
    #[command(subcommand)]
    Rule(RuleCmd),
    /// Cluster-wide files: named sets of files (with templates) assigned to images, groups
    /// and nodes, written by the agent at every boot, pushed to running nodes by `sync`.
    #[command(subcommand)]
    Files(FilesCmd),
    /// Run the node agent (what drover does as /init of its initramfs).
    Agent {
        #[command(subcommand)]
        mode: Option<AgentCmd>,
    },
    /// QEMU labs as an ordinary user: VMs boot through drover on a user-space network (no
    /// root, no taps, no bridges). A lab lives in its own directory (--dir).
    #[command(subcommand)]
    Lab(LabCmd),
    /// drover's NFSv4 server: clients and shared exports.
    #[command(subcommand)]
    Nfs(NfsCmd),
    /// Install this binary as a systemd service: the binary, the unit, /etc/drover/drover.toml
    /// (kept if it exists), completions and man pages; then enable and start the service.
    Install(InstallArgs),
    /// Stop and remove what `drover install` installed; the config and the state directory
    /// stay unless --purge.
    Uninstall {
        /// Also remove /etc/drover/drover.toml and the state directory (--state-dir).
        #[arg(long)]
        purge: bool,
        #[command(flatten)]
        place: InstallPlace,
    },
    /// Write the store (a consistent copy, also while a server runs) and the image blobs to
    /// one tar file (mode 0600: it holds password hashes and BMC passwords).
    Backup {
        /// The backup file to write; must not exist.
        file: PathBuf,
        /// Leave the image blobs out: the fleet data only.
        #[arg(long)]
        store_only: bool,
    },
    /// Restore a backup into a new or empty state directory (--state-dir). The restored
    /// store gets a new member id, so it can join the pool beside the member it was taken
    /// from.
    Restore {
        file: PathBuf,
        /// Restore into a non-empty state directory: its store is replaced, the backup's
        /// blobs are added. No server may be running on it.
        #[arg(long)]
        force: bool,
        /// Keep the backup's member id: only to bring back the same member after its loss,
        /// never while the member the backup was taken from still runs.
        #[arg(long)]
        keep_member_id: bool,
    },
    /// Print shell completions (bash, zsh, fish, ...) to standard output.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (drover.1 and one per subcommand) into DIR.
    Man { dir: PathBuf },
    /// The HTTPS certificate of the page and API.
    #[command(subcommand)]
    Tls(TlsCmd),
    /// The rescue stick: a disk image that boots drover as an appliance (BIOS and UEFI).
    #[command(subcommand)]
    Usb(UsbCmd),
    /// Run a vote-only pool member on a third host, so that a pool of two members fails over
    /// by itself: it keeps no store and serves nothing (see `pool::witness`).
    Witness {
        /// Where to gossip, IP or IP:PORT (the members must reach it there).
        #[arg(long, value_name = "IP[:PORT]")]
        listen: String,
        /// A member's pool address to join through (repeatable).
        #[arg(long = "seed", value_name = "IP[:PORT]", required = true)]
        seeds: Vec<String>,
        /// A copy of the pool's cluster key (`<state>/cluster.key` of a member).
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
    },
    /// The appliance's settings kept in the store, laid over drover.toml (see `config show`).
    #[command(subcommand)]
    Config(ConfigCmd),
}

#[derive(Subcommand)]
pub enum UsbCmd {
    /// Make the stick's disk image (no root needed): Debian's kernel, drover as /init in
    /// appliance mode, a data partition for the state directory.
    Build {
        /// The image file to write (replaced if it exists).
        out: PathBuf,
        /// The image's size (`2G`, `512M`): the data partition takes what the boot files
        /// leave.
        #[arg(long, default_value = "1G")]
        size: String,
        /// Copy this image from the local store (--state-dir) onto the stick (repeatable).
        #[arg(long = "image")]
        images: Vec<String>,
        /// A root holding `boot/vmlinuz-KVER` and `lib/modules/KVER/` (the host's own kernel,
        /// or a `linux-image-*` package unpacked with `dpkg-deb -x` and `depmod -b`).
        #[arg(long, default_value = "/")]
        kernel: PathBuf,
        /// Which kernel of --kernel, when it has several (default: the running one).
        #[arg(long)]
        kernel_version: Option<String>,
        /// The appliance's address and prefix on the segment it serves.
        #[arg(long, default_value = crate::usb::layout::DEFAULT_ADDRESS)]
        address: String,
        /// The appliance's default gateway.
        #[arg(long)]
        gateway: Option<Ipv4Addr>,
        /// Kernel console (repeatable, `console=` syntax); the last one shows the page
        /// address and first-login password.
        #[arg(long = "console", default_values_t = ["ttyS0,115200".to_string(), "tty0".to_string()])]
        consoles: Vec<String>,
    },
    /// Write a stick image to a USB disk, with fsync. Refuses anything but a block device,
    /// a disk with a mounted (or swap, or held) partition, and disks bigger than 256 GiB
    /// unless --force.
    Write {
        image: PathBuf,
        /// The whole disk, as /dev/sdX.
        device: PathBuf,
        /// Write a disk bigger than 256 GiB.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Every setting with its value and where it comes from (default < file < --interface
    /// flag < pool-wide store setting < this member's store setting).
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Set KEY (`interfaces` or SECTION.KEY of drover.toml, e.g. `dns.enabled`) to VALUE
    /// (TOML: `false`, `8080`, `'["eth0","eth1"]'`; other text is a string), checked as
    /// `check-config` checks the file.
    Set { key: String, value: String },
    /// Remove KEY from the store: the file's (or default) value counts again.
    Unset { key: String },
    /// Set every key of a TOML file at once (checked together), e.g. `[nfs]` limits that
    /// depend on each other.
    Apply { file: PathBuf },
}

#[derive(Subcommand)]
pub enum TlsCmd {
    /// Print the certificate's SHA-256 fingerprint (what `--fingerprint` pins) and its file.
    Show {
        /// The server's config, for `[http] tls-cert`; without it, the self-signed
        /// certificate of the state directory.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct InstallArgs {
    /// Interface to serve on (repeatable), written into a new config's `interfaces`.
    #[arg(long = "interface", short = 'i')]
    pub interfaces: Vec<String>,
    /// Install this config (checked as by check-config) instead of the commented default.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub place: InstallPlace,
}

#[derive(Args)]
pub struct InstallPlace {
    /// Install into this staging directory instead of the running system (no systemctl).
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
    /// Prefix of the binary, completions and man pages; /usr puts the unit among the
    /// packaged ones (/usr/lib/systemd/system) as the Debian package does.
    #[arg(long, default_value = "/usr/local")]
    pub prefix: PathBuf,
}

#[derive(Subcommand)]
pub enum LabCmd {
    /// Start a lab: drover on a virtual segment and N VMs booting IMAGE through it; prints
    /// the page's localhost address.
    Up(LabUp),
    /// Each VM of the lab and how far it booted.
    Status(LabDir),
    /// Attach this terminal to a VM's serial console (Ctrl-D leaves).
    Console {
        /// The VM (`n1`, `n2`, ...).
        node: String,
        #[command(flatten)]
        at: LabDir,
    },
    /// Stop the lab's VMs and server (the lab directory and its store stay).
    Down(LabDir),
    /// Boot one VM and wait for REGEX on its console: exit 0 on a match, non-zero on a
    /// timeout or when the VM stops first (for CI).
    Run {
        /// A regular expression matched against each console line.
        #[arg(long)]
        expect: String,
        /// Seconds to wait for it.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        #[command(flatten)]
        lab: LabUp,
    },
    /// Kill pool member M of a lab started with --members (as a crash), to watch failover;
    /// in a lab of two members the survivor is then told M is dead (as `drover pool
    /// mark-dead`).
    KillMember {
        /// The member (1, 2, ...; `drover lab status` lists them).
        member: u8,
        #[command(flatten)]
        at: LabDir,
    },
    /// Impair a VM's link on the lab switch: drop a share of its frames, delay the others
    /// (both 0: a healthy link again).
    Link {
        /// The VM (`n1`, `n2`, ...).
        node: String,
        /// Frames lost, in percent.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
        drop: u8,
        /// Delay of the other frames, in milliseconds (at most 10 000).
        #[arg(long, default_value_t = 0)]
        delay: u32,
        #[command(flatten)]
        at: LabDir,
    },
    /// The background server of `lab up` (started by it).
    #[command(hide = true)]
    Daemon(LabUp),
    /// One pool member of a lab (started by the lab's server).
    #[command(hide = true)]
    Member {
        #[arg(long)]
        index: u8,
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[command(flatten)]
        at: LabDir,
    },
}

/// Where a lab lives.
#[derive(Args, Clone)]
pub struct LabDir {
    /// The lab's directory [default: $XDG_RUNTIME_DIR/drover-lab, else
    /// ~/.local/state/drover-lab].
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// What a lab runs.
#[derive(Args, Clone)]
pub struct LabUp {
    #[command(flatten)]
    pub at: LabDir,
    /// VMs to start (`n1` ... `nN`).
    #[arg(long, default_value_t = 1)]
    pub nodes: u32,
    /// The VMs' firmware.
    #[arg(long, value_enum, default_value = "bios")]
    pub firmware: crate::lab::qemu::Firmware,
    /// The image the VMs boot: one in the lab's store, or one of the assets directory.
    #[arg(long, default_value = "marker")]
    pub image: String,
    /// Guest kernel and images (`kernel/vmlinuz`, `images/NAME/`) [default:
    /// $DROVER_LAB_ASSETS, else ./lab].
    #[arg(long)]
    pub assets: Option<PathBuf>,
    /// The localhost port of the lab's page and API (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// How the VMs' NICs join the switch: QEMU's `-netdev stream` or `-netdev dgram`.
    #[arg(long, value_enum, default_value = "stream")]
    pub netdev: crate::lab::qemu::Netdev,
    /// Pool members serving the segment, each in its own process with its own store,
    /// gossiping over loopback; 1: no pool.
    #[arg(long, default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(1..=crate::lab::serve::MAX_MEMBERS as i64))]
    pub members: u8,
}

#[derive(Subcommand)]
pub enum FilesCmd {
    /// Add a file to a set (made if new), replacing the set's file at the same path.
    Add {
        set: String,
        /// Where the file goes on the node (absolute).
        #[arg(long)]
        path: String,
        /// The local file whose bytes the node gets as they are.
        #[arg(long, value_name = "FILE", required_unless_present = "template")]
        from: Option<PathBuf>,
        /// The local file read as a template: `{{node}}`, `{{ip}}`, `{{mac}}`, `{{group}}`,
        /// `{{image}}`, `{{domain}}`, `{{root}}`, `{{image_version}}` filled per node.
        #[arg(long, value_name = "FILE", conflicts_with = "from")]
        template: Option<PathBuf>,
        /// Permission bits, octal.
        #[arg(long, default_value = "0644", value_parser = parse_mode)]
        mode: u32,
        /// Owner as numeric UID:GID (the node's names are the image's business).
        #[arg(long, default_value = "0:0", value_parser = parse_owner)]
        owner: (u32, u32),
    },
    /// List file sets: files and assignments.
    List,
    /// Show a set's files and where it is assigned.
    Show { set: String },
    /// Remove a set, or with --path one file of it.
    Rm {
        set: String,
        #[arg(long)]
        path: Option<String>,
    },
    /// Deliver a set to an image's, a group's or a node's nodes (node beats group beats
    /// image on the same path).
    Assign {
        set: String,
        #[command(flatten)]
        to: SetTarget,
    },
    /// Take an assignment back.
    Unassign {
        set: String,
        #[command(flatten)]
        to: SetTarget,
    },
    /// Write each running node's files now, over ssh with the pool's node key (as `drover
    /// exec`); nodes also get them at every boot.
    Sync {
        /// Nodes, groups and ranges, as `drover exec` takes them (`node[01-04],rack2`).
        target: String,
        #[command(flatten)]
        ssh: SshArgs,
    },
}

/// Exactly one of --image, --group, --node.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct SetTarget {
    #[arg(long)]
    pub image: Option<String>,
    #[arg(long)]
    pub group: Option<String>,
    #[arg(long)]
    pub node: Option<String>,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("{s:?} is not an octal mode of at most 7777"))
}

fn parse_owner(s: &str) -> Result<(u32, u32), String> {
    s.split_once(':')
        .and_then(|(u, g)| Some((u.parse().ok()?, g.parse().ok()?)))
        .ok_or_else(|| format!("{s:?} is not UID:GID (numbers, like 0:0)"))
}

#[derive(Subcommand)]
pub enum NfsCmd {
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
pub enum ExportCmd {
    /// Share a directory of this host with the clients in the given networks.
    Add {
        name: String,
        /// The directory to share (absolute).
        #[arg(long)]
        path: PathBuf,
        /// Client networks allowed to mount it, as CIDR (comma-separated or repeated).
        #[arg(long, value_delimiter = ',', required = true, value_name = "CIDR")]
        clients: Vec<Ipv4Net>,
        /// Let the clients write (default: read-only).
        #[arg(long)]
        rw: bool,
        /// Client networks that may mount it read-only, also inside --clients of an --rw
        /// export (comma-separated or repeated).
        #[arg(long, value_delimiter = ',', value_name = "CIDR")]
        ro_clients: Vec<Ipv4Net>,
        /// Do not map root (uid 0, gid 0) to the anonymous ids (default: root squashed).
        #[arg(long, conflicts_with = "all_squash")]
        no_root_squash: bool,
        /// Map every client's uid and gid to the anonymous ids, without supplementary groups.
        #[arg(long)]
        all_squash: bool,
        /// The uid squashed callers get (default: 65534, nobody).
        #[arg(long, value_name = "UID", default_value_t = crate::store::model::NOBODY)]
        anon_uid: u32,
        /// The gid squashed callers get (default: 65534, nogroup).
        #[arg(long, value_name = "GID", default_value_t = crate::store::model::NOBODY)]
        anon_gid: u32,
    },
    /// List shared exports.
    List,
    /// Stop sharing an export.
    Rm { name: String },
}

#[derive(Subcommand)]
pub enum PoolCmd {
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
    /// Declare a member that is down dead (ID as `pool status` shows it; ISC's partner-down),
    /// so that the members in sight form a majority without it: in a pool of two, the
    /// survivor takes the service address. Refused while this member sees it alive or
    /// suspect. Never use it on a member that may be running on the other side of a
    /// partition: both sides could then hold the address. A restart of the member lifts it.
    MarkDead { id: String },
    /// Drain a member before maintenance (ID as `pool status` shows it; xCAT's snmove): it
    /// keeps running and replicating, while its DHCP clients and addresses, the service
    /// address and so its NFS clients move to the others. The setting replicates and
    /// outlives restarts; `pool status` shows the member draining, then drained.
    Drain { id: String },
    /// End a drain: the others stop serving the member's clients, and it serves again once
    /// every other member has the setting and it has their leases.
    Undrain { id: String },
    /// Replace the cluster key without downtime: a new key, passed by the running server to
    /// every live member over the encrypted pool port. Members accept both keys for
    /// SECONDS, send with the new one from half-way on, then refuse the old one (a member
    /// that was down all along must `pool leave` and `pool join` with the new key).
    Rekey {
        /// Length of the transition in seconds (at least 10).
        #[arg(long, default_value_t = 120, value_name = "SECONDS")]
        transition: u64,
    },
}

#[derive(Subcommand)]
pub enum DnsCmd {
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
pub enum NodeCmd {
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
    /// List machines that booted into discovery and wait to be adopted, with their inventory;
    /// serials and MACs claimed twice are reported.
    Discovered {
        /// Also the adopted machines (the boards each node had).
        #[arg(long)]
        all: bool,
        /// The whole inventories as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Make a waiting machine a node; it then reboots into its image.
    Adopt {
        mac: Mac,
        name: String,
        #[arg(long)]
        image: Option<String>,
        #[arg(long)]
        group: Option<String>,
    },
    /// Boot unknown machines into discovery with this image's kernel and drover initramfs
    /// (`--off`: they wait for `node add`, as without discovery).
    DiscoveryImage {
        #[arg(required_unless_present = "off", conflicts_with = "off")]
        image: Option<String>,
        #[arg(long)]
        off: bool,
    },
    /// Capture a running node's root file system over ssh (the pool's node key) as a new
    /// image or IMAGE's next version: all of / on the root file system but the contents of
    /// /proc, /sys, /dev, /run and /tmp, the files the agent writes for the node, its ssh
    /// host keys, and --exclude paths. The kernel comes from the tree's /boot/vmlinuz-*.
    Grab {
        node: String,
        image: String,
        /// An absolute path on the node to leave out (repeatable).
        #[arg(long = "exclude")]
        excludes: Vec<String>,
        /// The node's ssh port.
        #[arg(long, default_value_t = 22)]
        port: u16,
    },
}

/// Naming rules: identity by location.
#[derive(Subcommand)]
pub enum RuleCmd {
    /// Add a rule like 'rack1-sw1 port 1-40 -> node[001-040]' (matched against the switch's
    /// LLDP system name or chassis id, or a relay's option 82 remote-id, and the port number).
    Add {
        rule: String,
        #[arg(long)]
        group: Option<String>,
        #[arg(long)]
        image: Option<String>,
    },
    /// List naming rules.
    List,
    /// Remove a naming rule (as listed).
    Rm { rule: String },
}

#[derive(Args)]
pub struct NodeSetArgs {
    #[arg(long)]
    pub mac: Option<Mac>,
    #[arg(long, conflicts_with = "no_ip")]
    pub ip: Option<Ipv4Addr>,
    /// Remove the address reservation (the node then takes a dynamic address).
    #[arg(long)]
    pub no_ip: bool,
    #[arg(long, conflicts_with = "no_image")]
    pub image: Option<String>,
    #[arg(long)]
    pub no_image: bool,
    #[arg(long, conflicts_with = "no_group")]
    pub group: Option<String>,
    #[arg(long)]
    pub no_group: bool,
    /// Replace the node's aliases (comma-separated or repeated).
    #[arg(long = "alias", value_delimiter = ',', conflicts_with = "no_alias")]
    pub aliases: Vec<String>,
    /// Remove all aliases.
    #[arg(long)]
    pub no_alias: bool,
    /// How the node gets its root filesystem: `ram`, `nfs`, or `image` to follow its image.
    #[arg(long, value_enum)]
    pub root: Option<NodeRoot>,
    /// Boot this version of the node's image (see `image history`), or `latest` to follow
    /// the newest (or the group's pin).
    #[arg(long, value_name = "N|latest", value_parser = parse_pin)]
    pub image_version: Option<Pin>,
    /// Whether the node fetches a RAM root from its peers too (`on`, `off`), or `inherit`
    /// to follow its group, then its image.
    #[arg(long, value_enum)]
    pub swarm: Option<NodeSwarm>,
    /// Keep the node in drover's initramfs from its next boot on, for repair: network up,
    /// an ssh server with the pool's node key, the image read-only under /image.
    #[arg(long, conflicts_with = "no_service")]
    pub service: bool,
    /// Leave service mode: the node reboots into its image.
    #[arg(long)]
    pub no_service: bool,
    #[command(flatten)]
    pub bmc: BmcArgs,
}

/// A swarm switch on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    pub fn on(self) -> bool {
        self == OnOff::On
    }
}

/// A node's swarm setting on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NodeSwarm {
    On,
    Off,
    /// Follow the node's group, then its image.
    Inherit,
}

impl NodeSwarm {
    pub fn setting(self) -> Option<bool> {
        match self {
            NodeSwarm::On => Some(true),
            NodeSwarm::Off => Some(false),
            NodeSwarm::Inherit => None,
        }
    }
}

/// `--image-version N` or `latest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin(pub Option<u32>);

pub fn parse_pin(s: &str) -> Result<Pin, String> {
    if s == "latest" {
        return Ok(Pin(None));
    }
    match s.parse::<u32>() {
        Ok(n) if n > 0 => Ok(Pin(Some(n))),
        _ => Err(format!(
            "{s:?}: expected a version number (1, 2, ...) or `latest`"
        )),
    }
}

impl NodeSetArgs {
    /// The node fields to change (`--no-*` clears); the BMC settings are separate.
    pub fn change(&self) -> admin::NodeChange {
        fn edit<T: Clone>(clear: bool, value: &Option<T>) -> Option<Option<T>> {
            if clear {
                Some(None)
            } else {
                value.clone().map(Some)
            }
        }
        admin::NodeChange {
            mac: self.mac,
            ip: edit(self.no_ip, &self.ip),
            image: edit(self.no_image, &self.image),
            group: edit(self.no_group, &self.group),
            aliases: if self.no_alias {
                Some(Vec::new())
            } else {
                (!self.aliases.is_empty()).then(|| self.aliases.clone())
            },
            root: self.root.map(|r| r.mode()),
            image_version: self.image_version.map(|p| p.0),
            swarm: self.swarm.map(NodeSwarm::setting),
            service: if self.service {
                Some(true)
            } else {
                self.no_service.then_some(false)
            },
        }
    }
}

/// A node's root mode on the command line.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NodeRoot {
    /// The agent unpacks the image's rootfs into RAM.
    Ram,
    /// The agent mounts the node's root over NFSv4 from drover.
    Nfs,
    /// Whatever the node's image says.
    Image,
}

impl NodeRoot {
    pub fn mode(self) -> Option<RootMode> {
        match self {
            NodeRoot::Ram => Some(RootMode::Ram),
            NodeRoot::Nfs => Some(RootMode::Nfs),
            NodeRoot::Image => None,
        }
    }
}

/// An image's root mode on the command line.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageRoot {
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
pub struct ImageBootArgs {
    /// How nodes get the root filesystem: `ram` (unpacked into RAM) or `nfs` (mounted over
    /// NFSv4 from drover); nodes may override it with `node set --root`.
    #[arg(long, value_enum)]
    pub root: Option<ImageRoot>,
    /// Paths each node keeps across reboots in its own layer when its root is NFS
    /// ("statelite"), comma-separated or repeated: absolute, like /var/log,/etc/ssh.
    #[arg(long, value_delimiter = ',', conflicts_with = "no_persistent")]
    pub persistent: Vec<String>,
    /// Remove all persistent paths.
    #[arg(long)]
    pub no_persistent: bool,
    /// Whether nodes fetch the RAM root from each other as well as from drover (on by
    /// default); nodes and groups may override it.
    #[arg(long, value_enum)]
    pub swarm: Option<OnOff>,
}

impl ImageBootArgs {
    pub fn change(self, cmdline: Option<String>) -> admin::ImageChange {
        admin::ImageChange {
            cmdline,
            root: self.root.map(RootMode::from),
            persistent: if self.no_persistent {
                Some(Vec::new())
            } else {
                (!self.persistent.is_empty()).then_some(self.persistent)
            },
            swarm: self.swarm.map(OnOff::on),
        }
    }
}

#[derive(Args)]
pub struct BmcArgs {
    /// BMC address, HOST[:PORT] (port 623 by default).
    #[arg(long, value_parser = crate::ipmi::parse_host_port)]
    pub bmc: Option<(String, Option<u16>)>,
    /// BMC user name.
    #[arg(long)]
    pub bmc_user: Option<String>,
    /// File whose first line is the BMC password (never given on the command line).
    #[arg(long)]
    pub bmc_password_file: Option<PathBuf>,
    /// How to speak to the BMC: ipmi (the default), redfish (HTTPS; port 443 unless --bmc
    /// gives one), or auto (Redfish when the BMC answers its service root on 443, else IPMI).
    #[arg(long, value_enum)]
    pub bmc_protocol: Option<BmcProtocolArg>,
    /// Forget the pinned Redfish certificate of the node's BMC (after a replaced certificate);
    /// the next Redfish action pins the one it sees.
    #[arg(long)]
    pub bmc_forget_cert: bool,
    /// Remove the BMC settings.
    #[arg(
        long,
        conflicts_with_all = [
            "bmc", "bmc_user", "bmc_password_file", "bmc_protocol", "bmc_forget_cert",
        ]
    )]
    pub no_bmc: bool,
}

/// `--bmc-protocol` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum BmcProtocolArg {
    Ipmi,
    Redfish,
    Auto,
}

impl From<BmcProtocolArg> for crate::store::model::BmcProtocol {
    fn from(p: BmcProtocolArg) -> Self {
        match p {
            BmcProtocolArg::Ipmi => Self::Ipmi,
            BmcProtocolArg::Redfish => Self::Redfish,
            BmcProtocolArg::Auto => Self::Auto,
        }
    }
}

impl BmcArgs {
    /// Whether any BMC option was given.
    pub fn given(&self) -> bool {
        self.no_bmc
            || self.bmc.is_some()
            || self.bmc_user.is_some()
            || self.bmc_password_file.is_some()
            || self.bmc_protocol.is_some()
            || self.bmc_forget_cert
    }

    pub fn change(&self) -> Result<admin::BmcChange, admin::AdminError> {
        Ok(admin::BmcChange {
            address: self.bmc.clone(),
            user: self.bmc_user.clone(),
            password: self
                .bmc_password_file
                .as_deref()
                .map(admin::read_password_file)
                .transpose()?,
            protocol: self.bmc_protocol.map(Into::into),
            forget_pin: self.bmc_forget_cert,
        })
    }
}

#[derive(Args)]
pub struct ExecArgs {
    /// Print the node key's public half (what nodes get in /root/.ssh/authorized_keys) and
    /// exit; makes the key first if the pool has none.
    #[arg(long, conflicts_with_all = ["target", "command"])]
    pub show_key: bool,
    /// Nodes, groups or ranges like node[001-064], separated by commas.
    #[arg(required_unless_present = "show_key")]
    pub target: Option<String>,
    /// The command, after `--`; the remote shell reads its words joined by spaces.
    #[arg(last = true, required_unless_present = "show_key")]
    pub command: Vec<String>,
    #[command(flatten)]
    pub ssh: SshArgs,
}

/// Other ways to run the agent than as /init.
#[derive(Subcommand)]
pub enum AgentCmd {
    /// Boot one simulated node on an interface without the kernel parts (DHCP as iPXE, boot
    /// script, kernel, initrd, root image, boot events) and print a JSON report; for
    /// `bench/storm.sh`. Changes the interface's address: run it in a namespace of its own.
    #[command(hide = true)]
    Simulate {
        /// The node's interface.
        #[arg(long)]
        iface: String,
        /// The MAC to boot as (default: the interface's own).
        #[arg(long)]
        mac: Option<String>,
    },
}

#[derive(Args)]
pub struct CpArgs {
    /// Local files, then TARGET:DEST (nodes, groups or ranges separated by commas, then the
    /// path on the nodes).
    #[arg(required = true, num_args = 2..)]
    pub paths: Vec<String>,
    #[command(flatten)]
    pub ssh: SshArgs,
}

#[derive(Args)]
pub struct SshArgs {
    /// Nodes reached at once.
    #[arg(long, default_value_t = crate::exec::DEFAULT_FANOUT)]
    pub fanout: usize,
    /// Seconds a node may take in all; then its ssh is killed and it counts as timed out.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Seconds to wait for each node's ssh connection.
    #[arg(long, default_value_t = 10)]
    pub connect_timeout: u64,
    /// The nodes' ssh port.
    #[arg(long, default_value_t = 22)]
    pub port: u16,
    /// Pin each node's host key at first use (in STATE_DIR/node-known-hosts, by node name)
    /// and refuse a changed one; without it host keys are not checked (a diskless node makes
    /// a new one at each boot).
    #[arg(long)]
    pub strict_host_keys: bool,
    /// Print JSON (one object per node, then the summary) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct PowerArgs {
    #[command(subcommand)]
    pub action: PowerAction,
    /// TOML configuration for the `[power]` defaults; without it the embedded default.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// BMC sessions at once (default: power.max-sessions).
    #[arg(long, global = true)]
    pub parallel: Option<usize>,
    /// Nodes per second that `on` and `cycle` start (default: power.on-rate; 0 = all at once).
    #[arg(long, global = true)]
    pub rate: Option<f64>,
}

#[derive(Subcommand)]
pub enum PowerAction {
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

#[derive(Subcommand)]
pub enum BmcCmd {
    /// Sensor readings (IPMI: the SDR repository; Redfish: Thermal and Power).
    Sensors(BmcReadArgs),
    /// The BMC's event log (IPMI SEL; Redfish: the manager's SEL log service).
    Sel(BmcReadArgs),
}

#[derive(Args)]
pub struct BmcReadArgs {
    #[command(flatten)]
    pub targets: Targets,
    /// TOML configuration for the `[power]` session settings; without it the embedded default.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// BMCs read at once (default: power.max-sessions).
    #[arg(long)]
    pub parallel: Option<usize>,
    /// Print JSON (one object per node) instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct Targets {
    /// Nodes, groups, or ranges like node[001-064].
    #[arg(required = true)]
    pub targets: Vec<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum BootDev {
    Pxe,
    Disk,
}

#[derive(Subcommand)]
pub enum ImageCmd {
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
    /// Import an image's root filesystem from a directory, a tarball (plain, gzip, zstd,
    /// xz), an OCI image layout or a `docker save` / `podman save` archive; into an
    /// existing image as its next version. The kernel (and initrd) come from the tree's
    /// /boot/vmlinuz-* (and /boot/initrd.img-*) unless given.
    Import {
        name: String,
        source: PathBuf,
        #[arg(long)]
        kernel: Option<PathBuf>,
        /// Kernel command line; an existing image keeps its own when not given.
        #[arg(long)]
        cmdline: Option<String>,
        #[command(flatten)]
        boot: ImageBootArgs,
    },
    /// Build an image's root tree from Debian's archive (mmdebstrap, else debootstrap; as
    /// root): the minbase variant, a kernel (linux-image-amd64 unless the recipe names
    /// another) and the given packages, then the recipe's files and commands. Stored as the
    /// image's next version with the recipe, which `image build NAME` alone uses again.
    Build {
        name: String,
        /// Debian suite (bookworm, trixie, ...); overrides the recipe's.
        #[arg(long)]
        suite: Option<String>,
        /// More packages, comma-separated (added to the recipe's).
        #[arg(long, value_delimiter = ',')]
        packages: Vec<String>,
        /// A recipe: TOML with suite, kernel, packages, files (path with content or source)
        /// and commands (see README, "Building images").
        #[arg(long)]
        recipe: Option<PathBuf>,
        /// Debian archive to fetch from [default: the first Debian archive of the machine's
        /// apt sources].
        #[arg(long)]
        mirror: Option<String>,
        /// Kernel command line; an existing image keeps its own when not given.
        #[arg(long)]
        cmdline: Option<String>,
        #[command(flatten)]
        boot: ImageBootArgs,
    },
    /// Run a shell (or CMD) in the image's latest root tree (as root: new mount, PID, UTS
    /// and IPC namespaces, chroot, /proc, /dev, /sys and the host's resolv.conf). When it
    /// exits 0 the tree is stored as the next version and the changes are summarised; any
    /// other exit stores nothing.
    Shell {
        name: String,
        /// The command and its arguments [default: the image's /bin/bash or /bin/sh].
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Show an image's versions, oldest first.
    History {
        name: String,
        /// Print the recipe `image build` kept with this version instead.
        #[arg(long, value_name = "VERSION")]
        recipe: Option<u32>,
    },
    /// Make an old version's files the latest again (recorded as a new version).
    Rollback { name: String, version: u32 },
    /// List images.
    List,
    /// Remove an image (refused while nodes use it).
    Rm { name: String },
    /// Mount an image's root tree read-only (FUSE), straight from the local store: NAME for
    /// the latest version, NAME@N for version N. Needs root and /dev/fuse; DIR must be an
    /// empty directory. Unmount with `umount DIR` (or SIGINT/SIGTERM in the foreground).
    Mount {
        /// NAME or NAME@VERSION.
        image: String,
        dir: PathBuf,
        /// Stay in the foreground until unmounted (else the mount is served in the
        /// background once it is up).
        #[arg(long)]
        foreground: bool,
    },
}

#[derive(Subcommand)]
pub enum NetworkCmd {
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
pub enum LeaseCmd {
    /// List leases.
    List,
}

#[derive(Subcommand)]
pub enum GroupCmd {
    /// Add or replace a group.
    Add {
        name: String,
        /// Image for the group's nodes that name none themselves.
        #[arg(long)]
        image: Option<String>,
        /// The version of the image the group's nodes boot (a node's own pin wins); the
        /// latest when not given.
        #[arg(long, requires = "image", value_parser = clap::value_parser!(u32).range(1..))]
        image_version: Option<u32>,
        /// Whether the group's nodes fetch a RAM root from each other too (a node's own
        /// setting wins); their image's setting when not given.
        #[arg(long, value_enum)]
        swarm: Option<OnOff>,
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
pub enum AdminCmd {
    /// Set a user's password (read from standard input; asked twice on a terminal). Creates
    /// the user if needed.
    Passwd {
        #[arg(default_value = crate::auth::ADMIN)]
        user: String,
    },
}

#[derive(Subcommand)]
pub enum UserCmd {
    /// Make a user with a role (admin; operator: power, no user or settings changes; viewer:
    /// read only). The password is read from standard input (asked twice on a terminal).
    Add {
        name: String,
        #[arg(long)]
        role: Role,
    },
    /// Change a user's role (the last admin stays admin).
    Set {
        name: String,
        #[arg(long)]
        role: Role,
    },
    /// List users and their roles.
    List,
}

#[derive(Subcommand)]
pub enum TokenCmd {
    /// Make an API token; prints it once, as the last word of the output.
    Create {
        #[arg(long)]
        name: String,
        /// What the token may do: admin, operator (power) or viewer (read only).
        #[arg(long, default_value = "admin")]
        role: Role,
    },
    /// List API tokens (names only; tokens are not kept).
    List,
    /// Revoke an API token.
    Rm { name: String },
}

pub fn parse_range(s: &str) -> Result<(Ipv4Addr, Ipv4Addr), String> {
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
