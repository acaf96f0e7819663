//! The local back end: the store and files in `--state-dir`, through the same `crate::admin`
//! and `crate::auth` functions as the API. The store is opened at the first command that
//! needs it (`pool status` and `nfs clients` read files only).
//!
//! Not here: printing (`print`), the pool's key and seed files (`crate::pool::setup`).

use super::args::{NodeSetArgs, PowerArgs};
use super::print::{PowerRow, TokenInfo, UserInfo};
use super::Backend;
use crate::admin::{self, GroupInfo, NodeDetail};
use crate::config::Config;
use crate::discover::adopt::{self, DiscoveredList, RuleAdded};
use crate::discover::rule::NamingRule;
use crate::files::core::{Assignment, FileSet, SetFile};
use crate::files::ops as files;
use crate::image::recipe::Recipe;
use crate::image::usage::{HistoryEntry, StoreTotals};
use crate::image::{Blobs, ImageSource};
use crate::store::model::Role;
use crate::store::model::{
    BmcOwner, BootEvent, BootLog, Export, Group, Image, Lease, Mac, Network, Node,
};
use crate::store::{Store, StoreError};
use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Most characters of a command `image history` shows for an `image shell` version.
const MAX_SHELL_WHAT: usize = 60;

/// `shell COMMAND` for the history, cut to [`MAX_SHELL_WHAT`] characters.
fn shell_what(argv: &[String]) -> String {
    let command = argv.join(" ");
    if command.chars().count() <= MAX_SHELL_WHAT {
        return format!("shell {command}");
    }
    let cut: String = command.chars().take(MAX_SHELL_WHAT).collect();
    format!("shell {cut}...")
}

/// How `image shell` ended.
pub enum ShellOutcome {
    /// Exit 0 with changes: stored as the image's latest version.
    Committed {
        version: u32,
        summary: crate::image::diff::Summary,
    },
    /// Exit 0 without changes: no new version.
    Unchanged,
    /// Any other exit (the status): nothing stored.
    Failed(String),
}

/// The state directory of this machine's drover.
pub struct Local {
    state: PathBuf,
}

impl Local {
    pub fn new(state: &Path) -> Local {
        Local {
            state: state.to_path_buf(),
        }
    }

