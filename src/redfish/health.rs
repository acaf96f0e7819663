//! Redfish sensors and event log, sans-IO: the links to follow (service root -> Chassis ->
//! the first chassis -> `Thermal` and `Power`; service root -> Managers -> the first manager
//! -> `LogServices` -> the `SEL` service, else the first -> `Entries`) and the reading of
//! their JSON into the same rows IPMI gives ([`SensorValue`], [`SelEntry`]).
//!
//! Read: `Temperatures` (`ReadingCelsius`), `Fans` (`Reading` + `ReadingUnits`), `Voltages`
//! (`ReadingVolts`), `PowerControl` (`PowerConsumedWatts`), each with `Status.Health`; log
//! entries with `Id`, `Created`, `SensorType` and `Message`. Not read: the newer
//! `Sensors` collection, thresholds, entries beyond the first page (`Members@odata.nextLink`).

use super::core::ReplyError;
use crate::ipmi::sdr::{SelEntry, SensorValue};
use serde_json::Value;

fn object(body: &[u8]) -> Result<Value, ReplyError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(ReplyError::NotJson),
    }
}

/// The path of `field`'s `@odata.id`, when the resource links it.
fn optional_link(v: &Value, field: &str) -> Option<String> {
    v.get(field)
        .and_then(|l| l.get("@odata.id"))
        .and_then(Value::as_str)
        .filter(|s| s.starts_with('/'))
        .map(str::to_string)
}

/// The link `field` of a resource.
pub fn link(body: &[u8], field: &'static str) -> Result<String, ReplyError> {
    optional_link(&object(body)?, field).ok_or(ReplyError::Missing(field))
}

/// The link `field` of a resource, `None` when it has none (a chassis without `Power`).
pub fn maybe_link(body: &[u8], field: &str) -> Result<Option<String>, ReplyError> {
    Ok(optional_link(&object(body)?, field))
}

/// The log service to read from a LogServices collection: the one whose path ends in `SEL`
/// (what BMCs call the IPMI event log), else the first.
pub fn sel_service(collection: &[u8]) -> Result<String, ReplyError> {
    let v = object(collection)?;
    let paths: Vec<&str> = v
        .get("Members")
        .and_then(Value::as_array)
        .ok_or(ReplyError::Missing("Members"))?
        .iter()
        .filter_map(|m| m.get("@odata.id").and_then(Value::as_str))
        .filter(|p| p.starts_with('/'))
        .collect();
    paths
        .iter()
        .find(|p| p.trim_end_matches('/').ends_with("SEL"))
        .or(paths.first())
        .map(|p| p.to_string())
        .ok_or(ReplyError::Missing("Members[0].@odata.id"))
}

fn text<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get(field).and_then(Value::as_str)
}

/// A number as IPMI's rows show it: at most three decimals.
fn number(v: &Value) -> Option<String> {
    let n = v.as_f64()?;
    let s = format!("{n:.3}");
    Some(s.trim_end_matches('0').trim_end_matches('.').to_string())
}

fn health(v: &Value) -> String {
    let status = v.get("Status");
    match status.and_then(|s| text(s, "State")) {
        Some("Absent") => return "absent".into(),
        Some("Disabled") => return "unavailable".into(),
        _ => {}
    }
    status
        .and_then(|s| text(s, "Health"))
        .map_or("unknown".into(), |h| h.to_ascii_lowercase())
}

/// Rows of the array `field`: each entry's `Name`, its `reading` field and `unit`.
fn rows(v: &Value, field: &str, kind: &str, reading: &str, unit: Option<&str>) -> Vec<SensorValue> {
    let Some(items) = v.get(field).and_then(Value::as_array) else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| {
            let value = item.get(reading).and_then(number);
            let unit = unit
                .map(str::to_string)
                .or_else(|| text(item, "ReadingUnits").map(str::to_string))
                .unwrap_or_default();
            SensorValue {
                name: text(item, "Name")
                    .or_else(|| text(item, "MemberId"))
                    .unwrap_or("-")
                    .to_string(),
                kind: kind.to_string(),
                status: if value.is_some() {
                    health(item)
                } else {
                    "unavailable".into()
                },
                reading: value.unwrap_or_else(|| "na".into()),
                unit,
            }
        })
        .collect()
}

