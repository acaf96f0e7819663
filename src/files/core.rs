//! File sets as data, and what a node gets from them (pure: records and node fields in,
//! rendered files out; no store, no clock, no I/O).
//!
//! - [`FileSet`]: a named set of files (path, mode, owner, contents or a template), and the
//!   images, groups and nodes it is assigned to; checked by [`check_file`] before it is
//!   stored, so that a bad path or an unknown template field is refused at `files add` time,
//!   not at boot;
//! - [`Template`]: `{{field}}` placeholders filled from a node's [`Fields`];
//! - [`effective`]: the files one node gets: the sets of its image, then of its group, then
//!   its own (a later one wins on the same path), plus its stable ssh host key pair; the
//!   admin's `/root/.ssh/authorized_keys` keeps the pool's node key line so that `drover
//!   exec` still reaches the node;
//! - [`sync_script`]: the sh script that `files sync` feeds to a running node over ssh.
//!
//! Not here: where sets are stored and who may change them (`super::ops`), the boot-path route
//! (`crate::http::files`), writing files on the node (`crate::agent`).

use crate::agent::files::{authorized_keys, shell_quote};
use crate::service::hostkey::HostKey;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Largest file in a set (contents, or a template's text); file sets are for the small
/// configuration files of `/etc`, not for software (that goes into the image).
pub const MAX_FILE_BYTES: usize = 64 << 10;
/// Most files in one set.
pub const MAX_FILES_PER_SET: usize = 64;
/// Longest path of a file in a set.
pub const MAX_PATH: usize = 1024;

/// Where the agent puts the node's ssh host key, and the admin's keys for root.
pub const HOST_KEY_PATH: &str = "/etc/ssh/ssh_host_ed25519_key";
pub const AUTHORIZED_KEYS_PATH: &str = "/root/.ssh/authorized_keys";

/// A named set of files, and where it applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSet {
    pub name: String,
    /// By path; at most one entry per path.
    pub files: Vec<SetFile>,
    /// Sorted, without duplicates.
    #[serde(default)]
    pub assigned: Vec<Assignment>,
}

/// One file of a set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetFile {
    /// Absolute, normalised path on the node.
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub content: Content,
}

/// A file's contents: bytes as they are, or a template filled per node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    /// Standard base64 of the bytes (JSON holds no raw bytes).
    Bytes(String),
    /// Template text (UTF-8), see [`Template`].
    Template(String),
}

/// What a set is assigned to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assignment {
    Image(String),
    Group(String),
    Node(String),
}

impl Assignment {
    /// `image`, `group` or `node`.
    pub fn kind(&self) -> &'static str {
        match self {
            Assignment::Image(_) => "image",
            Assignment::Group(_) => "group",
            Assignment::Node(_) => "node",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Assignment::Image(n) | Assignment::Group(n) | Assignment::Node(n) => n,
        }
    }
}

impl std::fmt::Display for Assignment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind(), self.name())
    }
}

/// Why a file cannot go into a set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("path {0:?}: must be absolute and normalised (no '.', '..', '//' or trailing '/'), without control characters, at most {MAX_PATH} bytes")]
    BadPath(String),
    #[error("{path}: {size} bytes is over the limit of {MAX_FILE_BYTES} bytes per file (file sets are for configuration files; put software into the image)")]
    TooBig { path: String, size: usize },
    #[error("mode {0:o}: only permission bits (at most 07777)")]
    BadMode(u32),
    #[error("{path}: a template must be UTF-8 text")]
    NotText { path: String },
    #[error("{path}: {source}")]
    Template { path: String, source: TemplateError },
    #[error("{path}: the stored contents are not base64")]
    Corrupt { path: String },
}

impl FileError {
    /// The input field at fault (API error bodies name it).
    pub fn field(&self) -> &'static str {
        match self {
            FileError::BadPath(_) => "path",
            FileError::BadMode(_) => "mode",
            FileError::TooBig { .. }
            | FileError::NotText { .. }
            | FileError::Template { .. }
            | FileError::Corrupt { .. } => "content",
        }
    }
}

