//! `drover bmc sensors|sel`: reads a node's sensors (walk the SDR repository, then Get Sensor
//! Reading per sensor record) or its System Event Log (Get SEL Info, then Get SEL Entry from
//! the first record to the last) in one IPMI session ([`client::Conn`]), blocking; the
//! requests and decoding are [`super::sdr`]'s. Redfish BMCs are read by
//! `crate::redfish::client::sensors` and `::sel`; [`read`] picks by the node's protocol.
//!
//! Bounded: at most [`MAX_RECORDS`] SDR records and [`MAX_SEL`] SEL entries, so a BMC whose
//! "next record" ids loop cannot keep the CLI forever. A sensor whose reading the BMC refuses
//! (a completion code) is shown as unavailable, not as a failed node.

use super::client::{Conn, Dial, PowerError};
use super::core::{Answer, Command, RawRequest};
use super::power::{Job, Via};
use super::sdr::{self, SdrError, SelEntry, SensorValue};
use crate::redfish::client::RedfishError;
use crate::store::model::BmcProtocol;
use std::time::Duration;

/// More sensor records than any server board has.
pub const MAX_RECORDS: usize = 1024;
/// More SEL entries than a BMC keeps (the SEL holds at most a few thousand).
pub const MAX_SEL: usize = 8192;
/// Times a lost SDR reservation is taken again before the walk gives up.
const RESERVE_TRIES: u32 = 3;
/// How long a Redfish request may take.
const REDFISH_TIMEOUT: Duration = Duration::from_secs(15);

/// Why reading sensors or the event log failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Ipmi(#[from] PowerError),
    #[error(transparent)]
    Redfish(#[from] RedfishError),
    #[error("the BMC sent a bad answer: {0}")]
    Decode(#[from] SdrError),
    #[error("the BMC answered {cmd} with completion code {cc:#04x}")]
    Refused { cmd: &'static str, cc: u8 },
    #[error("{0}")]
    NoBmc(String),
}

impl ReadError {
    /// The one-word class, as `drover power` names failures.
    pub fn class(&self) -> &'static str {
        match self {
            ReadError::Ipmi(e) => e.class(),
            ReadError::Redfish(e) => e.class(),
            ReadError::Decode(_) => "protocol",
            ReadError::Refused { .. } => "refused",
            ReadError::NoBmc(_) => "no-bmc",
        }
    }
}

/// What to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum What {
    Sensors,
    Sel,
}

/// What a node's BMC gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    Sensors(Vec<SensorValue>),
    Sel(Vec<SelEntry>),
}

/// Reads `what` from one node's BMC, over IPMI or Redfish as its records say (`auto` tries
/// Redfish's service root first, as `drover power` does).
pub fn read(job: &Job, dial: &Dial, what: What) -> Result<Found, ReadError> {
    let access = job
        .access
        .as_ref()
        .map_err(|e| ReadError::NoBmc(e.to_string()))?;
    let https = super::BmcAccess {
        port: job.via.port.unwrap_or(crate::redfish::client::DEFAULT_PORT),
        ..access.clone()
    };
    let redfish = match job.via.protocol {
        BmcProtocol::Ipmi => false,
        BmcProtocol::Redfish => true,
        BmcProtocol::Auto => {
            crate::redfish::client::probe(&https, job.via.pin, REDFISH_TIMEOUT).is_ok()
        }
    };
    if redfish {
        return read_redfish(&https, &job.via, what);
    }
    let mut conn = Conn::open(access, dial)?;
    let found = match what {
        What::Sensors => sensors(&mut conn).map(Found::Sensors),
        What::Sel => sel(&mut conn).map(Found::Sel),
    };
    // After a session error the session is gone; after a refusal or a bad answer it still
    // holds a slot on the BMC, so it is closed.
    if !matches!(found, Err(ReadError::Ipmi(_))) {
        conn.close();
    }
    found
}

fn read_redfish(https: &super::BmcAccess, via: &Via, what: What) -> Result<Found, ReadError> {
    use crate::redfish::client as rf;
    Ok(match what {
        What::Sensors => Found::Sensors(rf::sensors(https, via.pin, REDFISH_TIMEOUT)?),
        What::Sel => Found::Sel(rf::sel(https, via.pin, REDFISH_TIMEOUT)?),
    })
}

/// Runs one request; the completion code and data.
fn call(conn: &mut Conn, r: RawRequest) -> Result<(u8, Vec<u8>), PowerError> {
    let answers = conn.run(&[Command::Raw(r)])?;
    match answers.into_iter().next() {
        Some(Answer::Raw { cc, data }) => Ok((cc, data)),
        _ => Err(PowerError::Io("no answer to a raw request".into())),
    }
}

/// Runs one request that must succeed; its data.
fn call_ok(conn: &mut Conn, r: RawRequest) -> Result<Vec<u8>, ReadError> {
    match call(conn, r)? {
        (0, data) => Ok(data),
        (cc, _) => Err(ReadError::Refused { cmd: r.name, cc }),
    }
}

