//! `drover console NODE`: the node's serial console over IPMI Serial-over-LAN, in the CLI's
//! own RMCP+ session, blocking. Activate Payload, then a loop that relays the BMC's SOL
//! packets to the output and keystrokes from a bounded channel to the BMC ([`super::sol`]
//! keeps sequence numbers, acknowledgements and resends), then Deactivate Payload and Close
//! Session when the input ends.
//!
//! Not here (issue 17, still to do): relaying one SOL session to several readers through
//! any pool member, logging consoles to the store, the page's console panel, Redfish
//! consoles.

use super::client::{Conn, Dial, PowerError};
use super::core::{Answer, Command, Event};
use super::sol::{self, Console, SolError};
use super::BmcAccess;
use std::io::Write;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

/// How long one wait for a datagram lasts when nothing is due: the keyboard's latency.
const TICK: Duration = Duration::from_millis(20);

/// Why the console ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(transparent)]
    Ipmi(#[from] PowerError),
    #[error(transparent)]
    Sol(#[from] SolError),
    #[error("the node's console is open in another session already (Activate Payload: 0x80)")]
    Busy,
    #[error("the BMC refused Serial-over-LAN (Activate Payload: completion code {0:#04x})")]
    Refused(u8),
    #[error("writing the console output: {0}")]
    Output(std::io::Error),
}

/// Attaches to `bmc`'s console until `input` closes; the serial output goes to `out`.
pub fn attach(
    bmc: &BmcAccess,
    dial: &Dial,
    input: &Receiver<Vec<u8>>,
    out: &mut dyn Write,
) -> Result<(), ConsoleError> {
    let mut conn = Conn::open(bmc, dial)?;
    match conn.run(&[Command::Raw(sol::activate())])?.first() {
        Some(Answer::Raw { cc: 0, .. }) => {}
        Some(Answer::Raw {
            cc: sol::CC_ALREADY_ACTIVE,
            ..
        }) => return Err(ConsoleError::Busy),
        Some(Answer::Raw { cc, .. }) => return Err(ConsoleError::Refused(*cc)),
        _ => return Err(PowerError::Io("no answer to Activate Payload".into()).into()),
    }
    let relayed = relay(&mut conn, input, out);
    if !matches!(relayed, Err(ConsoleError::Ipmi(_))) {
        // The session still works: free the console for the next one, then the session.
        if let Err(e) = conn.run(&[Command::Raw(sol::deactivate())]) {
            tracing::debug!(reason = %e, "Deactivate Payload failed");
        }
        conn.close();
    }
    relayed
}

fn relay(
    conn: &mut Conn,
    input: &Receiver<Vec<u8>>,
    out: &mut dyn Write,
) -> Result<(), ConsoleError> {
    let mut console = Console::new();
    loop {
        let now = Instant::now();
        match input.try_recv() {
            Ok(keys) => console.type_in(now, &keys)?,
            Err(TryRecvError::Empty) => {}
            Err(TryRecvError::Disconnected) => return Ok(()),
        }
        console.handle_timeout(now)?;
        while let Some(packet) = console.poll_transmit() {
            conn.send_sol(&packet)?;
        }
        let wait = console
            .poll_timeout()
            .map_or(TICK, |t| t.saturating_duration_since(now).min(TICK));
        for event in conn.pump(wait)? {
            match event {
                Event::Sol(packet) => {
                    let shown = console.handle_packet(Instant::now(), &packet);
                    if !shown.is_empty() {
                        out.write_all(&shown)
                            .and_then(|()| out.flush())
                            .map_err(ConsoleError::Output)?;
                    }
                }
                Event::Failed(e) => return Err(PowerError::from(e).into()),
                Event::Established | Event::Answer(_) | Event::Closed => {}
            }
        }
    }
}

/// Reads keystrokes from `read` into a bounded channel until it ends or the user types the
/// escape `~.` at the start of a line (as ssh and ipmitool do); dropping the sender ends the
/// console. Run it on a thread of its own.
pub fn read_keys(mut read: impl std::io::Read, keys: std::sync::mpsc::SyncSender<Vec<u8>>) {
    let mut buf = [0u8; 256];
    // At the start of a line: `~` there may begin the escape.
    let mut line_start = true;
    let mut tilde = false;
    loop {
        let n = match read.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut send = Vec::with_capacity(n);
        for &b in &buf[..n] {
            if tilde {
                tilde = false;
                if b == b'.' {
                    let _ = keys.send(send);
                    return;
                }
                send.push(b'~');
            }
            if line_start && b == b'~' {
                tilde = true;
                line_start = false;
                continue;
            }
            line_start = b == b'\r' || b == b'\n';
            send.push(b);
        }
        if !send.is_empty() && keys.send(send).is_err() {
            return;
        }
    }
}
