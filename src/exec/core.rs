//! The pure part of `drover exec` and `drover cp`: what each node's run came to
//! ([`Outcome`]), folding identical outputs as `dshbak -c` does ([`fold`]), writing a list of
//! names as a compact range ([`compact`]) and the text report ([`render`]).
//!
//! It does NOT run anything: `super::run` starts the ssh client and hands its results here.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// ssh's own status for "could not connect or authenticate" (ssh(1), EXIT STATUS). A remote
/// command that itself exits 255 is reported as unreachable too: ssh gives no way to tell the
/// two apart, and pdsh and clush read it the same way.
pub const SSH_FAILED: i32 = 255;

/// How one node's run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    /// The command ran and exited with this status.
    Exited { status: i32 },
    /// The command was killed by a signal on this side (or the remote side).
    Signaled,
    /// No ssh session: the node has no address, ssh could not connect or log in, or it could
    /// not be started.
    Unreachable { reason: String },
    /// Still running at the per-node timeout; killed.
    TimedOut,
}

impl Outcome {
    /// What the ssh client's exit status means.
    pub fn from_status(code: Option<i32>, last_line: &str) -> Outcome {
        match code {
            Some(SSH_FAILED) => Outcome::Unreachable {
                reason: if last_line.is_empty() {
                    "ssh exited 255".into()
                } else {
                    last_line.to_string()
                },
            },
            Some(status) => Outcome::Exited { status },
            None => Outcome::Signaled,
        }
    }

    pub fn ok(&self) -> bool {
        matches!(self, Outcome::Exited { status: 0 })
    }
}

/// One node's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeResult {
    pub node: String,
    /// Standard output and error as they came, interleaved (lossy UTF-8).
    pub output: String,
    pub outcome: Outcome,
}

/// Nodes that printed the same bytes, with that output once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fold<'a> {
    pub nodes: Vec<&'a str>,
    pub output: &'a str,
}

/// Groups nodes by identical output, in the order each output first appears. Unreachable
/// nodes are left out: their ssh error goes into the summary.
pub fn fold(results: &[NodeResult]) -> Vec<Fold<'_>> {
    let mut out: Vec<Fold<'_>> = Vec::new();
    for r in results {
        if matches!(r.outcome, Outcome::Unreachable { .. }) {
            continue;
        }
        match out.iter_mut().find(|f| f.output == r.output) {
            Some(f) => f.nodes.push(&r.node),
            None => out.push(Fold {
                nodes: vec![&r.node],
                output: &r.output,
            }),
        }
    }
    out
}

/// Writes names as ranges where they share a prefix and a number width: `n01 n02 n03 n05 x`
/// becomes `n[01-03,05],x`. The inverse of `crate::ipmi::expand_range` for such names; other
/// names stay as they are. Order: first appearance of each prefix.
pub fn compact<S: AsRef<str>>(names: &[S]) -> String {
    // Each entry is a (prefix, width) family of numbers or a plain name, in first-seen order.
    let mut order: Vec<Result<(String, usize), String>> = Vec::new();
    let mut numbers: BTreeMap<(String, usize), Vec<u64>> = BTreeMap::new();
    for name in names {
        let name = name.as_ref();
        let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let (prefix, tail) = name.split_at(name.len() - digits);
        // A name that is all digits, or whose number is too long for u64, stays as it is.
        match tail.parse::<u64>() {
            Ok(n) if !prefix.is_empty() && digits <= 18 => {
                let key = (prefix.to_string(), digits);
                if !numbers.contains_key(&key) {
                    order.push(Ok(key.clone()));
                }
                numbers.entry(key).or_default().push(n);
            }
            _ if order.contains(&Err(name.to_string())) => {}
            _ => order.push(Err(name.to_string())),
        }
    }
    let mut parts = Vec::new();
    for entry in order {
        let key = match entry {
            Err(plain) => {
                parts.push(plain);
                continue;
            }
            Ok(key) => key,
        };
        let mut ns = numbers.remove(&key).unwrap_or_default();
        ns.sort_unstable();
        ns.dedup();
        let (prefix, width) = key;
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for n in ns {
            match runs.last_mut() {
                Some((_, hi)) if *hi + 1 == n => *hi = n,
                _ => runs.push((n, n)),
            }
        }
        let text: Vec<String> = runs
            .iter()
            .map(|&(lo, hi)| match lo == hi {
                true => format!("{lo:0width$}"),
                false => format!("{lo:0width$}-{hi:0width$}"),
            })
            .collect();
        parts.push(match runs.as_slice() {
            [(lo, hi)] if lo == hi => format!("{prefix}{}", text[0]),
            _ => format!("{prefix}[{}]", text.join(",")),
        });
    }
    parts.join(",")
}

/// Splits a TARGET argument at the commas outside brackets: `n[1,3],gpu` is `n[1,3]` and
/// `gpu` (the form [`compact`] writes).
pub fn split_targets(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    out.push(cur);
    out.retain(|t| !t.is_empty());
    out
}

