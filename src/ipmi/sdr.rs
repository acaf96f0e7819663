//! Sensors and the System Event Log of a BMC, as bytes: the requests that read them (Reserve
//! SDR Repository, Get SDR, Get Sensor Reading, Get SEL Info, Get SEL Entry) and the decoding
//! of their answers into [`SensorRecord`], [`Reading`] and [`SelEntry`]. Pure: the shell
//! (`super::sensors`) runs the requests in a session and hands the answers here.
//!
//! Supported: full (type 1) and compact (type 2) sensor records; linear conversion of
//! threshold sensors (`y = (M x + B 10^Bexp) 10^Rexp`, unsigned, one's- and two's-complement
//! readings) with their threshold status; discrete sensors shown as their state bits; SEL
//! records of type 2 (system events) with the threshold event offsets named, OEM records as
//! hex. Not supported: non-linear sensors (shown raw, marked), event-only and other record
//! types (skipped), clearing or adding SEL entries, setting thresholds.
//! Every decoder checks the length before it reads; a short or malformed answer is a
//! [`SdrError`], never a panic.

use super::core::RawRequest;

const NETFN_SENSOR: u8 = 0x04;
const NETFN_STORAGE: u8 = 0x0a;
const CMD_GET_SENSOR_READING: u8 = 0x2d;
const CMD_RESERVE_SDR: u8 = 0x22;
const CMD_GET_SDR: u8 = 0x23;
const CMD_GET_SEL_INFO: u8 = 0x40;
const CMD_GET_SEL_ENTRY: u8 = 0x43;
/// The record id that asks for the first record, and the "no next record" mark.
pub const FIRST_RECORD: u16 = 0x0000;
pub const LAST_RECORD: u16 = 0xffff;
/// Bytes of an SDR header (record id, version, type, length).
pub const SDR_HEADER: usize = 5;
/// Bytes read per Get SDR: small enough for every BMC's message buffer (ipmitool reads 16 too).
pub const SDR_CHUNK: u8 = 16;
/// Bytes of one SEL record.
pub const SEL_RECORD: usize = 16;
/// Completion code: the SDR reservation was lost (someone changed the repository).
pub const CC_RESERVATION_LOST: u8 = 0xc5;

/// Why an answer could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdrError {
    #[error("short {0} answer")]
    Short(&'static str),
}

fn req(netfn: u8, cmd: u8, name: &'static str, data: &[u8]) -> RawRequest {
    // Invariant: every request built here has at most six data bytes (MAX_DATA is 8).
    RawRequest::new(netfn, cmd, name, data).expect("at most six data bytes")
}

pub fn reserve_sdr() -> RawRequest {
    req(
        NETFN_STORAGE,
        CMD_RESERVE_SDR,
        "Reserve SDR Repository",
        &[],
    )
}

/// Get SDR: `len` bytes of record `id` from `offset`, under `reservation`.
pub fn get_sdr(reservation: u16, id: u16, offset: u8, len: u8) -> RawRequest {
    let [r0, r1] = reservation.to_le_bytes();
    let [i0, i1] = id.to_le_bytes();
    req(
        NETFN_STORAGE,
        CMD_GET_SDR,
        "Get SDR",
        &[r0, r1, i0, i1, offset, len],
    )
}

pub fn get_sensor_reading(number: u8) -> RawRequest {
    req(
        NETFN_SENSOR,
        CMD_GET_SENSOR_READING,
        "Get Sensor Reading",
        &[number],
    )
}

pub fn get_sel_info() -> RawRequest {
    req(NETFN_STORAGE, CMD_GET_SEL_INFO, "Get SEL Info", &[])
}

/// Get SEL Entry: the whole record `id` (no reservation needed for a whole read).
pub fn get_sel_entry(id: u16) -> RawRequest {
    let [i0, i1] = id.to_le_bytes();
    req(
        NETFN_STORAGE,
        CMD_GET_SEL_ENTRY,
        "Get SEL Entry",
        &[0, 0, i0, i1, 0, SEL_RECORD as u8],
    )
}

