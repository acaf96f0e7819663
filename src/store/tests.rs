use super::model::*;
use super::*;

fn temp_store() -> (Store, PathBuf) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "drover-store-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    (Store::open(&dir).unwrap(), dir)
}

fn node(name: &str, mac: &str, ip: Option<&str>) -> Node {
    Node {
        name: name.into(),
        mac: mac.parse().unwrap(),
        ip: ip.map(|i| i.parse().unwrap()),
        image: None,
        group: None,
        aliases: Vec::new(),
        root: None,
        image_version: None,
        swarm: None,
    }
}

#[test]
fn put_get_delete_with_versions_and_feed() {
    let (store, _dir) = temp_store();
    store
        .write(|w| w.put(&node("n1", "52:54:00:00:00:01", Some("10.0.0.1"))))
        .unwrap();
    store
        .write(|w| w.put(&node("n2", "52:54:00:00:00:02", None)))
        .unwrap();
    let got = store.read(|r| r.get::<Node>("n1")).unwrap().unwrap();
    assert_eq!(got.ip, Some("10.0.0.1".parse().unwrap()));
    assert!(store.write(|w| w.delete::<Node>("n1")).unwrap());
    assert!(!store.write(|w| w.delete::<Node>("n1")).unwrap());
    assert_eq!(store.read(|r| r.get::<Node>("n1")).unwrap(), None);
    let changes = store.read(|r| r.changes_since(0, 100)).unwrap();
    assert_eq!(changes.len(), 3);
    assert!(changes.windows(2).all(|w| w[0].version < w[1].version));
    assert!(changes[2].deleted && changes[2].key == "n1");
    assert_eq!(store.last_seq().unwrap(), 3);
}

#[test]
fn unique_keys_conflict_and_failed_writes_change_nothing() {
    let (store, _dir) = temp_store();
    store
        .write(|w| w.put(&node("n1", "52:54:00:00:00:01", Some("10.0.0.1"))))
        .unwrap();
    let err = store
        .write(|w| {
            w.put(&node("ok", "52:54:00:00:00:09", None))?;
            w.put(&node("n2", "52:54:00:00:00:01", None))
        })
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { ref owner, .. } if owner == "n1"),
        "{err}"
    );
    // The whole transaction was dropped, including the first put.
    assert_eq!(store.read(|r| r.get::<Node>("ok")).unwrap(), None);
    assert_eq!(store.last_seq().unwrap(), 1);
    // Changing a node's own MAC frees the old one.
    store
        .write(|w| w.put(&node("n1", "52:54:00:00:00:03", Some("10.0.0.1"))))
        .unwrap();
    store
        .write(|w| w.put(&node("n2", "52:54:00:00:00:01", None)))
        .unwrap();
}

#[test]
fn shared_view_refreshes_in_place_or_beside_a_snapshot() {
    let (store, _dir) = temp_store();
    let shared = SharedView::load(Arc::new(store)).unwrap();
    let store = shared.store().clone();
    assert!(!shared.refresh().unwrap());
    store
        .write(|w| w.put(&node("n1", "52:54:00:00:00:01", None)))
        .unwrap();
    // No snapshot out: the view is updated where it is.
    let before = Arc::as_ptr(&shared.snapshot());
    assert!(shared.refresh().unwrap());
    let after = shared.snapshot();
    assert_eq!(Arc::as_ptr(&after), before);
    assert!(after.nodes.contains_key("n1"));
    // A snapshot held through a refresh stays as it was; the next one has the change.
    store.write(|w| w.delete::<Node>("n1")).unwrap();
    assert!(shared.refresh().unwrap());
    assert!(after.nodes.contains_key("n1"));
    let fresh = shared.snapshot();
    assert!(fresh.nodes.is_empty());
    assert!(fresh
        .node_by_mac("52:54:00:00:00:01".parse().unwrap())
        .is_none());
    assert_eq!(fresh.seq(), store.last_seq().unwrap());
    assert!(!shared.refresh().unwrap());
}

#[test]
fn view_follows_the_feed_across_store_handles() {
    let (store, _dir) = temp_store();
    let mut view = View::load(&store).unwrap();
    assert!(view.nodes.is_empty());
    // Writes by another process (the CLI) land in the same feed; integration/cli.rs covers
    // the two-process case, since LMDB allows one environment per process.
    let other = &store;
    other
        .write(|w| w.put(&node("n1", "52:54:00:00:00:01", None)))
        .unwrap();
    assert!(view.refresh(&store).unwrap());
    assert!(view
        .node_by_mac("52:54:00:00:00:01".parse().unwrap())
        .is_some());
    other.write(|w| w.delete::<Node>("n1")).unwrap();
    view.refresh(&store).unwrap();
    assert!(view.nodes.is_empty());
    assert!(view
        .node_by_mac("52:54:00:00:00:01".parse().unwrap())
        .is_none());
    assert!(!view.refresh(&store).unwrap());
}

