//! Fails the build early, with the command to run, when the iPXE binaries that drover embeds
//! have not been fetched into `firmware/ipxe/`.

use std::path::Path;

const REQUIRED: &[&str] = &["undionly.kpxe", "ipxe.efi", "snponly.efi"];

fn main() {
    println!("cargo:rerun-if-changed=firmware/ipxe");
    // Read when the script runs, not when it is compiled: a build script compiled for one
    // checkout may be reused by cargo for another at a different path.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let dir = Path::new(&manifest).join("firmware/ipxe");
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
