//! Fails the build early, with the command to run, when the iPXE binaries that drover embeds
//! have not been fetched into `firmware/ipxe/`.

use std::path::Path;

const REQUIRED: &[&str] = &["undionly.kpxe", "ipxe.efi", "snponly.efi"];

fn main() {
    println!("cargo:rerun-if-changed=firmware/ipxe");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("firmware/ipxe");
    let missing: Vec<&str> = REQUIRED
        .iter()
        .copied()
        .filter(|name| !dir.join(name).is_file())
        .collect();
    if !missing.is_empty() {
        panic!(
            "\n\nfirmware/ipxe/ lacks {}.\nRun `firmware/fetch` (it takes the iPXE binaries from \
             Debian's `ipxe` package) and build again.\n\n",
            missing.join(", ")
        );
    }
}