#[test]
fn schema_1_migration_rebuilds_origins_vector_and_claims() {
    let (store, _dir) = temp_store();
    store
        .write(|w| {
            w.put(&node("n1", "52:54:00:00:00:01", Some("10.0.0.1")))?;
            w.put(&node("n2", "52:54:00:00:00:02", None))
        })
        .unwrap();
    store.write(|w| w.delete::<Node>("n2")).unwrap();
    let vv = store.read(|r| r.version_vector()).unwrap();
    let batch = store
        .read(|r| r.rows_after(store.member(), None, 10))
        .unwrap();
    assert_eq!(batch.rows.len(), 2, "n1 and n2's tombstone");
    // Strip what schema 2 added, as a schema-1 store would be, and migrate.
    let mut txn = store.env.write_txn().unwrap();
    store.origins.clear(&mut txn).unwrap();
    let meta_keys: Vec<String> = store
        .meta
        .prefix_iter(&txn, "vv/")
        .unwrap()
        .map(|i| i.unwrap().0.to_string())
        .collect();
    for k in meta_keys {
        store.meta.delete(&mut txn, &k).unwrap();
    }
    let claims: Vec<String> = store
        .index
        .prefix_iter(&txn, "claim\x1f")
        .unwrap()
        .map(|i| i.unwrap().0.to_string())
        .collect();
    assert!(!claims.is_empty());
    for k in &claims {
        store.index.delete(&mut txn, k).unwrap();
    }
    replicate::build_origins(
        &store.records,
        &store.index,
        &store.origins,
        &store.meta,
        &mut txn,
    )
    .unwrap();
    txn.commit().unwrap();
    assert_eq!(store.read(|r| r.version_vector()).unwrap(), vv);
    assert_eq!(
        store
            .read(|r| r.rows_after(store.member(), None, 10))
            .unwrap(),
        batch
    );
    let rebuilt: Vec<String> = store
        .read(|r| {
            r.store
                .index
                .prefix_iter(r.txn, "claim\x1f")?
                .map(|i| Ok(i?.0.to_string()))
                .collect::<Result<Vec<_>, StoreError>>()
        })
        .unwrap();
    assert_eq!(rebuilt, claims);
    // The index still guards the MAC.
    let err = store
        .write(|w| w.put(&node("n3", "52:54:00:00:00:01", None)))
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
}

/// `n` nodes, one write (one feed entry) each.
fn add_nodes(store: &Store, from: u32, n: u32) {
    for i in from..from + n {
        let mac = format!("52:54:00:00:{:02x}:{:02x}", i / 256, i % 256);
        store
            .write(|w| w.put(&node(&format!("n{i}"), &mac, None)))
            .unwrap();
    }
}

fn compact(store: &Store, keep: u64, covered: impl Fn(&Change) -> bool) -> u64 {
    store
        .write(|w| w.compact_feed(keep, 1000, covered))
        .unwrap()
}

#[test]
fn feed_compaction_keeps_the_newest_and_stops_at_the_first_uncovered() {
    let (store, _dir) = temp_store();
    add_nodes(&store, 0, 10);
    assert_eq!(compact(&store, 10, |_| true), 0, "all ten are the newest");
    // Entry 5 is not covered: 1..=4 go, 5 and after stay though 6.. are covered.
    assert_eq!(compact(&store, 3, |c| c.key != "n4"), 4);
    assert_eq!(store.read(|r| r.feed_floor()).unwrap(), 4);
    let left = store.read(|r| r.changes_since(0, 100)).unwrap();
    assert_eq!(left.first().map(|c| c.seq), Some(5));
    assert_eq!(compact(&store, 3, |_| true), 3, "5..=7; the newest 3 stay");
    assert_eq!(store.read(|r| r.feed_floor()).unwrap(), 7);
    assert_eq!(store.read(|r| r.changes_since(0, 100)).unwrap().len(), 3);
    // Numbering goes on after the kept entries; the records are all still there.
    add_nodes(&store, 10, 1);
    assert_eq!(store.last_seq().unwrap(), 11);
    assert_eq!(store.read(|r| r.all::<Node>()).unwrap().len(), 11);
    // Replication does not read the feed: a fresh peer still gets every row.
    let rows = store.read(|r| r.all_rows()).unwrap();
    assert_eq!(rows.len(), 11);
}

