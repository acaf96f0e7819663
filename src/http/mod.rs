//! The HTTP side of the boot path: iPXE scripts rendered from the store (`/boot/{mac}`),
//! image files with Range support and streaming (`/images/{name}/{file}`), the embedded iPXE
//! binaries (`/firmware/{name}`) and a health check.
//!
//! `ipxe` and `range` are pure (no I/O); `serve` is the axum shell. Not here yet: the admin
//! API, the web page, authentication, metrics (they come with the API issue).

pub mod ipxe;
pub mod range;
pub mod serve;