    /// The store, opened on first use and then kept for the life of the process: LMDB (heed)
    /// refuses to open one environment twice in a process, and a command may reach the store
    /// through more than one `Local` (the command, then its audit entry).
    pub fn store(&self) -> Result<&'static Store> {
        static OPEN: Mutex<Vec<(PathBuf, &'static Store)>> = Mutex::new(Vec::new());
        // A panic while holding the lock aborts the process (panic = "abort").
        let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, store)) = open.iter().find(|(p, _)| *p == self.state) {
            return Ok(store);
        }
        let store = Store::open(&self.state)
            .with_context(|| format!("opening the store in {}", self.state.display()))?;
        // Leaked on purpose: a CLI process is short, and the store lives as long as it does.
        let store: &'static Store = Box::leak(Box::new(store));
        open.push((self.state.clone(), store));
        Ok(store)
    }

    /// `image add`: stores the files and builds the agent's initramfs from this binary.
    pub fn add_image(&self, name: &str, src: &ImageSource, add: &admin::AddImage) -> Result<Image> {
        let store = self.store()?;
        let agent =
            std::env::current_exe().context("finding drover's own binary for the initramfs")?;
        let blobs = Blobs::new(&self.state);
        Ok(admin::add_image(store, &blobs, name, src, &agent, add)?)
    }

    /// `image import`: stores the tree (and the kernel) and builds the agent's initramfs.
    pub fn import_image(
        &self,
        name: &str,
        source: &Path,
        kernel: Option<&Path>,
        add: &admin::AddImage,
    ) -> Result<Image> {
        let store = self.store()?;
        let agent =
            std::env::current_exe().context("finding drover's own binary for the initramfs")?;
        let blobs = Blobs::new(&self.state);
        Ok(admin::import_image(
            store, &blobs, name, source, kernel, &agent, add,
        )?)
    }

    /// `image build`: bootstraps the tree of `recipe` from `mirror` (the machine's Debian
    /// archive when `None`) and stores it as image `name`'s next version with the recipe.
    /// Prints what it does, as a build takes minutes.
    pub fn build_image(
        &self,
        name: &str,
        recipe: &Recipe,
        mirror: Option<&str>,
        add: &admin::AddImage,
    ) -> Result<Image> {
        use crate::image::{build, chroot};
        chroot::require_root("image build")?;
        let store = self.store()?;
        admin::check_new_files(store, name, true, add)?;
        let tool = build::find_tool()?;
        let mirror = match mirror {
            Some(m) => m.to_string(),
            None => build::default_mirror()?,
        };
        let agent =
            std::env::current_exe().context("finding drover's own binary for the initramfs")?;
        let blobs = Blobs::new(&self.state);
        let work = chroot::WorkDir::new(&self.state, "build")?;
        println!(
            "building image {name}: {} {} from {mirror} with {}",
            tool.name,
            recipe.suite,
            recipe.include().join(",")
        );
        let (root, took) = build::bootstrap(&tool, recipe, &mirror, work.path())?;
        println!("{} took {took} s; storing the tree", tool.name);
        let files = crate::image::import::import(&blobs, &root, None, &agent)?;
        Ok(admin::record_version(
            store,
            name,
            files,
            add,
            Some(recipe.to_toml()),
        )?)
    }

    /// The recipe the newest version of image `name` that has one was built from.
    pub fn stored_recipe(&self, name: &str) -> Result<Option<String>> {
        let image = self.store()?.read(|r| r.get::<Image>(name))?;
        Ok(image.and_then(|i| i.history().into_iter().rev().find_map(|v| v.recipe)))
    }

    /// `image shell`: runs `command` in image `name`'s latest tree and stores the tree as
    /// the next version when it exits 0 having changed something.
    pub fn shell_image(&self, name: &str, command: &[String]) -> Result<ShellOutcome> {
        use crate::image::{chroot, diff, shell};
        chroot::require_root("image shell")?;
        let store = self.store()?;
        let image = store
            .read(|r| r.get::<Image>(name))?
            .ok_or_else(|| anyhow::anyhow!("no image {name}"))?;
        let rootfs = image
            .rootfs
            .as_ref()
            .ok_or_else(|| shell::ShellError::NoTree(name.to_string()))?;
        let blobs = Blobs::new(&self.state);
        let work = chroot::WorkDir::new(&self.state, "shell")?;
        let root = work.path().join("root");
        shell::unpack_tree(&blobs, rootfs, &root)?;
        let before = shell::snapshot(&root)?;
        let argv = if command.is_empty() {
            shell::default_command(&root)
        } else {
            command.to_vec()
        };
        let status = shell::run(&root, work.path(), &argv)?;
        if !status.success() {
            return Ok(ShellOutcome::Failed(status.to_string()));
        }
        let summary = diff::diff(&before, &shell::snapshot(&root)?);
        if summary.is_empty() {
            return Ok(ShellOutcome::Unchanged);
        }
        let agent =
            std::env::current_exe().context("finding drover's own binary for the initramfs")?;
        let files = crate::image::import::import(&blobs, &root, None, &agent)?;
        let add = admin::AddImage {
            replace: true,
            settings: admin::ImageChange::default(),
            made: admin::Made::local(shell_what(&argv)),
        };
        let image = admin::record_files(store, name, files, &add)?;
        Ok(ShellOutcome::Committed {
            version: image.latest_version(),
            summary,
        })
    }

    pub fn set_group_bmc(&self, name: &str, change: &admin::BmcChange) -> Result<()> {
        admin::set_bmc(self.store()?, &BmcOwner::Group(name.to_string()), change)?;
        Ok(())
    }

    pub fn remove_group_bmc(&self, name: &str) -> Result<()> {
        Ok(admin::remove_bmc(
            self.store()?,
            &BmcOwner::Group(name.to_string()),
        )?)
    }

    fn all<T: crate::store::Record>(&self) -> Result<Vec<T>> {
        Ok(self.store()?.read(|r| r.all::<T>())?)
    }
}

impl Backend for Local {
    fn nodes(&self) -> Result<Vec<Node>> {
        self.all::<Node>()
    }

