//! The node's files from drover's file sets (`crate::files`): fetched from
//! `GET /boot/{mac}/files` (answered only to the node's own leased address) and written into
//! the new root, RAM or NFS, with their mode and owner, after the files the agent renders
//! itself (so a set may replace, say, `/etc/hosts`) and before the pool's node key is added to
//! root's authorized_keys (so an admin's authorized_keys keeps that line).
//!
//! Each file is written to a temporary name beside its place and renamed over it: a kept NFS
//! root never holds half a file. A path the server should never have sent (relative, `..`) is
//! skipped, as is a file whose contents do not decode.
//!
//! Not here: what the files are (the server decides, `crate::files::ops::for_node`).

use super::cmdline::{BootParams, ServerUrl};
use super::http;
use crate::files::core::{valid_path, Delivered};
use std::fs;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// Longest answer read: far above what sets of small configuration files come to.
const MAX_BODY: u64 = 16 << 20;

/// Fetches the node's files and writes them under `root`; returns a line per file (its path,
/// or why it was not written). A server without file sets (404) gives none.
pub fn write(server: &ServerUrl, p: &BootParams, root: &Path) -> Result<Vec<String>, String> {
    let path = format!("{}/boot/{}/files", server.prefix, p.mac);
    let mut body = match http::get(server, &path) {
        Ok(b) => b,
        Err(http::HttpError::Status { status: 404, .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    if body.length() > MAX_BODY {
        return Err(format!("the server sent {} bytes of files", body.length()));
    }
    let mut text = String::new();
    body.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let files: Vec<Delivered> =
        serde_json::from_str(&text).map_err(|e| format!("the server's file list: {e}"))?;
    Ok(files
        .iter()
        .map(|f| match write_one(root, f) {
            Ok(()) => f.path.clone(),
            Err(e) => format!("{} FAILED ({e})", f.path),
        })
        .collect())
}

fn write_one(root: &Path, f: &Delivered) -> Result<(), String> {
    if !valid_path(&f.path) || f.mode > 0o7777 {
        return Err("not an absolute normalised path with a permission mode".into());
    }
    let bytes = f.bytes().map_err(|e| e.to_string())?;
    let dest = root.join(&f.path[1..]);
    let tmp = root.join(format!("{}.drover-boot", &f.path[1..]));
    let io = |e: std::io::Error| e.to_string();
    if let Some(dir) = dest.parent() {
        fs::create_dir_all(dir).map_err(io)?;
    }
    // Private until the chmod below: a host key is never readable by others, not even briefly.
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    out.write_all(&bytes).map_err(io)?;
    drop(out);
    std::os::unix::fs::chown(&tmp, Some(f.uid), Some(f.gid)).map_err(io)?;
    // After chown, which clears set-id bits.
    fs::set_permissions(&tmp, fs::Permissions::from_mode(f.mode)).map_err(io)?;
    // A rename replaces a symlink at `dest` rather than writing through it.
    fs::rename(&tmp, &dest).map_err(io)
}
