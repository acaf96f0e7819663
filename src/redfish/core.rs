//! Redfish, sans-IO: the paths drover asks for, the JSON bodies it sends, and the reading of
//! the JSON a BMC answers (service root, Systems collection, ComputerSystem, sessions,
//! errors) into typed values. Which `ResetType` a power action becomes is chosen here from
//! what the system offers in `ResetType@Redfish.AllowableValues`.
//!
//! Not here: HTTP, TLS, sessions' life cycle and certificate pinning (`super::client`); any
//! Redfish resource other than the first ComputerSystem (sensors and logs: `super::health`).

use serde_json::{json, Value};

/// The service root, asked for first (it needs no authentication).
pub const SERVICE_ROOT: &str = "/redfish/v1/";
/// Where a session is created (POST) and under which it is deleted.
pub const SESSIONS: &str = "/redfish/v1/SessionService/Sessions";

/// The next boot device, as Redfish names it in `Boot.BootSourceOverrideTarget`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootTarget {
    Pxe,
    Hdd,
    Cd,
    BiosSetup,
}

impl BootTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            BootTarget::Pxe => "Pxe",
            BootTarget::Hdd => "Hdd",
            BootTarget::Cd => "Cd",
            BootTarget::BiosSetup => "BiosSetup",
        }
    }
}

/// What to do with one system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The reset action with the first of these `ResetType`s the system offers (the
    /// constants below).
    Reset(&'static [&'static str]),
    /// Read `PowerState`.
    Status,
    /// Set the next boot device, once.
    Boot(BootTarget),
}

/// `ResetType`s of each power action, most faithful first.
pub const POWER_ON: &[&str] = &["On", "ForceOn"];
pub const POWER_OFF: &[&str] = &["ForceOff"];
pub const SOFT_OFF: &[&str] = &["GracefulShutdown"];
/// IPMI's cycle is off then on: PowerCycle says exactly that; a warm restart is the nearest
/// a system without it offers.
pub const CYCLE: &[&str] = &["PowerCycle", "ForceRestart"];
pub const HARD_RESET: &[&str] = &["ForceRestart"];

/// A reply that does not say what drover needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("the reply is not a JSON object")]
    NotJson,
    #[error("the reply has no {0}")]
    Missing(&'static str),
    #[error("the Systems collection is empty")]
    NoSystem,
    #[error("the system offers none of the reset types {wanted:?} (it offers {offered:?})")]
    NoResetType {
        wanted: &'static [&'static str],
        offered: Vec<String>,
    },
    #[error("unknown PowerState {0:?}")]
    PowerState(String),
}

fn object(body: &[u8]) -> Result<Value, ReplyError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(ReplyError::NotJson),
    }
}

fn link(v: &Value, field: &'static str) -> Result<String, ReplyError> {
    v.get(field)
        .and_then(|l| l.get("@odata.id"))
        .and_then(Value::as_str)
        .filter(|s| s.starts_with('/'))
        .map(str::to_string)
        .ok_or(ReplyError::Missing(field))
}

/// The path of the Systems collection, from the service root.
pub fn systems_link(root: &[u8]) -> Result<String, ReplyError> {
    link(&object(root)?, "Systems")
}

/// The path of the first member of a collection (a node's BMC manages one system).
pub fn first_member(collection: &[u8]) -> Result<String, ReplyError> {
    let v = object(collection)?;
    let members = v
        .get("Members")
        .and_then(Value::as_array)
        .ok_or(ReplyError::Missing("Members"))?;
    let first = members.first().ok_or(ReplyError::NoSystem)?;
    first
        .get("@odata.id")
        .and_then(Value::as_str)
        .filter(|s| s.starts_with('/'))
        .map(str::to_string)
        .ok_or(ReplyError::Missing("Members[0].@odata.id"))
}

/// What drover reads of a ComputerSystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct System {
    /// `PowerState`: on (`On`, `PoweringOn`, `Paused`) or off (`Off`, `PoweringOff`).
    pub power: bool,
    /// Where the reset action is POSTed.
    pub reset_target: String,
    /// `ResetType@Redfish.AllowableValues`; empty when the system does not list them.
    pub reset_types: Vec<String>,
    /// `Boot.BootSourceOverrideTarget`, when shown.
    pub boot_target: Option<String>,
}

