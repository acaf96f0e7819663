//! What `image shell` changed in a tree: two snapshots of it (path -> [`Stamp`], taken by
//! `super::shell` before and after the command) compared into a [`Summary`] of files added,
//! changed and removed, with their bytes.
//!
//! A file counts as changed when its type, mode, owner, size, link target, inode, mtime or
//! ctime differ: a rewrite with the same bytes counts, which is what the user did. A
//! directory counts as changed only when its type, mode or owner do: its entries changing
//! are the entries' own additions and removals.
//!
//! Pure: no file system access here. Not here: content hashes (the stamps are metadata).

use std::collections::BTreeMap;

/// How many paths of each kind the summary names.
pub const MAX_LISTED: usize = 20;

/// What a snapshot keeps of one entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stamp {
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub ino: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    /// A symlink's target.
    pub target: Option<String>,
}

/// `S_IFMT` and `S_IFDIR` (POSIX values, the same on every Linux architecture).
const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;

impl Stamp {
    fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    fn same(&self, new: &Stamp) -> bool {
        if self.is_dir() && new.is_dir() {
            (self.mode, self.uid, self.gid) == (new.mode, new.uid, new.gid)
        } else {
            self == new
        }
    }

    /// Bytes of data: a regular file's size (directories and the rest count 0).
    fn bytes(&self) -> u64 {
        if self.mode & S_IFMT == 0o100_000 {
            self.size
        } else {
            0
        }
    }
}

/// Paths (relative to the tree's root, `/`-separated) and their stamps.
pub type Snapshot = BTreeMap<String, Stamp>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub added: u64,
    pub changed: u64,
    pub removed: u64,
    /// Bytes of the added files and of the changed files as they are now.
    pub bytes_written: u64,
    /// Bytes of the removed files.
    pub bytes_removed: u64,
    /// The first [`MAX_LISTED`] paths of each kind, sorted.
    pub added_paths: Vec<String>,
    pub changed_paths: Vec<String>,
    pub removed_paths: Vec<String>,
}

impl Summary {
    pub fn is_empty(&self) -> bool {
        self.added == 0 && self.changed == 0 && self.removed == 0
    }
}

fn note(list: &mut Vec<String>, count: &mut u64, path: &str) {
    *count += 1;
    if list.len() < MAX_LISTED {
        list.push(path.to_string());
    }
}

/// What changed from `old` to `new`.
pub fn diff(old: &Snapshot, new: &Snapshot) -> Summary {
    let mut s = Summary::default();
    for (path, stamp) in new {
        match old.get(path) {
            None => {
                note(&mut s.added_paths, &mut s.added, path);
                s.bytes_written += stamp.bytes();
            }
            Some(before) if !before.same(stamp) => {
                note(&mut s.changed_paths, &mut s.changed, path);
                s.bytes_written += stamp.bytes();
            }
            Some(_) => {}
        }
    }
    for (path, stamp) in old {
        if !new.contains_key(path) {
            note(&mut s.removed_paths, &mut s.removed, path);
            s.bytes_removed += stamp.bytes();
        }
    }
    s
}

/// The summary as lines for the terminal.
pub fn render(s: &Summary) -> String {
    let mut out = format!(
        "{} added, {} changed, {} removed; {} bytes written, {} bytes removed\n",
        s.added, s.changed, s.removed, s.bytes_written, s.bytes_removed
    );
    for (sign, paths, count) in [
        ('+', &s.added_paths, s.added),
        ('~', &s.changed_paths, s.changed),
        ('-', &s.removed_paths, s.removed),
    ] {
        for p in paths {
            out += &format!("  {sign} /{p}\n");
        }
        let more = count.saturating_sub(paths.len() as u64);
        if more > 0 {
            out += &format!("  {sign} ... and {more} more\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64, ino: u64) -> Stamp {
        Stamp {
            mode: 0o100_644,
            size,
            ino,
            ..Stamp::default()
        }
    }

    fn dir(mode: u32, mtime_ns: i128) -> Stamp {
        Stamp {
            mode: S_IFDIR | mode,
            mtime_ns,
            ..Stamp::default()
        }
    }

    fn snap(entries: &[(&str, Stamp)]) -> Snapshot {
        entries
            .iter()
            .map(|(p, s)| (p.to_string(), s.clone()))
            .collect()
    }

    #[test]
    fn one_added_file_in_a_touched_directory() {
        let old = snap(&[("etc", dir(0o755, 1)), ("etc/hosts", file(10, 2))]);
        let new = snap(&[
            ("etc", dir(0o755, 5)),
            ("etc/hosts", file(10, 2)),
            ("etc/drover-test", file(2, 3)),
        ]);
        let s = diff(&old, &new);
        assert_eq!((s.added, s.changed, s.removed), (1, 0, 0));
        assert_eq!(s.bytes_written, 2);
        assert_eq!(s.added_paths, ["etc/drover-test"]);
        assert!(render(&s).contains("  + /etc/drover-test\n"));
    }

    #[test]
    fn changes_and_removals_count_their_bytes() {
        let mut rewritten = file(10, 2);
        rewritten.ctime_ns = 9;
        let mut link = Stamp {
            mode: 0o120_777,
            target: Some("a".into()),
            ..Stamp::default()
        };
        let old = snap(&[
            ("a", file(10, 2)),
            ("b", file(7, 4)),
            ("d", dir(0o755, 0)),
            ("l", link.clone()),
        ]);
        link.target = Some("b".into());
        let new = snap(&[("a", rewritten), ("d", dir(0o700, 0)), ("l", link)]);
        let s = diff(&old, &new);
        assert_eq!((s.added, s.changed, s.removed), (0, 3, 1));
        assert_eq!((s.bytes_written, s.bytes_removed), (10, 7));
        assert_eq!(s.changed_paths, ["a", "d", "l"]);
        assert_eq!(s.removed_paths, ["b"]);
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn long_lists_are_cut_with_a_count() {
        let new: Snapshot = (0..MAX_LISTED + 5)
            .map(|i| (format!("f{i:03}"), file(1, i as u64)))
            .collect();
        let s = diff(&Snapshot::new(), &new);
        assert_eq!(s.added, (MAX_LISTED + 5) as u64);
        assert_eq!(s.added_paths.len(), MAX_LISTED);
        assert!(render(&s).contains("  + ... and 5 more\n"));
    }
}