/// Reads one whole SDR record in [`sdr::SDR_CHUNK`] pieces; its bytes and the next id.
fn sdr_record(conn: &mut Conn, reservation: u16, id: u16) -> Result<(u16, Vec<u8>), ReadError> {
    let head = call_ok(
        conn,
        sdr::get_sdr(reservation, id, 0, sdr::SDR_HEADER as u8),
    )?;
    let (next, header) = sdr::parse_sdr_part(&head)?;
    let total = sdr::record_len(header)?;
    let mut rec = header.get(..sdr::SDR_HEADER).unwrap_or(header).to_vec();
    while rec.len() < total {
        // Offsets are one byte: a record is at most 5 + 255 bytes, so this fits.
        let offset = rec.len() as u8;
        let want = (total - rec.len()).min(usize::from(sdr::SDR_CHUNK)) as u8;
        let part = call_ok(conn, sdr::get_sdr(reservation, id, offset, want))?;
        let (_, bytes) = sdr::parse_sdr_part(&part)?;
        if bytes.is_empty() {
            return Err(SdrError::Short("Get SDR").into());
        }
        rec.extend_from_slice(&bytes[..bytes.len().min(total - rec.len())]);
    }
    Ok((next, rec))
}

/// Walks the SDR repository and reads every sensor it lists.
pub fn sensors(conn: &mut Conn) -> Result<Vec<SensorValue>, ReadError> {
    let mut out = Vec::new();
    let mut reservation = sdr::parse_reservation(&call_ok(conn, sdr::reserve_sdr())?)?;
    let mut id = sdr::FIRST_RECORD;
    let mut lost = 0;
    for _ in 0..MAX_RECORDS {
        let (next, rec) = match sdr_record(conn, reservation, id) {
            Err(ReadError::Refused {
                cc: sdr::CC_RESERVATION_LOST,
                ..
            }) if lost < RESERVE_TRIES => {
                lost += 1;
                reservation = sdr::parse_reservation(&call_ok(conn, sdr::reserve_sdr())?)?;
                continue;
            }
            other => other?,
        };
        if let Some(record) = sdr::parse_record(&rec)? {
            let reading = match call(conn, sdr::get_sensor_reading(record.number))? {
                (0, data) => sdr::parse_reading(&data).ok(),
                _ => None,
            };
            out.push(sdr::sensor_value(&record, reading));
        }
        if next == sdr::LAST_RECORD || next == id {
            break;
        }
        id = next;
    }
    Ok(out)
}

/// Reads the whole System Event Log, oldest first.
pub fn sel(conn: &mut Conn) -> Result<Vec<SelEntry>, ReadError> {
    let count = sdr::parse_sel_count(&call_ok(conn, sdr::get_sel_info())?)?;
    let mut out = Vec::new();
    if count == 0 {
        return Ok(out);
    }
    let mut id = sdr::FIRST_RECORD;
    for _ in 0..MAX_SEL {
        let (next, entry) = sdr::parse_sel_entry(&call_ok(conn, sdr::get_sel_entry(id))?)?;
        out.push(entry);
        if next == sdr::LAST_RECORD || next == id {
            break;
        }
        id = next;
    }
    Ok(out)
}

/// One node's result.
#[derive(Debug)]
pub struct NodeRead {
    pub node: String,
    pub result: Result<Found, ReadError>,
}

/// The results as JSON, one object per node: `{"node", "ok": true, "sensors"|"entries"}` or
/// `{"node", "ok": false, "class", "reason"}` (`drover bmc ... --json` and the API).
pub fn report(results: &[NodeRead]) -> Vec<serde_json::Value> {
    use serde_json::json;
    results
        .iter()
        .map(|r| match &r.result {
            Ok(Found::Sensors(s)) => json!({"node": r.node, "ok": true, "sensors": s}),
            Ok(Found::Sel(e)) => json!({"node": r.node, "ok": true, "entries": e}),
            Err(e) => json!({
                "node": r.node, "ok": false, "class": e.class(), "reason": e.to_string()
            }),
        })
        .collect()
}

/// Reads `what` from each job's BMC, `parallel` at a time; results in job order.
pub fn read_all(jobs: &[Job], dial: &Dial, what: What, parallel: usize) -> Vec<NodeRead> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..parallel.clamp(1, jobs.len().max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { return };
                let result = read(job, dial, what);
                let mut r = results.lock().unwrap_or_else(|e| e.into_inner());
                r.push((
                    i,
                    NodeRead {
                        node: job.node.clone(),
                        result,
                    },
                ));
            });
        }
    });
    let mut r = results.into_inner().unwrap_or_else(|e| e.into_inner());
    r.sort_by_key(|(i, _)| *i);
    r.into_iter().map(|(_, n)| n).collect()
}
