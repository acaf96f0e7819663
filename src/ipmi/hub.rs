//! The console hub of `drover serve`: holds at most one Serial-over-LAN session per node and
//! shares it between the clients watching that node's console (the API's WebSocket route,
//! which the page and `drover console --server` use).
//!
//! Data flow: the first [`Hub::join`] for a node reads the node's BMC records from the store
//! (so any pool member can serve any node's console) and starts a thread that runs
//! [`super::console::attach`]. What the node prints goes to [`Out`]: appended to the node's
//! console log ([`super::conlog`]), kept in a small backlog for clients that join later, and
//! sent on a bounded broadcast channel to every client (a client that falls behind loses
//! output and is told how much). Keystrokes come from the one writer ([`super::seats`]) over
//! a bounded channel. When the last client leaves, the session stays open for [`LINGER`]
//! (a reconnecting client finds it; the log keeps filling), then the hub drops the keystroke
//! channel, which ends `attach`: Deactivate Payload, Close Session.
//!
//! Not here: who may write (the API maps roles to [`Want`]), Redfish consoles, consoles
//! opened without a client (the log covers only what was watched, plus the linger time).

use super::conlog;
use super::power::Job;
use super::seats::{ClientId, Joined, SeatError, Seats, Want};
use crate::logsafe::Escaped;
use crate::store::model::{BmcProtocol, BootLog};
use crate::store::Store;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};

/// How long a console stays open after its last client left.
pub const LINGER: Duration = Duration::from_secs(30);
/// Consoles open at once on one member.
pub const MAX_CONSOLES: usize = 64;
/// Output chunks a client may fall behind before it loses some.
const FANOUT_DEPTH: usize = 256;
/// Output kept for clients that join an open console (the screen they come in on).
const BACKLOG: usize = 16 << 10;
/// Keystroke writes queued for the BMC.
const KEY_DEPTH: usize = 64;
/// Notices queued per client.
const NOTICE_DEPTH: usize = 8;
/// How often the writer thread looks up the node's current boot for the log.
const BOOT_CHECK: Duration = Duration::from_secs(2);

/// Why a client cannot watch a console.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("no node {0:?}")]
    NoNode(String),
    #[error("{0}: {1}")]
    NoBmc(String, String),
    #[error("{0}: the console needs IPMI Serial-over-LAN; its BMC is set to Redfish")]
    Redfish(String),
    #[error("{MAX_CONSOLES} consoles are open on this member already")]
    TooMany,
    #[error(transparent)]
    Seats(#[from] SeatError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Log(#[from] conlog::LogError),
    #[error("starting the console thread: {0}")]
    Thread(std::io::Error),
}

/// Why keystrokes were not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    #[error("read-only: another client writes to this console")]
    ReadOnly,
    #[error("the console input is full; keystrokes dropped")]
    Full,
    #[error("the console has ended")]
    Ended,
}

/// What a client receives.
#[derive(Debug, Clone)]
pub enum Frame {
    /// Serial output.
    Output(Arc<[u8]>),
    /// The console session ended, and why.
    Ended(String),
}

/// One node's shared console.
struct Shared {
    node: String,
    fanout: broadcast::Sender<Frame>,
    backlog: Mutex<VecDeque<u8>>,
    /// Dropped (set to `None`) to end the session.
    keys: Mutex<Option<SyncSender<Vec<u8>>>>,
    seats: Mutex<Seats>,
    notices: Mutex<HashMap<ClientId, mpsc::Sender<String>>>,
}

/// The consoles of one member.
pub struct Hub {
    store: Arc<Store>,
    dial: super::client::Dial,
    state: PathBuf,
    linger: Duration,
    consoles: Mutex<HashMap<String, Arc<Shared>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these locks aborts the process (panic = "abort"), so a poisoned
    // lock cannot be observed; take the data anyway rather than propagate.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A client on a node's console. Dropping it leaves.
pub struct Client {
    hub: Arc<Hub>,
    shared: Arc<Shared>,
    pub id: ClientId,
    pub writer: bool,
    /// Output the console showed before this client came (up to the backlog's size).
    pub backlog: Vec<u8>,
    pub frames: broadcast::Receiver<Frame>,
    /// Notices for this client alone (its writer seat was taken over).
    pub notices: mpsc::Receiver<String>,
}

impl Client {
    /// Sends keystrokes to the node, if this client is the writer.
    pub fn type_in(&self, keys: &[u8]) -> Result<(), TypeError> {
        if !lock(&self.shared.seats).may_type(self.id) {
            return Err(TypeError::ReadOnly);
        }
        let keys_tx = lock(&self.shared.keys);
        let Some(tx) = keys_tx.as_ref() else {
            return Err(TypeError::Ended);
        };
        match tx.try_send(keys.to_vec()) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(TypeError::Full),
            Err(TrySendError::Disconnected(_)) => Err(TypeError::Ended),
        }
    }