fn u16_at(b: &[u8], at: usize, what: &'static str) -> Result<u16, SdrError> {
    match b.get(at..at + 2) {
        Some(&[lo, hi]) => Ok(u16::from_le_bytes([lo, hi])),
        _ => Err(SdrError::Short(what)),
    }
}

/// The reservation id of a Reserve SDR Repository answer.
pub fn parse_reservation(data: &[u8]) -> Result<u16, SdrError> {
    u16_at(data, 0, "Reserve SDR Repository")
}

/// A Get SDR answer: the next record's id and the bytes read.
pub fn parse_sdr_part(data: &[u8]) -> Result<(u16, &[u8]), SdrError> {
    Ok((u16_at(data, 0, "Get SDR")?, &data[2..]))
}

/// The record's total length (header included) from its first [`SDR_HEADER`] bytes.
pub fn record_len(header: &[u8]) -> Result<usize, SdrError> {
    header
        .get(4)
        .map(|l| SDR_HEADER + usize::from(*l))
        .ok_or(SdrError::Short("SDR header"))
}

/// How a threshold sensor's raw byte becomes a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conversion {
    /// Analog data format: 0 unsigned, 1 one's complement, 2 two's complement.
    format: u8,
    linear: bool,
    m: i32,
    b: i32,
    r_exp: i32,
    b_exp: i32,
}

impl Conversion {
    /// The value of raw byte `x`; `None` when the sensor is not linear or has no analog
    /// reading.
    pub fn value(&self, x: u8) -> Option<f64> {
        if !self.linear {
            return None;
        }
        let x = match self.format {
            0 => i32::from(x),
            1 if x & 0x80 != 0 => -i32::from(!x),
            1 => i32::from(x),
            2 => i32::from(x as i8),
            _ => return None,
        };
        let y = (f64::from(self.m * x) + f64::from(self.b) * 10f64.powi(self.b_exp))
            * 10f64.powi(self.r_exp);
        Some(y)
    }
}

/// One sensor from the SDR repository.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorRecord {
    pub record_id: u16,
    pub number: u8,
    pub owner: u8,
    pub lun: u8,
    pub sensor_type: u8,
    /// Event/reading type code: 0x01 threshold, else discrete.
    pub reading_type: u8,
    pub name: String,
    /// Set for full records of threshold sensors.
    pub conversion: Option<Conversion>,
    /// Base unit code (IPMI table 43-15).
    pub unit: u8,
}

/// Sign-extends the low `bits` bits of `v`.
fn signed(v: u32, bits: u32) -> i32 {
    let shift = 32 - bits;
    ((v << shift) as i32) >> shift
}

/// Decodes one whole record; `Ok(None)` for record types other than full and compact sensors.
pub fn parse_record(rec: &[u8]) -> Result<Option<SensorRecord>, SdrError> {
    let total = record_len(rec)?;
    if rec.len() < total {
        return Err(SdrError::Short("SDR record"));
    }
    let (name_at, full) = match rec[3] {
        0x01 => (47, true),
        0x02 => (31, false),
        _ => return Ok(None),
    };
    if total < name_at + 1 {
        return Err(SdrError::Short("sensor record"));
    }
    let name_len = usize::from(rec[name_at] & 0x1f);
    let name_bytes = rec
        .get(name_at + 1..(name_at + 1 + name_len).min(total))
        .unwrap_or_default();
    let name = name_bytes
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| {
            if b.is_ascii_graphic() || *b == b' ' {
                char::from(*b)
            } else {
                '?'
            }
        })
        .collect::<String>()
        .trim()
        .to_string();
    let conversion = (full && rec[13] == 0x01).then(|| Conversion {
        format: rec[20] >> 6,
        linear: rec[23] & 0x7f == 0,
        m: signed(u32::from(rec[24]) | (u32::from(rec[25] & 0xc0) << 2), 10),
        b: signed(u32::from(rec[26]) | (u32::from(rec[27] & 0xc0) << 2), 10),
        r_exp: signed(u32::from(rec[29] >> 4), 4),
        b_exp: signed(u32::from(rec[29] & 0x0f), 4),
    });
    Ok(Some(SensorRecord {
        record_id: u16::from_le_bytes([rec[0], rec[1]]),
        number: rec[7],
        owner: rec[5],
        lun: rec[6] & 0x03,
        sensor_type: rec[12],
        reading_type: rec[13],
        name,
        conversion,
        unit: rec[21],
    }))
}