/// The sensors of a `Thermal` resource.
pub fn thermal(body: &[u8]) -> Result<Vec<SensorValue>, ReplyError> {
    let v = object(body)?;
    let mut out = rows(
        &v,
        "Temperatures",
        "temperature",
        "ReadingCelsius",
        Some("degrees C"),
    );
    out.extend(rows(&v, "Fans", "fan", "Reading", None));
    Ok(out)
}

/// The sensors of a `Power` resource.
pub fn power(body: &[u8]) -> Result<Vec<SensorValue>, ReplyError> {
    let v = object(body)?;
    let mut out = rows(&v, "Voltages", "voltage", "ReadingVolts", Some("V"));
    out.extend(rows(
        &v,
        "PowerControl",
        "power",
        "PowerConsumedWatts",
        Some("W"),
    ));
    Ok(out)
}

/// The entries of a LogEntry collection, in the order given.
pub fn entries(body: &[u8]) -> Result<Vec<SelEntry>, ReplyError> {
    let v = object(body)?;
    let members = v
        .get("Members")
        .and_then(Value::as_array)
        .ok_or(ReplyError::Missing("Members"))?;
    Ok(members
        .iter()
        .map(|e| SelEntry {
            id: text(e, "Id").unwrap_or("-").to_string(),
            time: text(e, "Created").unwrap_or("-").to_string(),
            sensor: text(e, "SensorType").unwrap_or("-").to_string(),
            event: text(e, "Message").unwrap_or("-").to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thermal_and_power_rows() {
        let body = br#"{"Temperatures":[{"Name":"CPU Temp","ReadingCelsius":41,
            "Status":{"State":"Enabled","Health":"OK"}},{"Name":"Gone","Status":{"State":"Absent"}}],
            "Fans":[{"Name":"Fan 1","Reading":2100,"ReadingUnits":"RPM",
            "Status":{"Health":"Warning"}}]}"#;
        let rows = thermal(body).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (
                rows[0].name.as_str(),
                rows[0].reading.as_str(),
                rows[0].unit.as_str()
            ),
            ("CPU Temp", "41", "degrees C")
        );
        assert_eq!(rows[0].status, "ok");
        assert_eq!(
            (rows[1].reading.as_str(), rows[1].status.as_str()),
            ("na", "unavailable")
        );
        assert_eq!(
            (rows[2].unit.as_str(), rows[2].status.as_str()),
            ("RPM", "warning")
        );
        let p = power(br#"{"Voltages":[{"Name":"12V","ReadingVolts":12.125}]}"#).unwrap();
        assert_eq!(p[0].reading, "12.125");
        assert!(thermal(b"[]").is_err());
    }

    #[test]
    fn log_links_and_entries() {
        let c = br#"{"Members":[{"@odata.id":"/redfish/v1/Managers/1/LogServices/Log"},
            {"@odata.id":"/redfish/v1/Managers/1/LogServices/SEL"}]}"#;
        assert_eq!(
            sel_service(c).unwrap(),
            "/redfish/v1/Managers/1/LogServices/SEL"
        );
        assert_eq!(
            link(br#"{"Entries":{"@odata.id":"/x/Entries"}}"#, "Entries").unwrap(),
            "/x/Entries"
        );
        assert_eq!(maybe_link(br#"{"Id":"1"}"#, "Power"), Ok(None));
        let e = entries(
            br#"{"Members":[{"Id":"7","Created":"2024-01-02T03:04:05Z",
            "SensorType":"Temperature","Message":"CPU hot"}]}"#,
        )
        .unwrap();
        assert_eq!(e[0].id, "7");
        assert_eq!(e[0].event, "CPU hot");
        assert!(entries(b"{}").is_err());
    }
}
