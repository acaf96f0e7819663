//! `drover install` and `drover uninstall`: what makes the bare binary a system service, and
//! the one description of the installed files that the Debian package (`scripts/package`,
//! which stages them with `drover install --root DIR --prefix /usr`) uses as well.
//!
//! Installed: the binary (`PREFIX/bin/drover`), the systemd unit (`assets/drover.service`
//! with that binary in `ExecStart`; in `/usr/lib/systemd/system` for the package,
//! `/etc/systemd/system` otherwise), `/etc/drover/drover.toml` (the commented default of
//! `drover default-config` with the given interfaces; never overwritten: it is the admin's
//! file, a conffile in the package), bash and zsh completions and man pages generated from
//! the clap definitions the caller passes in. With a staging root nothing outside it is
//! touched and systemd is left alone; without one, on a host booted with systemd
//! (`/run/systemd/system` exists, as `sd_booted` checks), the unit is loaded and enabled and,
//! when the config names an interface, started.
//!
//! Uninstall removes what install wrote but the config and the state directory, which
//! `purge` removes too (the Debian package's remove and purge).
//!
//! Not here: the command line (`crate::cli`), the Debian control files (`scripts/package`).

use crate::config::Config;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The unit as shipped; its `ExecStart` names [`UNIT_BIN`].
pub const UNIT: &str = include_str!("../assets/drover.service");
/// The binary's path in [`UNIT`], replaced by the installed binary's.
const UNIT_BIN: &str = "/usr/bin/drover";
/// Where the config goes, whatever the prefix (the unit names it).
pub const CONFIG: &str = "/etc/drover/drover.toml";
/// The default config's line that install fills with the interfaces.
const INTERFACES_LINE: &str = "interfaces = []\n";
/// The unit's name.
const SERVICE: &str = "drover.service";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{path}")]
    Io { path: PathBuf, source: io::Error },
    #[error("config {path}")]
    Config {
        path: String,
        #[source]
        source: crate::config::ConfigError,
    },
    #[error(
        "{CONFIG} exists and differs from {given}: edit it, or remove it to install the new one"
    )]
    ConfigExists { given: PathBuf },
    #[error("`{command}` failed ({status}): {stderr}")]
    Systemctl {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("drover is installed by the Debian package here: remove it with `apt remove drover`")]
    PackageOwned,
    #[error("refusing to remove {0}: not a drover state directory (no store/ in it)")]
    NotAStateDir(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the files go: `root` (`/`, or a staging directory) and the prefix of the binary,
/// completions and man pages (`/usr/local` for `drover install`, `/usr` for the package).
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
    pub prefix: PathBuf,
}

impl Layout {
    /// Whether this installs into the running system (not a staging root).
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// `path` (absolute, as on the installed system) below the root.
    pub fn staged(&self, path: &Path) -> PathBuf {
        self.root.join(path.strip_prefix("/").unwrap_or(path))
    }

    pub fn bin(&self) -> PathBuf {
        self.prefix.join("bin/drover")
    }

    fn vendor(&self) -> bool {
        self.prefix == Path::new("/usr")
    }

    pub fn unit(&self) -> PathBuf {
        let dir = if self.vendor() {
            "/usr/lib/systemd/system"
        } else {
            "/etc/systemd/system"
        };
        Path::new(dir).join(SERVICE)
    }

    pub fn bash_completion(&self) -> PathBuf {
        self.prefix.join("share/bash-completion/completions/drover")
    }

    pub fn zsh_completion(&self) -> PathBuf {
        // Debian's zsh reads vendor-completions for packages, site-functions for local ones.
        let dir = if self.vendor() {
            "share/zsh/vendor-completions"
        } else {
            "share/zsh/site-functions"
        };
        self.prefix.join(dir).join("_drover")
    }

    pub fn man_dir(&self) -> PathBuf {
        self.prefix.join("share/man/man1")
    }
}

/// The unit with `bin` as the binary.
pub fn unit_text(bin: &Path) -> String {
    UNIT.replace(UNIT_BIN, &bin.to_string_lossy())
}

/// The installed config: the commented default with `interfaces` set.
pub fn config_text(interfaces: &[String]) -> String {
    let list: Vec<String> = interfaces.iter().map(|i| format!("{i:?}")).collect();
    let header = format!(
        "# {CONFIG}: the settings `drover serve` starts with (the systemd unit passes\n\
         # --config this file), written by `drover install` from `drover default-config`.\n\
         # Every key is shown with its default. Check a change with\n\
         # `drover check-config {CONFIG}`, then `systemctl restart drover`.\n\
         # Fleet data (nodes, networks, images) is not configured here: it lives in the store\n\
         # and is edited with the CLI, the API or the web page.\n"
    );
    // The default's own introduction (up to its first blank line) speaks of the embedded
    // default; the header above replaces it.
    let default = crate::config::DEFAULT_TOML;
    let body = match default.find("\n\n") {
        Some(end) if default.starts_with('#') => &default[end + 1..],
        _ => default,
    };
    header
        + &body.replacen(
            INTERFACES_LINE,
            &format!("interfaces = [{}]\n", list.join(", ")),
            1,
        )
}

