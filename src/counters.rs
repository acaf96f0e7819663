//! The counters of the running protocol servers, for `/metrics`: each server's shell keeps its
//! own `Stats` (relaxed atomics); `drover serve` registers them here per service and interface,
//! and the metrics endpoint reads them all at scrape time.
//!
//! Not here: rendering (`api::metrics`), counting itself (each service's `Stats`).

use std::sync::{Arc, Mutex, OnceLock};

/// A source of named counters.
pub trait Counters: Send + Sync {
    /// `(name, value)` pairs, every counter including zeros, in a stable order.
    fn counters(&self) -> Vec<(String, u64)>;
}

/// One registered counter set.
#[derive(Clone)]
pub struct Entry {
    /// `dhcp`, `tftp`, `dns`, `ntp`.
    pub service: &'static str,
    /// The interface (or `all`).
    pub iface: String,
    pub source: Arc<dyn Counters>,
}

fn registry() -> &'static Mutex<Vec<Entry>> {
    static REGISTRY: OnceLock<Mutex<Vec<Entry>>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

/// Adds a counter set (a server that restarts registers again; the old set stays with its
/// final values).
pub fn register(service: &'static str, iface: &str, source: Arc<dyn Counters>) {
    if let Ok(mut r) = registry().lock() {
        r.push(Entry {
            service,
            iface: iface.to_string(),
            source,
        });
    }
}

/// Every registered set.
pub fn entries() -> Vec<Entry> {
    registry().lock().map(|r| r.clone()).unwrap_or_default()
}

/// The fields of a serialisable snapshot of plain counters, as `(name, value)` pairs.
pub fn fields_of(snapshot: &impl serde::Serialize) -> Vec<(String, u64)> {
    match serde_json::to_value(snapshot) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.as_u64()?)))
            .collect(),
        _ => Vec::new(),
    }
}