/// The report: each fold under a header naming its nodes, then the summary of statuses.
pub fn render(results: &[NodeResult]) -> String {
    let mut s = String::new();
    for f in fold(results) {
        let _ = writeln!(s, "---------------- {}", compact(&f.nodes));
        s.push_str(f.output);
        if !f.output.is_empty() && !f.output.ends_with('\n') {
            s.push('\n');
        }
    }
    s.push_str(&summary(results));
    s
}

/// One line per kind of ending: which nodes succeeded, failed (by status), timed out or could
/// not be reached (with why).
pub fn summary(results: &[NodeResult]) -> String {
    let mut ok = Vec::new();
    let mut failed: BTreeMap<i32, Vec<&str>> = BTreeMap::new();
    let mut other: Vec<(&str, &str)> = Vec::new();
    let mut unreachable: Vec<(&str, &str)> = Vec::new();
    for r in results {
        match &r.outcome {
            Outcome::Exited { status: 0 } => ok.push(r.node.as_str()),
            Outcome::Exited { status } => failed.entry(*status).or_default().push(&r.node),
            Outcome::Signaled => other.push((&r.node, "killed by a signal")),
            Outcome::TimedOut => other.push((&r.node, "timed out")),
            Outcome::Unreachable { reason } => unreachable.push((&r.node, reason)),
        }
    }
    let mut s = String::from("================\n");
    if !ok.is_empty() {
        let _ = writeln!(s, "ok ({}): {}", ok.len(), compact(&ok));
    }
    for (status, nodes) in &failed {
        let _ = writeln!(
            s,
            "failed, status {status} ({}): {}",
            nodes.len(),
            compact(nodes)
        );
    }
    for (node, why) in other {
        let _ = writeln!(s, "failed: {node}: {why}");
    }
    for (node, why) in unreachable {
        let _ = writeln!(s, "unreachable: {node}: {why}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(node: &str, output: &str, outcome: Outcome) -> NodeResult {
        NodeResult {
            node: node.into(),
            output: output.into(),
            outcome,
        }
    }

    const OK: Outcome = Outcome::Exited { status: 0 };

    #[test]
    fn compact_ranges() {
        assert_eq!(compact(&["n01", "n02", "n03", "n05"]), "n[01-03,05]");
        assert_eq!(compact(&["n3", "n1", "n2"]), "n[1-3]");
        assert_eq!(compact(&["a1", "login", "a2", "b7"]), "a[1-2],login,b7");
        assert_eq!(compact(&["n1", "n1"]), "n1");
        assert_eq!(compact(&["n01", "n1", "n02"]), "n[01-02],n1");
        assert_eq!(compact(&["r1n1", "r1n2"]), "r1n[1-2]");
        assert_eq!(compact(&["123"]), "123");
        assert_eq!(compact::<&str>(&[]), "");
        // Every compacted list expands back to the names it came from.
        let names = ["node008", "node009", "node010", "node012"];
        let again = crate::ipmi::expand_range(&compact(&names)).unwrap();
        assert_eq!(again, names);
    }

    #[test]
    fn targets_split_outside_brackets() {
        assert_eq!(split_targets("n[1,3],gpu,,x"), ["n[1,3]", "gpu", "x"]);
        assert_eq!(split_targets("a"), ["a"]);
        assert!(split_targets("").is_empty());
    }

    #[test]
    fn folds_identical_output_and_keeps_order() {
        let results = [
            r("n1", "same\n", OK),
            r("n2", "other\n", OK),
            r("n3", "same\n", OK),
            r("n4", "", Outcome::Unreachable { reason: "x".into() }),
        ];
        let f = fold(&results);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].nodes, ["n1", "n3"]);
        assert_eq!(f[0].output, "same\n");
        assert_eq!(f[1].nodes, ["n2"]);
    }

    #[test]
    fn report_and_summary() {
        let results = [
            r("n1", "hi\n", OK),
            r("n2", "hi\n", OK),
            r("n3", "boom", Outcome::Exited { status: 3 }),
            r(
                "n4",
                "",
                Outcome::Unreachable {
                    reason: "refused".into(),
                },
            ),
            r("n5", "", Outcome::TimedOut),
        ];
        let text = render(&results);
        assert_eq!(
            text,
            "---------------- n[1-2]\nhi\n---------------- n3\nboom\n\
             ---------------- n5\n================\nok (2): n[1-2]\n\
             failed, status 3 (1): n3\nfailed: n5: timed out\nunreachable: n4: refused\n"
        );
    }

    #[test]
    fn ssh_status_classes() {
        assert_eq!(
            Outcome::from_status(Some(255), "Connection refused"),
            Outcome::Unreachable {
                reason: "Connection refused".into()
            }
        );
        assert_eq!(
            Outcome::from_status(Some(1), ""),
            Outcome::Exited { status: 1 }
        );
        assert_eq!(Outcome::from_status(None, ""), Outcome::Signaled);
        assert!(Outcome::from_status(Some(0), "").ok());
    }
}
