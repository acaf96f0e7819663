//! `drover files`: file sets through either back end (add, list, show, rm, assign, unassign),
//! and `files sync`, which pushes each running node's files over ssh from the local store
//! (as `drover exec` does: the node key's private half never leaves the pool).
//!
//! Not here: the checks and precedence (`crate::files`).

use super::args::{FilesCmd, SetTarget, SshArgs};
use super::local::Local;
use super::print::{header, table};
use super::{exec, Backend};
use crate::exec::core::split_targets;
use crate::exec::run::{self, Task};
use crate::exec::{hosts, key};
use crate::files::core::{Assignment, Content, FileSet, SetFile};
use crate::store::model::Node;
use anyhow::{bail, Context, Result};
use base64::Engine as _;
use std::path::Path;
use std::time::Duration;

fn assignment(t: SetTarget) -> Result<Assignment> {
    Ok(match (t.image, t.group, t.node) {
        (Some(i), None, None) => Assignment::Image(i),
        (None, Some(g), None) => Assignment::Group(g),
        (None, None, Some(n)) => Assignment::Node(n),
        _ => bail!("give exactly one of --image, --group, --node"),
    })
}

/// The file-set commands but `sync` (which is local-only: see `super::local_only`).
pub fn run(b: &dyn Backend, cmd: FilesCmd) -> Result<()> {
    match cmd {
        FilesCmd::Add {
            set,
            path,
            from,
            template,
            mode,
            owner: (uid, gid),
        } => {
            let content = match (from, template) {
                (Some(f), None) => {
                    let bytes = std::fs::read(&f).with_context(|| f.display().to_string())?;
                    Content::Bytes(base64::engine::general_purpose::STANDARD.encode(bytes))
                }
                (None, Some(t)) => Content::Template(
                    std::fs::read_to_string(&t)
                        .with_context(|| format!("{} (a template is UTF-8 text)", t.display()))?,
                ),
                _ => bail!("give one of --from FILE and --template FILE"),
            };
            let file = SetFile {
                path,
                mode,
                uid,
                gid,
                content,
            };
            let stored = b.add_set_file(&set, &file)?;
            println!("set {set}: {} ({} files)", file.path, stored.files.len());
        }
        FilesCmd::List => print!("{}", list(&b.file_sets()?)),
        FilesCmd::Show { set } => print!("{}", show(&b.file_set(&set)?)),
        FilesCmd::Rm { set, path } => {
            b.remove_set(&set, path.as_deref())?;
            match path {
                Some(p) => println!("removed {p} from set {set}"),
                None => println!("removed set {set}"),
            }
        }
        FilesCmd::Assign { set, to } => {
            let to = assignment(to)?;
            b.assign_set(&set, &to, true)?;
            println!("assigned set {set} to {to}");
        }
        FilesCmd::Unassign { set, to } => {
            let to = assignment(to)?;
            b.assign_set(&set, &to, false)?;
            println!("unassigned set {set} from {to}");
        }
        FilesCmd::Sync { .. } => bail!("internal: `files sync` reached a back end"),
    }
    Ok(())
}

fn assigned(set: &FileSet) -> String {
    if set.assigned.is_empty() {
        return "-".into();
    }
    let all: Vec<String> = set.assigned.iter().map(|a| a.to_string()).collect();
    all.join(", ")
}

/// `files list`.
fn list(sets: &[FileSet]) -> String {
    let mut rows = vec![header(&["SET", "FILES", "ASSIGNED TO"])];
    for s in sets {
        rows.push(vec![s.name.clone(), s.files.len().to_string(), assigned(s)]);
    }
    table(&rows)
}

/// `files show SET`.
fn show(set: &FileSet) -> String {
    let mut rows = vec![header(&["PATH", "MODE", "OWNER", "KIND", "BYTES"])];
    for f in &set.files {
        let (kind, bytes) = match &f.content {
            // Base64: 4 characters for 3 bytes, the padding taken off.
            Content::Bytes(b) => ("file", b.len() / 4 * 3 - b.matches('=').count()),
            Content::Template(t) => ("template", t.len()),
        };
        rows.push(vec![
            f.path.clone(),
            format!("{:04o}", f.mode),
            format!("{}:{}", f.uid, f.gid),
            kind.into(),
            bytes.to_string(),
        ]);
    }
    format!(
        "set:      {}\nassigned: {}\n{}",
        set.name,
        assigned(set),
        table(&rows)
    )
}

/// `files sync TARGET`: each target node gets its own script on `sh -s`.
pub fn sync(state: &Path, target: &str, a: &SshArgs) -> Result<()> {
    let store = Local::new(state).store()?;
    // First, so that the nodes' host keys (derived from it) are among their files.
    let node_key = key::ensure(store, state).context("the node key")?;
    let hosts = hosts(store, &split_targets(target))?;
    let mut scripts = Vec::with_capacity(hosts.len());
    for h in &hosts {
        let node = store
            .read(|r| r.get::<Node>(&h.node))?
            .with_context(|| format!("node {} vanished", h.node))?;
        let files = crate::files::ops::for_node(store, &node)?;
        scripts.push(crate::files::core::sync_script(&files));
    }
    let command = ["sh".to_string(), "-s".to_string()];
    let jobs: Vec<_> = hosts
        .iter()
        .zip(&scripts)
        .map(|(h, s)| {
            let task = Task::Feed {
                command: &command,
                input: s.as_bytes(),
            };
            (h, task)
        })
        .collect();
    let ssh = exec::ssh_for(state, &node_key, a)?;
    let results = run::run_each(&jobs, &ssh, a.fanout, Duration::from_secs(a.timeout));
    exec::report(&results, a.json)
}