/// A Get Sensor Reading answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub raw: u8,
    /// The BMC says it has no reading now (bit 5 of byte 2), or scanning is off.
    pub unavailable: bool,
    /// Threshold sensors: which thresholds are crossed; discrete: the state bits 0-14.
    pub states: u16,
}

pub fn parse_reading(data: &[u8]) -> Result<Reading, SdrError> {
    let (&raw, &flags) = match data {
        [raw, flags, ..] => (raw, flags),
        _ => return Err(SdrError::Short("Get Sensor Reading")),
    };
    let lo = data.get(2).copied().unwrap_or(0);
    let hi = data.get(3).copied().unwrap_or(0) & 0x7f;
    Ok(Reading {
        raw,
        unavailable: flags & 0x20 != 0 || flags & 0x40 == 0,
        states: u16::from_le_bytes([lo, hi]),
    })
}

/// The name of a sensor type (IPMI table 42-3), or its number.
pub fn sensor_type_name(t: u8) -> String {
    let name = match t {
        0x01 => "temperature",
        0x02 => "voltage",
        0x03 => "current",
        0x04 => "fan",
        0x05 => "intrusion",
        0x07 => "processor",
        0x08 => "power-supply",
        0x09 => "power-unit",
        0x0c => "memory",
        0x0d => "drive-slot",
        0x0f => "post-error",
        0x10 => "event-logging",
        0x12 => "system-event",
        0x13 => "critical-interrupt",
        0x14 => "button",
        0x1d => "boot-initiated",
        0x20 => "os-stop",
        0x23 => "watchdog",
        _ => return format!("type-{t:#04x}"),
    };
    name.to_string()
}

/// The symbol of a base unit (IPMI table 43-15), or its number.
pub fn unit_name(u: u8) -> String {
    let name = match u {
        0 => "",
        1 => "degrees C",
        2 => "degrees F",
        3 => "K",
        4 => "V",
        5 => "A",
        6 => "W",
        7 => "J",
        18 => "RPM",
        19 => "Hz",
        _ => return format!("unit-{u}"),
    };
    name.to_string()
}

/// A threshold sensor's status from its crossed thresholds: the worst one, or `ok`.
pub fn threshold_status(states: u16) -> &'static str {
    const NAMES: [(u16, &str); 6] = [
        (1 << 5, "upper-non-recoverable"),
        (1 << 2, "lower-non-recoverable"),
        (1 << 4, "upper-critical"),
        (1 << 1, "lower-critical"),
        (1 << 3, "upper-non-critical"),
        (1 << 0, "lower-non-critical"),
    ];
    NAMES
        .iter()
        .find(|(bit, _)| states & bit != 0)
        .map_or("ok", |(_, name)| name)
}

/// One line of `drover bmc sensors`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SensorValue {
    pub name: String,
    pub kind: String,
    /// The converted value, the state bits of a discrete sensor, or `na`.
    pub reading: String,
    pub unit: String,
    pub status: String,
}

/// Puts a record and its reading (`None`: the BMC refused the read) into a table line.
pub fn sensor_value(rec: &SensorRecord, reading: Option<Reading>) -> SensorValue {
    let kind = sensor_type_name(rec.sensor_type);
    let name = if rec.name.is_empty() {
        format!("sensor-{}", rec.number)
    } else {
        rec.name.clone()
    };
    let Some(r) = reading.filter(|r| !r.unavailable) else {
        return SensorValue {
            name,
            kind,
            reading: "na".into(),
            unit: String::new(),
            status: "unavailable".into(),
        };
    };
    match rec.conversion {
        Some(c) => match c.value(r.raw) {
            Some(v) => SensorValue {
                name,
                kind,
                reading: format_value(v),
                unit: unit_name(rec.unit),
                status: threshold_status(r.states).into(),
            },
            None => SensorValue {
                name,
                kind,
                reading: format!("raw {:#04x}", r.raw),
                unit: "non-linear".into(),
                status: threshold_status(r.states).into(),
            },
        },
        None => SensorValue {
            name,
            kind,
            reading: format!("{:#06x}", r.states),
            unit: "discrete".into(),
            status: "ok".into(),
        },
    }
}

