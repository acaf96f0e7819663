//! The commands that look after drover itself rather than the fleet: `install`,
//! `uninstall`, `backup`, `restore`, `completions` and `man`. They work on this machine only
//! (no API counterpart) and print what they did.
//!
//! Not here: what gets installed (`crate::install`), the backup format (`crate::backup`).

use super::args::{Cli, Command, InstallPlace};
use crate::backup::{self, MemberId};
use crate::install::{self, Layout};
use anyhow::{bail, Context, Result};
use clap::CommandFactory;
use std::io::Write;
use std::path::Path;

/// Runs one of this module's commands; `now` is unix seconds (a backup's creation time).
pub(super) fn run(state: &Path, command: Command, now: u64) -> Result<()> {
    match command {
        Command::Install(args) => {
            let binary = std::env::current_exe().context("finding this binary")?;
            let req = install::Request {
                layout: layout(&args.place)?,
                binary: &binary,
                interfaces: &args.interfaces,
                config: args.config.as_deref(),
            };
            print_lines(install::install(Cli::command(), &req)?);
        }
        Command::Uninstall { purge, place } => {
            let lines = install::uninstall(Cli::command(), &layout(&place)?, state, purge)?;
            print_lines(lines);
        }
        Command::Backup { file, store_only } => {
            let store = backup::open_store(state)?;
            let m = backup::backup(&store, state, &file, store_only, now)?;
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            let blobs = if store_only {
                "no image blobs (--store-only)".to_string()
            } else {
                format!("{} image blobs", m.blobs)
            };
            println!(
                "backed up the store (schema {}, member {}) and {blobs} to {} ({:.1} MiB)",
                m.schema,
                m.member,
                file.display(),
                size as f64 / (1 << 20) as f64
            );
        }
        Command::Restore {
            file,
            force,
            keep_member_id,
        } => {
            let member = if keep_member_id {
                MemberId::Keep
            } else {
                MemberId::Renew
            };
            let r = backup::restore(&file, state, force, member)?;
            let m = &r.manifest;
            println!(
                "restored {} (drover {}, schema {}, {} image blobs) into {}",
                file.display(),
                m.drover_version,
                m.schema,
                r.blobs,
                state.display()
            );
            if keep_member_id {
                println!("member id {} kept (--keep-member-id)", m.member);
            } else {
                println!(
                    "new member id {:016x} (the backup's was {}); if that member is gone for \
                     good, run `drover pool forget {}` on a live member",
                    r.member, m.member, m.member
                );
            }
            println!(
                "not in a backup: the cluster key (join with `drover pool join`), the NFS \
                 state and the nodes' writable layers"
            );
        }
        Command::Completions { shell } => {
            let text = install::completion(&mut Cli::command(), shell);
            std::io::stdout().write_all(&text)?;
        }
        Command::Man { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let pages = install::man_pages(Cli::command())?;
            for (name, text) in &pages {
                let path = dir.join(name);
                std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            println!("wrote {} man pages to {}", pages.len(), dir.display());
        }
        _ => bail!("internal: not an appliance command"),
    }
    Ok(())
}

fn layout(place: &InstallPlace) -> Result<Layout> {
    if !place.prefix.is_absolute() || !place.root.is_absolute() {
        bail!("--root and --prefix must be absolute paths");
    }
    Ok(Layout {
        root: place.root.clone(),
        prefix: place.prefix.clone(),
    })
}

fn print_lines(lines: Vec<String>) {
    for line in lines {
        println!("{line}");
    }
}
