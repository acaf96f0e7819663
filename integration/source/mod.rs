//! A scanner of this crate's own sources for the guard tests (`sans_io.rs`, `modules.rs`): a
//! tokenizer that drops comments, literals and `#[cfg(test)]` items, `use` trees expanded into
//! full paths, the paths in the code, and the module tree of `src/` to resolve `crate::`,
//! `self::`, `super::` and child-module paths to files.
//!
//! Not a Rust parser: no macro expansion, no name resolution of items inside a file, no
//! `#[path]` attributes (drover has none under `src/`). Enough for our code; the self-tests
//! in `sans_io.rs` pin what it must see.

#![allow(dead_code)] // each test crate uses a part

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

// ---------------------------------------------------------------------------------------
// Tokens

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    Ident(String),
    /// `::`
    Sep,
    Punct(char),
    /// A string, char or number literal (its text is not kept).
    Lit,
}

/// The tokens of `src` with their line numbers; comments and literal contents are dropped.
pub fn tokenize(src: &str) -> Vec<(Tok, usize)> {
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
pub fn without_tests(toks: Vec<(Tok, usize)>) -> Vec<(Tok, usize)> {
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
pub struct Import {
    /// The full path as written (may start with `crate`, `self` or `super`).
    pub path: Vec<String>,
    /// The name it is known by here; `None` for a glob.
    pub name: Option<String>,
    pub line: usize,
    /// `pub use` (or `pub(crate) use`, ...): a re-export.
    pub public: bool,
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
                    public: false,
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
                    public: false,
                });
                return i;
            }
            Tok::Punct('*') => {
                out.push(Import {
                    path,
                    name: None,
                    line: *line,
                    public: false,
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
pub struct CodePath {
    pub segs: Vec<String>,
    pub line: usize,
    /// Preceded by `.`: a method or field name.
    pub method: bool,
}

/// Splits the tokens into imports and the other paths.
pub fn imports_and_paths(toks: &[(Tok, usize)]) -> (Vec<Import>, Vec<CodePath>) {
    let mut imports = Vec::new();
    let mut paths = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i].0 {
            Tok::Ident(s)
                if s == "pub" && toks.get(i + 1).map(|t| &t.0) == Some(&Tok::Punct('(')) =>
            {
                // `pub(crate)`, `pub(super)`, `pub(in path)`: a visibility, not a reference.
                while i < toks.len() && toks[i].0 != Tok::Punct(')') {
                    i += 1;
                }
            }
            Tok::Ident(s) if s == "mod" => {
                // `mod x;` declares a child; it names nothing.
                i += 2;
            }
            Tok::Ident(s) if s == "use" => {
                let public = toks[i.saturating_sub(4)..i]
                    .iter()
                    .any(|t| matches!(&t.0, Tok::Ident(p) if p == "pub"));
                let first = imports.len();
                i = use_tree(toks, i + 1, &[], &mut imports);
                for imp in &mut imports[first..] {
                    imp.public = public;
                }
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
pub struct Tree {
    pub src: PathBuf,
    /// Module path -> file under `src/`.
    pub modules: HashMap<Vec<String>, String>,
    /// The imports of each file read so far.
    imports: RefCell<HashMap<String, Rc<Vec<Import>>>>,
}

impl Tree {
    pub fn load(src: &Path) -> Tree {
        let mut modules = HashMap::new();
        let mut stack = vec![src.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).expect("read src/") {
                let p = e.expect("dir entry").path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") && p != src.join("main.rs") {
                    // (main.rs is the binary's crate: it names the library as `drover::`.)
                    let rel = p.strip_prefix(src).expect("under src/");
                    let rel = rel.to_string_lossy().replace('\\', "/");
                    modules.insert(module_of(&rel), rel);
                }
            }
        }
        Tree {
            src: src.to_path_buf(),
            modules,
            imports: RefCell::default(),
        }
    }

    /// The source of `file` (under `src/`), parsed: its imports and the paths in its code,
    /// test items left out.
    pub fn parse(&self, file: &str) -> (Vec<Import>, Vec<CodePath>) {
        let text = std::fs::read_to_string(self.src.join(file)).expect("read source");
        imports_and_paths(&without_tests(tokenize(&text)))
    }

    /// The imports of `file`, read once.
    pub fn imports(&self, file: &str) -> Rc<Vec<Import>> {
        if let Some(i) = self.imports.borrow().get(file) {
            return i.clone();
        }
        let i = Rc::new(self.parse(file).0);
        self.imports
            .borrow_mut()
            .insert(file.to_string(), i.clone());
        i
    }

    /// The crate path (without `crate`) that `path`, written in module `me`, names: if it
    /// starts with `crate`, `self`, `super` or a child module of `me`.
    pub fn resolve(&self, me: &[String], path: &[String]) -> Option<Vec<String>> {
        if let Some(p) = resolve_crate(me, path) {
            return Some(p);
        }
        // A child module, as in `wire::Op` in a `mod.rs` (one name alone is rather a local).
        if path.len() < 2 {
            return None;
        }
        let mut child = me.to_vec();
        child.push(path[0].clone());
        self.modules.contains_key(&child).then(|| {
            let mut p = me.to_vec();
            p.extend(path.iter().cloned());
            p
        })
    }

    /// Where the item at crate path `segs` lives: its file and its crate path there, after
    /// following the `use` declarations (re-exports, or a parent's imports that a child names
    /// through `super::`) of the files on the way, at most four.
    pub fn locate(&self, segs: &[String]) -> (String, Vec<String>) {
        let mut segs = segs.to_vec();
        for _ in 0..4 {
            let (file, rest) = self.file_of(&segs);
            let Some(name) = rest.first() else {
                break;
            };
            let imports = self.imports(file);
            let Some(imp) = imports
                .iter()
                .find(|i| i.name.as_deref() == Some(name.as_str()))
            else {
                break;
            };
            // An import from another crate: the item is that crate's, named here.
            let Some(mut target) = self.resolve(&module_of(file), &imp.path) else {
                break;
            };
            target.extend(rest[1..].iter().cloned());
            segs = target;
        }
        (self.file_of(&segs).0.to_string(), segs)
    }

    /// The file that holds crate path `segs` (the longest prefix that is a module), and the
    /// rest of the path inside it.
    pub fn file_of<'a>(&self, segs: &'a [String]) -> (&str, &'a [String]) {
        for k in (0..=segs.len()).rev() {
            if let Some(f) = self.modules.get(&segs[..k]) {
                return (f, &segs[k..]);
            }
        }
        unreachable!("lib.rs is the module of the empty path")
    }
}

/// `dhcp/core.rs` -> [dhcp, core]; `nfs/fs/mod.rs` -> [nfs, fs]; `lib.rs`, `main.rs` -> [].
pub fn module_of(rel: &str) -> Vec<String> {
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

/// The crate path (without `crate`) that `path`, written in module `me`, names if it starts
/// with `crate`, `self` or `super`. (`a/b.rs` and `a/b/mod.rs` are both module `a::b`, whose
/// `super` is `a`.)
pub fn resolve_crate(me: &[String], path: &[String]) -> Option<Vec<String>> {
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

pub fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}
