//! The house rule of STYLE.md §1, checked: pure modules (every `wire.rs` and `core.rs`, and
//! the others listed in [`PURE`]) do no I/O and read neither the clock nor the OS's
//! randomness. Time, randomness, identity and store snapshots are arguments.
//!
//! How: a small tokenizer drops comments, strings and `#[cfg(test)]` items (tests may use
//! temporary files and real time), then every `use` tree (groups, `self`, renames, globs) is
//! expanded into full paths and every path in the code is resolved through those imports,
//! `crate::`, `self::` and `super::`. A resolved path is refused if it reaches a forbidden
//! part of std or a forbidden crate ([`forbidden_external`]); a path into this crate must
//! land in another pure module or on an item of [`DATA_ITEMS`] (re-exports in `mod.rs`
//! files are followed). The self-tests at the end plant violations and check they are found.
//!
//! Not checked: macros from other crates that expand to I/O, or a value of an allowed type
//! whose method does I/O. The scanner is not a Rust parser; it is enough for our code and
//! errs on the side of reporting.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Pure modules with other names than `wire.rs`/`core.rs` (paths under `src/`), and why they
/// are pure.
const PURE: &[(&str, &str)] = &[
    ("nfs/xdr.rs", "XDR codec over byte slices"),
    (
        "nfs/rpc.rs",
        "ONC RPC record and call framing over byte slices",
    ),
    (
        "nfs/state.rs",
        "NFSv4 client, open and lock state tables on virtual time",
    ),
    (
        "nfs/vfs.rs",
        "the Vfs trait and its types: the boundary the core talks to",
    ),
    ("nfs/memvfs.rs", "an in-memory Vfs for the core's tests"),
    (
        "dhcp/share.rs",
        "which clients and addresses a pool member answers for; pure arithmetic",
    ),
    (
        "pool/membership.rs",
        "foca (SWIM) driven with time and a seeded rng passed in",
    ),
    (
        "pool/shares.rs",
        "recomputes DHCP shares from the roster and liveness",
    ),
    (
        "pool/peers.rs",
        "the live members announced to clients, from the roster",
    ),
    (
        "pool/floating.rs",
        "who holds the service address: a decision from inputs and now",
    ),
    ("pool/summary.rs", "summary messages and their merge table"),
    (
        "pool/report.rs",
        "replication exchange bookkeeping on times passed in",
    ),
    ("pool/show.rs", "renders a pool status as text"),
    (
        "store/hlc.rs",
        "hybrid logical clock advanced with the wall time passed in",
    ),
    ("store/model.rs", "the stored records: plain data types"),
    ("http/range.rs", "HTTP Range header parsing"),
    ("http/ipxe.rs", "renders iPXE scripts from records"),
    (
        "agent/cmdline.rs",
        "parses the kernel command line given as a string",
    ),
    (
        "ipmi/crypto.rs",
        "RMCP+ key derivation, integrity and confidentiality over buffers",
    ),
];

/// Modules that look pure by name or role but are not, and why: kept here so the list above
/// is a decision, not an oversight. The test checks that each file still exists.
const NOT_PURE: &[(&str, &str)] = &[
    (
        "pool/sync.rs",
        "computes digests by reading the Store (heed)",
    ),
    (
        "pool/facts.rs",
        "gathers facts from the Store and the blob directory (std::fs)",
    ),
    (
        "pool/key.rs",
        "reads and writes the cluster key file, generates it from OsRng",
    ),
    ("pool/layers.rs", "ships NFS layers over TCP (tokio)"),
    ("pool/replication.rs", "the replication connections (tokio)"),
    (
        "store/view.rs",
        "loads itself from the Store (heed); its View type is data",
    ),
    (
        "nfs/ids.rs",
        "stamps object ids into files (xattrs) and seeds from OsRng",
    ),
    (
        "ipmi/cache.rs",
        "a session cache on Instant::now and live connections",
    ),
    (
        "ipmi/power.rs",
        "drives BMCs over the network with pacing sleeps",
    ),
];

