//! Client strings made safe to log: [`Escaped`] writes a string the way `char::escape_debug`
//! does (newlines, carriage returns, tabs, quotes, backslashes and non-printable characters as
//! escapes), cut to [`MAX_CHARS`] characters, so a user name, event detail or file name sent
//! by a client can neither forge log lines nor flood the log.
//!
//! Not here: deciding what is attacker-controlled (each log call site wraps what it logs),
//! escaping for other sinks (HTTP bodies, the web page).

use std::fmt;

/// Characters of a client string written at most; the rest is summarised by its length.
pub const MAX_CHARS: usize = 256;

/// A client string for a log field: `tracing::warn!(user = %Escaped(&user), ...)`.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.char_indices();
        for (_, c) in chars.by_ref().take(MAX_CHARS) {
            write!(f, "{}", c.escape_debug())?;
        }
        if let Some((at, _)) = chars.next() {
            write!(f, "...[{} more bytes]", self.0.len() - at)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_long_strings_cut() {
        let shown = Escaped("ops\n2026-01-01T00:00:00Z  INFO drover: forged\r\t\u{1b}[31m\u{7f}")
            .to_string();
        assert!(
            !shown.contains(['\n', '\r', '\t', '\u{1b}', '\u{7f}']),
            "{shown}"
        );
        assert_eq!(
            shown,
            "ops\\n2026-01-01T00:00:00Z  INFO drover: forged\\r\\t\\u{1b}[31m\\u{7f}"
        );
        assert_eq!(Escaped("n1 \"x\" é").to_string(), "n1 \\\"x\\\" é");
        assert_eq!(Escaped("").to_string(), "");
        let exact = "a".repeat(MAX_CHARS);
        assert_eq!(Escaped(&exact).to_string(), exact);
        let long = format!("{exact}ééé");
        assert_eq!(
            Escaped(&long).to_string(),
            format!("{exact}...[6 more bytes]")
        );
    }
}
