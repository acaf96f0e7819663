//! TFTP server for the first boot stage: PXE ROMs and UEFI firmware fetch iPXE
//! (`undionly.kpxe`, `ipxe.efi`, `snponly.efi`) and other small files from here.
//!
//! Supported: RFC 1350 read requests in octet and netascii mode, RFC 2347 option negotiation
//! (OACK), RFC 2348 `blksize` (clamped to a configured maximum), RFC 2349 `tsize` and
//! `timeout`, RFC 7440 `windowsize`, block-number rollover past 65535 for large files.
//! Not supported: write requests (answered with ERROR 2 "read-only server"), the multicast
//! option (RFC 2090), netascii for `tsize` (not answered in that mode), IPv6.
//!
//! Why an own core and not a crate: `async-tftp` is tokio-only and owns its socket loop, so
//! the smoltcp lab network could not reuse it, and its file access model would have to be
//! bent for the embedded firmware; `tftp-server` (2019) is synchronous and has no options.
//! TFTP is small enough that an own sans-IO core is less code than adapting either, and it
//! lets the same transfer logic run over kernel sockets and over smoltcp.
//!
//! Layout and data flow:
//! - [`wire`]: datagram bytes <-> [`wire::Packet`]; length-checked, no panics.
//! - [`core`]: [`core::dispatch`] decides per request on the listening port (serve, refuse,
//!   drop) and cleans the path; [`core::Transfer`] is the per-transfer state machine
//!   (windows, retransmission, rollover), fed with packets, virtual time and file bytes.
//! - [`serve`]: the tokio shell: the listening socket, one task per transfer on its own
//!   socket (the server TID), file lookup (embedded firmware first, then the root
//!   directories) with the checks that keep every request inside its roots, counters.

pub mod core;
pub mod serve;
pub mod wire;
