//! The `drover` command line: arguments ([`args`]), one [`Backend`] trait with two
//! implementations, [`local::Local`] (the store in `--state-dir`, through `crate::admin`) and
//! [`remote::Remote`] (a drover's API, `--server URL --token T`), and one printer
//! ([`print`]). [`run`] dispatches a parsed command: it asks the back end for typed data and
//! prints it, so both back ends print the same text.
//!
//! Commands without an API endpoint (`serve`, `agent`, `dns check`, `pool init|join|leave|
//! forget`, `image add`, `group set`, `nfs clients`, `admin passwd`, and [`appliance`]'s
//! `install`, `uninstall`, `backup`, `restore`, `completions`, `man`) act on the local state
//! directory or machine; with `--server` they fail with an error naming the command.
//!
//! Not here: the admin rules (`crate::admin`), the pool's key and seed files
//! (`crate::pool::setup`), logging set-up and the PID-1 agent check (`main.rs`).

mod appliance;
pub mod args;
mod bmc;
mod exec;
mod files;
pub mod local;
mod mount;
mod password;
pub mod print;
pub mod remote;
mod trust;

use crate::admin::{self, GroupInfo, NodeDetail};
// The CLI's clock reads (lease times, power-state ages, tokens).
use crate::clock::unix_secs as unix_now;
use crate::config::Config;
use crate::discover::adopt::{DiscoveredList, RuleAdded};
use crate::discover::rule::NamingRule;
use crate::image::recipe::Recipe;
use crate::image::usage::{HistoryEntry, StoreTotals};
use crate::pool::setup;
use crate::store::model::{
    BootEvent, Export, Group, Image, Lease, Mac, Network, Node, Role, Squash,
};
use anyhow::{bail, Context, Result};
use args::{
    AdminCmd, AgentCmd, Command, ConfigCmd, DnsCmd, ExportCmd, GroupCmd, ImageCmd, LeaseCmd,
    NetworkCmd, NfsCmd, NodeCmd, NodeSetArgs, PoolCmd, PowerAction, PowerArgs, RuleCmd, TlsCmd,
    TokenCmd, UserCmd,
};
use local::Local;
use print::{PowerRow, TokenInfo};
use std::path::Path;

/// What a command needs from a drover, locally or through the API. Lists come back in the
/// store's order (by name or address), so both back ends print the same rows.
pub trait Backend {
    fn nodes(&self) -> Result<Vec<Node>>;
    /// A node with what `node show` tells about it.
    fn node(&self, name: &str) -> Result<(Node, NodeDetail)>;
    fn add_node(&self, node: &Node) -> Result<()>;
    /// Changes a node (and its BMC settings, locally); returns it as changed.
    fn set_node(&self, name: &str, change: &NodeSetArgs) -> Result<Node>;
    fn remove_node(&self, name: &str) -> Result<()>;
    /// Adds the nodes of a CSV file, all or none; returns how many.
    fn import_nodes(&self, file: &Path) -> Result<usize>;
    /// A node's kept boot events, oldest first.
    fn node_events(&self, name: &str) -> Result<Vec<BootEvent>>;
    fn groups(&self) -> Result<Vec<GroupInfo>>;
    fn put_group(&self, group: &Group) -> Result<()>;
    fn remove_group(&self, name: &str) -> Result<()>;
    fn images(&self) -> Result<Vec<Image>>;
    fn set_image(&self, name: &str, change: &admin::ImageChange) -> Result<Image>;
    /// An image's versions, oldest first, with what each stores.
    fn image_history(&self, name: &str) -> Result<Vec<HistoryEntry>>;
    /// The image blob store's totals.
    fn image_store(&self) -> Result<StoreTotals>;
    /// Makes version `version` of an image the latest again; returns the new version's
    /// number.
    fn rollback_image(&self, name: &str, version: u32) -> Result<u32>;
    fn remove_image(&self, name: &str) -> Result<()>;
    fn networks(&self) -> Result<Vec<Network>>;
    fn add_network(&self, network: &Network) -> Result<()>;
    fn remove_network(&self, name: &str) -> Result<()>;
    fn leases(&self) -> Result<Vec<Lease>>;
    fn exports(&self) -> Result<Vec<Export>>;
    /// Adds an export; returns it as stored (its path made canonical).
    fn add_export(&self, export: &Export) -> Result<Export>;
    fn remove_export(&self, name: &str) -> Result<()>;
    fn tokens(&self) -> Result<Vec<TokenInfo>>;
    /// Makes a token; returns its secret.
    fn create_token(&self, name: &str, role: Role) -> Result<String>;
    fn users(&self) -> Result<Vec<print::UserInfo>>;
    /// Audit log entries at or after `since` (unix seconds), oldest first.
    fn audit(&self, since: u64) -> Result<Vec<crate::store::model::AuditEntry>>;
    fn add_user(&self, name: &str, password: &str, role: Role) -> Result<()>;
    fn set_role(&self, name: &str, role: Role) -> Result<()>;
    fn remove_token(&self, name: &str) -> Result<()>;
    /// Runs a power action on the targets; one row per node.
    fn power(&self, args: &PowerArgs) -> Result<Vec<PowerRow>>;
    /// The pool status (`pool status`).
    fn pool_status(&self) -> Result<crate::pool::status::Status>;
    /// Declares a member that is down dead (`pool mark-dead`); returns its id.
    fn mark_dead(&self, id: &str) -> Result<u64>;
    /// Drains a member (`drained`) or ends its drain (`pool drain|undrain`); returns its id.
    fn drain(&self, id: &str, drained: bool) -> Result<u64>;
    /// Waiting machines (with `all`, adopted ones too) and the duplicates among them.
    fn discovered(&self, all: bool) -> Result<DiscoveredList>;
    /// Makes waiting machine `mac` node `name`.
    fn adopt(&self, mac: Mac, name: &str, image: Option<&str>, group: Option<&str>)
        -> Result<Node>;
    /// Sets (or with `None` clears) the image unknown machines boot into discovery.
    fn set_discovery_image(&self, image: Option<&str>) -> Result<()>;
    fn rules(&self) -> Result<Vec<NamingRule>>;
    /// Adds a rule; returns it as stored and the nodes it adopted at once.
    fn add_rule(&self, rule: &NamingRule) -> Result<RuleAdded>;
    fn remove_rule(&self, rule: &str) -> Result<()>;
    fn file_sets(&self) -> Result<Vec<crate::files::core::FileSet>>;
    fn file_set(&self, name: &str) -> Result<crate::files::core::FileSet>;
    /// Adds (or replaces by path) a file of a set, making the set if new; returns the set.
    fn add_set_file(
        &self,
        set: &str,
        file: &crate::files::core::SetFile,
    ) -> Result<crate::files::core::FileSet>;
    /// Removes a set, or one file of it.
    fn remove_set(&self, set: &str, path: Option<&str>) -> Result<()>;
    /// Assigns a set (`on`) or takes the assignment back.
    fn assign_set(
        &self,
        set: &str,
        to: &crate::files::core::Assignment,
        on: bool,
    ) -> Result<crate::files::core::FileSet>;
    /// The appliance's settings with where each value comes from.
    fn config_show(&self) -> Result<crate::overrides::Shown>;
    /// Sets and removes appliance settings, checked together.
    fn config_change(
        &self,
        changes: &[crate::overrides::Change],
    ) -> Result<Vec<crate::overrides::Outcome>>;
}

