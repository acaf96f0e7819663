//! `drover exec`, `drover cp` and `drover node grab`: resolve targets from the local store,
//! make sure the node key exists and its private half is on disk, run [`crate::exec::run`]
//! (or stream a node's root with [`crate::exec::grab`] into `image import`), print the report.
//! It does NOT work through `--server`: the node key's private half never leaves the pool.

use super::args::{CpArgs, ExecArgs, SshArgs};
use super::local::Local;
use crate::admin;
use crate::exec::core::{self, NodeResult};
use crate::exec::run::{self, Ssh, Task};
use crate::exec::{grab, hosts, key};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn exec(state: &Path, args: &ExecArgs) -> Result<()> {
    let store = Local::new(state).store()?;
    let node_key = key::ensure(store, state).context("the node key")?;
    if args.show_key {
        println!("{}", node_key.public);
        return Ok(());
    }
    let target = args.target.as_deref().unwrap_or_default();
    let task = Task::Exec(&args.command);
    go(state, store, &node_key, target, task, &args.ssh)
}

pub fn cp(state: &Path, args: &CpArgs) -> Result<()> {
    let Some((last, files)) = args.paths.split_last() else {
        bail!("usage: drover cp FILE... TARGET:DEST");
    };
    let Some((target, dest)) = last
        .split_once(':')
        .filter(|(t, d)| !t.is_empty() && !d.is_empty())
    else {
        bail!("{last:?}: the last argument must be TARGET:DEST (like node[01-04]:/tmp/)");
    };
    let files: Vec<PathBuf> = files.iter().map(PathBuf::from).collect();
    for f in &files {
        if !f.is_file() {
            bail!("{}: not a readable file", f.display());
        }
    }
    let store = Local::new(state).store()?;
    let node_key = key::ensure(store, state).context("the node key")?;
    let task = Task::Copy {
        files: &files,
        dest,
    };
    go(state, store, &node_key, target, task, &args.ssh)
}

fn go(
    state: &Path,
    store: &crate::store::Store,
    node_key: &key::NodeKey,
    target: &str,
    task: Task<'_>,
    a: &SshArgs,
) -> Result<()> {
    let hosts = hosts(store, &core::split_targets(target))?;
    let ssh = ssh_for(state, node_key, a)?;
    let results = run::run_all(&hosts, &ssh, task, a.fanout, Duration::from_secs(a.timeout));
    report(&results, a.json)
}

/// How ssh logs in with the node key, from the command's ssh options.
pub(super) fn ssh_for(state: &Path, node_key: &key::NodeKey, a: &SshArgs) -> Result<Ssh> {
    Ok(Ssh {
        identity: key::write_private(node_key, state)?,
        port: a.port,
        user: "root".into(),
        connect_timeout: Duration::from_secs(a.connect_timeout),
        known_hosts: a.strict_host_keys.then(|| state.join("node-known-hosts")),
    })
}

/// Prints the folded outputs and the summary; fails when a node did.
pub(super) fn report(results: &[NodeResult], json: bool) -> Result<()> {
    print(results, json)?;
    let failed = results.iter().filter(|r| !r.outcome.ok()).count();
    if failed > 0 {
        bail!("{failed} of {} nodes failed", results.len());
    }
    Ok(())
}

/// `drover node grab NODE IMAGE`: the node's root, streamed over ssh into a temporary file
/// in the blob directory, imported as a new image or IMAGE's next version.
pub fn grab(state: &Path, node: &str, image: &str, excludes: &[String], port: u16) -> Result<()> {
    let local = Local::new(state);
    let store = local.store()?;
    let node_key = key::ensure(store, state).context("the node key")?;
    let hosts = hosts(store, &[node.to_string()])?;
    let [host] = hosts.as_slice() else {
        bail!("{node}: name one node");
    };
    let ssh = Ssh {
        identity: key::write_private(&node_key, state)?,
        port,
        user: "root".into(),
        connect_timeout: Duration::from_secs(10),
        known_hosts: None,
    };
    let blobs = crate::image::Blobs::new(state);
    std::fs::create_dir_all(blobs.dir())
        .with_context(|| format!("making {}", blobs.dir().display()))?;
    let tmp = Temp(
        blobs
            .dir()
            .join(format!("grab-{}.tar.tmp", std::process::id())),
    );
    let size = grab::stream(&host.node, host.addr, &ssh, excludes, &tmp.0)?;
    eprintln!("received {size} bytes of {node}'s root");
    let add = admin::AddImage {
        replace: true,
        settings: admin::ImageChange::default(),
        made: admin::Made::local(format!("grab {node}")),
    };
    let img = local.import_image(image, &tmp.0, None, &add)?;
    print!("{}", super::print::image_added(&img));
    Ok(())
}

/// A file removed when dropped (the grabbed tar, once imported or on failure).
struct Temp(PathBuf);

impl Drop for Temp {
    fn drop(&mut self) {
        // Gone already is fine; anything else leaves a `.tmp` that the next grab won't reuse.
        let _ = std::fs::remove_file(&self.0);
    }
}

fn print(results: &[NodeResult], json: bool) -> Result<()> {
    if json {
        let all_ok = results.iter().all(|r| r.outcome.ok());
        let doc = serde_json::json!({ "nodes": results, "ok": all_ok });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", core::render(results));
    }
    Ok(())
}
