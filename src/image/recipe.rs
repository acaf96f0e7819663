//! `image build` recipes: a small TOML of a Debian suite, packages, files and commands, parsed
//! and validated here, and written back (with every file's bytes inline) for the store, so
//! that `image build NAME` can rebuild an image from the recipe its last build used.
//!
//! ```toml
//! suite = "bookworm"
//! kernel = "linux-image-amd64"          # optional; the default
//! packages = ["openssh-server", "file"]
//! commands = ["echo built > /etc/motd"] # run in the tree, in order, after the files
//!
//! [[files]]
//! path = "/etc/issue"
//! content = "cluster node\n"
//! mode = 0o644                          # optional; the default
//!
//! [[files]]
//! path = "/etc/chrony/chrony.conf"
//! source = "chrony.conf"                # a text file, relative to the recipe's directory
//! ```
//!
//! Pure: no file is read here. A `source` stays a name until the caller reads it and calls
//! [`Recipe::inline`]. Also here: which packages a dpkg status file says are installed
//! ([`installed_packages`]), to catch a package the bootstrap tool skipped.
//!
//! Not here: running the recipe (`super::build`), binary files (a `source` must be UTF-8
//! text; binary files belong in a package or a command), apt sources other than the one
//! mirror.

use serde::Deserialize;
use std::collections::BTreeSet;

/// The kernel package when a recipe names none.
pub const DEFAULT_KERNEL: &str = "linux-image-amd64";
/// Most packages a recipe may name.
pub const MAX_PACKAGES: usize = 512;
/// Most files a recipe may write.
pub const MAX_FILES: usize = 256;
/// Most bytes of one file's content.
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// Most commands a recipe may run.
pub const MAX_COMMANDS: usize = 64;
/// Longest file path, in bytes.
const MAX_PATH: usize = 255;
/// Longest package or suite name, in bytes.
const MAX_NAME: usize = 128;

/// What is wrong with one key of a recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rule {
    #[error("is missing")]
    Missing,
    #[error("must be lowercase letters, digits and . + - (a Debian name), at most 128 bytes")]
    BadName,
    #[error("names the same package twice")]
    Duplicate,
    #[error("has more entries than allowed")]
    TooMany,
    #[error("must be an absolute path, without `..`, at most 255 bytes")]
    BadPath,
    #[error("writes a path an earlier file writes too")]
    DuplicatePath,
    #[error("needs exactly one of `content` and `source`")]
    ContentOrSource,
    #[error("must be at most 0o7777")]
    BadMode,
    #[error("is longer than 1 MiB")]
    TooBig,
    #[error("must not be empty or contain a NUL byte")]
    BadCommand,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecipeError {
    /// Not TOML, or a key of the wrong type or unknown (the message names it).
    #[error("recipe: {0}")]
    Toml(String),
    #[error("recipe key `{key}` {rule}")]
    Key { key: String, rule: Rule },
}

fn bad(key: impl Into<String>, rule: Rule) -> RecipeError {
    RecipeError::Key {
        key: key.into(),
        rule,
    }
}

/// Where a file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileData {
    Content(String),
    /// A file the caller reads (relative to the recipe's directory unless absolute).
    Source(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeFile {
    /// Absolute path inside the image.
    pub path: String,
    pub data: FileData,
    pub mode: u32,
}

/// A validated recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    pub suite: String,
    pub kernel: String,
    /// Sorted, without duplicates; the kernel is not among them unless named.
    pub packages: Vec<String>,
    pub files: Vec<RecipeFile>,
    pub commands: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    suite: Option<String>,
    kernel: Option<String>,
    #[serde(default)]
    packages: Vec<String>,
    #[serde(default)]
    files: Vec<RawFile>,
    #[serde(default)]
    commands: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    path: String,
    content: Option<String>,
    source: Option<String>,
    mode: Option<u32>,
}

/// Whether `name` is a Debian package or suite name (policy 5.6.1, without the uppercase
/// letters suites never use).
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'+' | b'-'))
}

fn valid_path(path: &str) -> bool {
    path.len() <= MAX_PATH
        && path.starts_with('/')
        && path.len() > 1
        && !path.contains('\0')
        && path.split('/').all(|c| c != ".." && c != ".")
}

impl Recipe {
    /// A recipe with only a suite (what `image build --suite S` alone means).
    pub fn bare(suite: &str) -> Result<Recipe, RecipeError> {
        Recipe::from_raw(Raw {
            suite: Some(suite.to_string()),
            kernel: None,
            packages: Vec::new(),
            files: Vec::new(),
            commands: Vec::new(),
        })
    }

    /// Parses and validates recipe text.
    pub fn parse(text: &str) -> Result<Recipe, RecipeError> {
        let raw: Raw = toml::from_str(text).map_err(|e| RecipeError::Toml(e.to_string()))?;
        Recipe::from_raw(raw)
    }

