//! The service-mode initrd: a newc cpio that the kernel unpacks over drover's initramfs (iPXE
//! loads it as a second initrd) with the host's OpenSSH server and static busybox (the shell
//! and tools of an ssh session) and every shared library they load, each at the path the
//! dynamic loader looks for it. Built once per server process from the host's files, so the
//! node's sshd is the one Debian ships and keeps patched.
//!
//! Which libraries: `ldd` (glibc's, which runs the loader in list mode) on each program; its
//! output is parsed by [`parse_ldd`] (pure).
//!
//! Not here: the sshd configuration, users and keys (the agent writes those at boot,
//! `crate::agent::service`), other architectures than the host's.

use crate::image::initramfs::{CopyError, CpioWriter};
use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The ssh server the node runs (Debian package openssh-server).
pub const SSHD: &str = "/usr/sbin/sshd";
/// The shell and tools of a session (Debian package busybox-static).
pub const BUSYBOX: &str = "/bin/busybox";
/// Largest file copied (libcrypto is ~5 MiB): a sanity limit.
const MAX_FILE: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ToolsError {
    #[error("{path} is missing: install Debian's {package} on this server for service mode")]
    Missing { path: String, package: &'static str },
    #[error("running ldd on {path}: {source}")]
    Ldd { path: String, source: io::Error },
    #[error("{program} needs {library}, which ldd cannot find")]
    NotFound { program: String, library: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is {size} bytes, more than the {MAX_FILE} allowed")]
    TooBig { path: PathBuf, size: u64 },
    #[error("writing the service initrd: {0}")]
    Write(io::Error),
}

/// One line of `ldd`'s output, as far as it matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LddLine {
    /// A library (or the loader itself) at this absolute path.
    Path(String),
    /// A library the loader cannot find.
    NotFound(String),
}

/// The libraries `ldd` lists: `name => /path (0x..)`, `/path (0x..)` (the loader), and
/// `name => not found`; the vDSO (no path) and `statically linked` are skipped.
pub fn parse_ldd(text: &str) -> Vec<LddLine> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let target = match line.split_once(" => ") {
            Some((name, rest)) => {
                if rest.trim() == "not found" {
                    out.push(LddLine::NotFound(name.trim().to_string()));
                    continue;
                }
                rest
            }
            None => line,
        };
        let path = target.split_whitespace().next().unwrap_or("");
        if path.starts_with('/') {
            out.push(LddLine::Path(path.to_string()));
        }
    }
    out
}

/// The programs and the libraries they load, without duplicates.
pub fn files() -> Result<BTreeSet<String>, ToolsError> {
    let mut all = BTreeSet::new();
    for (program, package) in [(SSHD, "openssh-server"), (BUSYBOX, "busybox-static")] {
        if !Path::new(program).is_file() {
            return Err(ToolsError::Missing {
                path: program.into(),
                package,
            });
        }
        all.insert(program.to_string());
        let out = Command::new("ldd")
            .arg(program)
            .output()
            .map_err(|source| ToolsError::Ldd {
                path: program.into(),
                source,
            })?;
        // A static program makes ldd fail ("not a dynamic executable"): nothing to add.
        let text = String::from_utf8_lossy(&out.stdout);
        for line in parse_ldd(&text) {
            match line {
                LddLine::Path(p) => {
                    all.insert(p);
                }
                LddLine::NotFound(library) => {
                    return Err(ToolsError::NotFound {
                        program: program.into(),
                        library,
                    })
                }
            }
        }
    }
    Ok(all)
}

/// The cpio with `files` (absolute paths, symlinks followed) and their parent directories.
pub fn build(files: &BTreeSet<String>) -> Result<Vec<u8>, ToolsError> {
    let mut dirs = BTreeSet::new();
    for f in files {
        let mut parent = Path::new(f.trim_start_matches('/')).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(p.to_string_lossy().into_owned());
            parent = p.parent();
        }
    }
    let mut out = Vec::new();
    let mut cpio = CpioWriter::new(&mut out);
    // BTreeSet order puts a parent before its children.
    for d in &dirs {
        cpio.dir(d, 0o755).map_err(ToolsError::Write)?;
    }
    for f in files {
        let io_err = |source| ToolsError::Io {
            path: PathBuf::from(f),
            source,
        };
        let file = File::open(f).map_err(io_err)?;
        let size = file.metadata().map_err(io_err)?.len();
        if size > MAX_FILE {
            return Err(ToolsError::TooBig {
                path: f.into(),
                size,
            });
        }
        cpio.file(
            f.trim_start_matches('/'),
            0o755,
            size,
            &mut BufReader::new(file),
        )
        .map_err(|e| match e {
            CopyError::Read(e) => io_err(e),
            CopyError::Write(e) => ToolsError::Write(e),
        })?;
    }
    cpio.finish().map_err(ToolsError::Write)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cpio of the host's sshd and busybox unpacks (busybox's own cpio) with every file
    /// at its path.
    #[test]
    fn builds_from_the_host() {
        let files = files().expect("sshd and busybox on this host (scripts/setup)");
        assert!(files.contains(SSHD) && files.contains(BUSYBOX), "{files:?}");
        assert!(files.iter().any(|f| f.contains("libc.so")), "{files:?}");
        let cpio = build(&files).unwrap();
        let dir = std::env::temp_dir().join(format!("drover-tools-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let archive = dir.join("t.cpio");
        std::fs::write(&archive, &cpio).unwrap();
        let out = Command::new(BUSYBOX)
            .args(["cpio", "-id"])
            .current_dir(&dir)
            .stdin(File::open(&archive).unwrap())
            .output()
            .unwrap();
        let missing: Vec<&String> = files
            .iter()
            .filter(|f| !dir.join(f.trim_start_matches('/')).is_file())
            .collect();
        let _ = std::fs::remove_dir_all(&dir);
        let why = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && missing.is_empty(),
            "{why}; not unpacked: {missing:?}"
        );
    }

    #[test]
    fn ldd_lines() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibcrypt.so.1 => /lib/x86_64-linux-gnu/libcrypt.so.1 (0x00007f0a)\n\
                    \tlibgone.so.3 => not found\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f0b)\n\
                    \tstatically linked\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                LddLine::Path("/lib/x86_64-linux-gnu/libcrypt.so.1".into()),
                LddLine::NotFound("libgone.so.3".into()),
                LddLine::Path("/lib64/ld-linux-x86-64.so.2".into()),
            ]
        );
        assert!(parse_ldd("\tnot a dynamic executable\n").is_empty());
    }
}