#[test]
fn a_view_behind_the_compacted_feed_reloads() {
    let (store, _dir) = temp_store();
    let store = Arc::new(store);
    add_nodes(&store, 0, 2);
    let mut view = View::load(&store).unwrap();
    let shared = SharedView::load(store.clone()).unwrap();
    let held = shared.snapshot();
    add_nodes(&store, 2, 5);
    store.write(|w| w.delete::<Node>("n0")).unwrap();
    assert_eq!(compact(&store, 1, |_| true), 7);
    assert!(view.refresh(&store).unwrap());
    assert!(shared.refresh().unwrap());
    for v in [&view, &*shared.snapshot()] {
        assert_eq!(v.nodes.len(), 6);
        assert!(!v.nodes.contains_key("n0"));
        assert_eq!(v.seq(), store.last_seq().unwrap());
    }
    assert_eq!(held.nodes.len(), 2, "a snapshot out stays as it was");
    assert!(!view.refresh(&store).unwrap());
    assert!(!shared.refresh().unwrap());
    // A view that is level with the floor reads on from the feed.
    add_nodes(&store, 7, 1);
    assert!(view.refresh(&store).unwrap());
    assert!(view.nodes.contains_key("n7"));
}

/// Every row `from` has that `to` lacks, merged into `to`; how many changed it.
fn pull(to: &Store, from: &Store) -> usize {
    let theirs = from.read(|r| r.version_vector()).unwrap();
    let mine = to.read(|r| r.version_vector()).unwrap();
    let mut changed = 0;
    for origin in theirs.keys() {
        let after = mine.get(origin).copied();
        let batch = from.read(|r| r.rows_after(*origin, after, 100)).unwrap();
        changed += to.write(|w| w.merge_batch(&batch)).unwrap();
    }
    changed
}

#[test]
fn boot_logs_of_one_boot_on_two_members_merge_as_sets() {
    let event = |at_ms, source: &str| BootEvent {
        at_ms,
        stage: BootStage::Dhcp,
        source: source.into(),
        detail: format!("{source} at {at_ms}"),
    };
    let log = |events: Vec<BootEvent>| BootLog {
        name: "n1".into(),
        events,
    };
    let (a, _da) = temp_store();
    let (b, _db) = temp_store();
    // Both recorded the node's boot, each its own part (and one event both saw).
    let shared = event(5, "dhcp");
    a.write(|w| w.put(&log(vec![event(1, "dhcp"), shared.clone()])))
        .unwrap();
    b.write(|w| w.put(&log(vec![shared.clone(), event(7, "http")])))
        .unwrap();
    // Until nothing changes any more, in both directions.
    let mut rounds = 0;
    while pull(&a, &b) + pull(&b, &a) > 0 {
        rounds += 1;
        assert!(rounds < 5, "the exchange does not settle");
    }
    let want = log(vec![event(1, "dhcp"), shared, event(7, "http")]);
    for s in [&a, &b] {
        assert_eq!(
            s.read(|r| r.get::<BootLog>("n1")).unwrap(),
            Some(want.clone())
        );
    }
    // Other tables still take the last writer.
    a.write(|w| w.put(&node("n1", "52:54:00:00:00:01", None)))
        .unwrap();
    // Later by the wall clock, so that b's write is the last.
    std::thread::sleep(std::time::Duration::from_millis(5));
    b.write(|w| w.put(&node("n1", "52:54:00:00:00:01", Some("10.0.0.9"))))
        .unwrap();
    while pull(&a, &b) + pull(&b, &a) > 0 {}
    let ip = |s: &Store| s.read(|r| r.get::<Node>("n1")).unwrap().and_then(|n| n.ip);
    assert_eq!(
        (ip(&a), ip(&b)),
        (ip(&b), Some("10.0.0.9".parse().unwrap()))
    );
    // A union longer than a log keeps the newest.
    let many = log((0..40).map(|i| event(i, "dhcp")).collect());
    let more = log((40..80).map(|i| event(i, "http")).collect());
    let u = many.union(&more);
    assert_eq!(u.events.len(), BootLog::MAX_EVENTS);
    assert_eq!(u.events.first().map(|e| e.at_ms), Some(16));
    assert_eq!(u, more.union(&many));
}
