//! `drover image mount NAME[@VERSION] DIR [--foreground]`: finds the version's rootfs blob in
//! the local store and serves it with `crate::image::mount`. Without `--foreground` this
//! process starts itself again with `--foreground` in its own process group, waits for the
//! child's "mounted" line (or its exit, whose error it passes on) and returns, leaving the
//! child to serve the mount until `umount DIR`. The background child's later warnings are
//! dropped (nobody reads its standard error any more): `--foreground` shows them.
//!
//! Not here: the file system itself (`crate::image::mount`).

use super::local::Local;
use crate::image::mount::{self, ImageFs};
use crate::image::Blobs;
use crate::store::model::Image;
use anyhow::{anyhow, bail, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// The first word of the line the serving process prints once the mount is up.
const MOUNTED: &str = "mounted ";

pub fn run(state: &Path, spec: &str, dir: &Path, foreground: bool) -> Result<()> {
    let (name, version) = crate::http::ipxe::parse_image_path_name(spec)
        .ok_or_else(|| anyhow!("{spec}: give NAME or NAME@VERSION"))?;
    // The owner of /proc/self is this process's effective uid.
    let euid = std::fs::metadata("/proc/self")
        .context("reading /proc/self")?
        .uid();
    mount::preflight(dir, euid)?;
    if !foreground {
        return background(dir);
    }
    let image = Local::new(state)
        .store()?
        .read(|r| r.get::<Image>(name))?
        .ok_or_else(|| anyhow!("no image {name}"))?;
    let number = version.unwrap_or_else(|| image.latest_version());
    let files = image
        .version_files(number)
        .ok_or_else(|| anyhow!("image {name} has no version {number} (see `image history`)"))?;
    let Some(rootfs) = files.rootfs else {
        bail!("image {name}@{number} has no root tree (a kernel and initrd image)");
    };
    let blobs = Blobs::new(state);
    let tar = blobs.open(&rootfs.blob).with_context(|| {
        format!(
            "image {name}@{number}: its root tree {} is not in this member's store",
            rootfs.blob
        )
    })?;
    let fs = ImageFs::new(tar)?;
    let inodes = fs.inodes();
    let source = format!("drover:{name}@{number}");
    mount::serve(fs, dir, &source, || {
        println!("{MOUNTED}{source} on {} ({inodes} inodes)", dir.display());
        // The parent waits for this line; if it is gone, nothing else reads our output.
        let _ = std::io::stdout().flush();
    })?;
    Ok(())
}

/// Starts `drover ... --foreground` in its own process group (so that the terminal's Ctrl-C
/// no longer reaches it) and returns once it reports the mount.
fn background(dir: &Path) -> Result<()> {
    let exe = std::env::current_exe().context("finding drover's own binary")?;
    let mut child = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .arg("--foreground")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        // Not our standard error: a caller reading it to the end would wait for the unmount.
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .context("starting the mount in the background")?;
    let out = child
        .stdout
        .take()
        .context("internal: the child's standard output is piped")?;
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .context("reading the background mount's report")?;
    if line.starts_with(MOUNTED) {
        print!("{line}");
        println!(
            "served by process {}; `umount {}` ends it",
            child.id(),
            dir.display()
        );
        return Ok(());
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        // Best effort: the exit status below is the error either way.
        let _ = e.read_to_string(&mut err);
    }
    let status = child.wait().context("waiting for the background mount")?;
    eprint!("{err}");
    bail!("the mount failed ({status})")
}