/// Runs a parsed command line.
pub fn run(cli: args::Cli) -> Result<()> {
    let state = cli.state_dir.as_path();
    let remote = match (&cli.server, &cli.token) {
        (Some(server), Some(token)) => Some(remote::Remote::new(
            server,
            token,
            cli.fingerprint.as_deref(),
        )?),
        _ => None,
    };
    // Reads of the BMCs: through the API with a server, else from the local store.
    match (&cli.command, &remote) {
        (Command::Console { .. }, Some(r)) => return bmc::console_remote(r, &cli.command),
        (Command::Bmc(cmd), Some(r)) => return bmc::run_remote(r, cmd),
        (Command::Console { .. } | Command::Bmc(_), None) => return run_local(state, cli.command),
        _ => {}
    }
    if let Some(name) = local_only(&cli.command) {
        if remote.is_some() {
            bail!(
                "`drover {name}` has no API endpoint: it works only on the appliance itself \
                 (on its state directory); run it there without --server"
            );
        }
        let what = changes(&cli.command).then(command_line);
        run_local(state, cli.command)?;
        return audit_local(state, what);
    }
    let Some(r) = &remote else {
        let what = changes(&cli.command).then(command_line);
        run_on(&Local::new(state), cli.command)?;
        return audit_local(state, what);
    };
    run_on(r, cli.command)
}

/// Records a local change that succeeded (the API records its own: see `crate::audit`).
fn audit_local(state: &Path, what: Option<String>) -> Result<()> {
    let Some(what) = what else {
        return Ok(());
    };
    let local = Local::new(state);
    let now = crate::clock::unix_ms();
    crate::audit::record(local.store()?, now, &unix_user(), "local", &what)
        .context("writing the audit log")
}

/// Whether a command that has an API counterpart changes anything (and so goes to the audit
/// log when run locally).
fn changes(command: &Command) -> bool {
    let matches =
        <args::Cli as clap::CommandFactory>::command().try_get_matches_from(std::env::args_os());
    let Ok(matches) = matches else {
        return true;
    };
    let mut words = Vec::new();
    let mut sub = matches.subcommand();
    while let Some((name, m)) = sub {
        words.push(name.to_string());
        sub = m.subcommand();
    }
    // Reads, and commands that leave the store alone (or, like `uninstall --purge`, remove it).
    let reads = [
        "list",
        "show",
        "status",
        "history",
        "events",
        "audit",
        "check-config",
        "check",
        "clients",
        "serve",
        "agent",
        "completions",
        "man",
        "backup",
        "tls",
        "install",
        "uninstall",
        "default-config",
        "lab",
        "restore",
        "usb",
        "witness",
        "bmc",
        "console",
    ];
    let read_only = words.iter().any(|w| reads.contains(&w.as_str()))
        || matches!(command, Command::DefaultConfig | Command::Serve { .. });
    !read_only
}

