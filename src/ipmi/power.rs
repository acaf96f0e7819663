//! Power actions on many nodes: target resolution (node, group, `node[001-064]`) against the
//! store, and the fan-out that runs the action per node on at most [`FanOut::max_sessions`]
//! threads (a session of its own per node in the CLI, the BMC's cached session in `drover
//! serve`: [`FanOut::cache`]), starting power-on (and cycle) at most [`FanOut::on_rate`]
//! nodes per second so a rack does not draw its inrush current at once.
//!
//! Each job says how its BMC is spoken to ([`Via`]): IPMI, Redfish (`crate::redfish`), or
//! auto (Redfish when the BMC answers its service root, else IPMI); results carry the same
//! failure classes either way. A Redfish certificate seen for the first time comes back in
//! [`Outcome::learned_pin`], and [`remember_pins`] keeps it in the node's BMC record.

use super::cache::SessionCache;
use super::client::{self, Dial, PowerError};
use super::core::{Answer, BootDevice, Command, Control};
use super::{BmcAccess, NoBmc};
use crate::redfish::client::{self as redfish, RedfishError};
use crate::redfish::core::{self as rf, BootTarget, Op};
use crate::store::model::{Bmc, BmcOwner, BmcProtocol, Group, Node};
use crate::store::{Reader, StoreError, Writer};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to do with each node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    On,
    Off,
    Soft,
    Cycle,
    Reset,
    Status,
    Bootdev(BootDevice),
}

impl Action {
    fn commands(self) -> Vec<Command> {
        match self {
            Action::On => vec![Command::ChassisControl(Control::On)],
            Action::Off => vec![Command::ChassisControl(Control::Off)],
            Action::Soft => vec![Command::ChassisControl(Control::Soft)],
            Action::Cycle => vec![Command::ChassisControl(Control::Cycle)],
            Action::Reset => vec![Command::ChassisControl(Control::Reset)],
            Action::Status => vec![Command::ChassisStatus],
            Action::Bootdev(d) => vec![Command::SetBootDevice(d), Command::GetBootDevice],
        }
    }

    /// Whether this action powers nodes up (and so is paced).
    fn draws_inrush(self) -> bool {
        matches!(self, Action::On | Action::Cycle)
    }

    fn describe(self, answers: &[Answer]) -> String {
        match (self, answers) {
            (Action::Status, [Answer::Power(on)]) => if *on { "on" } else { "off" }.into(),
            (Action::Bootdev(_), [Answer::Done, Answer::BootDevice(d)]) => {
                format!("next boot: {d}")
            }
            (Action::On, _) => "power on sent".into(),
            (Action::Off, _) => "power off sent".into(),
            (Action::Soft, _) => "soft shutdown sent".into(),
            (Action::Cycle, _) => "power cycle sent".into(),
            (Action::Reset, _) => "reset sent".into(),
            _ => "done".into(),
        }
    }
}

/// One node to act on.
#[derive(Debug, Clone)]
pub struct Job {
    pub node: String,
    pub access: Result<BmcAccess, NoBmc>,
    pub via: Via,
}

/// How a node's BMC is spoken to, from its BMC records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Via {
    pub protocol: BmcProtocol,
    /// The port the records give (`None`: the protocol's own, 623 or 443).
    pub port: Option<u16>,
    /// The pinned fingerprint of the BMC's HTTPS certificate.
    pub pin: Option<[u8; 32]>,
}

impl Via {
    fn from_records(own: Option<&Bmc>, group: Option<&Bmc>) -> Via {
        let pick = |f: fn(&Bmc) -> Option<BmcProtocol>| own.and_then(f).or(group.and_then(f));
        Via {
            protocol: pick(|b| b.protocol).unwrap_or_default(),
            port: own.and_then(|b| b.port).or(group.and_then(|b| b.port)),
            pin: own
                .and_then(|b| b.tls_pin.as_deref())
                .and_then(crate::tls::parse_fingerprint),
        }
    }
}

/// How long a Redfish request may take (each of the few a run makes).
const REDFISH_TIMEOUT: Duration = Duration::from_secs(15);

/// The result of one node.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub node: String,
    /// `host:port`, or `-` when the node has no BMC settings.
    pub bmc: String,
    pub result: Result<Reply, Failure>,
    /// The fingerprint of a Redfish BMC's certificate seen for the first time (no pin yet).
    pub learned_pin: Option<[u8; 32]>,
}

/// A successful action: what to show, and the power state when it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    pub power: Option<bool>,
}

