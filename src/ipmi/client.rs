//! The blocking shell of one BMC session: a connected UDP socket driving [`Session`]. Run it
//! on a thread of its own (the CLI's worker threads, `spawn_blocking` in the server).
//!
//! [`run`] logs in, runs the commands in order in one session, closes the session and
//! returns the answers. Cipher suites are tried in the given order; the next one is tried
//! only when the BMC says it does not offer the previous one.

use super::core::{
    Answer, Command, Event, LanVersion, Limits, Login, Random, Session, SessionError, OPEN_SESSION,
};
use super::crypto::Suite;
use super::wire::MAX_DATAGRAM;
use super::BmcAccess;
use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::Instant;

/// Why talking to a BMC failed. The `Display` text is the reason in the result table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PowerError {
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("local I/O error: {0}")]
    Io(String),
}

impl PowerError {
    /// A one-word class of the failure: timeout, authentication, unreachable, ...
    pub fn class(&self) -> &'static str {
        match self {
            PowerError::Unreachable(_) => "unreachable",
            PowerError::Io(_) => "io",
            PowerError::Session(e) => match e {
                SessionError::Timeout(_) => "timeout",
                SessionError::Authentication | SessionError::AuthenticationV15 => "authentication",
                SessionError::Privilege(_) => "privilege",
                SessionError::CipherSuite(..)
                | SessionError::NoCommonAuth
                | SessionError::NoIpmi20 => "unsupported",
                SessionError::Refused(_) | SessionError::Completion { .. } => "refused",
                SessionError::Protocol(_) => "protocol",
            },
        }
    }
}

/// Random bytes from the kernel.
pub struct KernelRandom(std::fs::File);

impl KernelRandom {
    pub fn new() -> Result<KernelRandom, PowerError> {
        std::fs::File::open("/dev/urandom")
            .map(KernelRandom)
            .map_err(|e| PowerError::Io(format!("/dev/urandom: {e}")))
    }
}

impl Random for KernelRandom {
    fn fill(&mut self, buf: &mut [u8]) {
        // Reading /dev/urandom does not fail once it is open; should it, the session ids
        // and IVs would be predictable rather than wrong, and the BMC still checks the MACs.
        let _ = self.0.read_exact(buf);
    }
}

/// Logs in to `bmc`, runs `commands` in one session and closes it.
pub fn run(
    bmc: &BmcAccess,
    suites: &[Suite],
    version: LanVersion,
    limits: Limits,
    commands: &[Command],
) -> Result<Vec<Answer>, PowerError> {
    let addr = resolve(bmc)?;
    let mut last = PowerError::Io("no cipher suite configured".into());
    for (i, suite) in suites.iter().enumerate() {
        match run_suite(addr, bmc, *suite, version, limits, commands) {
            // A BMC that answered Get Channel Authentication Capabilities but ignores an
            // Open Session request does not offer that suite (ipmi_sim ignores suite 17).
            Err(PowerError::Session(
                SessionError::CipherSuite(..) | SessionError::Timeout(OPEN_SESSION),
            )) if i + 1 < suites.len() => {
                tracing::debug!(bmc = %bmc.address(), suite = suite.id(), "cipher suite refused, trying the next");
            }
            Err(e) => {
                last = e;
                break;
            }
            Ok(a) => return Ok(a),
        }
    }
    Err(last)
}

fn resolve(bmc: &BmcAccess) -> Result<SocketAddr, PowerError> {
    (bmc.host.as_str(), bmc.port)
        .to_socket_addrs()
        .map_err(|e| PowerError::Unreachable(format!("cannot resolve {}: {e}", bmc.host)))?
        .next()
        .ok_or_else(|| PowerError::Unreachable(format!("{} has no address", bmc.host)))
}

fn run_suite(
    addr: SocketAddr,
    bmc: &BmcAccess,
    suite: Suite,
    version: LanVersion,
    limits: Limits,
    commands: &[Command],
) -> Result<Vec<Answer>, PowerError> {
    let local: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let io = |e: std::io::Error| PowerError::Io(e.to_string());
    let socket = UdpSocket::bind(local).map_err(io)?;
    socket.connect(addr).map_err(|e| unreachable(addr, &e))?;
    let login = Login {
        user: bmc.user.as_bytes(),
        password: bmc.password.expose().as_bytes(),
        suite,
        version,
    };
    let mut session = Session::new(Instant::now(), &login, limits, KernelRandom::new()?);
    let mut pending = commands.iter();
    let mut answers = Vec::with_capacity(commands.len());
    let mut buf = [0u8; MAX_DATAGRAM];
    let mut failure = None;
    loop {
        while let Some(datagram) = session.poll_transmit() {
            if let Err(e) = socket.send(&datagram) {
                return Err(unreachable(addr, &e));
            }
        }
        while let Some(event) = session.poll_event() {
            match event {
                Event::Established | Event::Answer(_) => {
                    if let Event::Answer(a) = event {
                        answers.push(a);
                    }
                    match pending.next() {
                        Some(cmd) => session.request(Instant::now(), *cmd),
                        None => session.close(Instant::now()),
                    }
                }
                Event::Failed(e) => failure = Some(e),
                Event::Closed => return Ok(answers),
            }
        }
        if let Some(e) = failure {
            // Flush a last datagram (a RAKP 3 error that frees the BMC's slot).
            while let Some(datagram) = session.poll_transmit() {
                let _ = socket.send(&datagram);
            }
            return Err(e.into());
        }
        if session.has_transmit() {
            continue;
        }
        let Some(deadline) = session.poll_timeout() else {
            return Err(PowerError::Io("session stalled".into()));
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            session.handle_timeout(Instant::now());
            continue;
        }
        socket.set_read_timeout(Some(wait)).map_err(io)?;
        match socket.recv(&mut buf) {
            Ok(n) => session.handle_input(Instant::now(), &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                session.handle_timeout(Instant::now());
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(unreachable(addr, &e)),
        }
    }
}

fn unreachable(addr: SocketAddr, e: &std::io::Error) -> PowerError {
    let why = match e.kind() {
        ErrorKind::ConnectionRefused => {
            "nothing listens on the port (ICMP port unreachable)".to_string()
        }
        _ => e.to_string(),
    };
    PowerError::Unreachable(format!("{addr}: {why}"))
}
