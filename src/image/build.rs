//! `drover image build`: a Debian root tree made from a [`Recipe`] with mmdebstrap (or
//! debootstrap where only that is installed), from one Debian mirror: `--mirror`, else the
//! first Debian archive of the machine's apt sources (as `scripts/lab-debian` finds it).
//!
//! Data flow ([`bootstrap`]): the tool installs the `minbase` variant plus the recipe's
//! packages and kernel (`linux-image-amd64` by default: its modules are what drover's agent
//! initramfs takes from the tree, see `super::initramfs`) into a directory; dpkg's status file
//! must then list every package asked for (debootstrap can skip a name it does not know).
//! The recipe's files are written and its commands run inside the tree
//! ([`super::chroot`]), downloaded packages are dropped, and the caller imports the directory
//! like `image import` does (kernel from the tree's `/boot`), recording the recipe with the
//! new version.
//!
//! Not here: other distributions, signed-by keys for other archives, a cache of downloaded
//! packages between builds, progress bars (the tool's log goes to a file, its tail into the
//! error when it fails).

use super::chroot::{self, ChrootError, Input};
use super::recipe::{FileData, Recipe};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Lines of the tool's log an error shows.
const LOG_TAIL: usize = 30;

/// The bootstrap tools, preferred first.
const TOOLS: [&str; 2] = ["mmdebstrap", "debootstrap"];

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Chroot(#[from] ChrootError),
    #[error("neither mmdebstrap nor debootstrap is installed (apt-get install mmdebstrap)")]
    NoTool,
    #[error(
        "no Debian archive in the apt sources (/etc/apt/sources.list, \
         /etc/apt/sources.list.d/): give one with --mirror"
    )]
    NoMirror,
    #[error(
        "{tool} failed ({status}): is the mirror {mirror} reachable, and are the suite and \
         package names right? Its last lines:\n{tail}"
    )]
    Tool {
        tool: &'static str,
        status: String,
        mirror: String,
        tail: String,
    },
    #[error(
        "{tool} did not install {missing}: no such package in the suite? Its last lines:\n{tail}"
    )]
    NotInstalled {
        tool: &'static str,
        missing: String,
        tail: String,
    },
    #[error("recipe file {path}: {why}")]
    Source { path: PathBuf, why: String },
    #[error("writing {path} in the image failed ({status})")]
    WriteFile { path: String, status: String },
    #[error("recipe command {index} `{command}` failed ({status}); nothing was stored")]
    Command {
        index: usize,
        command: String,
        status: String,
    },
}

/// Which tool bootstraps, and where it is.
pub struct Tool {
    pub name: &'static str,
    pub path: PathBuf,
}

/// mmdebstrap if installed, else debootstrap.
pub fn find_tool() -> Result<Tool, BuildError> {
    TOOLS
        .iter()
        .find_map(|&name| chroot::find_tool(name).map(|path| Tool { name, path }))
        .ok_or(BuildError::NoTool)
}

/// The first Debian archive of the machine's apt sources.
pub fn default_mirror() -> Result<String, BuildError> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    files
        .iter()
        .filter_map(|f| fs::read_to_string(f).ok())
        .find_map(|text| super::recipe::debian_mirror(&text))
        .ok_or(BuildError::NoMirror)
}

/// Reads the recipe's `source` files (relative to `base`, the recipe's directory) into it.
pub fn inline_sources(recipe: &mut Recipe, base: &Path) -> Result<(), BuildError> {
    for i in 0..recipe.files.len() {
        let FileData::Source(name) = &recipe.files[i].data else {
            continue;
        };
        let path = base.join(name);
        let bytes = fs::read(&path).map_err(|e| BuildError::Source {
            path: path.clone(),
            why: e.to_string(),
        })?;
        let text = String::from_utf8(bytes).map_err(|_| BuildError::Source {
            path: path.clone(),
            why: "not UTF-8 text (binary files belong in a package or a command)".into(),
        })?;
        recipe.inline(i, text).map_err(|e| BuildError::Source {
            path,
            why: e.to_string(),
        })?;
    }
    Ok(())
}

fn tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n")
}

/// Makes the tree of `recipe` in `work/root` (`work/` also takes the tool's log), writes its
/// files and runs its commands there. Returns the tree's path and the seconds the tool took.
pub fn bootstrap(
    tool: &Tool,
    recipe: &Recipe,
    mirror: &str,
    work: &Path,
) -> Result<(PathBuf, u64), BuildError> {
    let root = work.join("root");
    let log = work.join("bootstrap.log");
    let log_file = fs::File::create(&log).map_err(chroot::io_at(&log))?;
    let err_file = log_file.try_clone().map_err(chroot::io_at(&log))?;
    let started = Instant::now();
    let status = Command::new(&tool.path)
        .arg("--variant=minbase")
        .arg(format!("--include={}", recipe.include().join(",")))
        .arg(&recipe.suite)
        .arg(&root)
        .arg(mirror)
        .stdin(std::process::Stdio::null())
        .stdout(log_file)
        .stderr(err_file)
        .status()
        .map_err(|source| ChrootError::Spawn {
            tool: tool.name,
            source,
        })?;
    let took = started.elapsed().as_secs();
    if !status.success() {
        return Err(BuildError::Tool {
            tool: tool.name,
            status: status.to_string(),
            mirror: mirror.to_string(),
            tail: tail(&log),
        });
    }
    let status_file = root.join("var/lib/dpkg/status");
    let dpkg = fs::read_to_string(&status_file).map_err(chroot::io_at(&status_file))?;
    let installed = super::recipe::installed_packages(&dpkg);
    let missing: Vec<String> = recipe
        .include()
        .into_iter()
        .filter(|p| !installed.contains(p))
        .collect();
    if !missing.is_empty() {
        return Err(BuildError::NotInstalled {
            tool: tool.name,
            missing: missing.join(", "),
            tail: tail(&log),
        });
    }
    for f in &recipe.files {
        let FileData::Content(content) = &f.data else {
            // Sources are inlined before a build (`inline_sources`); a stored recipe has
            // none. A source left here would have no bytes to write.
            return Err(BuildError::Source {
                path: PathBuf::from(&f.path),
                why: "the file's source was not read".into(),
            });
        };
        let status = chroot::write_file(&root, work, &f.path, content.as_bytes(), f.mode)?;
        if !status.success() {
            return Err(BuildError::WriteFile {
                path: f.path.clone(),
                status: status.to_string(),
            });
        }
    }
    for (index, command) in recipe.commands.iter().enumerate() {
        let argv = ["/bin/sh", "-c", command].map(String::from);
        let status = chroot::run(&root, work, &argv, Input::Null)?;
        if !status.success() {
            return Err(BuildError::Command {
                index,
                command: command.clone(),
                status: status.to_string(),
            });
        }
    }
    // debootstrap keeps the packages it downloaded; nodes need none of them.
    let debs = root.join("var/cache/apt/archives");
    if let Ok(dir) = fs::read_dir(&debs) {
        for e in dir.flatten() {
            if e.path().extension().is_some_and(|x| x == "deb") {
                // Best effort: a package left behind costs space, not correctness.
                let _ = fs::remove_file(e.path());
            }
        }
    }
    Ok((root, took))
}