    fn from_raw(raw: Raw) -> Result<Recipe, RecipeError> {
        let suite = raw.suite.ok_or(bad("suite", Rule::Missing))?;
        if !valid_name(&suite) {
            return Err(bad("suite", Rule::BadName));
        }
        let kernel = raw.kernel.unwrap_or_else(|| DEFAULT_KERNEL.to_string());
        if !valid_name(&kernel) {
            return Err(bad("kernel", Rule::BadName));
        }
        let mut recipe = Recipe {
            suite,
            kernel,
            packages: Vec::new(),
            files: Vec::new(),
            commands: Vec::new(),
        };
        recipe.add_packages(&raw.packages)?;
        if raw.files.len() > MAX_FILES {
            return Err(bad("files", Rule::TooMany));
        }
        let mut paths = BTreeSet::new();
        for (i, f) in raw.files.into_iter().enumerate() {
            let key = |k: &str| format!("files[{i}].{k}");
            if !valid_path(&f.path) {
                return Err(bad(key("path"), Rule::BadPath));
            }
            if !paths.insert(f.path.clone()) {
                return Err(bad(key("path"), Rule::DuplicatePath));
            }
            let data = match (f.content, f.source) {
                (Some(c), None) => FileData::Content(c),
                (None, Some(s)) if !s.is_empty() => FileData::Source(s),
                _ => return Err(bad(format!("files[{i}]"), Rule::ContentOrSource)),
            };
            if matches!(&data, FileData::Content(c) if c.len() > MAX_FILE_BYTES) {
                return Err(bad(key("content"), Rule::TooBig));
            }
            let mode = f.mode.unwrap_or(0o644);
            if mode > 0o7777 {
                return Err(bad(key("mode"), Rule::BadMode));
            }
            recipe.files.push(RecipeFile {
                path: f.path,
                data,
                mode,
            });
        }
        if raw.commands.len() > MAX_COMMANDS {
            return Err(bad("commands", Rule::TooMany));
        }
        for (i, c) in raw.commands.iter().enumerate() {
            if c.trim().is_empty() || c.contains('\0') {
                return Err(bad(format!("commands[{i}]"), Rule::BadCommand));
            }
        }
        recipe.commands = raw.commands;
        Ok(recipe)
    }

    /// Adds packages (from the recipe or `--packages`): each a Debian name; a package given
    /// twice in one list is an error, one already in the recipe is kept once.
    pub fn add_packages(&mut self, packages: &[String]) -> Result<(), RecipeError> {
        let mut seen = BTreeSet::new();
        for (i, p) in packages.iter().enumerate() {
            if !valid_name(p) {
                return Err(bad(format!("packages[{i}]"), Rule::BadName));
            }
            if !seen.insert(p) {
                return Err(bad(format!("packages[{i}]"), Rule::Duplicate));
            }
        }
        let mut all: BTreeSet<String> = self.packages.drain(..).collect();
        all.extend(packages.iter().cloned());
        if all.len() > MAX_PACKAGES {
            return Err(bad("packages", Rule::TooMany));
        }
        self.packages = all.into_iter().collect();
        Ok(())
    }

    /// Everything the bootstrap installs besides the base: the kernel and the packages.
    pub fn include(&self) -> Vec<String> {
        let mut all: BTreeSet<String> = self.packages.iter().cloned().collect();
        all.insert(self.kernel.clone());
        all.into_iter().collect()
    }

    /// Replaces file `i`'s source by `content` (the caller read it).
    pub fn inline(&mut self, i: usize, content: String) -> Result<(), RecipeError> {
        if content.len() > MAX_FILE_BYTES {
            return Err(bad(format!("files[{i}].source"), Rule::TooBig));
        }
        if let Some(f) = self.files.get_mut(i) {
            f.data = FileData::Content(content);
        }
        Ok(())
    }

    /// The recipe as TOML that [`Recipe::parse`] reads back to an equal recipe (sources must
    /// have been inlined: a source is written as a source, which a rebuild cannot read
    /// unless the file is still there).
    pub fn to_toml(&self) -> String {
        let mut out = format!("suite = {}\n", quote(&self.suite));
        out += &format!("kernel = {}\n", quote(&self.kernel));
        out += &format!("packages = {}\n", list(&self.packages));
        out += &format!("commands = {}\n", list(&self.commands));
        for f in &self.files {
            out += &format!("\n[[files]]\npath = {}\n", quote(&f.path));
            match &f.data {
                FileData::Content(c) => out += &format!("content = {}\n", quote(c)),
                FileData::Source(s) => out += &format!("source = {}\n", quote(s)),
            }
            out += &format!("mode = 0o{:o}\n", f.mode);
        }
        out
    }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// The packages a dpkg status file (`var/lib/dpkg/status`) lists as installed.
pub fn installed_packages(status: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for stanza in status.split("\n\n") {
        let mut name = None;
        let mut installed = false;
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package:") {
                name = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Status:") {
                installed = v.split_whitespace().last() == Some("installed");
            }
        }
        if let (Some(n), true) = (name, installed) {
            out.insert(n.to_string());
        }
    }
    out
}

/// The first Debian archive (a URI whose path ends in `/debian`) of an apt sources file, in
/// either format: one-line (`deb [options] URI suite ...`) or deb822 (`URIs: URI ...`).
/// Commented-out lines and `deb-src` entries do not count.
pub fn debian_mirror(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .flat_map(|line| {
            let uris: Vec<&str> = if let Some(rest) = line.strip_prefix("URIs:") {
                rest.split_whitespace().collect()
            } else if let Some(rest) = line.strip_prefix("deb ") {
                let rest = rest.trim_start();
                // Options in brackets come before the URI.
                let rest = match rest.strip_prefix('[') {
                    Some(r) => r.split_once(']').map_or("", |(_, after)| after),
                    None => rest,
                };
                rest.split_whitespace().take(1).collect()
            } else {
                Vec::new()
            };
            uris
        })
        .find(|uri| uri.trim_end_matches('/').ends_with("/debian"))
        .map(str::to_string)
}

#[cfg(test)]
#[path = "recipe_tests.rs"]
mod tests;
