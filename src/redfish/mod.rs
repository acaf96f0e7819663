//! Redfish power control: power on/off/soft/cycle/reset/status and the next boot device of a
//! node through its BMC's Redfish service over HTTPS, the counterpart of `crate::ipmi` for
//! BMCs that prefer Redfish.
//!
//! [`core`] is sans-IO (paths, request bodies, reading replies, the choice of `ResetType`);
//! [`client`] is the blocking HTTPS shell (certificate pinning on first use, session or
//! Basic authentication, one action per run). The BMC's address, user and password are the
//! node's IPMI BMC settings (`crate::ipmi::BmcAccess`).
//!
//! [`health`] (sans-IO) reads sensors (`Thermal`, `Power` of the first chassis) and the
//! event log (the first manager's `SEL` log service) for `drover bmc sensors|sel`.
//!
//! Not here: virtual media, chassis other than the first, the newer `Sensors` collection,
//! sessions kept open between runs.

pub mod client;
pub mod core;
pub mod health;
