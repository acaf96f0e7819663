//! drover: one binary that is the boot and management appliance of a cluster of diskless
//! nodes. See `ARCHITECTURE.md` for how the modules fit together.
//!
//! The library holds everything, the command line's commands too (`cli`); `src/main.rs`
//! only parses and dispatches. Protocol modules are
//! split into `wire` (bytes <-> typed messages), `core` (logic, no I/O, no clock) and `serve`
//! (the tokio shell).

#![deny(unsafe_code)]

pub mod admin;
pub mod agent;
pub mod api;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod config;
pub mod counters;
pub mod dhcp;
pub mod discover;
pub mod dns;
pub mod durable;
pub mod exec;
pub mod faults;
pub mod files;
pub mod firmware;
#[cfg(any(test, feature = "fuzz"))]
pub mod fuzz;
pub mod http;
pub mod image;
pub mod install;
pub mod ipmi;
pub mod lab;
pub mod labels;
pub mod logsafe;
pub mod net;
pub mod nfs;
pub mod ntp;
pub mod overrides;
pub mod pool;
pub mod redfish;
pub mod serve;
pub mod service;
pub mod store;
pub mod swarm;
pub mod tftp;
pub mod timeline;
pub mod tls;
pub mod usb;
