//! The QEMU lab harness: a namespace with a bridge, VMs that network-boot on it, and the
//! reference boot server (dnsmasq) that proves the harness without drover.

#![allow(dead_code, unused_imports)]

pub mod bench;
pub mod drover;
pub mod lab;
pub mod pool;
pub mod reference;
pub mod vm;

pub use drover::DroverLab;
pub use lab::{Assets, Lab, BRIDGE, SERVER_IP};
pub use reference::Reference;
pub use vm::{field, Firmware, Medium, Vm};