    fn node(&self, name: &str) -> Result<(Node, NodeDetail)> {
        let store = self.store()?;
        let node =
            store
                .read(|r| r.get::<Node>(name))?
                .ok_or_else(|| admin::AdminError::Unknown {
                    kind: "node",
                    name: name.to_string(),
                })?;
        let detail = admin::node_detail(store, &node)?;
        Ok((node, detail))
    }

    fn add_node(&self, node: &Node) -> Result<()> {
        Ok(admin::add_nodes(self.store()?, std::slice::from_ref(node))?)
    }

    fn set_node(&self, name: &str, change: &NodeSetArgs) -> Result<Node> {
        let store = self.store()?;
        // Read the password file before changing anything.
        let bmc = change.bmc.change()?;
        let c = change.change();
        if c.service == Some(true) {
            // A node in service mode logs its admins in with the node key, and its host key
            // is derived from it: make it now, not at the first `drover exec`.
            crate::exec::key::ensure(store, &self.state).context("the node key")?;
        }
        let n = admin::set_node(store, name, &c)?;
        let owner = BmcOwner::Node(name.to_string());
        if change.bmc.no_bmc {
            admin::remove_bmc(store, &owner)?;
        } else if !bmc.is_empty() {
            admin::set_bmc(store, &owner, &bmc)?;
        }
        Ok(n)
    }

    fn remove_node(&self, name: &str) -> Result<()> {
        Ok(admin::remove_node(self.store()?, name)?)
    }

    fn import_nodes(&self, file: &Path) -> Result<usize> {
        Ok(admin::import_nodes(self.store()?, file)?)
    }

    fn node_events(&self, name: &str) -> Result<Vec<BootEvent>> {
        let (node, log) = self
            .store()?
            .read(|r| Ok::<_, StoreError>((r.get::<Node>(name)?, r.get::<BootLog>(name)?)))?;
        node.ok_or_else(|| admin::AdminError::Unknown {
            kind: "node",
            name: name.to_string(),
        })?;
        Ok(log.map(|l| l.events).unwrap_or_default())
    }

    fn groups(&self) -> Result<Vec<GroupInfo>> {
        Ok(admin::groups(self.store()?)?)
    }

    fn put_group(&self, group: &Group) -> Result<()> {
        Ok(admin::put_group(self.store()?, group)?)
    }

    fn remove_group(&self, name: &str) -> Result<()> {
        Ok(admin::remove_group(self.store()?, name)?)
    }

    fn images(&self) -> Result<Vec<Image>> {
        self.all::<Image>()
    }

    fn set_image(&self, name: &str, change: &admin::ImageChange) -> Result<Image> {
        Ok(admin::set_image(self.store()?, name, change)?)
    }

    fn image_history(&self, name: &str) -> Result<Vec<HistoryEntry>> {
        let image = self.store()?.read(|r| r.get::<Image>(name))?;
        let Some(image) = image else {
            bail!("unknown image {name:?}")
        };
        let versions = image.history();
        let usage = Blobs::new(&self.state).version_usage(&versions)?;
        Ok(crate::image::usage::with_usage(versions, usage))
    }

    fn image_store(&self) -> Result<StoreTotals> {
        let images = self.all::<Image>()?;
        Ok(Blobs::new(&self.state).totals(&images)?)
    }

    fn rollback_image(&self, name: &str, version: u32) -> Result<u32> {
        let image = admin::rollback_image(self.store()?, name, version, &admin::local_user())?;
        Ok(image.latest_version())
    }

    fn remove_image(&self, name: &str) -> Result<()> {
        Ok(admin::remove_image(self.store()?, name)?)
    }

    fn networks(&self) -> Result<Vec<Network>> {
        self.all::<Network>()
    }

    fn add_network(&self, network: &Network) -> Result<()> {
        Ok(admin::add_network(self.store()?, network)?)
    }

    fn remove_network(&self, name: &str) -> Result<()> {
        Ok(admin::remove_network(self.store()?, name)?)
    }

    fn leases(&self) -> Result<Vec<Lease>> {
        Ok(admin::leases(self.store()?)?)
    }

    fn exports(&self) -> Result<Vec<Export>> {
        self.all::<Export>()
    }