    /// Whether this client still holds the writer's seat.
    pub fn is_writer(&self) -> bool {
        lock(&self.shared.seats).may_type(self.id)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        lock(&self.shared.notices).remove(&self.id);
        if !lock(&self.shared.seats).leave(self.id) {
            return;
        }
        let (hub, shared) = (self.hub.clone(), self.shared.clone());
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    tokio::time::sleep(hub.linger).await;
                    hub.close_if_empty(&shared);
                });
            }
            Err(_) => hub.close_if_empty(&shared),
        }
    }
}

impl Hub {
    pub fn new(store: Arc<Store>, dial: super::client::Dial, state: PathBuf) -> Arc<Hub> {
        Hub::with_linger(store, dial, state, LINGER)
    }

    pub fn with_linger(
        store: Arc<Store>,
        dial: super::client::Dial,
        state: PathBuf,
        linger: Duration,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            store,
            dial,
            state,
            linger,
            consoles: Mutex::new(HashMap::new()),
        })
    }

    /// The state directory (console logs live under it).
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state
    }

    /// Seats a client on `node`'s console, opening the console when it is not open. Reads
    /// the store: call it on the blocking pool. `who` names the client in notices.
    pub fn join(self: &Arc<Self>, node: &str, want: Want, who: &str) -> Result<Client, HubError> {
        let job = self.job(node)?;
        let mut consoles = lock(&self.consoles);
        let shared = match consoles.get(node) {
            Some(s) => s.clone(),
            None => {
                if consoles.len() >= MAX_CONSOLES {
                    return Err(HubError::TooMany);
                }
                let shared = self.open(job)?;
                consoles.insert(node.to_string(), shared.clone());
                shared
            }
        };
        drop(consoles);
        let Joined {
            id,
            writer,
            demoted,
        } = lock(&shared.seats).join(want)?;
        let (notice_tx, notices) = mpsc::channel(NOTICE_DEPTH);
        let mut by_client = lock(&shared.notices);
        if let Some(old) = demoted.and_then(|old| by_client.get(&old)) {
            // A full queue means that client is not reading: it learns from a refused key.
            let _ = old.try_send(format!(
                "{who} took over writing; this console is now read-only"
            ));
        }
        by_client.insert(id, notice_tx);
        drop(by_client);
        // Backlog and subscription under one lock: no output is missed or shown twice.
        let backlog = lock(&shared.backlog);
        let frames = shared.fanout.subscribe();
        let seen: Vec<u8> = backlog.iter().copied().collect();
        drop(backlog);
        Ok(Client {
            hub: self.clone(),
            shared,
            id,
            writer,
            backlog: seen,
            frames,
            notices,
        })
    }

    fn job(&self, node: &str) -> Result<Job, HubError> {
        let jobs = self
            .store
            .read(|r| -> Result<_, super::power::TargetError> {
                if r.get::<crate::store::model::Node>(node)?.is_none() {
                    return Ok(Vec::new());
                }
                super::power::resolve(r, &[node.to_string()])
            })
            .map_err(|e| match e {
                super::power::TargetError::Store(e) => HubError::Store(e),
                _ => HubError::NoNode(node.to_string()),
            })?;
        let Some(job) = jobs.into_iter().find(|j| j.node == node) else {
            return Err(HubError::NoNode(node.to_string()));
        };
        if job.via.protocol == BmcProtocol::Redfish {
            return Err(HubError::Redfish(node.to_string()));
        }
        if let Err(e) = &job.access {
            return Err(HubError::NoBmc(node.to_string(), e.to_string()));
        }
        Ok(job)
    }

    /// Starts `job`'s console thread.
    fn open(self: &Arc<Self>, job: Job) -> Result<Arc<Shared>, HubError> {
        let (keys_tx, keys_rx) = std::sync::mpsc::sync_channel(KEY_DEPTH);
        let (fanout, _) = broadcast::channel(FANOUT_DEPTH);
        let shared = Arc::new(Shared {
            node: job.node.clone(),
            fanout,
            backlog: Mutex::new(VecDeque::new()),
            keys: Mutex::new(Some(keys_tx)),
            seats: Mutex::new(Seats::default()),
            notices: Mutex::new(HashMap::new()),
        });
        let mut out = Out {
            shared: shared.clone(),
            store: self.store.clone(),
            log: conlog::Writer::new(&self.state, &job.node)?,
            boot: None,
        };
        let hub = self.clone();
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("console {}", job.node))
            .spawn(move || {
                let Ok(access) = &job.access else {
                    return;
                };
                tracing::info!(node = %Escaped(&job.node), bmc = %access.address(), "console opened");
                let ended = match super::console::attach(access, &hub.dial, &keys_rx, &mut out) {
                    Ok(()) => "closed".to_string(),
                    Err(e) => e.to_string(),
                };
                tracing::info!(node = %Escaped(&job.node), how = %Escaped(&ended), "console ended");
                hub.forget(&thread_shared);
                // No receivers: nobody is watching any more; nothing to tell.
                let _ = thread_shared.fanout.send(Frame::Ended(ended));
            })
            .map_err(HubError::Thread)?;
        Ok(shared)
    }

    /// Removes `shared` from the open consoles (if it is still the one there).
    fn forget(&self, shared: &Arc<Shared>) {
        let mut consoles = lock(&self.consoles);
        if consoles
            .get(&shared.node)
            .is_some_and(|s| Arc::ptr_eq(s, shared))
        {
            consoles.remove(&shared.node);
        }
        // Ends `attach` at its next look at the keystroke channel.
        lock(&shared.keys).take();
    }

    fn close_if_empty(&self, shared: &Arc<Shared>) {
        // Under the map's lock: a join in between either found the console (not empty) or
        // finds no console and opens a new one.
        let consoles = lock(&self.consoles);
        if !lock(&shared.seats).is_empty() {
            return;
        }
        drop(consoles);
        self.forget(shared);
    }

    /// The nodes whose consoles are open, for tests and status.
    pub fn open_consoles(&self) -> Vec<String> {
        lock(&self.consoles).keys().cloned().collect()
    }
}

