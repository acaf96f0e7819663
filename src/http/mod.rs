//! The HTTP side of the boot path: iPXE scripts rendered from the store (`/boot/{mac}`),
//! image files with Range support and streaming (`/images/{name}/{file}`), the embedded iPXE
//! binaries (`/firmware/{name}`) and a health check.
//!
//! `ipxe` and `range` are pure (no I/O); `serve` is the axum shell; `listen` accepts
//! connections under caps and timeouts. The admin API, the web
//! page and authentication live in `crate::api` and `crate::auth`; `serve` merges them into
//! the same listener.

pub mod discover;
pub mod files;
pub mod ipxe;
pub mod listen;
pub mod range;
pub mod serve;
pub mod service;