/// A failed action: its class (timeout, authentication, unreachable, ...) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: &'static str,
    pub reason: String,
}

impl From<&RedfishError> for Failure {
    fn from(e: &RedfishError) -> Failure {
        Failure {
            class: e.class(),
            reason: e.to_string(),
        }
    }
}

impl From<&PowerError> for Failure {
    fn from(e: &PowerError) -> Failure {
        Failure {
            class: e.class(),
            reason: e.to_string(),
        }
    }
}

/// How sessions are spread out.
#[derive(Debug, Clone)]
pub struct FanOut {
    pub max_sessions: usize,
    /// Power-on starts per second; 0 = no pacing.
    pub on_rate: f64,
    pub dial: Dial,
    /// `drover serve`'s open sessions, reused across requests; `None`: a session per
    /// request (the CLI).
    pub cache: Option<Arc<SessionCache>>,
}

/// Why targets did not resolve.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    BadRange(String),
    #[error("unknown node or group {0:?}")]
    Unknown(String),
    #[error("no targets given")]
    Empty,
}

/// Resolves TARGET arguments to jobs, in order, each node once.
pub fn resolve(r: &Reader<'_>, targets: &[String]) -> Result<Vec<Job>, TargetError> {
    pick_nodes(r, targets)?
        .iter()
        .map(|n| Ok(job(r, n)?))
        .collect()
}

/// Resolves TARGET arguments (nodes, groups, ranges like `node[001-064]`) to nodes, in order,
/// each node once; `drover power` and `drover exec` share it.
pub fn pick_nodes(r: &Reader<'_>, targets: &[String]) -> Result<Vec<Node>, TargetError> {
    let nodes = r.all::<Node>()?;
    let mut groups: BTreeSet<String> = r.all::<Group>()?.into_iter().map(|g| g.name).collect();
    groups.extend(nodes.iter().filter_map(|n| n.group.clone()));
    groups.extend(r.all::<Bmc>()?.into_iter().filter_map(|b| match b.owner {
        crate::store::model::BmcOwner::Group(g) => Some(g),
        crate::store::model::BmcOwner::Node(_) => None,
    }));
    let mut picked: Vec<Node> = Vec::new();
    let mut seen = BTreeSet::new();
    for t in targets {
        for name in super::expand_range(t).map_err(TargetError::BadRange)? {
            if let Some(n) = nodes.iter().find(|n| n.name == name) {
                if seen.insert(n.name.clone()) {
                    picked.push(n.clone());
                }
            } else if groups.contains(&name) {
                for n in nodes.iter().filter(|n| n.group.as_deref() == Some(&name)) {
                    if seen.insert(n.name.clone()) {
                        picked.push(n.clone());
                    }
                }
            } else {
                return Err(TargetError::Unknown(name));
            }
        }
    }
    if picked.is_empty() {
        return Err(TargetError::Empty);
    }
    Ok(picked)
}

/// The job of one node, from its BMC record and its group's.
pub fn job(r: &Reader<'_>, n: &Node) -> Result<Job, StoreError> {
    let own = r.get::<Bmc>(&BmcOwner::Node(n.name.clone()).key())?;
    let grp = match &n.group {
        Some(g) => r.get::<Bmc>(&BmcOwner::Group(g.clone()).key())?,
        None => None,
    };
    Ok(Job {
        node: n.name.clone(),
        access: super::merge(own.as_ref(), grp.as_ref()),
        via: Via::from_records(own.as_ref(), grp.as_ref()),
    })
}

/// Runs `action` on every job; results come back in job order.
pub fn run_all(jobs: &[Job], action: Action, fan: &FanOut) -> Vec<Outcome> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; jobs.len()]);
    let pace = (action.draws_inrush() && fan.on_rate > 0.0)
        .then(|| Duration::from_secs_f64(1.0 / fan.on_rate));
    let next_start = Mutex::new(Instant::now());
    let workers = fan.max_sessions.clamp(1, jobs.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else {
                    return;
                };
                if let Some(step) = pace {
                    let start = {
                        let mut slot = next_start.lock().unwrap_or_else(|e| e.into_inner());
                        let start = (*slot).max(Instant::now());
                        *slot = start + step;
                        start
                    };
                    std::thread::sleep(start.saturating_duration_since(Instant::now()));
                }
                let outcome = run_one(job, action, fan);
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(outcome);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .zip(jobs)
        .map(|(o, job)| {
            // Every index below jobs.len() was taken by exactly one worker.
            o.unwrap_or_else(|| Outcome {
                node: job.node.clone(),
                bmc: "-".into(),
                result: Err(Failure {
                    class: "internal",
                    reason: "not run".into(),
                }),
                learned_pin: None,
            })
        })
        .collect()
}

