//! `drover lab`: QEMU VMs that boot through drover on a user-space network, as an ordinary
//! user (no root, no taps, no bridges, no namespaces).
//!
//! - [`switch`]: the L2 switch's forwarding decision and MAC learning (pure).
//! - [`segment`]: the switch's tokio shell; QEMU joins over a unix stream socket.
//! - [`link`]: per port, LLDP announcements and impaired links (drop, delay) (pure).
//! - [`stack`]: drover's address on the segment (smoltcp), with sockets the services' shells
//!   take as they are.
//! - [`serve`]: a lab's services (store, DHCP, HTTP boot path, API and page) on the stack.
//! - [`qemu`]: the VM command line; [`progress`]: boot phases read off a serial console
//!   (pure).
//! - [`ra`]: the segment's IPv6 router advertisement frame (pure), so iPXE does not wait
//!   for one.
//! - [`cmd`]: `lab up/status/console/down/run`; a lab lives in its own directory.
//!
//! Not here: the protocols (their own modules run unchanged on the lab's sockets).

pub mod cmd;
pub mod link;
pub mod progress;
pub mod qemu;
pub mod ra;
pub mod segment;
pub mod serve;
pub mod stack;
pub mod switch;

use std::io;

/// What stops a lab command or the lab's server.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error(transparent)]
    Stack(#[from] stack::StackError),
    #[error("the {0} server on the lab failed: {1}")]
    Service(&'static str, io::Error),
    #[error("{program} not found: install Debian package `{package}`")]
    Missing {
        program: String,
        package: &'static str,
    },
    #[error("no image {image:?}: not in the lab's store, and no {tried} (see --assets)")]
    NoImage { image: String, tried: String },
    #[error("bad --expect regex: {0}")]
    BadRegex(String),
    #[error("no lab in {0} (start one with `drover lab up`)")]
    NoLab(String),
    #[error(transparent)]
    Pool(#[from] crate::pool::setup::SetupError),
    #[error(
        "the lab's pool members did not see each other within {secs} s; member 1's log: {log}"
    )]
    NoPool { secs: u64, log: String },
    #[error("`lab run` has no pool: use `lab up --members M`")]
    RunWithMembers,
    #[error("no member {0} in this lab (see `drover lab status`)")]
    NoMember(u8),
    #[error("no node {0:?} in this lab")]
    NoNode(String),
    #[error("{node} is not running (it powered off or crashed); its console log: {log}")]
    Stopped { node: String, log: String },
    #[error("the lab's server did not start within {secs} s; its log: {log}")]
    NotStarted { secs: u64, log: String },
    #[error("{node} did not show /{regex}/ on its console within {secs} s; last lines:\n{tail}")]
    Timeout {
        node: String,
        regex: String,
        secs: u64,
        tail: String,
    },
    #[error(
        "QEMU of {node} exited ({status}) before its console showed /{regex}/; last lines:\n{tail}"
    )]
    VmExited {
        node: String,
        regex: String,
        status: String,
        tail: String,
    },
}

impl LabError {
    /// A mapper for `map_err`: an I/O error while doing `what` on `path`.
    pub fn io(what: &'static str, path: impl std::fmt::Display) -> impl FnOnce(io::Error) -> Self {
        let path = path.to_string();
        move |source| LabError::Io { what, path, source }
    }
}
