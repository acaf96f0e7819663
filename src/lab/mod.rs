//! `drover lab`: QEMU VMs that boot through drover on a user-space network, as an ordinary
//! user (no root, no taps, no bridges, no namespaces).
//!
//! - [`switch`]: the L2 switch's forwarding decision and MAC learning (pure).
//! - [`segment`]: the switch's tokio shell; QEMU joins over a unix stream socket.
//! - [`stack`]: drover's address on the segment (smoltcp), with sockets the services' shells
//!   take as they are.
//!
//! Not here: the protocols (their own modules run unchanged on the lab's sockets).

pub mod segment;
pub mod stack;
pub mod switch;
