//! Running a command inside an image's unpacked tree, for `image build` (the recipe's files
//! and commands) and `image shell`: util-linux's `unshare` makes new mount, PID, UTS and IPC
//! namespaces, mounts a fresh /proc, binds the host's /dev and /sys and a copy of its
//! resolv.conf (so apt can resolve the mirror), sets the hostname, and `chroot`s into the
//! tree. The mounts live in the private mount namespace only: they disappear with its last
//! process, so the tree never keeps them and the host never sees them. When the command
//! (PID 1 of the new PID namespace) exits, the kernel kills whatever it left running.
//!
//! Also here: the root check, and [`WorkDir`], the scratch directory under the state
//! directory that a build or shell unpacks into and removes when done.
//!
//! Not here: a network namespace (apt needs the host's network), seccomp or capability
//! dropping: the command runs as root of the host, as the admin asked. No `unsafe`: the
//! namespaces are the `unshare` tool's.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum ChrootError {
    #[error("{0} needs root (namespaces, chroot, device nodes, file owners): run it as root")]
    NotRoot(&'static str),
    #[error("`{0}` is not installed (util-linux and coreutils provide it)")]
    ToolMissing(&'static str),
    #[error("the image's /{0} is not a directory; cannot mount it")]
    NotADir(&'static str),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("running {tool}: {source}")]
    Spawn {
        tool: &'static str,
        source: io::Error,
    },
}

pub(super) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> ChrootError + '_ {
    move |source| ChrootError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Refuses unless the process runs as root (`what`: the command, for the message). /proc/self
/// belongs to the effective user, which tells without a libc call.
pub fn require_root(what: &'static str) -> Result<(), ChrootError> {
    match fs::metadata("/proc/self") {
        Ok(m) if m.uid() == 0 => Ok(()),
        _ => Err(ChrootError::NotRoot(what)),
    }
}

/// The full path of `tool` on PATH (or in /usr/sbin and /sbin, which a non-login root shell
/// may lack), if any.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// A scratch directory `<state>/work/<what>-<pid>-<n>`, removed with everything in it when
/// dropped (a tree unpacked there can be large).
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    pub fn new(state_dir: &Path, what: &str) -> Result<WorkDir, ChrootError> {
        let path = state_dir.join("work").join(format!(
            "{what}-{}-{}",
            std::process::id(),
            super::unique()
        ));
        fs::create_dir_all(&path).map_err(io_at(&path))?;
        Ok(WorkDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // Best effort: a failure leaves scratch files under <state>/work, named by the PID.
        if let Err(e) = fs::remove_dir_all(&self.path) {
            tracing::warn!("removing {}: {e}", self.path.display());
        }
    }
}

/// What the command reads.
pub enum Input<'a> {
    /// The terminal (an interactive shell).
    Inherit,
    /// Nothing (recipe commands).
    Null,
    /// These bytes (a recipe file's content).
    Bytes(&'a [u8]),
}

/// Runs inside the new namespaces: `$1` is the tree, `$2` the resolv.conf copy (or empty),
/// the rest the command.
const SETUP: &str = r#"set -e
r=$1; conf=$2; shift 2
mount --rbind /dev "$r/dev"
mount --rbind /sys "$r/sys"
if [ -n "$conf" ]; then mount --bind "$conf" "$r/etc/resolv.conf"; fi
hostname drover-image
exec chroot "$r" "$@"
"#;

/// Runs `argv` chrooted in `root` (an unpacked image tree) in new namespaces; `scratch` is a
/// directory outside the tree for the resolv.conf copy. Returns the command's exit status
/// (125 if the namespace setup itself failed, as `unshare` and the setup script report).
pub fn run(
    root: &Path,
    scratch: &Path,
    argv: &[String],
    input: Input<'_>,
) -> Result<ExitStatus, ChrootError> {
    for tool in ["unshare", "chroot", "mount"] {
        if find_tool(tool).is_none() {
            return Err(ChrootError::ToolMissing(tool));
        }
    }
    for dir in ["dev", "sys", "proc"] {
        let path = root.join(dir);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(ChrootError::NotADir(dir)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&path).map_err(io_at(&path))?
            }
            Err(source) => return Err(ChrootError::Io { path, source }),
        }
    }
    // The host's resolver, as a copy (a command writing /etc/resolv.conf must not reach the
    // host's), bound over the tree's own only where that is a plain file: binding onto a
    // symlink would follow it on the host's side.
    let tree_conf = root.join("etc/resolv.conf");
    let conf = scratch.join("resolv.conf");
    let bind = fs::symlink_metadata(&tree_conf).is_ok_and(|m| m.is_file())
        && fs::copy("/etc/resolv.conf", &conf).is_ok();
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--pid", "--uts", "--ipc", "--fork"])
        .args(["--propagation", "private"])
        .arg(format!("--mount-proc={}", root.join("proc").display()))
        .args(["sh", "-c", SETUP, "drover-image-run"])
        .arg(root)
        .arg(if bind { conf.as_os_str() } else { "".as_ref() })
        .args(argv)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8");
    if let Some(term) = std::env::var_os("TERM") {
        cmd.env("TERM", term);
    }
    match input {
        Input::Inherit => {}
        Input::Null | Input::Bytes(_) => {
            cmd.env("DEBIAN_FRONTEND", "noninteractive");
        }
    }
    cmd.stdin(match input {
        Input::Inherit => Stdio::inherit(),
        Input::Null => Stdio::null(),
        Input::Bytes(_) => Stdio::piped(),
    });
    let spawn = |source| ChrootError::Spawn {
        tool: "unshare",
        source,
    };
    let mut child = cmd.spawn().map_err(spawn)?;
    if let (Input::Bytes(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        // A command that stops reading early closes the pipe: its exit status says more
        // than the write error would.
        let _ = stdin.write_all(bytes);
    }
    child.wait().map_err(spawn)
}

/// Writes `content` to `path` (absolute, inside the image) with `mode`, from inside the tree,
/// so that a symlink on the way resolves in the image and not on the host.
pub fn write_file(
    root: &Path,
    scratch: &Path,
    path: &str,
    content: &[u8],
    mode: u32,
) -> Result<ExitStatus, ChrootError> {
    let script = r#"mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1""#;
    let argv: Vec<String> = ["/bin/sh", "-c", script, "write", path, &format!("{mode:o}")]
        .map(String::from)
        .to_vec();
    run(root, scratch, &argv, Input::Bytes(content))
}