/// Whether `path` is one the agent may write: absolute, normalised, printable.
pub fn valid_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    path.len() <= MAX_PATH
        && !rest.is_empty()
        && !path.chars().any(char::is_control)
        && rest
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

/// Checks a file before it goes into a set (path, mode, size, template fields).
pub fn check_file(file: &SetFile) -> Result<(), FileError> {
    if !valid_path(&file.path) {
        return Err(FileError::BadPath(file.path.clone()));
    }
    if file.mode > 0o7777 {
        return Err(FileError::BadMode(file.mode));
    }
    let path = file.path.clone();
    let size = match &file.content {
        Content::Bytes(b64) => decode(&file.path, b64)?.len(),
        Content::Template(text) => {
            Template::parse(text).map_err(|source| FileError::Template {
                path: path.clone(),
                source,
            })?;
            text.len()
        }
    };
    if size > MAX_FILE_BYTES {
        return Err(FileError::TooBig { path, size });
    }
    Ok(())
}

fn decode(path: &str, b64: &str) -> Result<Vec<u8>, FileError> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| FileError::Corrupt {
            path: path.to_string(),
        })
}

/// The node fields a template may name; empty strings for what the node lacks (no group, no
/// domain).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    pub node: String,
    pub ip: String,
    pub mac: String,
    pub group: String,
    pub image: String,
    pub domain: String,
    /// `ram` or `nfs`: the node's effective root mode.
    pub root: String,
    /// The version of its image the node boots.
    pub image_version: String,
}

impl Fields {
    /// The names a template may use, in the order error messages list them.
    pub const NAMES: [&'static str; 8] = [
        "node",
        "ip",
        "mac",
        "group",
        "image",
        "domain",
        "root",
        "image_version",
    ];

    fn get(&self, name: &str) -> Option<&str> {
        Some(match name {
            "node" => &self.node,
            "ip" => &self.ip,
            "mac" => &self.mac,
            "group" => &self.group,
            "image" => &self.image,
            "domain" => &self.domain,
            "root" => &self.root,
            "image_version" => &self.image_version,
            _ => return None,
        })
    }
}

/// Why a template text is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("line {line}: '{{{{' without a closing '}}}}'")]
    Unclosed { line: usize },
    #[error("line {line}: unknown field {{{{{name}}}}}; known: {}", Fields::NAMES.join(", "))]
    UnknownField { line: usize, name: String },
}

/// A parsed template: literal text and `{{field}}` placeholders (spaces inside the braces are
/// allowed). There is no escape for a literal `{{`: the files sets are for (`/etc/passwd`,
/// `/etc/hosts`, sshd and chrony configs) do not use one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(&'static str),
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let line_of = |rest: &str| text[..text.len() - rest.len()].matches('\n').count() + 1;
        while let Some(open) = rest.find("{{") {
            let line = line_of(&rest[open..]);
            parts.push(Part::Text(rest[..open].to_string()));
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(TemplateError::Unclosed { line });
            };
            let name = after[..close].trim();
            let Some(known) = Fields::NAMES.into_iter().find(|n| *n == name) else {
                return Err(TemplateError::UnknownField {
                    line,
                    name: name.to_string(),
                });
            };
            parts.push(Part::Field(known));
            rest = &after[close + 2..];
        }
        parts.push(Part::Text(rest.to_string()));
        Ok(Template { parts })
    }

    pub fn render(&self, fields: &Fields) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.as_str(),
                // `parse` keeps only names `Fields::get` knows.
                Part::Field(name) => fields.get(name).unwrap_or_default(),
            })
            .collect()
    }
}

/// One file as a node gets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Standard base64 of the contents.
    pub data: String,
    /// Where it comes from: `set NAME (image|group|node X)`, or `drover` for the host key.
    pub from: String,
}