/// Runs `action` on one node (blocking).
pub fn run_one(job: &Job, action: Action, fan: &FanOut) -> Outcome {
    let access = match &job.access {
        Ok(a) => a,
        Err(e) => {
            return Outcome {
                node: job.node.clone(),
                bmc: "-".into(),
                result: Err(Failure {
                    class: "no-bmc",
                    reason: e.to_string(),
                }),
                learned_pin: None,
            }
        }
    };
    let https = BmcAccess {
        port: job.via.port.unwrap_or(redfish::DEFAULT_PORT),
        ..access.clone()
    };
    match job.via.protocol {
        BmcProtocol::Ipmi => {}
        BmcProtocol::Redfish => return run_redfish(job, &https, action),
        BmcProtocol::Auto => {
            // The service root at the given port (else 443); IPMI at the same given port
            // (else 623) when it does not answer.
            if redfish::probe(&https, job.via.pin, REDFISH_TIMEOUT).is_ok() {
                return run_redfish(job, &https, action);
            }
        }
    }
    let commands = action.commands();
    let result = match &fan.cache {
        Some(cache) => cache.run(access, &fan.dial, &commands),
        None => client::run(access, &fan.dial, &commands),
    }
    .map(|answers| Reply {
        text: action.describe(&answers),
        power: answers.iter().find_map(|a| match a {
            Answer::Power(on) => Some(*on),
            _ => None,
        }),
    })
    .map_err(|e| Failure::from(&e));
    if let Err(f) = &result {
        tracing::debug!(node = %job.node, bmc = %access.address(), reason = %f.reason, "power action failed");
    }
    Outcome {
        node: job.node.clone(),
        bmc: access.address(),
        result,
        learned_pin: None,
    }
}

/// Runs `action` on one node's BMC over Redfish at `https`.
fn run_redfish(job: &Job, https: &BmcAccess, action: Action) -> Outcome {
    let op = match action {
        Action::On => Op::Reset(rf::POWER_ON),
        Action::Off => Op::Reset(rf::POWER_OFF),
        Action::Soft => Op::Reset(rf::SOFT_OFF),
        Action::Cycle => Op::Reset(rf::CYCLE),
        Action::Reset => Op::Reset(rf::HARD_RESET),
        Action::Status => Op::Status,
        Action::Bootdev(BootDevice::Pxe) => Op::Boot(BootTarget::Pxe),
        Action::Bootdev(BootDevice::Disk) => Op::Boot(BootTarget::Hdd),
        Action::Bootdev(other) => {
            return Outcome {
                node: job.node.clone(),
                bmc: https.address(),
                result: Err(Failure {
                    class: "unsupported",
                    reason: format!("boot device {other} has no Redfish counterpart here"),
                }),
                learned_pin: None,
            }
        }
    };
    let result = redfish::run(https, job.via.pin, op, REDFISH_TIMEOUT);
    if let Err(e) = &result {
        let bmc = https.address();
        tracing::debug!(node = %job.node, %bmc, reason = %e, "Redfish action failed");
    }
    Outcome {
        node: job.node.clone(),
        bmc: format!("https://{}", https.address()),
        learned_pin: match &result {
            Ok(done) if job.via.pin.is_none() => Some(done.fingerprint),
            _ => None,
        },
        result: result
            .map(|done| Reply {
                text: done.text,
                power: done.power,
            })
            .map_err(|e| Failure::from(&e)),
    }
}

/// Keeps the certificates first seen in `outcomes` as the pins of the nodes' BMC records (a
/// pin set meanwhile by another run is left as it is). Returns how many were kept.
pub fn remember_pins(w: &mut Writer<'_, '_>, outcomes: &[Outcome]) -> Result<usize, StoreError> {
    let mut kept = 0;
    for o in outcomes {
        let Some(fp) = o.learned_pin else { continue };
        let owner = BmcOwner::Node(o.node.clone());
        let mut bmc = w
            .get::<Bmc>(&owner.key())?
            .unwrap_or_else(|| Bmc::empty(owner));
        if bmc.tls_pin.is_none() {
            bmc.tls_pin = Some(crate::tls::format_fingerprint(&fp));
            w.put(&bmc)?;
            kept += 1;
        }
    }
    Ok(kept)
}
