//! Discovery and identity by location: what an unknown machine reports about itself
//! ([`inventory`]), what the switch port it is plugged into says ([`lldp`]), and the naming
//! rules that turn a place into a node name ([`rule`]).
//!
//! `lldp`, `inventory` and `rule` are pure (listed in `integration/sans_io.rs`); [`adopt`]
//! holds the store operations (report, adopt, rules). Not here: the agent's discovery mode
//! that gathers and posts the inventory (`crate::agent::discover`) and the boot path
//! endpoints (`crate::http::serve`).

pub mod adopt;
pub mod inventory;
pub mod lldp;
pub mod rule;