/// A value with at most three decimals and no trailing zeros.
fn format_value(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

/// The number of entries of a Get SEL Info answer.
pub fn parse_sel_count(data: &[u8]) -> Result<u16, SdrError> {
    u16_at(data, 1, "Get SEL Info")
}

/// One SEL record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SelEntry {
    /// The record id (Redfish: the entry's `Id`).
    pub id: String,
    /// When, as the BMC's clock says: UTC, or seconds since the BMC started, or `-`.
    pub time: String,
    pub sensor: String,
    pub event: String,
}

/// A Get SEL Entry answer: the next record's id and the record.
pub fn parse_sel_entry(data: &[u8]) -> Result<(u16, SelEntry), SdrError> {
    let next = u16_at(data, 0, "Get SEL Entry")?;
    let rec = data
        .get(2..2 + SEL_RECORD)
        .ok_or(SdrError::Short("Get SEL Entry"))?;
    let id = u16::from_le_bytes([rec[0], rec[1]]).to_string();
    let time = sel_time(u32::from_le_bytes([rec[3], rec[4], rec[5], rec[6]]));
    let entry = match rec[2] {
        0x02 => {
            let deassert = rec[12] & 0x80 != 0;
            let event_type = rec[12] & 0x7f;
            let offset = rec[13] & 0x0f;
            let what = if event_type == 0x01 {
                threshold_event(offset).to_string()
            } else {
                format!("event type {event_type:#04x} offset {offset}")
            };
            SelEntry {
                id,
                time,
                sensor: format!("{} #{}", sensor_type_name(rec[10]), rec[11]),
                event: format!(
                    "{what} {}",
                    if deassert { "deasserted" } else { "asserted" }
                ),
            }
        }
        t => SelEntry {
            id,
            time: if (0xc0..=0xdf).contains(&t) {
                time
            } else {
                "-".into()
            },
            sensor: format!("oem-{t:#04x}"),
            event: rec[3..].iter().map(|b| format!("{b:02x}")).collect(),
        },
    };
    Ok((next, entry))
}

/// A SEL timestamp: seconds since 1970 from 0x20000000 on, below that seconds since the BMC
/// started (IPMI v2.0 section 37), 0xffffffff unspecified.
fn sel_time(t: u32) -> String {
    match t {
        0xffff_ffff => "-".into(),
        0x2000_0000.. => {
            let mut s = crate::timeline::format_utc(u64::from(t) * 1000);
            s.truncate(s.len() - 4);
            s
        }
        _ => format!("bmc-start+{t}s"),
    }
}