/// Completions for `shell` ("bash" or "zsh").
pub fn completion(cmd: &mut clap::Command, shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, cmd, "drover", &mut out);
    out
}

/// One man page per command and subcommand: (file name, roff text).
pub fn man_pages(cmd: clap::Command) -> Result<Vec<(String, Vec<u8>)>, io::Error> {
    fn walk(cmd: clap::Command, out: &mut Vec<(String, Vec<u8>)>) -> Result<(), io::Error> {
        // clap adds a `help` subcommand to every command with subcommands: no page of its own.
        let subs = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help");
        for sub in subs.cloned() {
            walk(sub, out)?;
        }
        let man = clap_mangen::Man::new(cmd);
        let mut text = Vec::new();
        man.render(&mut text)?;
        out.push((man.get_filename(), text));
        Ok(())
    }
    // Built first, as clap_mangen's generate_to does, so that subcommands get their full
    // names (drover-node-add.1).
    let mut cmd = cmd;
    cmd.build();
    let mut out = Vec::new();
    walk(cmd, &mut out)?;
    out.sort();
    Ok(out)
}

/// What `drover install` is asked to do.
pub struct Request<'a> {
    pub layout: Layout,
    /// The binary to install (this one).
    pub binary: &'a Path,
    pub interfaces: &'a [String],
    /// A config to install instead of the default.
    pub config: Option<&'a Path>,
}

/// Installs; returns one line per step, for the admin.
pub fn install(cmd: clap::Command, req: &Request<'_>) -> Result<Vec<String>, InstallError> {
    let l = &req.layout;
    let mut done = Vec::new();
    let bin = l.bin();
    copy_binary(req.binary, &l.staged(&bin))?;
    done.push(format!("installed {}", bin.display()));
    let config = Path::new(CONFIG);
    done.push(install_config(req, &l.staged(config))?);
    let mut cmd = cmd;
    let mut files = vec![
        (l.unit(), unit_text(&bin).into_bytes()),
        (
            l.bash_completion(),
            completion(&mut cmd, clap_complete::Shell::Bash),
        ),
        (
            l.zsh_completion(),
            completion(&mut cmd, clap_complete::Shell::Zsh),
        ),
    ];
    let man_dir = l.man_dir();
    let pages = man_pages(cmd).map_err(io_err(&man_dir))?;
    let page_count = pages.len();
    files.extend(
        pages
            .into_iter()
            .map(|(name, text)| (man_dir.join(name), text)),
    );
    for (path, bytes) in &files[..3] {
        write_file(&l.staged(path), bytes, 0o644)?;
        done.push(format!("installed {}", path.display()));
    }
    for (path, bytes) in &files[3..] {
        write_file(&l.staged(path), bytes, 0o644)?;
    }
    done.push(format!(
        "installed {page_count} man pages in {}",
        man_dir.display()
    ));
    let serving = !Config::load(Some(&l.staged(config)))
        .map_err(|source| InstallError::Config {
            path: CONFIG.into(),
            source,
        })?
        .interfaces
        .is_empty();
    let mut steps = vec![vec!["daemon-reload"]];
    steps.push(if serving {
        vec!["enable", "--now", SERVICE]
    } else {
        vec!["enable", SERVICE]
    });
    done.extend(systemctl(l, &steps)?);
    if !serving {
        done.push(format!(
            "no interface in {CONFIG}: set `interfaces` there (or install with --interface IF), \
             then `systemctl start drover`"
        ));
    }
    Ok(done)
}

/// Uninstalls (stopping the service first); with `purge` also the config and `state`.
pub fn uninstall(
    cmd: clap::Command,
    layout: &Layout,
    state: &Path,
    purge: bool,
) -> Result<Vec<String>, InstallError> {
    if layout.is_live() && Path::new("/var/lib/dpkg/info/drover.list").exists() {
        return Err(InstallError::PackageOwned);
    }
    let mut done = systemctl(layout, &[vec!["disable", "--now", SERVICE]])?;
    let mut paths = vec![
        layout.unit(),
        layout.bash_completion(),
        layout.zsh_completion(),
        layout.bin(),
    ];
    let man_dir = layout.man_dir();
    let pages = man_pages(cmd).map_err(io_err(&man_dir))?;
    for (name, _) in &pages {
        remove(&layout.staged(&man_dir.join(name)))?;
    }
    done.push(format!(
        "removed {} man pages from {}",
        pages.len(),
        man_dir.display()
    ));
    if purge {
        paths.push(PathBuf::from(CONFIG));
    }
    for path in &paths {
        if remove(&layout.staged(path))? {
            done.push(format!("removed {}", path.display()));
        }
    }
    if layout.is_live() {
        done.extend(systemctl(layout, &[vec!["daemon-reload"]])?);
    }
    let config_dir = layout.staged(Path::new("/etc/drover"));
    // Only when empty: the admin may keep other files there.
    let _ = fs::remove_dir(&config_dir);
    let state = layout.staged(state);
    if purge && state.exists() {
        // A wrong --state-dir must not remove an unrelated directory.
        if !state.join("store").is_dir() {
            return Err(InstallError::NotAStateDir(state));
        }
        fs::remove_dir_all(&state).map_err(io_err(&state))?;
        done.push(format!("removed the state directory {}", state.display()));
    } else {
        done.push(format!(
            "kept {CONFIG} and the state directory {} (--purge removes them)",
            state.display()
        ));
    }
    Ok(done)
}

