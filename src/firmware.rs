//! The iPXE binaries that drover hands to PXE firmware, embedded into the binary at build
//! time from `firmware/ipxe/` (filled by `firmware/fetch` from Debian's `ipxe` package).
//!
//! This module only looks files up by name; which file a client gets is the DHCP core's
//! decision, and serving them is the TFTP and HTTP shells' job.

use std::borrow::Cow;

#[derive(rust_embed::RustEmbed)]
#[folder = "firmware/ipxe/"]
struct Embedded;

/// The bytes of the embedded firmware file `name` (e.g. `undionly.kpxe`), if there is one.
pub fn get(name: &str) -> Option<Cow<'static, [u8]>> {
    Embedded::get(name).map(|file| file.data)
}

/// Names of all embedded firmware files.
pub fn names() -> impl Iterator<Item = Cow<'static, str>> {
    Embedded::iter()
}