/// The threshold event offsets (IPMI table 42-2).
fn threshold_event(offset: u8) -> &'static str {
    match offset {
        0x00 => "lower non-critical going low",
        0x01 => "lower non-critical going high",
        0x02 => "lower critical going low",
        0x03 => "lower critical going high",
        0x04 => "lower non-recoverable going low",
        0x05 => "lower non-recoverable going high",
        0x06 => "upper non-critical going low",
        0x07 => "upper non-critical going high",
        0x08 => "upper critical going low",
        0x09 => "upper critical going high",
        0x0a => "upper non-recoverable going low",
        0x0b => "upper non-recoverable going high",
        _ => "threshold event",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full record as ipmi_sim's examples give it: "CPU Temp", sensor 1, degrees C,
    /// M = 1, B = 0, unsigned.
    fn full_record(m: u8, b: u8, exps: u8, format: u8) -> Vec<u8> {
        let mut r = vec![
            0x01,
            0x00,
            0x51,
            0x01,
            0x00, // header; length below
            0x20,
            0x00,
            0x01,
            0x03,
            0x01,
            0x67,
            0x68,
            0x01,
            0x01, // key, entity, type 1/1
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00, // masks
            format << 6,
            0x01,
            0x00,
            0x00,
            m,
            0x00,
            b,
            0x00,
            0x00,
            exps, // units .. exps
            0x00,
            0x00,
            0x00,
            0x00,
            0xff,
            0x00, // analog
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00,
            0x00, // thr .. oem
        ];
        let name = b"CPU Temp";
        r.push(0xc0 | name.len() as u8);
        r.extend_from_slice(name);
        r[4] = (r.len() - SDR_HEADER) as u8;
        r
    }

    #[test]
    fn full_record_converts_linear_readings() {
        let rec = parse_record(&full_record(1, 0, 0, 0)).unwrap().unwrap();
        assert_eq!(rec.name, "CPU Temp");
        assert_eq!(rec.number, 1);
        assert_eq!(rec.sensor_type, 0x01);
        let reading = parse_reading(&[0x2d, 0x40, 0x00]).unwrap();
        let v = sensor_value(&rec, Some(reading));
        assert_eq!(
            (v.reading.as_str(), v.unit.as_str(), v.status.as_str()),
            ("45", "degrees C", "ok")
        );
        // M = 2, B = 5 with Bexp 1 and Rexp -1: (2 x + 50) / 10.
        let rec = parse_record(&full_record(2, 5, 0xf1, 0)).unwrap().unwrap();
        assert_eq!(sensor_value(&rec, Some(reading)).reading, "14");
        // Two's complement: 0xf6 is -10; upper critical crossed.
        let rec = parse_record(&full_record(1, 0, 0, 2)).unwrap().unwrap();
        let v = sensor_value(&rec, parse_reading(&[0xf6, 0x40, 0x18]).ok());
        assert_eq!(
            (v.reading.as_str(), v.status.as_str()),
            ("-10", "upper-critical")
        );
        // Scanning off or "reading unavailable": na.
        let v = sensor_value(&rec, parse_reading(&[0x10, 0x60]).ok());
        assert_eq!(
            (v.reading.as_str(), v.status.as_str()),
            ("na", "unavailable")
        );
    }

    #[test]
    fn short_and_other_records() {
        let full = full_record(1, 0, 0, 0);
        for cut in 0..full.len() {
            assert!(parse_record(&full[..cut]).is_err(), "cut at {cut}");
        }
        let mut other = full.clone();
        other[3] = 0x12;
        assert_eq!(parse_record(&other), Ok(None));
        // A length byte that claims less than the name needs: a short record.
        let mut bad = full;
        bad[4] = 10;
        assert!(parse_record(&bad).is_err());
        assert!(parse_reading(&[1]).is_err());
        assert!(parse_sdr_part(&[1]).is_err());
    }

    #[test]
    fn sel_entries_decode() {
        let mut data = vec![0x05, 0x00];
        data.extend_from_slice(&[
            0x04, 0x00, 0x02, 0x10, 0x20, 0x30, 0x40, 0x20, 0x00, 0x04, 0x01, 0x07, 0x01, 0x59,
            0x00, 0x00,
        ]);
        let (next, e) = parse_sel_entry(&data).unwrap();
        assert_eq!(next, 5);
        assert_eq!(e.id, "4");
        assert_eq!(e.time, "2004-02-16 01:42:40");
        assert_eq!(e.sensor, "temperature #7");
        assert_eq!(e.event, "upper critical going high asserted");
        data[2 + 12] = 0x81;
        assert!(parse_sel_entry(&data)
            .unwrap()
            .1
            .event
            .ends_with("deasserted"));
        data[2 + 2] = 0xe0;
        assert_eq!(parse_sel_entry(&data).unwrap().1.sensor, "oem-0xe0");
        assert!(parse_sel_entry(&data[..17]).is_err());
        assert_eq!(parse_sel_count(&[0x51, 0x03, 0x00]), Ok(3));
    }

    #[test]
    fn requests_carry_their_fields() {
        let r = get_sdr(0x1234, 0x0005, 16, 16);
        assert_eq!((r.netfn, r.cmd), (NETFN_STORAGE, CMD_GET_SDR));
        assert_eq!(r.data(), [0x34, 0x12, 0x05, 0x00, 16, 16]);
        assert_eq!(get_sensor_reading(7).data(), [7]);
        assert_eq!(get_sel_entry(0x0102).data(), [0, 0, 2, 1, 0, 16]);
    }
}