/// Where `attach` writes the serial output: log, backlog, clients.
struct Out {
    shared: Arc<Shared>,
    store: Arc<Store>,
    log: conlog::Writer,
    /// The node's current boot and when it was looked up.
    boot: Option<(u64, Instant)>,
}

impl Out {
    fn boot_ms(&mut self) -> u64 {
        let now = Instant::now();
        match self.boot {
            Some((ms, at)) if now.duration_since(at) < BOOT_CHECK => ms,
            _ => {
                let node = &self.shared.node;
                let ms = match self.store.read(|r| r.get::<BootLog>(node)) {
                    Ok(log) => log
                        .and_then(|l| crate::timeline::last_boot(&l.events).first().cloned())
                        .map_or(0, |e| e.at_ms),
                    Err(e) => {
                        tracing::warn!(node = %Escaped(node), reason = %e, "console log: boot");
                        self.boot.map_or(0, |(ms, _)| ms)
                    }
                };
                self.boot = Some((ms, now));
                ms
            }
        }
    }
}

impl std::io::Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let boot = self.boot_ms();
        if let Err(e) = self.log.append(boot, buf) {
            // The console goes on for its watchers; the log has a hole, said once per write.
            tracing::warn!(node = %Escaped(&self.shared.node), reason = %e, "console log");
        }
        let mut backlog = lock(&self.shared.backlog);
        backlog.extend(buf);
        let extra = backlog.len().saturating_sub(BACKLOG);
        backlog.drain(..extra);
        // No receivers is fine: the console lingers with nobody watching.
        let _ = self.shared.fanout.send(Frame::Output(Arc::from(buf)));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
