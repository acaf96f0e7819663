//! Console logs: what the console hub (`super::hub`) reads from a node's serial console,
//! appended to `<state>/console/<node>/<boot>.log`, one file per boot, and read back by
//! `drover console NODE --log` and `GET /api/v1/nodes/{name}/console/log`.
//!
//! A boot is named by the time (Unix ms) its first boot event was recorded
//! (`crate::timeline::last_boot`: the node's DHCP offer to its firmware or its iPXE script),
//! 0 when the node has no boot event yet. So output that arrives after a new DHCP/iPXE event
//! goes to a new file; a power cycle that does not reach the network (a node stuck in its
//! firmware) stays in the previous boot's file. The newest [`KEEP_BOOTS`] files are kept per
//! node, each cut at [`MAX_BOOT_BYTES`] (the rest of that boot is dropped with one note).
//!
//! The files hold the raw bytes of the serial line (a terminal transcript: escape sequences
//! included); they are never written into drover's own log lines.
//!
//! Not here: replication (a log lives on the member whose hub held the console, so `--log`
//! through another member shows what that member saw), consoles nobody watched (the hub
//! opens a node's console only while a client is attached, plus `hub::LINGER`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Boots kept per node.
pub const KEEP_BOOTS: usize = 5;
/// Bytes kept of one boot's console output.
pub const MAX_BOOT_BYTES: u64 = 1 << 20;
/// Written once where a boot's log is cut.
const CUT_NOTE: &[u8] = b"\r\n[drover: this boot's console log is cut here at 1 MiB]\r\n";

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{0:?} is not a node name that names a console log")]
    BadName(String),
    #[error("console log {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// One boot's output as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootLog {
    /// Unix ms of the boot's first event (0: before any).
    pub boot_ms: u64,
    pub bytes: Vec<u8>,
}

/// The directory of `node`'s logs.
pub fn dir(state: &Path, node: &str) -> Result<PathBuf, LogError> {
    // Node names are checked by `admin`; this keeps a path out of the state directory anyway.
    if node.is_empty() || node.starts_with('.') || node.contains(['/', '\\', '\0']) {
        return Err(LogError::BadName(node.to_string()));
    }
    Ok(state.join("console").join(node))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The boots kept for `node`, oldest first (none: no log yet).
pub fn read(state: &Path, node: &str) -> Result<Vec<BootLog>, LogError> {
    let dir = dir(state, node)?;
    let mut boots = Vec::new();
    for boot_ms in boots_in(&dir)? {
        let path = dir.join(file_name(boot_ms));
        match std::fs::read(&path) {
            Ok(bytes) => boots.push(BootLog { boot_ms, bytes }),
            // Pruned by a writer between the listing and the read.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
    }
    Ok(boots)
}

fn file_name(boot_ms: u64) -> String {
    format!("{boot_ms}.log")
}

/// The boots that have a file in `dir`, oldest first.
fn boots_in(dir: &Path) -> Result<Vec<u64>, LogError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut boots: Vec<u64> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            name.to_str()?.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    boots.sort_unstable();
    Ok(boots)
}

/// The writer of one node's logs.
#[derive(Debug)]
pub struct Writer {
    dir: PathBuf,
    /// The boot being written, its file and its size so far.
    open: Option<(u64, File, u64)>,
}

impl Writer {
    pub fn new(state: &Path, node: &str) -> Result<Writer, LogError> {
        Ok(Writer {
            dir: dir(state, node)?,
            open: None,
        })
    }

    /// Appends `bytes` to the log of boot `boot_ms`, starting its file (and pruning the
    /// oldest) when it is a new boot.
    pub fn append(&mut self, boot_ms: u64, bytes: &[u8]) -> Result<(), LogError> {
        if self.open.as_ref().map(|(b, ..)| *b) != Some(boot_ms) {
            self.open = None;
            std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
            let path = self.dir.join(file_name(boot_ms));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io(&path))?;
            let len = file.metadata().map_err(io(&path))?.len();
            self.open = Some((boot_ms, file, len));
            self.prune()?;
        }
        let Some((boot, file, len)) = &mut self.open else {
            return Ok(());
        };
        let path = self.dir.join(file_name(*boot));
        if *len >= MAX_BOOT_BYTES {
            return Ok(());
        }
        let room = (MAX_BOOT_BYTES - *len) as usize;
        let (kept, cut) = if bytes.len() > room {
            (&bytes[..room], true)
        } else {
            (bytes, false)
        };
        file.write_all(kept).map_err(io(&path))?;
        *len += kept.len() as u64;
        if cut {
            file.write_all(CUT_NOTE).map_err(io(&path))?;
            // Past the cap: nothing more is written for this boot.
            *len = MAX_BOOT_BYTES;
        }
        Ok(())
    }

    /// Removes all but the newest [`KEEP_BOOTS`] files.
    fn prune(&self) -> Result<(), LogError> {
        let boots = boots_in(&self.dir)?;
        let extra = boots.len().saturating_sub(KEEP_BOOTS);
        for boot in &boots[..extra] {
            let path = self.dir.join(file_name(*boot));
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boots_rotate_and_each_is_capped() {
        let dir = std::env::temp_dir().join(format!("drover-conlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state = Dir(dir);
        let mut w = Writer::new(state.path(), "n1").unwrap();
        w.append(0, b"before any boot\r\n").unwrap();
        w.append(1000, b"Linux version 6.1\r\n").unwrap();
        w.append(1000, b"login: ").unwrap();
        let boots = read(state.path(), "n1").unwrap();
        assert_eq!(boots.len(), 2);
        assert_eq!(boots[1].boot_ms, 1000);
        assert_eq!(boots[1].bytes, b"Linux version 6.1\r\nlogin: ");
        // A writer opened again (the hub reopened the console) appends to the same boot.
        let mut again = Writer::new(state.path(), "n1").unwrap();
        again.append(1000, b"root").unwrap();
        assert!(read(state.path(), "n1").unwrap()[1]
            .bytes
            .ends_with(b"login: root"));
        for boot in 2..=(KEEP_BOOTS as u64 + 3) {
            again.append(boot * 1000, b"x").unwrap();
        }
        let boots = read(state.path(), "n1").unwrap();
        assert_eq!(boots.len(), KEEP_BOOTS);
        assert_eq!(
            boots.last().unwrap().boot_ms,
            (KEEP_BOOTS as u64 + 3) * 1000
        );
        let big = vec![b'a'; MAX_BOOT_BYTES as usize - 10];
        again.append(99_000, &big).unwrap();
        again.append(99_000, &[b'b'; 100]).unwrap();
        again.append(99_000, b"dropped").unwrap();
        let last = read(state.path(), "n1").unwrap().pop().unwrap();
        assert_eq!(
            last.bytes.len() as u64,
            MAX_BOOT_BYTES + CUT_NOTE.len() as u64
        );
        assert!(last.bytes.ends_with(CUT_NOTE));
        assert!(Writer::new(state.path(), "../etc").is_err());
        assert!(read(state.path(), "nobody").unwrap().is_empty());
    }

    /// A test directory, removed at the end.
    struct Dir(PathBuf);

    impl Dir {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