/// Items of impure modules that pure modules may name: data types, no I/O in what the pure
/// modules use of them. A crate path (without `crate::`) is allowed if it starts with one of
/// these.
const DATA_ITEMS: &[(&str, &str)] = &[
    (
        "store::view::View",
        "a snapshot of the store, read by field",
    ),
    ("store::view::ImageRef", "part of View"),
    (
        "pool::key::ClusterKey",
        "key material; seals and opens buffers",
    ),
    (
        "pool::serve::Status",
        "pool status data (to move out of the shell, issue 13)",
    ),
    (
        "pool::serve::MemberStatus",
        "pool status data (to move out of the shell, issue 13)",
    ),
    (
        "pool::serve::ServiceAddress",
        "pool status data (to move out of the shell, issue 13)",
    ),
    ("pool::sync::MAX_ROWS", "a named limit"),
];

/// Address types: the only part of `std::net` a pure module may use.
const NET_DATA: &[&str] = &[
    "IpAddr",
    "Ipv4Addr",
    "Ipv6Addr",
    "SocketAddr",
    "SocketAddrV4",
    "SocketAddrV6",
    "AddrParseError",
];

/// Identifiers that are OS randomness wherever they appear.
const RANDOM_IDENTS: &[&str] = &[
    "OsRng",
    "ThreadRng",
    "thread_rng",
    "from_entropy",
    "from_os_rng",
    "try_from_os_rng",
    "getrandom",
];

/// Crates a pure module never uses.
const IO_CRATES: &[&str] = &[
    "tokio",
    "tokio_util",
    "heed",
    "libc",
    "socket2",
    "nix",
    "mio",
    "axum",
    "hyper",
    "getrandom",
    "tracing_subscriber",
];

/// Why a resolved external path (std or another crate) is forbidden, if it is.
fn forbidden_external(path: &[String]) -> Option<&'static str> {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let (root, rest) = p.split_first()?;
    if IO_CRATES.contains(root) {
        return Some("an I/O crate");
    }
    if matches!(
        p.as_slice(),
        ["rand", "rng" | "thread_rng" | "random", ..] | ["rand" | "rand_core", "rngs", "OsRng", ..]
    ) {
        return Some("OS randomness");
    }
    if !matches!(*root, "std" | "core") {
        return None;
    }
    match rest {
        ["fs", ..] => Some("the file system"),
        ["net", item, ..] if !NET_DATA.contains(item) => Some("sockets"),
        ["os", ..] => Some("OS-specific I/O"),
        ["thread", ..] => Some("threads and sleeping"),
        ["process", ..] | ["env", ..] => Some("the process's environment"),
        ["io", "stdin" | "stdout" | "stderr" | "Stdin" | "Stdout" | "Stderr", ..] => {
            Some("standard I/O")
        }
        ["time", "Instant" | "SystemTime", "now" | "elapsed", ..] => Some("a clock read"),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Tokens

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
    /// A string, char or number literal (its text is not kept).
    Lit,
}

