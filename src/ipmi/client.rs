//! The blocking shell of one BMC session: a connected UDP socket driving [`Session`]. Run it
//! on a thread of its own (the CLI's worker threads, `spawn_blocking` in the server).
//!
//! [`Conn`] is one established session: [`Conn::open`] logs in, [`Conn::run`] runs commands
//! in order (as often as wanted: `drover serve` keeps connections in a
//! [`super::cache::SessionCache`]), [`Conn::close`] sends Close Session. [`run`] is the
//! one-shot form the CLI uses: log in, run the commands, close. Cipher suites are tried in
//! the given order; the next one is tried only when the BMC says it does not offer the
//! previous one.

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
    /// Every configured suite was refused (or, after a refusal, ignored): the BMC offers only
    /// other, weaker ones. The text lists the suites tried.
    #[error("the BMC offers none of the cipher suites {0} (power.cipher-suites); drover never negotiates a weaker one")]
    NoAcceptableSuite(String),
}

impl PowerError {
    /// A one-word class of the failure: timeout, authentication, unreachable, ...
    pub fn class(&self) -> &'static str {
        match self {
            PowerError::Unreachable(_) => "unreachable",
            PowerError::Io(_) => "io",
            PowerError::NoAcceptableSuite(_) => "cipher-suite",
            PowerError::Session(e) => match e {
                SessionError::Timeout(_) => "timeout",
                SessionError::Authentication | SessionError::AuthenticationV15 => "authentication",
                SessionError::Privilege(_) => "privilege",
                SessionError::CipherSuite(..)
                | SessionError::NoCommonAuth
                | SessionError::NoIpmi20 => "unsupported",
                SessionError::OnlyV15 => "only-v1.5",
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

/// How sessions are opened: the `[power]` protocol settings.
#[derive(Debug, Clone)]
pub struct Dial {
    /// Cipher suites to try, in order.
    pub suites: Vec<Suite>,
    pub version: LanVersion,
    pub limits: Limits,
}

/// `3, 17`: the suites' numbers as `ipmitool -C` names them.
fn suite_list(suites: &[Suite]) -> String {
    let ids: Vec<String> = suites.iter().map(|s| s.id().to_string()).collect();
    ids.join(", ")
}

/// Logs in to `bmc`, runs `commands` in one session and closes it.
pub fn run(bmc: &BmcAccess, dial: &Dial, commands: &[Command]) -> Result<Vec<Answer>, PowerError> {
    let mut conn = Conn::open(bmc, dial)?;
    let answers = conn.run(commands)?;
    conn.close();
    Ok(answers)
}

fn resolve(bmc: &BmcAccess) -> Result<SocketAddr, PowerError> {
    (bmc.host.as_str(), bmc.port)
        .to_socket_addrs()
        .map_err(|e| PowerError::Unreachable(format!("cannot resolve {}: {e}", bmc.host)))?
        .next()
        .ok_or_else(|| PowerError::Unreachable(format!("{} has no address", bmc.host)))
}

/// An established session on its own connected UDP socket. Its methods block; one thread
/// uses it at a time (`&mut self`), which keeps the session's sequence numbers in order.
/// Dropping it without [`Conn::close`] leaves the session for the BMC to time out.
pub struct Conn {
    addr: SocketAddr,
    socket: UdpSocket,
    session: Session<KernelRandom>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("addr", &self.addr)
            .field("session", &self.session)
            .finish()
    }
}

impl Conn {
    /// Logs in to `bmc`. Cipher suites are tried in the given order; the next one is tried
    /// only when the BMC says it does not offer the previous one.
    pub fn open(bmc: &BmcAccess, dial: &Dial) -> Result<Conn, PowerError> {
        let addr = resolve(bmc)?;
        let mut refused = false;
        for (i, suite) in dial.suites.iter().enumerate() {
            match Conn::open_suite(addr, bmc, *suite, dial.version, dial.limits) {
                // A BMC that answered Get Channel Authentication Capabilities but ignores an
                // Open Session request does not offer that suite (ipmi_sim ignores suite 17).
                Err(PowerError::Session(
                    e @ (SessionError::CipherSuite(..) | SessionError::Timeout(OPEN_SESSION)),
                )) => {
                    refused |= matches!(e, SessionError::CipherSuite(..));
                    if i + 1 < dial.suites.len() {
                        tracing::debug!(bmc = %bmc.address(), suite = suite.id(), "cipher suite refused, trying the next");
                        continue;
                    }
                    // A lone silence may be loss; a refusal says what the BMC offers.
                    return Err(if refused {
                        PowerError::NoAcceptableSuite(suite_list(&dial.suites))
                    } else {
                        PowerError::Session(e)
                    });
                }
                Err(e) => return Err(e),
                Ok(c) => return Ok(c),
            }
        }
        Err(PowerError::Io("no cipher suite configured".into()))
    }

    fn open_suite(
        addr: SocketAddr,
        bmc: &BmcAccess,
        suite: Suite,
        version: LanVersion,
        limits: Limits,
    ) -> Result<Conn, PowerError> {
        let local: SocketAddr = if addr.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = UdpSocket::bind(local).map_err(io)?;
        socket.connect(addr).map_err(|e| unreachable(addr, &e))?;
        let login = Login {
            user: bmc.user.as_bytes(),
            password: bmc.password.expose().as_bytes(),
            suite,
            version,
        };
        let session = Session::new(Instant::now(), &login, limits, KernelRandom::new()?);
        let mut conn = Conn {
            addr,
            socket,
            session,
        };
        match conn.next_event()? {
            Event::Established => Ok(conn),
            Event::Failed(e) => Err(e.into()),
            Event::Answer(_) | Event::Sol(_) | Event::Closed => {
                Err(PowerError::Io("session stalled".into()))
            }
        }
    }

    /// Runs `commands` in order and returns their answers. After an error the session is
    /// over (the core has failed it); drop the connection.
    pub fn run(&mut self, commands: &[Command]) -> Result<Vec<Answer>, PowerError> {
        let mut answers = Vec::with_capacity(commands.len());
        for cmd in commands {
            self.session.request(Instant::now(), *cmd);
            match self.next_event()? {
                Event::Answer(a) => answers.push(a),
                Event::Failed(e) => return Err(e.into()),
                Event::Established | Event::Sol(_) | Event::Closed => {
                    return Err(PowerError::Io("session stalled".into()))
                }
            }
        }
        Ok(answers)
    }

    /// Ends the session with Close Session and waits for the answer (or the retries). A
    /// BMC that does not answer drops the session by itself, so errors are only logged.
    pub fn close(mut self) {
        self.session.close(Instant::now());
        if let Err(e) = self.next_event() {
            tracing::debug!(bmc = %self.addr, reason = %e, "Close Session failed");
        }
    }

    /// Seals and sends one Serial-over-LAN packet (see `super::sol`).
    pub fn send_sol(&mut self, packet: &[u8]) -> Result<(), PowerError> {
        self.session.send_sol(packet);
        self.flush()
    }

    fn flush(&mut self) -> Result<(), PowerError> {
        while let Some(datagram) = self.session.poll_transmit() {
            if let Err(e) = self.socket.send(&datagram) {
                return Err(unreachable(self.addr, &e));
            }
        }
        Ok(())
    }

    /// Waits at most `wait` for one datagram, feeds it to the session and returns the
    /// session's events (the console's loop; commands use [`Conn::run`]).
    pub fn pump(&mut self, wait: std::time::Duration) -> Result<Vec<Event>, PowerError> {
        self.flush()?;
        let mut buf = [0u8; MAX_DATAGRAM];
        self.socket
            .set_read_timeout(Some(wait.max(std::time::Duration::from_millis(1))))
            .map_err(io)?;
        match self.socket.recv(&mut buf) {
            Ok(n) => self.session.handle_input(Instant::now(), &buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(unreachable(self.addr, &e)),
        }
        self.flush()?;
        Ok(std::iter::from_fn(|| self.session.poll_event()).collect())
    }

    /// Sends what the session has to send and waits until it has an event.
    fn next_event(&mut self) -> Result<Event, PowerError> {
        let mut buf = [0u8; MAX_DATAGRAM];
        loop {
            // Flushed before the event is read: a failing session may leave a last datagram
            // (a RAKP 3 error that frees the BMC's slot).
            while let Some(datagram) = self.session.poll_transmit() {
                if let Err(e) = self.socket.send(&datagram) {
                    return Err(unreachable(self.addr, &e));
                }
            }
            if let Some(event) = self.session.poll_event() {
                // Console output that arrives while a command or Close Session waits (after
                // Deactivate Payload) is dropped: the console has ended.
                if matches!(event, Event::Sol(_)) {
                    continue;
                }
                return Ok(event);
            }
            let Some(deadline) = self.session.poll_timeout() else {
                return Err(PowerError::Io("session stalled".into()));
            };
            let wait = deadline.saturating_duration_since(Instant::now());
            if wait.is_zero() {
                self.session.handle_timeout(Instant::now());
                continue;
            }
            self.socket.set_read_timeout(Some(wait)).map_err(io)?;
            match self.socket.recv(&mut buf) {
                Ok(n) => self.session.handle_input(Instant::now(), &buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    self.session.handle_timeout(Instant::now());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(unreachable(self.addr, &e)),
            }
        }
    }
}

fn io(e: std::io::Error) -> PowerError {
    PowerError::Io(e.to_string())
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