/// Runs `systemctl` steps when installing into a system booted with systemd; otherwise
/// says what would have run.
fn systemctl(layout: &Layout, steps: &[Vec<&str>]) -> Result<Vec<String>, InstallError> {
    let live = layout.is_live() && Path::new("/run/systemd/system").is_dir();
    let mut done = Vec::new();
    for step in steps {
        let line = format!("systemctl {}", step.join(" "));
        if !live {
            let why = if layout.is_live() {
                "systemd is not running"
            } else {
                "staging root"
            };
            done.push(format!("not run ({why}): {line}"));
            continue;
        }
        let out = Command::new("systemctl")
            .args(step)
            .output()
            .map_err(io_err(Path::new("systemctl")))?;
        if !out.status.success() {
            return Err(InstallError::Systemctl {
                command: line,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        done.push(format!("ran {line}"));
    }
    Ok(done)
}

/// Writes the config unless one exists; the line says which.
fn install_config(req: &Request<'_>, dest: &Path) -> Result<String, InstallError> {
    let text = match req.config {
        Some(path) => fs::read_to_string(path).map_err(io_err(path))?,
        None => config_text(req.interfaces),
    };
    let origin = req.config.map_or("the default config".to_string(), |p| {
        p.display().to_string()
    });
    Config::parse(&text, &origin).map_err(|source| InstallError::Config {
        path: origin.clone(),
        source,
    })?;
    match fs::read_to_string(dest) {
        Ok(existing) => match req.config {
            Some(given) if existing != text => Err(InstallError::ConfigExists {
                given: given.to_path_buf(),
            }),
            _ => Ok(if req.interfaces.is_empty() {
                format!("kept {CONFIG} (exists)")
            } else {
                format!("kept {CONFIG} (exists; --interface not applied: edit it)")
            }),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            write_file(dest, text.as_bytes(), 0o644)?;
            Ok(format!("installed {CONFIG}"))
        }
        Err(e) => Err(io_err(dest)(e)),
    }
}

fn copy_binary(from: &Path, to: &Path) -> Result<(), InstallError> {
    if fs::canonicalize(from).ok() == fs::canonicalize(to).ok() && to.exists() {
        return Ok(()); // Reinstalling from the installed binary.
    }
    let bytes = fs::read(from).map_err(io_err(from))?;
    write_file(to, &bytes, 0o755)
}

/// Writes `bytes` to `path` (parents made) under a temporary name, fsynced, renamed: a
/// running binary or a unit being read is replaced, never seen half-written.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), InstallError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".drover-new");
    let tmp = PathBuf::from(tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    // The mode given to open is masked by the umask; the installed files' modes are fixed.
    f.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    crate::durable::rename(&tmp, path).map_err(io_err(path))
}

/// Removes a file; returns whether it was there.
fn remove(path: &Path) -> Result<bool, InstallError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_is_the_default_with_the_interfaces() {
        assert!(crate::config::DEFAULT_TOML.contains(INTERFACES_LINE));
        let text = config_text(&["eth1".into(), "br0".into()]);
        let c = Config::parse(&text, "test").unwrap();
        assert_eq!(c.interfaces, ["eth1", "br0"]);
        assert!(Config::parse(&config_text(&[]), "test")
            .unwrap()
            .interfaces
            .is_empty());
    }

    #[test]
    fn the_unit_runs_the_installed_binary() {
        assert!(UNIT.contains(&format!("ExecStart={UNIT_BIN} ")));
        let unit = unit_text(Path::new("/usr/local/bin/drover"));
        assert!(unit.contains("ExecStart=/usr/local/bin/drover --state-dir /var/lib/drover"));
        assert!(unit.contains(&format!("--config {CONFIG}")));
    }

    #[test]
    fn the_package_and_a_local_install_differ_in_places_only() {
        let local = Layout {
            root: "/".into(),
            prefix: "/usr/local".into(),
        };
        let pkg = Layout {
            root: "/stage".into(),
            prefix: "/usr".into(),
        };
        assert_eq!(
            local.unit(),
            Path::new("/etc/systemd/system/drover.service")
        );
        assert_eq!(
            pkg.unit(),
            Path::new("/usr/lib/systemd/system/drover.service")
        );
        assert_eq!(pkg.staged(&pkg.bin()), Path::new("/stage/usr/bin/drover"));
        assert!(local.is_live() && !pkg.is_live());
    }
}
