//! The password prompt of `drover admin passwd`: one line from standard input, or on a
//! terminal typed twice without echo (`stty -echo`).
//!
//! Not here: hashing and storing it (`crate::auth::set_password`).

use anyhow::{bail, Context, Result};
use std::io::{BufRead, IsTerminal, Write};

/// Reads a new password for `user`.
pub fn read(user: &str) -> Result<String> {
    let stdin = std::io::stdin();
    let line = |prompt: &str| -> Result<String> {
        if stdin.is_terminal() {
            eprint!("{prompt}");
            let _ = std::io::stderr().flush();
        }
        let mut s = String::new();
        stdin
            .lock()
            .read_line(&mut s)
            .context("reading the password")?;
        if stdin.is_terminal() {
            eprintln!();
        }
        Ok(s.trim_end_matches(['\r', '\n']).to_string())
    };
    if !stdin.is_terminal() {
        return line("");
    }
    let stty = |arg: &str| {
        let _ = std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status();
    };
    stty("-echo");
    let first = line(&format!("new password for {user}: "));
    let second = line("again: ");
    stty("echo");
    let (first, second) = (first?, second?);
    if first != second {
        bail!("the passwords differ; nothing changed");
    }
    Ok(first)
}