    fn add_export(&self, export: &Export) -> Result<Export> {
        Ok(admin::add_export(self.store()?, export)?)
    }

    fn remove_export(&self, name: &str) -> Result<()> {
        Ok(admin::remove_export(self.store()?, name)?)
    }

    fn tokens(&self) -> Result<Vec<TokenInfo>> {
        Ok(crate::auth::tokens(self.store()?)?
            .into_iter()
            .map(|t| TokenInfo {
                name: t.name,
                created: t.created,
                role: t.role,
            })
            .collect())
    }

    fn create_token(&self, name: &str, role: Role) -> Result<String> {
        Ok(crate::auth::create_token(
            self.store()?,
            name,
            role,
            super::unix_now(),
        )?)
    }

    fn users(&self) -> Result<Vec<UserInfo>> {
        Ok(crate::auth::users(self.store()?)?
            .into_iter()
            .map(|u| UserInfo {
                name: u.name,
                role: u.role,
            })
            .collect())
    }

    fn audit(&self, since: u64) -> Result<Vec<crate::store::model::AuditEntry>> {
        Ok(crate::audit::since(self.store()?, since)?)
    }

    fn add_user(&self, name: &str, password: &str, role: Role) -> Result<()> {
        Ok(crate::auth::add_user(self.store()?, name, password, role)?)
    }

    fn set_role(&self, name: &str, role: Role) -> Result<()> {
        Ok(crate::auth::set_role(self.store()?, name, role)?)
    }

    fn remove_token(&self, name: &str) -> Result<()> {
        Ok(crate::auth::remove_token(self.store()?, name)?)
    }

    fn power(&self, args: &PowerArgs) -> Result<Vec<PowerRow>> {
        use crate::ipmi::power;
        let config = Config::load(args.config.as_deref())?;
        let mut fan = crate::serve::settings::fan_out(&config.power);
        if let Some(p) = args.parallel {
            fan.max_sessions = p.max(1);
        }
        if let Some(r) = args.rate {
            if !(r >= 0.0 && r.is_finite()) {
                bail!("--rate must be 0 or more");
            }
            fan.on_rate = r;
        }
        let (action, targets) = super::power_action(args);
        let jobs = self.store()?.read(|r| power::resolve(r, targets))?;
        let outcomes = power::run_all(&jobs, action, &fan);
        if outcomes.iter().any(|o| o.learned_pin.is_some()) {
            self.store()?
                .write(|w| power::remember_pins(w, &outcomes))?;
        }
        Ok(outcomes
            .into_iter()
            .map(|o| {
                let (result, detail) = match o.result {
                    Ok(reply) => ("ok".to_string(), reply.text),
                    Err(f) => (f.class.to_string(), f.reason),
                };
                PowerRow {
                    node: o.node,
                    bmc: o.bmc,
                    result,
                    detail,
                }
            })
            .collect())
    }

    fn pool_status(&self) -> Result<crate::pool::status::Status> {
        let now_ms = crate::clock::unix_ms();
        let (status, stale) = crate::pool::setup::status(&self.state, now_ms)?;
        if let Some(age) = stale {
            eprintln!("warning: the status is {age} s old; is `drover serve` still running?");
        }
        Ok(status)
    }

    fn mark_dead(&self, id: &str) -> Result<u64> {
        let now_ms = crate::clock::unix_ms();
        Ok(crate::pool::setup::mark_dead(
            self.store()?,
            &self.state,
            id,
            now_ms,
        )?)
    }

    fn drain(&self, id: &str, drained: bool) -> Result<u64> {
        let now_ms = crate::clock::unix_ms();
        Ok(crate::pool::setup::drain(
            self.store()?,
            id,
            drained,
            now_ms,
        )?)
    }

    fn discovered(&self, all: bool) -> Result<DiscoveredList> {
        Ok(adopt::discovered(self.store()?, all)?)
    }

    fn adopt(
        &self,
        mac: Mac,
        name: &str,
        image: Option<&str>,
        group: Option<&str>,
    ) -> Result<Node> {
        let (image, group) = (image.map(str::to_string), group.map(str::to_string));
        Ok(adopt::adopt(
            self.store()?,
            mac,
            name,
            image,
            group,
            crate::clock::unix_ms(),
        )?)
    }