/// Reads a ComputerSystem.
pub fn parse_system(body: &[u8]) -> Result<System, ReplyError> {
    let v = object(body)?;
    let state = v
        .get("PowerState")
        .and_then(Value::as_str)
        .ok_or(ReplyError::Missing("PowerState"))?;
    let power = match state {
        "On" | "PoweringOn" | "Paused" => true,
        "Off" | "PoweringOff" => false,
        other => return Err(ReplyError::PowerState(other.to_string())),
    };
    let reset = v
        .get("Actions")
        .and_then(|a| a.get("#ComputerSystem.Reset"))
        .ok_or(ReplyError::Missing("Actions.#ComputerSystem.Reset"))?;
    let reset_target = reset
        .get("target")
        .and_then(Value::as_str)
        .filter(|s| s.starts_with('/'))
        .ok_or(ReplyError::Missing("Actions.#ComputerSystem.Reset.target"))?
        .to_string();
    let reset_types = reset
        .get("ResetType@Redfish.AllowableValues")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let boot_target = v
        .get("Boot")
        .and_then(|b| b.get("BootSourceOverrideTarget"))
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(System {
        power,
        reset_target,
        reset_types,
        boot_target,
    })
}

/// The `ResetType` for `op` on `system`: the first of the action's preferences the system
/// offers, or the first preference when it lists none (the schema does not require the
/// list). `None`: `op` is not a reset.
pub fn reset_type(op: Op, system: &System) -> Result<Option<&'static str>, ReplyError> {
    let Op::Reset(wanted) = op else {
        return Ok(None);
    };
    let Some(first) = wanted.first() else {
        return Ok(None);
    };
    if system.reset_types.is_empty() {
        return Ok(Some(first));
    }
    wanted
        .iter()
        .find(|w| system.reset_types.iter().any(|o| o == *w))
        .map(|w| Some(*w))
        .ok_or_else(|| ReplyError::NoResetType {
            wanted,
            offered: system.reset_types.clone(),
        })
}

/// The body of the reset action.
pub fn reset_body(reset_type: &str) -> String {
    json!({ "ResetType": reset_type }).to_string()
}

/// The PATCH body that sets the next boot device, for one boot only.
pub fn boot_body(target: BootTarget) -> String {
    json!({
        "Boot": {
            "BootSourceOverrideTarget": target.as_str(),
            "BootSourceOverrideEnabled": "Once",
        }
    })
    .to_string()
}

/// The body that creates a session.
pub fn session_body(user: &str, password: &str) -> String {
    json!({ "UserName": user, "Password": password }).to_string()
}

/// The token of HTTP Basic authentication: base64 of `user:password` (RFC 7617).
pub fn basic_credentials(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let raw = format!("{user}:{password}");
    let mut out = String::with_capacity(raw.len().div_ceil(3) * 4);
    for chunk in raw.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The path of a session from the `Location` header (absolute URL or path) or, failing
/// that, the `@odata.id` of the created session's body.
pub fn session_path(location: Option<&str>, body: &[u8]) -> Option<String> {
    if let Some(loc) = location {
        let path = match loc.split_once("://") {
            Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
            None => loc,
        };
        if path.starts_with('/') {
            return Some(path.to_string());
        }
    }
    object(body)
        .ok()?
        .get("@odata.id")
        .and_then(Value::as_str)
        .filter(|s| s.starts_with('/'))
        .map(str::to_string)
}

/// The message of a Redfish error body (`error.message`, else the first extended info).
pub fn error_message(body: &[u8]) -> Option<String> {
    let v = object(body).ok()?;
    let err = v.get("error")?;
    let extended = err
        .get("@Message.ExtendedInfo")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(|m| m.get("Message"))
        .and_then(Value::as_str);
    extended
        .or_else(|| err.get("message").and_then(Value::as_str))
        .map(str::to_string)
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
