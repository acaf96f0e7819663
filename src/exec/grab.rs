//! `drover node grab NODE IMAGE`: the command that streams a running node's root file system
//! as a tar over ssh (with the pool's node key, as `drover exec`), and the local side that
//! writes the stream to a temporary file in the blob directory for `image import`.
//!
//! What is left out: the contents of /proc, /sys, /dev, /run and /tmp (their directories
//! stay, empty), anything on another file system (`--one-file-system`), the admin's
//! `--exclude` paths, and the files that make a node itself rather than the image: those the
//! agent writes at boot (`crate::agent::files`: host name, hosts, resolver, time sources,
//! node environment, root's authorized keys) and the ssh host keys. Owners are numeric,
//! xattrs (file capabilities) kept. Sparse files arrive filled (the agent's unpacker reads
//! plain tar entries).
//!
//! Not here: the import (`crate::admin::import_image`), choosing the node's address
//! (`super::hosts`).

use super::run::{self, Ssh, Task};
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// Directories whose contents are never grabbed: kernel views and run-time state.
const SKIPPED: &[&str] = &["proc", "sys", "dev", "run", "tmp"];

/// The files the agent writes into each node's root at boot, and per-node identity.
const NODE_OWN: &[&str] = &[
    "etc/hostname",
    "etc/hosts",
    "etc/resolv.conf",
    "etc/drover/node.env",
    "etc/systemd/timesyncd.conf.d/drover.conf",
    "etc/chrony/sources.d/drover.sources",
    "root/.ssh/authorized_keys",
    "etc/ssh/ssh_host_*",
];

/// Why a grab failed.
#[derive(Debug, thiserror::Error)]
pub enum GrabError {
    #[error("--exclude {0}: give an absolute path without `..` (like /var/cache/apt)")]
    BadExclude(String),
    #[error("node {0} has no address (no reserved IP and no bound lease)")]
    NoAddress(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("ssh to {node} failed ({status}): {stderr}")]
    Remote {
        node: String,
        status: String,
        stderr: String,
    },
}

/// The remote command: GNU tar of `/` to standard output, minus what the module doc lists.
pub fn tar_command(excludes: &[String]) -> Result<Vec<String>, GrabError> {
    let mut words: Vec<String> = [
        "tar",
        "--one-file-system",
        "--xattrs",
        // Quoted: the remote shell would expand a bare `*`.
        "'--xattrs-include=*'",
        "--numeric-owner",
        "--format=posix",
        "-C",
        "/",
        "-cf",
        "-",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut pattern = |p: String| words.push(quote(&format!("--exclude=./{p}")));
    for dir in SKIPPED {
        pattern(format!("{dir}/*"));
    }
    for f in NODE_OWN {
        pattern(f.to_string());
    }
    for e in excludes {
        let rel = e.strip_prefix('/').filter(|r| {
            !r.is_empty() && r.split('/').all(|c| c != ".." && c != ".") && !r.contains('\n')
        });
        let Some(rel) = rel else {
            return Err(GrabError::BadExclude(e.clone()));
        };
        pattern(rel.trim_end_matches('/').to_string());
    }
    // The archive ends with the tree's root: `.`, after the options (GNU tar applies
    // `--exclude` only to names given after it).
    words.push(".".into());
    Ok(words)
}

/// Single quotes for the remote shell (ssh joins the words with spaces).
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Streams the node's root into `out` (a new file), returning its size.
pub fn stream(
    node: &str,
    addr: Option<Ipv4Addr>,
    ssh: &Ssh,
    excludes: &[String],
    out: &Path,
) -> Result<u64, GrabError> {
    let words = tar_command(excludes)?;
    let addr = addr.ok_or_else(|| GrabError::NoAddress(node.to_string()))?;
    let io_err = |source| GrabError::Io {
        path: out.to_path_buf(),
        source,
    };
    let file = std::fs::File::create_new(out).map_err(io_err)?;
    let mut cmd = run::command(addr, node, ssh, Task::Exec(&words));
    cmd.stdout(file).stderr(Stdio::piped());
    let child = cmd.spawn().map_err(|source| GrabError::Io {
        path: "ssh".into(),
        source,
    })?;
    let done = child.wait_with_output().map_err(|source| GrabError::Io {
        path: "ssh".into(),
        source,
    })?;
    // GNU tar exits 1 when a file changed while it was read (a live system): the archive is
    // still whole. 2 and up are fatal.
    if !matches!(done.status.code(), Some(0 | 1)) {
        return Err(GrabError::Remote {
            node: node.to_string(),
            status: done.status.to_string(),
            stderr: String::from_utf8_lossy(&done.stderr).trim().to_string(),
        });
    }
    Ok(std::fs::metadata(out).map_err(io_err)?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_skips_run_time_state_node_files_and_the_exclusions() {
        let words = tar_command(&["/var/cache/apt/".into(), "/home/it's".into()]).unwrap();
        let line = words.join(" ");
        assert!(line.starts_with("tar --one-file-system --xattrs"), "{line}");
        assert!(line.ends_with(" ."), "{line}");
        for want in [
            "'--exclude=./proc/*'",
            "'--exclude=./tmp/*'",
            "'--exclude=./etc/hostname'",
            "'--exclude=./etc/ssh/ssh_host_*'",
            "'--exclude=./var/cache/apt'",
            r"'--exclude=./home/it'\''s'",
        ] {
            assert!(words.iter().any(|w| w == want), "{want} not in {line}");
        }
    }

    #[test]
    fn a_relative_or_escaping_exclusion_is_refused() {
        for bad in ["var/cache", "/", "/a/../etc", "/./x"] {
            assert!(
                matches!(tar_command(&[bad.into()]), Err(GrabError::BadExclude(_))),
                "{bad}"
            );
        }
    }
}
