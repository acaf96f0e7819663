//! The wall clock, read in one place: Unix time in seconds or milliseconds.
//!
//! For shells only (serve loops, the API, the CLI, the store's write stamps). Pure modules
//! (`wire`, `core` and the other modules `integration/sans_io.rs` lists) never call this:
//! they take `now` as an argument, which is what makes them testable on virtual time.
//!
//! A clock set before 1970 reads as 0 rather than failing: every caller compares or stores
//! the value, and 0 is "long ago", which expires leases and ages records as they should.
//! Not here: monotonic time (`Instant`, used directly where a duration is measured).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is set before it).
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch (0 if the clock is set before it).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_milliseconds_agree() {
        let (s, ms) = (unix_secs(), unix_ms());
        // Read a moment apart: at most one second between them.
        assert!(ms / 1000 >= s && ms / 1000 - s <= 1, "{s} {ms}");
        // After 2020-01-01: the clock of any machine this runs on.
        assert!(s > 1_577_836_800);
    }
}