/// The tokens of `src` with their line numbers; comments and literal contents are dropped.
fn tokenize(src: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    let at = |i: usize| c.get(i).copied().unwrap_or('\0');
    while i < c.len() {
        let ch = c[i];
        let start_line = line;
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(c[i] == '\n');
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_start(&c, i) {
            // r"..", r#".."#, br"..": skip to the quote followed by as many #s.
            i += c[i..].iter().position(|&x| x == '"').unwrap_or(0) + 1;
            loop {
                if i >= c.len() {
                    break;
                }
                if c[i] == '"' && (0..hashes).all(|k| at(i + 1 + k) == '#') {
                    i += 1 + hashes;
                    break;
                }
                line += usize::from(c[i] == '\n');
                i += 1;
            }
            out.push((Tok::Lit, start_line));
        } else if ch == '"' || (ch == 'b' && at(i + 1) == '"') {
            i += if ch == 'b' { 2 } else { 1 };
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                line += usize::from(at(i) == '\n');
                i += 1;
            }
            i += 1;
            out.push((Tok::Lit, start_line));
        } else if ch == '\'' || (ch == 'b' && at(i + 1) == '\'') {
            let q = if ch == 'b' { i + 1 } else { i };
            if at(q + 1) == '\\' {
                // An escaped char literal: to the closing quote.
                i = q + 2;
                while i < c.len() && c[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push((Tok::Lit, start_line));
            } else if at(q + 2) == '\'' {
                i = q + 3;
                out.push((Tok::Lit, start_line));
            } else {
                // A lifetime or label: drop the quote, the name follows as an identifier.
                i = q + 1;
            }
        } else if ch == 'r' && at(i + 1) == '#' && is_ident_start(at(i + 2)) {
            i += 2; // a raw identifier: the name follows
        } else if is_ident_start(ch) {
            let s = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(c[s..i].iter().collect()), line));
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push((Tok::Lit, line));
        } else if ch == ':' && at(i + 1) == ':' {
            out.push((Tok::Sep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

/// The number of `#`s if a raw (byte) string starts at `i`.
fn raw_string_start(c: &[char], i: usize) -> Option<usize> {
    let mut j = i;
    if c.get(j) == Some(&'b') {
        j += 1;
    }
    if c.get(j) != Some(&'r') || (j > i && c.get(i) != Some(&'b')) {
        return None;
    }
    // Not part of a longer identifier such as `for` or `br`anch.
    if i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_') {
        return None;
    }
    j += 1;
    let hashes = c[j..].iter().take_while(|&&x| x == '#').count();
    (c.get(j + hashes) == Some(&'"')).then_some(hashes)
}

/// `toks` without the items under `#[cfg(test)]`.
fn without_tests(toks: Vec<(Tok, usize)>) -> Vec<(Tok, usize)> {
    let is = |t: &Tok, s: &str| matches!(t, Tok::Ident(x) if x == s);
    let cfg_test = |w: &[(Tok, usize)]| {
        w.len() >= 7
            && w[0].0 == Tok::Punct('#')
            && w[1].0 == Tok::Punct('[')
            && is(&w[2].0, "cfg")
            && w[3].0 == Tok::Punct('(')
            && is(&w[4].0, "test")
            && w[5].0 == Tok::Punct(')')
            && w[6].0 == Tok::Punct(']')
    };
    let mut out = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        if !cfg_test(&toks[i..]) {
            out.push(toks[i].clone());
            i += 1;
            continue;
        }
        // Skip the attribute, then the item: to a `;` or the end of its first `{}` block.
        i += 7;
        let mut depth = 0i32;
        while i < toks.len() {
            match toks[i].0 {
                Tok::Punct('{') | Tok::Punct('(') | Tok::Punct('[') => depth += 1,
                Tok::Punct('}') | Tok::Punct(')') | Tok::Punct(']') => {
                    depth -= 1;
                    if depth == 0 && toks[i].0 == Tok::Punct('}') {
                        i += 1;
                        break;
                    }
                }
                Tok::Punct(';') if depth == 0 => {
                    i += 1;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Imports and paths

/// One name a `use` declaration brings in.
#[derive(Debug, Clone)]
struct Import {
    /// The full path as written (may start with `crate`, `self` or `super`).
    path: Vec<String>,
    /// The name it is known by here; `None` for a glob.
    name: Option<String>,
    line: usize,
}

/// Parses the `use` tree starting at `toks[i]` (after the `use`); returns the index after it.
fn use_tree(
    toks: &[(Tok, usize)],
    mut i: usize,
    prefix: &[String],
    out: &mut Vec<Import>,
) -> usize {
    let mut path = prefix.to_vec();
    if toks.get(i).map(|t| &t.0) == Some(&Tok::Sep) {
        i += 1; // a leading `::`
    }
    loop {
        let Some((tok, line)) = toks.get(i) else {
            return i;
        };
        match tok {
            Tok::Ident(s) if s == "self" && path.len() == prefix.len() && !prefix.is_empty() => {
                // `a::{self}`: the module itself.
                i += 1;
                let name = rename(toks, &mut i)
                    .unwrap_or_else(|| path.last().cloned().unwrap_or_default());
                out.push(Import {
                    path: path.clone(),
                    name: Some(name),
                    line: *line,
                });
                return i;
            }
            Tok::Ident(s) => {
                path.push(s.clone());
                i += 1;
                if toks.get(i).map(|t| &t.0) == Some(&Tok::Sep) {
                    i += 1;
                    continue;
                }
                let name = rename(toks, &mut i).unwrap_or_else(|| s.clone());
                out.push(Import {
                    path,
                    name: Some(name),
                    line: *line,
                });
                return i;
            }
            Tok::Punct('*') => {
                out.push(Import {
                    path,
                    name: None,
                    line: *line,
                });
                return i + 1;
            }
            Tok::Punct('{') => {
                i += 1;
                loop {
                    match toks.get(i).map(|t| &t.0) {
                        None => return i,
                        Some(Tok::Punct('}')) => return i + 1,
                        Some(Tok::Punct(',')) => i += 1,
                        Some(_) => {
                            let next = use_tree(toks, i, &path, out);
                            i = if next == i { i + 1 } else { next };
                        }
                    }
                }
            }
            _ => return i,
        }
    }
}

/// `as NAME` at `toks[*i]`, consumed.
fn rename(toks: &[(Tok, usize)], i: &mut usize) -> Option<String> {
    match (toks.get(*i).map(|t| &t.0), toks.get(*i + 1).map(|t| &t.0)) {
        (Some(Tok::Ident(a)), Some(Tok::Ident(n))) if a == "as" => {
            *i += 2;
            Some(n.clone())
        }
        _ => None,
    }
}

/// A path in the code: `a::b::c` (a single identifier is a path of one).
struct CodePath {
    segs: Vec<String>,
    line: usize,
    /// Preceded by `.`: a method or field name.
    method: bool,
}

/// Splits the tokens into imports and the other paths.
fn imports_and_paths(toks: &[(Tok, usize)]) -> (Vec<Import>, Vec<CodePath>) {
    let mut imports = Vec::new();
    let mut paths = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i].0 {
            Tok::Ident(s) if s == "use" => {
                i = use_tree(toks, i + 1, &[], &mut imports);
            }
            Tok::Ident(_) | Tok::Sep => {
                let method = i > 0 && toks[i - 1].0 == Tok::Punct('.');
                let line = toks[i].1;
                let mut segs = Vec::new();
                if toks[i].0 == Tok::Sep {
                    i += 1; // `::std::fs`: absolute
                }
                while let Some((Tok::Ident(s), _)) = toks.get(i) {
                    segs.push(s.clone());
                    i += 1;
                    let sep = toks.get(i).map(|t| &t.0) == Some(&Tok::Sep);
                    let ident_next = matches!(toks.get(i + 1), Some((Tok::Ident(_), _)));
                    if sep && ident_next {
                        i += 1;
                    } else {
                        break;
                    }
                }
                if !segs.is_empty() {
                    paths.push(CodePath { segs, line, method });
                }
                if i < toks.len() && !matches!(toks[i].0, Tok::Ident(_)) {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    (imports, paths)
}

// ---------------------------------------------------------------------------------------
// The source tree

/// The crate's files under `src/`, by module path (`dhcp::core` for `src/dhcp/core.rs`,
/// `nfs::fs` for `src/nfs/fs/mod.rs`, the empty path for `src/lib.rs`).
struct Tree {
    src: PathBuf,
    modules: HashMap<Vec<String>, String>,
}

impl Tree {
    fn load(src: &Path) -> Tree {
        let mut modules = HashMap::new();
        let mut stack = vec![src.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).expect("read src/") {
                let p = e.expect("dir entry").path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    let rel = p.strip_prefix(src).expect("under src/");
                    let rel = rel.to_string_lossy().replace('\\', "/");
                    modules.insert(module_of(&rel), rel);
                }
            }
        }
        Tree {
            src: src.to_path_buf(),
            modules,
        }
    }

    /// The file that holds crate path `segs` (the longest prefix that is a module), and the
    /// rest of the path inside it.
    fn file_of<'a>(&self, segs: &'a [String]) -> (&str, &'a [String]) {
        for k in (0..=segs.len()).rev() {
            if let Some(f) = self.modules.get(&segs[..k]) {
                return (f, &segs[k..]);
            }
        }
        unreachable!("lib.rs is the module of the empty path")
    }
}

/// `dhcp/core.rs` -> [dhcp, core]; `nfs/fs/mod.rs` -> [nfs, fs]; `lib.rs`, `main.rs` -> [].
fn module_of(rel: &str) -> Vec<String> {
    let rel = rel.trim_end_matches(".rs");
    let mut segs: Vec<String> = rel.split('/').map(String::from).collect();
    if matches!(
        segs.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        segs.pop();
    }
    segs
}

/// One broken rule.
#[derive(Debug)]
struct Violation {
    line: usize,
    what: String,
}

/// Checks the source of the pure module at `rel` (under `src/`) against the rule.
fn check_source(tree: &Tree, pure: &BTreeSet<String>, rel: &str, source: &str) -> Vec<Violation> {
    let toks = without_tests(tokenize(source));
    let (imports, paths) = imports_and_paths(&toks);
    let me = module_of(rel);
    let mut out = Vec::new();
    let aliases: HashMap<&str, &Import> = imports
        .iter()
        .filter_map(|imp| Some((imp.name.as_deref()?, imp)))
        .collect();
    let globs: Vec<&Import> = imports.iter().filter(|i| i.name.is_none()).collect();

    for imp in &imports {
        let shown = imp.path.join("::");
        check_path(tree, pure, &me, &imp.path, &mut |why| {
            out.push(Violation {
                line: imp.line,
                what: format!("`use {shown}`: {why}"),
            })
        });
    }
    for p in &paths {
        let first = p.segs[0].as_str();
        if RANDOM_IDENTS.contains(&first)
            || p.segs.iter().any(|s| RANDOM_IDENTS.contains(&s.as_str()))
        {
            out.push(Violation {
                line: p.line,
                what: format!("`{}`: OS randomness", p.segs.join("::")),
            });
            continue;
        }
        if p.method {
            if p.segs.len() == 1 && first == "elapsed" {
                out.push(Violation {
                    line: p.line,
                    what: "`.elapsed()`: a clock read (Instant/SystemTime)".into(),
                });
            }
            continue;
        }
        let mut candidates: Vec<(Vec<String>, String)> = Vec::new();
        if let Some(imp) = aliases.get(first) {
            let mut full = imp.path.clone();
            full.extend(p.segs[1..].iter().cloned());
            candidates.push((full, format!(" (`{first}` imported at line {})", imp.line)));
        } else if matches!(first, "crate" | "self" | "super") || p.segs.len() > 1 {
            candidates.push((p.segs.clone(), String::new()));
        }
        if !aliases.contains_key(first) && !matches!(first, "crate" | "self" | "super") {
            // Names a glob may bring in: only external globs are followed per name (a crate
            // glob is checked once, as its import).
            for g in &globs {
                if !matches!(g.path[0].as_str(), "crate" | "self" | "super") {
                    let mut full = g.path.clone();
                    full.extend(p.segs.iter().cloned());
                    candidates.push((full, format!(" (glob imported at line {})", g.line)));
                }
            }
        }
        for (full, via) in candidates {
            let shown = p.segs.join("::");
            check_path(tree, pure, &me, &full, &mut |why| {
                out.push(Violation {
                    line: p.line,
                    what: format!("`{shown}`{via}: {why}"),
                })
            });
        }
    }
    out
}

/// Resolves `path` (as written in the module `here`) and reports why it is forbidden.
fn check_path(
    tree: &Tree,
    pure: &BTreeSet<String>,
    me: &[String],
    path: &[String],
    report: &mut dyn FnMut(String),
) {
    if let Some(r) = path.iter().find(|s| RANDOM_IDENTS.contains(&s.as_str())) {
        report(format!("{r} is OS randomness"));
        return;
    }
    match resolve_crate(me, path) {
        Some(crate_path) => check_crate_path(tree, pure, &crate_path, 0, report),
        None => {
            if let Some(why) = forbidden_external(path) {
                report(format!("{} is {why}", path.join("::")));
            }
        }
    }
}

/// The crate path (without `crate`) that `path`, written in module `me`, names if it starts
/// with `crate`, `self` or `super`. (`a/b.rs` and `a/b/mod.rs` are both module `a::b`, whose
/// `super` is `a`.)
fn resolve_crate(me: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut base: Vec<String> = me.to_vec();
    let mut i = 0;
    match path.first()?.as_str() {
        "crate" => {
            base.clear();
            i = 1;
        }
        "self" => i = 1,
        "super" => {
            while path.get(i).map(String::as_str) == Some("super") {
                base.pop();
                i += 1;
            }
        }
        _ => return None,
    }
    base.extend(path[i..].iter().cloned());
    Some(base)
}

/// Checks a path into this crate: it must land in a pure module or on a [`DATA_ITEMS`] item;
/// re-exports (`pub use`) of `mod.rs` files are followed.
fn check_crate_path(
    tree: &Tree,
    pure: &BTreeSet<String>,
    segs: &[String],
    depth: usize,
    report: &mut dyn FnMut(String),
) {
    let joined = segs.join("::");
    if DATA_ITEMS
        .iter()
        .any(|(item, _)| joined == *item || joined.starts_with(&format!("{item}::")))
    {
        return;
    }
    let (file, rest) = tree.file_of(segs);
    if pure.contains(file) {
        return;
    }
    // A re-export in a module file: follow it to where the item lives.
    if let (Some(name), true) = (rest.first(), depth < 4) {
        if let Ok(text) = std::fs::read_to_string(tree.src.join(file)) {
            let toks = without_tests(tokenize(&text));
            let (imports, _) = imports_and_paths(&toks);
            if let Some(imp) = imports
                .iter()
                .find(|i| i.name.as_deref() == Some(name.as_str()))
            {
                let module = module_of(file);
                let mut target = resolve_crate(&module, &imp.path).unwrap_or_else(|| {
                    // `pub use share::Share` in a mod.rs: relative to the module.
                    let mut t = module.clone();
                    t.extend(imp.path.iter().cloned());
                    t
                });
                target.extend(rest[1..].iter().cloned());
                return check_crate_path(tree, pure, &target, depth + 1, report);
            }
        }
    }
    report(format!(
        "crate::{joined} is in src/{file}, which is not a pure module (nor a listed data item)"
    ));
}

/// Every pure module: each `wire.rs` and `core.rs`, and [`PURE`].
fn pure_modules(tree: &Tree) -> BTreeSet<String> {
    tree.modules
        .values()
        .filter(|f| f.ends_with("/wire.rs") || f.ends_with("/core.rs"))
        .cloned()
        .chain(PURE.iter().map(|(f, _)| f.to_string()))
        .collect()
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn pure_modules_do_no_io() {
    let tree = Tree::load(&src_dir());
    let pure = pure_modules(&tree);
    for (f, _) in PURE.iter().chain(NOT_PURE) {
        assert!(
            tree.modules.values().any(|m| m == f),
            "src/{f} is listed in sans_io.rs but does not exist"
        );
    }
    assert!(
        pure.len() >= 30,
        "expected every wire/core module, found {pure:?}"
    );
    let mut violations = Vec::new();
    for f in &pure {
        let text = std::fs::read_to_string(tree.src.join(f)).expect("read source");
        for v in check_source(&tree, &pure, f, &text) {
            violations.push(format!("src/{f}:{}: {}", v.line, v.what));
        }
    }
    assert!(
        violations.is_empty(),
        "sans-IO rule broken:\n{}",
        violations.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Self-tests: planted violations are found, innocent code is not.

/// Violations of `snippet` as if it were `src/dhcp/core.rs`.
fn planted(snippet: &str) -> Vec<String> {
    let tree = Tree::load(&src_dir());
    let pure = pure_modules(&tree);
    check_source(&tree, &pure, "dhcp/core.rs", snippet)
        .into_iter()
        .map(|v| format!("{}: {}", v.line, v.what))
        .collect()
}

#[test]
fn planted_imports_are_caught() {
    for snippet in [
        "use std::fs;",
        "use std::fs::File;",
        "use std::{fs};",
        "use std::{fs, net::UdpSocket};",
        "use std::{io, net::{Ipv4Addr, UdpSocket}};",
        "use std::fs as f;",
        "use ::std::fs;",
        "use std::net::UdpSocket;",
        "use std::net::*;\nfn f() { let _ = UdpSocket::bind(\"0.0.0.0:0\"); }",
        "use std::thread::sleep;",
        "use std::thread;",
        "use tokio::net::UdpSocket;",
        "use tokio;",
        "use heed::Env;",
        "use libc::c_int;",
        "use std::time::Instant;\nfn f() { let t = Instant::now(); }",
        "use std::time::{Duration, SystemTime};\nfn f() { SystemTime::now(); }",
        "use std::time::Instant as Clock;\nfn f() { Clock::now(); }",
        "use std::time;\nfn f() { time::Instant::now(); }",
        "use std::time::*;\nfn f() { Instant::now(); }",
        "use rand_core::OsRng;",
        "use rand::rngs::OsRng;",
        "use super::serve::Stats;",
        "use super::serve;",
        "use crate::dhcp::serve::run;",
        "use crate::store::Store;",
        "use crate::image::Blobs;",
        "use super::{wire, serve};",
        "use crate::{store::{self, Store}};",
    ] {
        assert!(!planted(snippet).is_empty(), "not caught: {snippet}");
    }
}

#[test]
fn planted_paths_are_caught() {
    for snippet in [
        "fn f() { let t = std::time::Instant::now(); }",
        "fn f() { std::time::SystemTime::now(); }",
        "fn f() { ::std::fs::read(\"x\"); }",
        "use std::fs;\nfn f() { fs::read(\"x\"); }",
        "fn f() { std::thread::sleep(d); }",
        "fn f() { let s = std::net::UdpSocket::bind(a); }",
        "fn f() { let r = OsRng; }",
        "fn f() { let r = StdRng::from_entropy(); }",
        "fn f() { let r = StdRng::from_os_rng(); }",
        "fn f() { let r = rand::rng(); }",
        "fn f() { let r = rand::thread_rng(); }",
        "fn f() { getrandom::fill(&mut b); }",
        "fn f() { tokio::spawn(x); }",
        "fn f() { heed::EnvOpenOptions::new(); }",
        "fn f() { unsafe { libc::close(3) }; }",
        "fn f() { let x = crate::dhcp::serve::Stats::default(); }",
        "fn f() { super::serve::run(); }",
        "fn f(t: Instant) -> Duration { t.elapsed() }",
        "fn f() { std::process::exit(1); }",
        "fn f() { std::env::var(\"X\"); }",
    ] {
        assert!(!planted(snippet).is_empty(), "not caught: {snippet}");
    }
}

#[test]
fn innocent_code_passes() {
    for snippet in [
        "use std::net::{Ipv4Addr, SocketAddrV4};",
        "use std::time::Duration;",
        "use std::collections::HashMap;",
        "use std::io::{self, Read};",
        "use super::wire::{Reply, Request};",
        "use super::share::Share;",
        "use crate::dhcp::Share;",
        "use crate::store::model::{Lease, Mac};",
        "use crate::store::View;",
        "use crate::store::Version;",
        "use rand::rngs::StdRng;\nfn f() { StdRng::seed_from_u64(1); }",
        "// use std::fs;\nfn f() {}",
        "/* std::fs::read(\"x\") /* nested */ tokio::spawn */ fn f() {}",
        "fn f() -> &'static str { \"std::fs::read and Instant::now()\" }",
        "fn f() -> &'static str { r#\"use std::fs; \"OsRng\"\"# }",
        "fn f(now: u64) -> char { let c = '\"'; let d = '\\''; c }",
        "fn f<'a>(x: &'a str) -> &'a str { x }",
        "#[cfg(test)]\nmod tests {\n use std::fs;\n fn t() { std::time::Instant::now(); }\n}",
        "fn f(now: std::time::Duration) {}",
    ] {
        let found = planted(snippet);
        assert!(found.is_empty(), "false alarm on {snippet:?}: {found:?}");
    }
}

#[test]
fn violations_name_the_line_and_the_import() {
    let found = planted("use std::time::Instant as Clock;\n\nfn f() {\n    Clock::now();\n}\n");
    assert_eq!(
        found,
        ["4: `Clock::now` (`Clock` imported at line 1): std::time::Instant::now is a clock read"]
    );
}