/// The command line as typed, for the audit log (secrets never are arguments: passwords and
/// BMC passwords come from standard input or files).
fn command_line() -> String {
    let args = std::env::args_os().skip(1);
    std::iter::once("drover".to_string())
        .chain(args.map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `unix NAME` of the user running the CLI (`$USER`, else the uid).
fn unix_user() -> String {
    match std::env::var("USER").or_else(|_| std::env::var("LOGNAME")) {
        Ok(name) if !name.is_empty() => format!("unix {name}"),
        _ => {
            use std::os::unix::fs::MetadataExt;
            match std::fs::metadata("/proc/self") {
                Ok(m) => format!("unix uid {}", m.uid()),
                Err(_) => "unix (unknown)".into(),
            }
        }
    }
}

/// The name of a command that has no API counterpart, or `None`.
fn local_only(command: &Command) -> Option<&'static str> {
    Some(match command {
        Command::Serve { .. } => "serve",
        Command::Agent { .. } => "agent",
        Command::Lab(_) => "lab",
        Command::Dns(_) => "dns check",
        Command::Pool(PoolCmd::Init) => "pool init",
        Command::Pool(PoolCmd::Join { .. }) => "pool join",
        Command::Pool(PoolCmd::Leave) => "pool leave",
        Command::Pool(PoolCmd::Forget { .. }) => "pool forget",
        Command::Pool(PoolCmd::Rekey { .. }) => "pool rekey",
        Command::Image(ImageCmd::Add { .. }) => "image add",
        Command::Image(ImageCmd::Import { .. }) => "image import",
        Command::Image(ImageCmd::Mount { .. }) => "image mount",
        Command::Node(NodeCmd::Grab { .. }) => "node grab",
        Command::Image(ImageCmd::Build { .. }) => "image build",
        Command::Image(ImageCmd::Shell { .. }) => "image shell",
        Command::Group(GroupCmd::Set { .. }) => "group set",
        Command::Nfs(NfsCmd::Clients { .. }) => "nfs clients",
        Command::Admin(AdminCmd::Passwd { .. }) => "admin passwd",
        Command::Install(_) => "install",
        Command::Uninstall { .. } => "uninstall",
        Command::Backup { .. } => "backup",
        Command::Restore { .. } => "restore",
        Command::Completions { .. } => "completions",
        Command::Man { .. } => "man",
        Command::Tls(_) => "tls show",
        Command::Exec(_) => "exec",
        Command::Cp(_) => "cp",
        Command::Files(args::FilesCmd::Sync { .. }) => "files sync",
        Command::Usb(_) => "usb",
        Command::Witness { .. } => "witness",
        _ => return None,
    })
}

/// The commands that act on the local state directory only.
fn run_local(state: &Path, command: Command) -> Result<()> {
    match command {
        Command::Serve { config, interfaces } => {
            // Absolute, so that `drover config` run from elsewhere reads the same file.
            let file = match config {
                Some(f) => Some(
                    std::fs::canonicalize(&f)
                        .with_context(|| format!("cannot read {}", f.display()))?,
                ),
                None => None,
            };
            let base = crate::overrides::Base { file, interfaces };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(crate::serve::run(state, base))
        }
        Command::Agent { mode: None } => crate::agent::run(),
        Command::Agent {
            mode: Some(AgentCmd::Simulate { iface, mac }),
        } => {
            let mac = mac
                .map(|m| {
                    crate::agent::cmdline::Mac::parse(&m)
                        .with_context(|| format!("--mac {m}: not a MAC address"))
                })
                .transpose()?;
            let report = crate::agent::simulate::run(&iface, mac)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Lab(cmd) => lab(cmd),
        Command::Witness {
            listen,
            seeds,
            key_file,
        } => witness(&listen, &seeds, &key_file),
        Command::Dns(DnsCmd::Check {
            name,
            qtype,
            config,
            interfaces,
        }) => {
            let text = local::dns_check(state, &name, qtype.as_deref(), config, interfaces)?;
            print!("{text}");
            Ok(())
        }
        Command::Pool(cmd) => pool_local(state, cmd),
        Command::Image(ImageCmd::Add {
            name,
            kernel,
            initrd,
            cmdline,
            rootfs,
            replace,
            boot,
        }) => {
            let src = crate::image::ImageSource {
                kernel,
                initrd,
                rootfs,
                cmdline,
            };
            let add = admin::AddImage {
                replace,
                settings: boot.change(None),
                made: admin::Made::local("add"),
            };
            let img = Local::new(state).add_image(&name, &src, &add)?;
            print!("{}", print::image_added(&img));
            Ok(())
        }
        Command::Image(ImageCmd::Import {
            name,
            source,
            kernel,
            cmdline,
            boot,
        }) => {
            let add = admin::AddImage {
                replace: true,
                settings: boot.change(cmdline),
                made: admin::Made::local(format!("import {}", source.display())),
            };
            let img = Local::new(state).import_image(&name, &source, kernel.as_deref(), &add)?;
            print!("{}", print::image_added(&img));
            Ok(())
        }
        Command::Image(ImageCmd::Mount {
            image,
            dir,
            foreground,
        }) => mount::run(state, &image, &dir, foreground),
        Command::Node(NodeCmd::Grab {
            node,
            image,
            excludes,
            port,
        }) => exec::grab(state, &node, &image, &excludes, port),
        Command::Image(ImageCmd::Build {
            name,
            suite,
            packages,
            recipe,
            mirror,
            cmdline,
            boot,
        }) => {
            let local = Local::new(state);
            let mut r = match (&recipe, &suite) {
                (Some(file), _) => {
                    let text = std::fs::read_to_string(file)
                        .with_context(|| format!("reading the recipe {}", file.display()))?;
                    let mut r = Recipe::parse(&text)
                        .with_context(|| format!("recipe {}", file.display()))?;
                    let base = file.parent().unwrap_or(std::path::Path::new("."));
                    crate::image::build::inline_sources(&mut r, base)?;
                    r
                }
                (None, Some(s)) => Recipe::bare(s)?,
                (None, None) => match local.stored_recipe(&name)? {
                    Some(text) => Recipe::parse(&text)
                        .with_context(|| format!("the recipe stored with image {name}"))?,
                    None => bail!("image {name} has no stored recipe: give --suite or --recipe"),
                },
            };
            if let (Some(s), Some(_)) = (&suite, &recipe) {
                r.suite = Recipe::bare(s)?.suite;
            }
            r.add_packages(&packages)?;
            let add = admin::AddImage {
                replace: true,
                settings: boot.change(cmdline),
                made: admin::Made::local(format!("build {}", r.suite)),
            };
            let img = local.build_image(&name, &r, mirror.as_deref(), &add)?;
            print!("{}", print::image_added(&img));
            println!("image {name} is now version {}", img.latest_version());
            Ok(())
        }
        Command::Image(ImageCmd::Shell { name, command }) => {
            match Local::new(state).shell_image(&name, &command)? {
                local::ShellOutcome::Committed { version, summary } => {
                    print!("{}", crate::image::diff::render(&summary));
                    println!("stored as image {name} version {version}");
                }
                local::ShellOutcome::Unchanged => {
                    println!("nothing changed: image {name} keeps its version")
                }
                local::ShellOutcome::Failed(status) => {
                    bail!("the command failed ({status}): nothing stored, image {name} unchanged")
                }
            }
            Ok(())
        }
        Command::Group(GroupCmd::Set { name, bmc }) => {
            let local = Local::new(state);
            if bmc.no_bmc {
                local.remove_group_bmc(&name)?;
                println!("removed BMC settings of group {name}");
                return Ok(());
            }
            let change = bmc.change()?;
            if change.is_empty() {
                bail!("nothing to set: give --bmc, --bmc-user or --bmc-password-file");
            }
            local.set_group_bmc(&name, &change)?;
            println!("set BMC settings of group {name}");
            Ok(())
        }
        Command::Nfs(NfsCmd::Clients { json }) => {
            print!("{}", local::nfs_clients(state, json)?);
            Ok(())
        }
        Command::Admin(AdminCmd::Passwd { user }) => {
            let local = Local::new(state);
            let store = local.store()?;
            let password = password::read(&user)?;
            crate::auth::set_password(store, &user, &password)?;
            println!("password of {user} set");
            Ok(())
        }
        command @ (Command::Install(_)
        | Command::Uninstall { .. }
        | Command::Backup { .. }
        | Command::Restore { .. }
        | Command::Completions { .. }
        | Command::Man { .. }) => appliance::run(state, command, unix_now()),
        Command::Tls(TlsCmd::Show { config }) => tls_show(state, config.as_deref()),
        Command::Exec(args) => exec::exec(state, &args),
        Command::Cp(args) => exec::cp(state, &args),
        Command::Files(args::FilesCmd::Sync { target, ssh }) => files::sync(state, &target, &ssh),
        Command::Bmc(cmd) => bmc::run(state, &cmd),
        command @ Command::Console { .. } => bmc::console(state, &command),
        Command::Usb(cmd) => usb(state, cmd),
        _ => bail!("internal: a command with an API counterpart reached the local-only path"),
    }
}

/// `drover usb build` and `drover usb write`.
fn usb(state: &Path, cmd: args::UsbCmd) -> Result<()> {
    use crate::usb::{self, layout};
    match cmd {
        args::UsbCmd::Build {
            out,
            size,
            images,
            kernel,
            kernel_version,
            address,
            gateway,
            consoles,
        } => {
            let size =
                layout::parse_size(&size).map_err(|e| anyhow::anyhow!("--size {size}: {e}"))?;
            let address = layout::parse_cidr(&address)
                .map_err(|e| anyhow::anyhow!("--address {address}: {e}"))?;
            let agent = std::env::current_exe().context("finding drover's own binary")?;
            let report = usb::build(&usb::BuildOptions {
                out: out.clone(),
                size,
                kernel_root: kernel,
                kernel_version,
                address,
                gateway,
                consoles,
                agent,
                state_dir: state.to_path_buf(),
                images,
            })?;
            let l = report.layout;
            println!(
                "wrote {} ({} MiB): boot partition {} MiB (kernel {}, initramfs {} MiB with {} \
                 modules), data partition {} MiB (label {}){}",
                out.display(),
                l.total >> 20,
                l.esp_len >> 20,
                report.kver,
                report.initramfs_bytes >> 20,
                report.modules,
                l.data_len >> 20,
                layout::DATA_LABEL,
                if report.images.is_empty() {
                    String::new()
                } else {
                    format!(", images {}", report.images.join(" "))
                }
            );
            println!("kernel command line: {}", report.cmdline);
            Ok(())
        }
        args::UsbCmd::Write {
            image,
            device,
            force,
        } => {
            let w = usb::write(&image, &device, force)?;
            println!(
                "wrote {} bytes of {} to {} ({} bytes) and synced",
                w.bytes,
                image.display(),
                device.display(),
                w.target_size
            );
            Ok(())
        }
    }
}

/// `drover tls show`: the certificate the server uses (or will use) and its fingerprint.
fn tls_show(state: &Path, config: Option<&Path>) -> Result<()> {
    let config = Config::load(config)?;
    let (identity, file) = match (&config.http.tls_cert, &config.http.tls_key) {
        (Some(cert), Some(key)) => (crate::tls::Identity::load(cert, key)?, cert.clone()),
        _ => {
            let dir = state.join(crate::tls::DIR);
            let (cert, key) = (
                dir.join(crate::tls::CERT_FILE),
                dir.join(crate::tls::KEY_FILE),
            );
            if !cert.exists() {
                bail!(
                    "no certificate yet in {}: `drover serve` makes one at its first start with \
                     [http] https-port set",
                    dir.display()
                );
            }
            (crate::tls::Identity::load(&cert, &key)?, cert)
        }
    };
    println!("certificate  {}", file.display());
    println!("sha256       {}", identity.fingerprint());
    Ok(())
}

fn pool_local(state: &Path, cmd: PoolCmd) -> Result<()> {
    match cmd {
        PoolCmd::Init => {
            let path = setup::init(state)?;
            println!("created the cluster key {}", path.display());
            println!(
                "copy it (mode 0600) to each further member and run there: \
                 drover pool join THIS_MEMBER_IP --key-file FILE"
            );
        }
        PoolCmd::Join { seed, key_file } => {
            let addr = setup::join(state, &seed, &key_file)?;
            println!(
                "joining the pool through {addr}: a running `drover serve` joins within {} s, \
                 otherwise at its start",
                setup::announce_secs()
            );
        }
        PoolCmd::Leave => {
            let removed = setup::leave(Local::new(state).store()?, state)?;
            let names: Vec<String> = removed.iter().map(|p| p.display().to_string()).collect();
            println!(
                "left the pool (removed {}); a running server leaves within {} s",
                names.join(", "),
                setup::announce_secs()
            );
        }
        PoolCmd::Forget { id } => {
            let id = setup::forget(Local::new(state).store()?, state, &id)?;
            println!(
                "member {id:016x} taken off the roster; its DHCP address share goes to the others"
            );
        }
        PoolCmd::Rekey { transition } => {
            let rekey = setup::rekey(state, transition, crate::clock::unix_ms())?;
            let secs = |ms: u64| ms.saturating_sub(crate::clock::unix_ms()).div_ceil(1000);
            println!(
                "made a new cluster key; the running server passes it to the live members \
                 within {} s; members send with it in {} s and refuse the old key in {} s",
                setup::announce_secs(),
                secs(rekey.switch_ms),
                secs(rekey.retire_ms)
            );
        }
        PoolCmd::Status { .. }
        | PoolCmd::MarkDead { .. }
        | PoolCmd::Drain { .. }
        | PoolCmd::Undrain { .. } => {
            bail!("internal: this pool command has an API counterpart")
        }
    }
    Ok(())
}

/// `drover config`.
fn config(b: &dyn Backend, cmd: ConfigCmd) -> Result<()> {
    use crate::overrides::Change;
    let changes = match cmd {
        ConfigCmd::Show { json } => {
            let shown = b.config_show()?;
            match json {
                true => print!("{}", print::json(&shown)?),
                false => print!("{}", print::config_show(&shown)),
            }
            return Ok(());
        }
        ConfigCmd::Set { key, value } => vec![Change {
            key,
            value: Some(serde_json::to_value(crate::config::parse_value(&value))?),
        }],
        ConfigCmd::Unset { key } => vec![Change { key, value: None }],
        ConfigCmd::Apply { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let table: toml::Table =
                toml::from_str(&text).with_context(|| format!("{}", file.display()))?;
            crate::overrides::flatten(&table)
                .into_iter()
                .map(|(key, v)| {
                    Ok(Change {
                        key,
                        value: Some(serde_json::to_value(v)?),
                    })
                })
                .collect::<Result<_>>()?
        }
    };
    print!("{}", print::config_outcomes(&b.config_change(&changes)?));
    Ok(())
}

/// The commands that both back ends can do.
fn run_on(b: &dyn Backend, command: Command) -> Result<()> {
    match command {
        Command::CheckConfig { file } => {
            Config::load(Some(&file))?;
            println!("{}: ok", file.display());
        }
        Command::DefaultConfig => print!("{}", crate::config::DEFAULT_TOML),
        Command::Config(cmd) => config(b, cmd)?,
        Command::Node(cmd) => node(b, cmd)?,
        Command::Group(cmd) => match cmd {
            GroupCmd::Add {
                name,
                image,
                image_version,
                swarm,
            } => {
                b.put_group(&Group {
                    name: name.clone(),
                    image,
                    image_version,
                    swarm: swarm.map(args::OnOff::on),
                })?;
                println!("added group {name}");
            }
            GroupCmd::List => print!("{}", print::groups(&b.groups()?)),
            GroupCmd::Rm { name } => {
                b.remove_group(&name)?;
                println!("removed group {name}");
            }
            GroupCmd::Set { .. } => bail!("internal: group set is local only"),
        },
        Command::Image(cmd) => match cmd {
            ImageCmd::Set {
                name,
                cmdline,
                boot,
            } => {
                let img = b.set_image(&name, &boot.change(cmdline))?;
                print!("{}", print::images(&[img]));
            }
            ImageCmd::List => {
                print!("{}", print::images(&b.images()?));
                print!("{}", print::store_totals(&b.image_store()?));
            }
            ImageCmd::History { name, recipe } => {
                let history = b.image_history(&name)?;
                match recipe {
                    None => print!("{}", print::image_history(&history)),
                    Some(n) => {
                        let v = history
                            .iter()
                            .find(|e| e.version.number == n)
                            .ok_or_else(|| anyhow::anyhow!("image {name} has no version {n}"))?;
                        match &v.version.recipe {
                            Some(text) => print!("{text}"),
                            None => {
                                bail!("version {n} of image {name} was not made by image build")
                            }
                        }
                    }
                }
            }
            ImageCmd::Rollback { name, version } => {
                let now = b.rollback_image(&name, version)?;
                println!(
                    "rolled back image {name} to version {version}'s files (now version {now})"
                );
            }
            ImageCmd::Rm { name } => {
                b.remove_image(&name)?;
                println!("removed image {name}");
            }
            ImageCmd::Add { .. }
            | ImageCmd::Import { .. }
            | ImageCmd::Mount { .. }
            | ImageCmd::Build { .. }
            | ImageCmd::Shell { .. } => {
                bail!("internal: image add, import, mount, build and shell are local only")
            }
        },
        Command::Network(cmd) => match cmd {
            NetworkCmd::Add {
                name,
                subnet,
                range,
                gateway,
                domain,
            } => {
                b.add_network(&Network {
                    name: name.clone(),
                    subnet,
                    range,
                    gateway,
                    domain,
                })?;
                println!("added network {name}");
            }
            NetworkCmd::List => print!("{}", print::networks(&b.networks()?)),
            NetworkCmd::Rm { name } => {
                b.remove_network(&name)?;
                println!("removed network {name}");
            }
        },
        Command::Lease(LeaseCmd::List) => print!("{}", print::leases(&b.leases()?, unix_now())),
        Command::Nfs(NfsCmd::Export(cmd)) => match cmd {
            ExportCmd::Add {
                name,
                path,
                clients,
                rw,
                ro_clients,
                no_root_squash,
                all_squash,
                anon_uid,
                anon_gid,
            } => {
                let squash = match (no_root_squash, all_squash) {
                    (_, true) => Squash::All,
                    (true, false) => Squash::None,
                    (false, false) => Squash::Root,
                };
                let e = b.add_export(&Export {
                    rw,
                    ro_clients,
                    squash,
                    anon_uid,
                    anon_gid,
                    ..Export::new(&name, &path.to_string_lossy(), clients)
                })?;
                let mode = if e.rw { "read-write" } else { "read-only" };
                println!(
                    "added export {} ({}, {mode}) at /{}",
                    e.name, e.path, e.name
                );
            }
            ExportCmd::List => print!("{}", print::exports(&b.exports()?)),
            ExportCmd::Rm { name } => {
                b.remove_export(&name)?;
                println!("removed export {name}");
            }
        },
        Command::Token(cmd) => match cmd {
            TokenCmd::Create { name, role } => {
                let token = b.create_token(&name, role)?;
                // Scripts take the last word: keep the token last.
                println!("created API token {name} (shown only now): {token}");
            }
            TokenCmd::List => print!("{}", print::tokens(&b.tokens()?)),
            TokenCmd::Rm { name } => {
                b.remove_token(&name)?;
                println!("removed API token {name}");
            }
        },
        Command::User(cmd) => match cmd {
            UserCmd::Add { name, role } => {
                let password = password::read(&name)?;
                b.add_user(&name, &password, role)?;
                println!("added user {name} ({role})");
            }
            UserCmd::Set { name, role } => {
                b.set_role(&name, role)?;
                println!("user {name} is now {role}");
            }
            UserCmd::List => print!("{}", print::users(&b.users()?)),
        },
        Command::Audit { since, json } => {
            let since = match since {
                None => 0,
                Some(s) => crate::audit::parse_since(&s, unix_now()).with_context(|| {
                    format!("--since {s:?}: expected unix seconds or an age like 30m, 12h, 7d")
                })?,
            };
            let entries = b.audit(since)?;
            if json {
                print!("{}", print::json(&entries)?);
            } else {
                print!("{}", print::audit(&entries));
            }
        }
        Command::Power(args) => {
            let rows = b.power(&args)?;
            print!("{}", print::power(&rows));
            let failed = rows.iter().filter(|r| r.result != "ok").count();
            if failed > 0 {
                bail!("{failed} of {} nodes failed", rows.len());
            }
        }
        Command::Files(cmd) => files::run(b, cmd)?,
        Command::Rule(cmd) => match cmd {
            RuleCmd::Add { rule, group, image } => {
                let added = b.add_rule(&NamingRule { rule, group, image })?;
                println!("added rule {}", added.rule.rule);
                for name in added.adopted {
                    println!("adopted node {name}");
                }
            }
            RuleCmd::List => print!("{}", print::rules(&b.rules()?)),
            RuleCmd::Rm { rule } => {
                b.remove_rule(&rule)?;
                println!("removed rule {rule}");
            }
        },
        Command::Pool(PoolCmd::MarkDead { id }) => {
            let id = b.mark_dead(&id)?;
            println!(
                "member {id:016x} marked dead; the members in sight of each other form a \
                 majority without it (a restart of it lifts the mark)"
            );
        }
        Command::Pool(PoolCmd::Drain { id }) => {
            let id = b.drain(&id, true)?;
            println!(
                "member {id:016x} drained; the others take its DHCP clients once it has handed                  them over, and the service address (`drover pool status` shows it drained)"
            );
        }
        Command::Pool(PoolCmd::Undrain { id }) => {
            let id = b.drain(&id, false)?;
            println!(
                "member {id:016x} undrained; it serves again once every other member has                  stopped serving for it"
            );
        }
        Command::Pool(PoolCmd::Status { json }) => {
            let status = b.pool_status()?;
            if json {
                print!("{}", print::json(&status)?);
            } else {
                // Ages as of the status itself, so that the text does not depend on which
                // machine's clock reads it.
                print!("{}", crate::pool::show::render(&status, status.updated_ms));
            }
        }
        Command::Serve { .. }
        | Command::Agent { .. }
        | Command::Lab(_)
        | Command::Dns(_)
        | Command::Pool(_)
        | Command::Nfs(NfsCmd::Clients { .. })
        | Command::Admin(_)
        | Command::Install(_)
        | Command::Uninstall { .. }
        | Command::Backup { .. }
        | Command::Restore { .. }
        | Command::Completions { .. }
        | Command::Man { .. }
        | Command::Exec(_)
        | Command::Cp(_)
        | Command::Bmc(_)
        | Command::Console { .. }
        | Command::Usb(_)
        | Command::Witness { .. }
        | Command::Tls(_) => bail!("internal: a local-only command reached a back end"),
    }
    Ok(())
}

fn node(b: &dyn Backend, cmd: NodeCmd) -> Result<()> {
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
            b.add_node(&Node {
                name: name.clone(),
                mac,
                ip,
                image,
                group,
                aliases,
                root: root.and_then(args::NodeRoot::mode),
                image_version: None,
                swarm: None,
            })?;
            println!("added node {name}");
        }
        NodeCmd::List => print!("{}", print::nodes(&b.nodes()?)),
        NodeCmd::Show { name } => {
            let (n, detail) = b.node(&name)?;
            print!("{}", print::node_show(&n, &detail, unix_now()));
        }
        NodeCmd::Set { name, change } => {
            let n = b.set_node(&name, &change)?;
            print!("{}", print::nodes(&[n]));
        }
        NodeCmd::Rm { name } => {
            b.remove_node(&name)?;
            println!("removed node {name}");
        }
        NodeCmd::Import { file } => {
            let n = b.import_nodes(&file)?;
            println!("imported {n} nodes from {}", file.display());
        }
        NodeCmd::Events { name, all } => {
            let events = b.node_events(&name)?;
            print!(
                "{}",
                print::node_events(&name, &events, all, unix_now() * 1000)
            );
        }
        NodeCmd::Grab { .. } => bail!("internal: node grab is local only"),
        NodeCmd::Discovered { all, json } => {
            let list = b.discovered(all)?;
            if json {
                print!("{}", print::json(&list)?);
            } else {
                print!("{}", print::discovered(&list));
            }
        }
        NodeCmd::Adopt {
            mac,
            name,
            image,
            group,
        } => {
            b.adopt(mac, &name, image.as_deref(), group.as_deref())?;
            println!("adopted {mac} as node {name}; it reboots into its image");
        }
        NodeCmd::DiscoveryImage { image, off: _ } => {
            b.set_discovery_image(image.as_deref())?;
            match image {
                Some(i) => println!("unknown machines boot into discovery with image {i}"),
                None => println!("discovery is off: unknown machines wait for `node add`"),
            }
        }
    }
    Ok(())
}

