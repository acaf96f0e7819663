//! Whole-store copies for `drover backup` and `drover restore`: a compacted copy of the LMDB
//! environment taken in one read transaction (so it is consistent even while a server
//! writes: LMDB lets readers run beside the one writer), and giving a restored store a new
//! member id.
//!
//! Not here: the backup file's format, image blobs, what restore checks (`crate::backup`).

use super::{encode, random_u64, Store, StoreError};
use heed::CompactionOption;
use std::path::Path;

impl Store {
    /// Writes a compacted copy of the whole environment (free pages left out) to `dest`,
    /// which must not exist yet. LMDB takes the copy inside one read transaction: it holds
    /// exactly the writes committed before it started.
    pub fn copy_compacted(&self, dest: &Path) -> Result<(), StoreError> {
        let lmdb = |source| StoreError::Lmdb {
            path: dest.to_path_buf(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(dest)
            .map_err(|e| lmdb(heed::Error::Io(e)))?;
        self.env
            .copy_to_file(&mut file, CompactionOption::Enabled)
            .map_err(lmdb)?;
        file.sync_all().map_err(|e| lmdb(heed::Error::Io(e)))
    }

    /// Gives this store a new random member id and returns it. For a store restored into a
    /// new pool member: two members must never write under the same id, or their versions
    /// could collide and the version vectors would take one member's rows for the other's.
    /// Rows written under the old id keep it (and `vv/<old>` stays): they are that member's
    /// writes, as every other member has them.
    pub fn renew_member(&mut self) -> Result<u64, StoreError> {
        let id = loop {
            let id = random_u64();
            if id != self.member {
                break id;
            }
        };
        let mut txn = self.env.write_txn()?;
        self.meta.put(&mut txn, "member", &encode(&id))?;
        txn.commit()?;
        self.member = id;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::Group;

    fn temp(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("drover-snap-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_copy_opens_with_the_rows_and_can_get_a_new_member_id() {
        let (src, dst) = (temp("src"), temp("dst"));
        let store = Store::open(&src).unwrap();
        store
            .write::<_, StoreError>(|w| {
                w.put(&Group {
                    name: "rack1".into(),
                    image: None,
                    image_version: None,
                    swarm: None,
                })
            })
            .unwrap();
        std::fs::create_dir_all(dst.join("store")).unwrap();
        store.copy_compacted(&dst.join("store/data.mdb")).unwrap();
        assert!(
            store.copy_compacted(&dst.join("store/data.mdb")).is_err(),
            "no overwrite"
        );

        let mut copy = Store::open(&dst).unwrap();
        assert_eq!(copy.member(), store.member());
        let old = copy.member();
        let new = copy.renew_member().unwrap();
        assert_ne!(new, old);
        assert_eq!(copy.member(), new);
        let groups = copy.read(|r| r.all::<Group>()).unwrap();
        assert_eq!(groups.len(), 1);
        // A write after the renewal carries the new id; the old row keeps the old one.
        copy.write::<_, StoreError>(|w| {
            w.put(&Group {
                name: "rack2".into(),
                image: None,
                image_version: None,
                swarm: None,
            })
        })
        .unwrap();
        let vv = copy.read(|r| r.version_vector()).unwrap();
        assert!(vv.contains_key(&old) && vv.contains_key(&new), "{vv:?}");
        let _ = std::fs::remove_dir_all(&src);
        let _ = std::fs::remove_dir_all(&dst);
    }
}