impl Delivered {
    pub fn bytes(&self) -> Result<Vec<u8>, FileError> {
        decode(&self.path, &self.data)
    }
}

/// The files `fields.node` gets: from the sets assigned to `image`, then `group`, then the
/// node itself (the later wins on the same path; within one level, sets in name order), with
/// templates rendered. `host_key` (the node's, when the pool has a node key) adds the key
/// pair under [`HOST_KEY_PATH`]; `node_key` (the pool's node key line) is merged into an
/// authorized_keys file a set brings. Sorted by path.
pub fn effective(
    sets: &[FileSet],
    fields: &Fields,
    host_key: Option<&HostKey>,
    node_key: Option<&str>,
) -> Result<Vec<Delivered>, FileError> {
    let mut out: std::collections::BTreeMap<String, Delivered> = Default::default();
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(k) = host_key {
        for (path, mode, text) in [
            (HOST_KEY_PATH.to_string(), 0o600, &k.private),
            (
                format!("{HOST_KEY_PATH}.pub"),
                0o644,
                &format!("{}\n", k.public),
            ),
        ] {
            let d = Delivered {
                path: path.clone(),
                mode,
                uid: 0,
                gid: 0,
                data: b64.encode(text),
                from: "drover (the node's host key)".into(),
            };
            out.insert(path, d);
        }
    }
    let levels = [
        Assignment::Image(fields.image.clone()),
        Assignment::Group(fields.group.clone()),
        Assignment::Node(fields.node.clone()),
    ];
    let mut sorted: Vec<&FileSet> = sets.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for level in levels.iter().filter(|l| !l.name().is_empty()) {
        for set in sorted.iter().filter(|s| s.assigned.contains(level)) {
            for f in &set.files {
                let bytes = match &f.content {
                    Content::Bytes(b) => decode(&f.path, b)?,
                    Content::Template(t) => Template::parse(t)
                        .map_err(|source| FileError::Template {
                            path: f.path.clone(),
                            source,
                        })?
                        .render(fields)
                        .into_bytes(),
                };
                let bytes = match node_key {
                    Some(key) if f.path == AUTHORIZED_KEYS_PATH => {
                        let text = String::from_utf8_lossy(&bytes);
                        authorized_keys(&text, key).map_or(bytes, String::into_bytes)
                    }
                    _ => bytes,
                };
                let d = Delivered {
                    path: f.path.clone(),
                    mode: f.mode,
                    uid: f.uid,
                    gid: f.gid,
                    data: b64.encode(&bytes),
                    from: format!("set {} ({level})", set.name),
                };
                out.insert(f.path.clone(), d);
            }
        }
    }
    Ok(out.into_values().collect())
}