    fn set_discovery_image(&self, image: Option<&str>) -> Result<()> {
        let store = self.store()?;
        match image {
            Some(i) => {
                if store
                    .read(|r| r.get::<crate::store::model::Image>(i))?
                    .is_none()
                {
                    anyhow::bail!("unknown image {i:?}");
                }
                admin::set_setting(store, adopt::DISCOVERY_IMAGE, &serde_json::json!(i))?;
            }
            // Already off is fine.
            None => match admin::remove_setting(store, adopt::DISCOVERY_IMAGE) {
                Ok(()) | Err(admin::AdminError::Unknown { .. }) => {}
                Err(e) => return Err(e.into()),
            },
        }
        Ok(())
    }

    fn rules(&self) -> Result<Vec<NamingRule>> {
        Ok(adopt::rules(self.store()?)?)
    }

    fn add_rule(&self, rule: &NamingRule) -> Result<RuleAdded> {
        let (group, image) = (rule.group.clone(), rule.image.clone());
        let now = crate::clock::unix_ms();
        Ok(adopt::add_rule(
            self.store()?,
            &rule.rule,
            group,
            image,
            now,
        )?)
    }

    fn remove_rule(&self, rule: &str) -> Result<()> {
        Ok(adopt::remove_rule(self.store()?, rule)?)
    }

    fn file_sets(&self) -> Result<Vec<FileSet>> {
        Ok(files::list(self.store()?)?)
    }

    fn file_set(&self, name: &str) -> Result<FileSet> {
        Ok(files::show(self.store()?, name)?)
    }

    fn add_set_file(&self, set: &str, file: &SetFile) -> Result<FileSet> {
        Ok(files::add_file(self.store()?, set, file.clone())?)
    }

    fn remove_set(&self, set: &str, path: Option<&str>) -> Result<()> {
        Ok(files::remove(self.store()?, set, path)?)
    }

    fn assign_set(&self, set: &str, to: &Assignment, on: bool) -> Result<FileSet> {
        Ok(files::assign(self.store()?, set, to.clone(), on)?)
    }

    fn config_show(&self) -> Result<crate::overrides::Shown> {
        Ok(crate::overrides::show(self.store()?, &self.state)?)
    }

    fn config_change(
        &self,
        changes: &[crate::overrides::Change],
    ) -> Result<Vec<crate::overrides::Outcome>> {
        Ok(crate::overrides::change(
            self.store()?,
            &self.state,
            changes,
        )?)
    }
}

/// `dns check`: what the server's DNS would answer, from the store and the configuration.
pub fn dns_check(
    state: &Path,
    name: &str,
    qtype: Option<&str>,
    config: Option<PathBuf>,
    interfaces: Vec<String>,
) -> Result<String> {
    let mut config = Config::load(config.as_deref())?;
    config.interfaces.extend(interfaces);
    let mut own = Vec::new();
    for i in &config.interfaces {
        own.push(
            crate::net::interface(i)
                .with_context(|| format!("interface {i}"))?
                .addr,
        );
    }
    let local = Local::new(state);
    let store = local.store()?;
    let settings = crate::serve::settings::dns(&config, &own, store.member());
    let view = crate::store::View::load(store)?;
    let bind = own
        .first()
        .map_or(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| (*a).into());
    Ok(crate::dns::explain(
        &view,
        &settings.identity(bind),
        &settings.policy(),
        &settings.upstreams,
        name,
        qtype,
    )?)
}

/// `nfs clients`: the running server's NFS clients, from the file it rewrites every few
/// seconds.
pub fn nfs_clients(state: &Path, json: bool) -> Result<String> {
    let path = state.join("nfs").join("clients.json");
    let status = crate::nfs::serve::read_status(&path).with_context(|| {
        format!(
            "reading {} (is `drover serve` running with [nfs] enabled?)",
            path.display()
        )
    })?;
    if json {
        return Ok(super::print::json(&status)?);
    }
    let items: Vec<serde_json::Value> = status
        .clients
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?;
    Ok(super::print::json_table(
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
            "delegations",
            "owner",
        ],
    ))
}
