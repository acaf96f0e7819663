//! Reads a drover iPXE boot script the way iPXE would for the boot-storm simulator
//! ([`super::simulate`]): settings expanded (`${mac}`, `${ip}`, ...), then the `kernel` and
//! `initrd` lines with their `||` fallbacks. Sans-IO: text and settings in, [`Boot`] out.
//!
//! Only what drover's own scripts use (`crate::http::ipxe`): `#!ipxe`, `echo`, `kernel`,
//! `initrd`, `boot`, `chain`, labels and `goto`. Not an iPXE interpreter: no `set`, no
//! `isset`/`iseq`, no menus, no image options beyond the kernel's command line.

use std::collections::BTreeMap;

/// Longest script accepted (drover's are a few hundred bytes).
pub const MAX_SCRIPT_BYTES: u64 = 64 * 1024;

/// What a boot script asks the firmware to fetch and run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot {
    /// The kernel's URLs, in the order to try them (the `||` fallbacks).
    pub kernel: Vec<String>,
    /// The kernel command line (settings expanded), from the first alternative.
    pub cmdline: String,
    /// The initrd's URLs, in the order to try them; empty when the script has none.
    pub initrd: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("not an iPXE script (no #!ipxe first line)")]
    NotIpxe,
    #[error("the script has no kernel line (a discovery or chain script?)")]
    NoKernel,
    #[error("a {0} line names no URL")]
    NoUrl(&'static str),
}

/// Replaces every `${name}` by its value in `settings`, and unknown names by nothing, as
/// iPXE does. An unclosed `${` is kept as text.
pub fn expand(text: &str, settings: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[i..]);
            return out;
        };
        if let Some(v) = settings.get(&after[..end]) {
            out.push_str(v);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The alternatives of one `CMD URL ARGS || CMD URL ARGS || goto failed` line: each
/// `(URL, ARGS)` whose command is `cmd`.
fn alternatives<'a>(line: &'a str, cmd: &str) -> Vec<(&'a str, &'a str)> {
    line.split("||")
        .filter_map(|alt| {
            let alt = alt.trim();
            let rest = alt.strip_prefix(cmd)?.strip_prefix(' ')?.trim_start();
            Some(rest.split_once(' ').unwrap_or((rest, "")))
        })
        .collect()
}

/// Reads the kernel and initrd of `script` after expanding `settings` in it.
pub fn parse(script: &str, settings: &BTreeMap<&str, String>) -> Result<Boot, ScriptError> {
    let mut lines = script.lines();
    if lines.next().map(str::trim) != Some("#!ipxe") {
        return Err(ScriptError::NotIpxe);
    }
    let mut kernel = None;
    let mut initrd = Vec::new();
    for line in lines.map(|l| expand(l.trim(), settings)) {
        if kernel.is_none() && line.starts_with("kernel ") {
            let alts = alternatives(&line, "kernel");
            let Some((_, args)) = alts.first() else {
                return Err(ScriptError::NoUrl("kernel"));
            };
            let cmdline = args.trim().to_string();
            let urls = alts.iter().map(|(u, _)| u.to_string()).collect();
            kernel = Some((urls, cmdline));
        } else if initrd.is_empty() && line.starts_with("initrd ") {
            initrd = alternatives(&line, "initrd")
                .iter()
                .map(|(u, _)| u.to_string())
                .collect();
            if initrd.is_empty() {
                return Err(ScriptError::NoUrl("initrd"));
            }
        }
    }
    let (kernel, cmdline) = kernel.ok_or(ScriptError::NoKernel)?;
    Ok(Boot {
        kernel,
        cmdline,
        initrd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ipxe::{boot_script, Also};
    use crate::store::model::{Image, Node};

    fn settings() -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("mac", "52:54:00:00:00:07".to_string()),
            ("ip", "198.18.0.107".to_string()),
            ("netmask", "255.255.255.0".to_string()),
            ("dns", "198.18.0.1".to_string()),
        ])
    }

    #[test]
    fn expands_known_settings_and_drops_unknown_ones() {
        let s = settings();
        assert_eq!(expand("a=${ip} g=${gateway}.", &s), "a=198.18.0.107 g=.");
        assert_eq!(expand("${mac}${mac}", &s), "52:54:00:00:00:07".repeat(2));
        assert_eq!(expand("open ${ip", &s), "open ${ip");
    }

    /// The script drover renders for a RAM-root node, read back as iPXE would.
    #[test]
    fn reads_drovers_own_script() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "name": "n7", "mac": "52:54:00:00:00:07", "image": "img"
        }))
        .unwrap();
        let file = serde_json::json!({ "blob": "0".repeat(64), "size": 1 });
        let image: Image = serde_json::from_value(serde_json::json!({
            "name": "img", "kernel": file, "initrd": null, "rootfs": file,
            "initramfs": file, "cmdline": "quiet"
        }))
        .unwrap();
        let servers = [
            "http://198.18.0.1".to_string(),
            "http://198.18.0.2:8080".into(),
        ];
        let text = boot_script(&node, &image, None, &servers, &Also::default(), 2049, None);
        let boot = parse(&text, &settings()).unwrap();
        assert_eq!(
            boot.kernel,
            [
                "http://198.18.0.1/images/img/kernel",
                "http://198.18.0.2:8080/images/img/kernel"
            ]
        );
        assert_eq!(
            boot.initrd,
            [
                "http://198.18.0.1/images/img/initramfs",
                "http://198.18.0.2:8080/images/img/initramfs"
            ]
        );
        let params = super::super::cmdline::parse(&boot.cmdline).unwrap();
        assert_eq!(params.node, "n7");
        assert_eq!(params.ip.to_string(), "198.18.0.107");
        assert_eq!(params.servers.len(), 2);
        assert_eq!(params.gw, None);
    }

    #[test]
    fn refuses_what_is_not_a_boot_script() {
        let s = settings();
        assert_eq!(parse("echo hi\n", &s), Err(ScriptError::NotIpxe));
        assert_eq!(
            parse("#!ipxe\nchain http://x/y\n", &s),
            Err(ScriptError::NoKernel)
        );
        assert_eq!(
            parse("#!ipxe\nkernel || goto failed\n", &s),
            Err(ScriptError::NoUrl("kernel"))
        );
    }
}
