//! Boot progress read off a VM's serial console, for `drover lab status`: the furthest
//! phase the console shows, and the last line it printed. Pure: the text is an argument.
//!
//! Not here: reading the log file (`super::cmd`), drover's own boot timeline (the store's
//! boot events, `drover node events`).

/// Boot phases in the order they happen; each is recognised by what firmware, iPXE or the
/// kernel print.
pub const PHASES: &[(&str, &[&str])] = &[
    ("firmware", &["SeaBIOS", "BdsDxe", "UEFI"]),
    (
        "ipxe",
        &["iPXE initialising", "Open Source Network Boot Firmware"],
    ),
    ("dhcp", &["Configuring (net"]),
    ("fetch", &["http://"]),
    ("kernel", &["Linux version"]),
    ("init", &["as init process"]),
    ("marker", &["DROVER-BOOT-OK", "DROVER-RAMROOT-OK"]),
];

/// The furthest phase seen in `console` (`None`: nothing recognisable yet).
pub fn phase(console: &str) -> Option<&'static str> {
    PHASES
        .iter()
        .rev()
        .find(|(_, marks)| marks.iter().any(|m| console.contains(m)))
        .map(|(name, _)| *name)
}

/// The last non-empty line of `console`, without escape sequences and carriage returns,
/// cut to `max` characters.
pub fn last_line(console: &str, max: usize) -> String {
    let line = console
        .split('\n')
        .map(clean)
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default();
    line.trim().chars().take(max).collect()
}

/// The last `n` lines of `console`, cleaned.
pub fn tail(console: &str, n: usize) -> String {
    let lines: Vec<String> = console.split('\n').map(clean).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Drops ANSI escape sequences (firmware draws with them) and carriage returns.
pub fn clean(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    // A CSI sequence ends with a byte in '@'..='~'.
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_furthest_phase_wins() {
        assert_eq!(phase(""), None);
        let text = "SeaBIOS (version 1.16)\r\niPXE initialising devices...\n\
                    Configuring (net0 52:54:00:1a:b0:01)...... ok\n\
                    http://198.18.0.1/boot/52:54:00:1a:b0:01... ok\n";
        assert_eq!(phase(text), Some("fetch"));
        let text = format!("{text}[    0.000000] Linux version 6.1\nDROVER-BOOT-OK node=n1\n");
        assert_eq!(phase(&text), Some("marker"));
    }

    #[test]
    fn lines_are_cleaned() {
        let text = "first\n\x1b[2J\x1b[01;01Hsecond line\r\n\n";
        assert_eq!(last_line(text, 80), "second line");
        assert_eq!(last_line(text, 3), "sec");
        assert_eq!(tail(text, 3), "second line\n\n");
        assert_eq!(last_line("", 10), "");
    }
}
