//! Power actions on many nodes: target resolution (node, group, `node[001-064]`) against the
//! store, and the fan-out that runs the action per node on at most [`FanOut::max_sessions`]
//! threads (a session of its own per node in the CLI, the BMC's cached session in `drover
//! serve`: [`FanOut::cache`]), starting power-on (and cycle) at most [`FanOut::on_rate`]
//! nodes per second so a rack does not draw its inrush current at once.

use super::cache::SessionCache;
use super::client::{self, Dial, PowerError};
use super::core::{Answer, BootDevice, Command, Control};
use super::{BmcAccess, NoBmc};
use crate::store::model::{Bmc, Group, Node};
use crate::store::{Reader, StoreError};
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
}

/// The result of one node.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub node: String,
    /// `host:port`, or `-` when the node has no BMC settings.
    pub bmc: String,
    pub result: Result<Reply, Failure>,
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
        .into_iter()
        .map(|n| {
            Ok(Job {
                access: super::access(r, &n.name, n.group.as_deref())?,
                node: n.name,
            })
        })
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
            }
        }
    };
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
    }
}