/// The sh script that writes `files` on a running node (read by `sh -s` from standard input):
/// each file goes to a temporary name beside its place, gets its owner and mode, then is
/// renamed over the old one, so a reader never sees half a file. Needs `base64`, `mkdir`,
/// `chown`, `chmod` and `mv` (coreutils or busybox). Stops at the first failure.
pub fn sync_script(files: &[Delivered]) -> String {
    let mut s = String::from("set -e\n");
    for f in files {
        let path = shell_quote(&f.path);
        let tmp = shell_quote(&format!("{}.drover-sync", f.path));
        let dir = f.path.rsplit_once('/').map_or("/", |(d, _)| d);
        let dir = if dir.is_empty() { "/" } else { dir };
        s.push_str(&format!("mkdir -p {}\n", shell_quote(dir)));
        // Made private (a host key must never be readable), opened up by the chmod below. The
        // base64 alphabet has no quote: a quoted heredoc word cannot occur in it.
        s.push_str(&format!(
            "(umask 077 && base64 -d > {tmp}) <<'DROVER_EOF'\n"
        ));
        for chunk in f.data.as_bytes().chunks(76) {
            s.push_str(&String::from_utf8_lossy(chunk));
            s.push('\n');
        }
        s.push_str("DROVER_EOF\n");
        s.push_str(&format!("chown {}:{} {tmp}\n", f.uid, f.gid));
        s.push_str(&format!("chmod {:o} {tmp}\n", f.mode));
        s.push_str(&format!("mv -f {tmp} {path}\n"));
    }
    s.push_str(&format!("echo drover: {} files written\n", files.len()));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        Fields {
            node: "n1".into(),
            ip: "10.0.0.11".into(),
            mac: "52:54:00:00:00:01".into(),
            group: "rack1".into(),
            image: "deb".into(),
            domain: "lab".into(),
            root: "ram".into(),
            image_version: "2".into(),
        }
    }

    fn file(path: &str, text: &str, template: bool) -> SetFile {
        SetFile {
            path: path.into(),
            mode: 0o644,
            uid: 0,
            gid: 0,
            content: if template {
                Content::Template(text.into())
            } else {
                Content::Bytes(base64::engine::general_purpose::STANDARD.encode(text))
            },
        }
    }

    fn set(name: &str, files: Vec<SetFile>, assigned: Vec<Assignment>) -> FileSet {
        FileSet {
            name: name.into(),
            files,
            assigned,
        }
    }

    fn text(d: &Delivered) -> String {
        String::from_utf8(d.bytes().unwrap()).unwrap()
    }

    #[test]
    fn templates_fill_fields_and_refuse_unknown_ones() {
        let t =
            Template::parse("host {{node}}.{{ domain }} at {{ip}}\n{{image}}:{{image_version}}")
                .unwrap();
        assert_eq!(t.render(&fields()), "host n1.lab at 10.0.0.11\ndeb:2");
        assert_eq!(
            Template::parse("no fields").unwrap().render(&fields()),
            "no fields"
        );
        assert_eq!(
            Template::parse("a\nb {{nodename}}"),
            Err(TemplateError::UnknownField {
                line: 2,
                name: "nodename".into()
            })
        );
        let unclosed = Template::parse("x\ny\nz {{node").unwrap_err();
        assert_eq!(unclosed, TemplateError::Unclosed { line: 3 });
        assert!(unclosed.to_string().contains("line 3"), "{unclosed}");
        let unknown = Template::parse("{{secret}}").unwrap_err().to_string();
        assert!(
            unknown.contains("{{secret}}") && unknown.contains("node, ip, mac"),
            "{unknown}"
        );
    }

    #[test]
    fn paths_modes_and_sizes_are_checked() {
        for good in ["/etc/passwd", "/a", "/etc/ssh/sshd_config.d/x.conf"] {
            assert!(valid_path(good), "{good}");
        }
        for bad in [
            "",
            "/",
            "etc/passwd",
            "/etc/",
            "/etc//x",
            "/etc/../x",
            "/./x",
            "/a\nb",
        ] {
            assert!(!valid_path(bad), "{bad:?}");
            assert_eq!(
                check_file(&file(bad, "", false)),
                Err(FileError::BadPath(bad.into()))
            );
        }
        let mut f = file("/etc/x", "x", false);
        f.mode = 0o10644;
        assert_eq!(check_file(&f), Err(FileError::BadMode(0o10644)));
        let big = "x".repeat(MAX_FILE_BYTES + 1);
        assert!(matches!(
            check_file(&file("/etc/x", &big, false)),
            Err(FileError::TooBig { size, .. }) if size == MAX_FILE_BYTES + 1
        ));
        assert!(check_file(&file("/etc/x", &big[1..], false)).is_ok());
        assert!(matches!(
            check_file(&file("/etc/motd", "{{bogus}}", true)),
            Err(FileError::Template { .. })
        ));
        let mut corrupt = file("/etc/x", "", false);
        corrupt.content = Content::Bytes("not base64!".into());
        assert_eq!(check_file(&corrupt).unwrap_err().field(), "content");
    }

    #[test]
    fn node_wins_over_group_over_image() {
        let sets = vec![
            set(
                "base",
                vec![
                    file("/etc/motd", "image\n", false),
                    file("/etc/a", "a", false),
                ],
                vec![Assignment::Image("deb".into())],
            ),
            set(
                "rack",
                vec![file("/etc/motd", "group {{group}}\n", true)],
                vec![
                    Assignment::Group("rack1".into()),
                    Assignment::Image("other".into()),
                ],
            ),
            set(
                "mine",
                vec![file("/etc/motd", "node {{node}}\n", true)],
                vec![Assignment::Node("n1".into())],
            ),
            set(
                "unused",
                vec![file("/etc/b", "b", false)],
                vec![Assignment::Node("n2".into())],
            ),
        ];
        let got = effective(&sets, &fields(), None, None).unwrap();
        let paths: Vec<&str> = got.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["/etc/a", "/etc/motd"]);
        assert_eq!(text(&got[1]), "node n1\n");
        assert_eq!(got[1].from, "set mine (node n1)");
        assert_eq!(got[0].from, "set base (image deb)");

        // Without the node's own set, the group's wins; without a group, the image's.
        let two = &sets[..2];
        let got = effective(two, &fields(), None, None).unwrap();
        assert_eq!(text(&got[1]), "group rack1\n");
        let lone = Fields {
            group: String::new(),
            ..fields()
        };
        let got = effective(two, &lone, None, None).unwrap();
        assert_eq!(text(&got[1]), "image\n");
    }

    #[test]
    fn host_key_and_authorized_keys() {
        let key = crate::service::hostkey::derive(b"secret", "n1");
        let node_key = "ssh-ed25519 AAAAC3Nza drover-nodes";
        let sets = vec![set(
            "keys",
            vec![file(
                AUTHORIZED_KEYS_PATH,
                "ssh-ed25519 AAAAadmin admin@desk\n",
                false,
            )],
            vec![Assignment::Node("n1".into())],
        )];
        let got = effective(&sets, &fields(), Some(&key), Some(node_key)).unwrap();
        let paths: Vec<&str> = got.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                HOST_KEY_PATH,
                "/etc/ssh/ssh_host_ed25519_key.pub",
                AUTHORIZED_KEYS_PATH
            ]
        );
        assert_eq!(got[0].mode, 0o600);
        assert_eq!(text(&got[0]), key.private);
        assert_eq!(text(&got[1]), format!("{}\n", key.public));
        assert_eq!(
            text(&got[2]),
            format!("ssh-ed25519 AAAAadmin admin@desk\n{node_key}\n")
        );
        // The same node gets the same key on every call (every boot).
        let again = effective(&sets, &fields(), Some(&key), Some(node_key)).unwrap();
        assert_eq!(again, got);
    }

    #[test]
    fn sync_script_writes_each_file_atomically() {
        let d = Delivered {
            path: "/etc/it's".into(),
            mode: 0o640,
            uid: 0,
            gid: 42,
            data: base64::engine::general_purpose::STANDARD.encode("x".repeat(100)),
            from: String::new(),
        };
        let s = sync_script(&[d]);
        assert!(s.starts_with("set -e\n"), "{s}");
        assert!(s.contains("mkdir -p /etc\n"), "{s}");
        let write = "(umask 077 && base64 -d > '/etc/it'\\''s.drover-sync') <<'DROVER_EOF'\n";
        assert!(s.contains(write), "{s}");
        assert!(
            s.contains("chown 0:42 '/etc/it'\\''s.drover-sync'\nchmod 640 "),
            "{s}"
        );
        assert!(
            s.contains("mv -f '/etc/it'\\''s.drover-sync' '/etc/it'\\''s'\n"),
            "{s}"
        );
        assert!(s.lines().all(|l| l.len() <= 80), "{s}");
        assert!(s.ends_with("echo drover: 1 files written\n"));
    }
}