/// Which power action the arguments ask for, and their targets.
fn power_action(args: &PowerArgs) -> (crate::ipmi::power::Action, &[String]) {
    use crate::ipmi::core::BootDevice;
    use crate::ipmi::power::Action;
    match &args.action {
        PowerAction::On(t) => (Action::On, &t.targets),
        PowerAction::Off(t) => (Action::Off, &t.targets),
        PowerAction::Soft(t) => (Action::Soft, &t.targets),
        PowerAction::Cycle(t) => (Action::Cycle, &t.targets),
        PowerAction::Reset(t) => (Action::Reset, &t.targets),
        PowerAction::Status(t) => (Action::Status, &t.targets),
        PowerAction::Bootdev { device, targets } => {
            let d = match device {
                args::BootDev::Pxe => BootDevice::Pxe,
                args::BootDev::Disk => BootDevice::Disk,
            };
            (Action::Bootdev(d), &targets.targets)
        }
    }
}

/// `drover lab ...`: acts on the lab's own directory, never on --state-dir.
/// `drover witness`: runs until SIGINT or SIGTERM, then leaves the pool.
fn witness(listen: &str, seeds: &[String], key_file: &Path) -> Result<()> {
    use crate::pool::serve::parse_seed;
    let addr = parse_seed(listen).with_context(|| format!("--listen {listen}: not IP[:PORT]"))?;
    let seeds = seeds
        .iter()
        .map(|s| parse_seed(s).with_context(|| format!("--seed {s}: not IP[:PORT]")))
        .collect::<Result<Vec<_>>>()?;
    let key = crate::pool::key::ClusterKey::load(key_file)?;
    let settings = crate::pool::witness::Settings { addr, seeds };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r?,
                _ = term.recv() => {}
            }
            stop.cancel();
            std::io::Result::Ok(())
        });
        crate::pool::witness::run(settings, key, shutdown).await
    })?;
    Ok(())
}

