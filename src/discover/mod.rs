//! Discovery and identity by location: what an unknown machine reports about itself
//! ([`inventory`]), what the switch port it is plugged into says ([`lldp`]), and the naming
//! rules that turn a place into a node name ([`rule`]).
//!
//! Every module here is pure (listed in `integration/sans_io.rs`). Not here: the agent's
//! discovery mode that gathers and posts the inventory (`crate::agent::discover`), the boot
//! path endpoints (`crate::http::serve`) and the store writes of adoption (`crate::admin`).

pub mod inventory;
pub mod lldp;
pub mod rule;
