//! Redfish power control: power on/off/soft/cycle/reset/status and the next boot device of a
//! node through its BMC's Redfish service over HTTPS, the counterpart of `crate::ipmi` for
//! BMCs that prefer Redfish.
//!
//! [`core`] is sans-IO (paths, request bodies, reading replies, the choice of `ResetType`);
//! [`client`] is the blocking HTTPS shell (certificate pinning on first use, session or
//! Basic authentication, one action per run). The BMC's address, user and password are the
//! node's IPMI BMC settings (`crate::ipmi::BmcAccess`).
//!
//! Not here: sensors, event logs, virtual media, chassis other than the first
//! ComputerSystem, sessions kept open between runs.

pub mod client;
pub mod core;