fn lab(cmd: args::LabCmd) -> Result<()> {
    use crate::lab::cmd as lab;
    let dir = |at: &args::LabDir| at.dir.clone().unwrap_or_else(lab::default_dir);
    let options = |up: &args::LabUp| lab::Options {
        dir: dir(&up.at),
        nodes: up.nodes,
        firmware: up.firmware,
        image: up.image.clone(),
        assets: up.assets.clone().unwrap_or_else(lab::default_assets),
        port: up.port,
        members: up.members,
        netdev: up.netdev,
    };
    match cmd {
        args::LabCmd::Up(up) => {
            let opts = options(&up);
            let file = lab::up(&opts)?;
            print!("{}", lab::status(&opts.dir)?);
            println!(
                "console: drover lab console NODE --dir {}; stop: drover lab down --dir {}",
                opts.dir.display(),
                opts.dir.display()
            );
            drop(file);
        }
        args::LabCmd::Status(at) => print!("{}", lab::status(&dir(&at))?),
        args::LabCmd::Console { node, at } => lab::console(&dir(&at), &node)?,
        args::LabCmd::Down(at) => {
            let dir = dir(&at);
            lab::down(&dir)?;
            println!("lab in {} stopped", dir.display());
        }
        args::LabCmd::Run {
            expect,
            timeout,
            lab: up,
        } => {
            let mut opts = options(&up);
            // Without --dir, a fresh lab of its own, removed afterwards.
            let scratch = up.at.dir.is_none();
            if scratch {
                opts.dir = lab::default_dir().join(format!("run-{}", std::process::id()));
            }
            let result = lab::run(&opts, &expect, std::time::Duration::from_secs(timeout));
            if scratch {
                let _ = std::fs::remove_dir_all(&opts.dir);
            }
            println!("{}", result?);
        }
        args::LabCmd::KillMember { member, at } => {
            println!("{}", lab::kill_member(&dir(&at), member)?);
        }
        args::LabCmd::Link {
            node,
            drop,
            delay,
            at,
        } => {
            let impairment = crate::lab::link::Impairment {
                drop_percent: drop,
                delay_ms: delay,
            };
            println!("{}", lab::link(&dir(&at), &node, impairment)?);
        }
        args::LabCmd::Daemon(up) => lab::daemon(&options(&up))?,
        args::LabCmd::Member { index, port, at } => lab::member(&dir(&at), index, port)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(line: &str) -> args::Cli {
        args::Cli::try_parse_from(line.split_whitespace()).expect("parses")
    }

    #[test]
    fn commands_without_an_endpoint_are_named() {
        for (line, name) in [
            ("drover pool leave", "pool leave"),
            ("drover pool join 10.0.0.1 --key-file k", "pool join"),
            ("drover serve", "serve"),
            ("drover image add i --kernel k", "image add"),
            ("drover image import i root.tar.zst", "image import"),
            ("drover admin passwd", "admin passwd"),
            ("drover backup b.tar", "backup"),
            ("drover restore b.tar --force", "restore"),
            ("drover install -i eth1 --root /tmp/x", "install"),
        ] {
            assert_eq!(local_only(&parse(line).command), Some(name), "{line}");
        }
        for line in [
            "drover node list",
            "drover pool status",
            "drover nfs export list",
            "drover token list",
            "drover power status n1",
            "drover image history i",
            "drover image rollback i 2",
            "drover bmc sensors rack1",
            "drover bmc sel n1 --json",
            "drover console n1 --log",
        ] {
            assert_eq!(local_only(&parse(line).command), None, "{line}");
        }
    }

    #[test]
    fn server_commands_without_an_endpoint_fail_naming_it() {
        let cli = parse("drover --server http://127.0.0.1:9 --token t pool forget 01");
        let err = run(cli).unwrap_err().to_string();
        assert!(err.contains("`drover pool forget`"), "{err}");
        assert!(err.contains("only on the appliance"), "{err}");
    }

    #[test]
    fn node_set_arguments_map_to_a_change() {
        let cli = parse("drover node set n1 --no-ip --group g --alias a,b --root ram");
        let Command::Node(NodeCmd::Set { change, .. }) = cli.command else {
            panic!("not node set");
        };
        let c = change.change();
        assert_eq!(c.ip, Some(None));
        assert_eq!(c.group, Some(Some("g".into())));
        assert_eq!(c.image, None);
        assert_eq!(c.aliases, Some(vec!["a".into(), "b".into()]));
        assert_eq!(c.root, Some(Some(crate::store::model::RootMode::Ram)));
        assert!(!change.bmc.given());
    }

    #[test]
    fn image_version_pins_a_number_or_follows_the_latest() {
        let pin = |line: &str| {
            let Command::Node(NodeCmd::Set { change, .. }) = parse(line).command else {
                panic!("not node set");
            };
            change.change().image_version
        };
        assert_eq!(pin("drover node set n1 --image-version 3"), Some(Some(3)));
        assert_eq!(pin("drover node set n1 --image-version latest"), Some(None));
        assert_eq!(pin("drover node set n1"), None);
        for bad in ["0", "-1", "newest"] {
            let line = format!("drover node set n1 --image-version {bad}");
            assert!(
                args::Cli::try_parse_from(line.split_whitespace()).is_err(),
                "{bad}"
            );
        }
    }
}
