//! Replicas on real stores: members write at random (nodes with colliding names and MACs,
//! deletes, leases), exchange over a seeded lossy network with partitions and members that
//! are down for a while; after healing, every member holds the same rows, the same version
//! vector, and the same owner for every unique key.

use super::*;
use crate::store::model::{Lease, LeaseState, Mac, Node, RelayInfo};
use crate::store::replicate::Row;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::net::Ipv4Addr;
use std::path::PathBuf;

struct Member {
    store: Store,
    dir: PathBuf,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn member(tag: &str, i: usize) -> Member {
    let dir = std::env::temp_dir().join(format!("drover-sync-{tag}-{}-{i}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Member {
        store: Store::open(&dir).unwrap(),
        dir,
    }
}

fn node(n: u8, mac: u8) -> Node {
    Node {
        name: format!("n{n}"),
        mac: Mac([0x52, 0x54, 0, 0, 0, mac]),
        ip: None,
        image: None,
        group: None,
        aliases: Vec::new(),
        root: None,
        image_version: None,
        swarm: None,
    }
}

fn lease(last: u8, mac: u8, t: u64) -> Lease {
    Lease {
        ip: Ipv4Addr::new(10, 0, 0, last),
        mac: Mac([0x52, 0x54, 0, 0, 1, mac]),
        client_id: None,
        hostname: None,
        state: LeaseState::Bound,
        start: t,
        expires: t + 3600,
        network: "lab".into(),
        relay: RelayInfo::default(),
    }
}

/// One direction of an exchange: `to` asks `from`.
fn pull(to: &Store, from: &Store, limit: usize) -> usize {
    let batches = answer(from, &digest(to).unwrap(), limit).unwrap();
    apply(to, &batches).unwrap()
}

fn rows(s: &Store) -> Vec<Row> {
    s.read(|r| r.all_rows()).unwrap()
}

fn mac_owner(s: &Store, mac: u8) -> Option<String> {
    s.read(|r| r.owner(&format!("mac/{}", Mac([0x52, 0x54, 0, 0, 0, mac]))))
        .unwrap()
}

fn run(seed: u64) {
    let n = 4;
    let members: Vec<Member> = (0..n).map(|i| member(&format!("s{seed}"), i)).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut down = [false; 4];
    let mut cut = [[false; 4]; 4];
    let mut t = 1_000_000;
    for _ in 0..400 {
        t += 1;
        let i = rng.random_range(0..n);
        match rng.random_range(0..10) {
            // Writes; a refused put (the MAC is another node's here) is an admin error.
            0..=3 if !down[i] => {
                let s = &members[i].store;
                let nd = node(rng.random_range(0..10), rng.random_range(0..12));
                let _ = s.write(|w| w.put(&nd));
            }
            4 if !down[i] => {
                let name = format!("n{}", rng.random_range(0..10));
                members[i].store.write(|w| w.delete::<Node>(&name)).unwrap();
            }
            5 if !down[i] => {
                let l = lease(rng.random_range(1..20), rng.random_range(0..30), t);
                members[i].store.write(|w| w.put(&l)).unwrap();
            }
            // Exchanges, lossy, small batches so that catching up takes several rounds.
            6..=8 => {
                let j = rng.random_range(0..n);
                if i != j && !down[i] && !down[j] && !cut[i][j] && rng.random_bool(0.8) {
                    pull(&members[i].store, &members[j].store, 5);
                }
            }
            // Topology changes.
            _ => {
                if rng.random_bool(0.5) {
                    down[i] = !down[i];
                } else {
                    let j = rng.random_range(0..n);
                    cut[i][j] = !cut[i][j];
                    cut[j][i] = cut[i][j];
                }
            }
        }
    }
    // Heal: everyone up and connected; exchange until nothing changes.
    let mut rounds = 0;
    loop {
        let mut changed = 0;
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    changed += pull(&members[i].store, &members[j].store, 50);
                }
            }
        }
        rounds += 1;
        if changed == 0 {
            break;
        }
        assert!(rounds < 100, "seed {seed}: no convergence after 100 rounds");
    }
    let reference = rows(&members[0].store);
    assert!(!reference.is_empty());
    let vv = digest(&members[0].store).unwrap();
    for m in &members[1..] {
        let theirs = rows(&m.store);
        let first_diff = reference.iter().zip(&theirs).find(|(a, b)| a != b);
        assert!(
            theirs.len() == reference.len() && first_diff.is_none(),
            "seed {seed}: {} rows vs {}; first difference: {first_diff:?}",
            reference.len(),
            theirs.len()
        );
        assert_eq!(
            digest(&m.store).unwrap(),
            vv,
            "seed {seed}: version vectors differ"
        );
    }
    for mac in 0..12 {
        let owner = mac_owner(&members[0].store, mac);
        // The owner is the newest live node claiming the MAC.
        let expected = reference
            .iter()
            .filter(|r| r.table == crate::store::Table::Nodes && r.value.is_some())
            .filter(|r| {
                let n: Node = serde_json::from_value(r.value.clone().unwrap()).unwrap();
                n.mac == Mac([0x52, 0x54, 0, 0, 0, mac])
            })
            .max_by_key(|r| r.version)
            .map(|r| r.key.clone());
        assert_eq!(owner, expected, "seed {seed}: owner of MAC {mac}");
        for m in &members[1..] {
            assert_eq!(mac_owner(&m.store, mac), owner, "seed {seed}: MAC {mac}");
        }
    }
}

#[test]
fn random_writes_partitions_and_deaths_converge() {
    for seed in 1..=6 {
        run(seed);
    }
}

#[test]
fn a_member_catches_up_in_bounded_batches_and_newer_local_rows_win() {
    let a = member("catch", 0);
    let b = member("catch", 1);
    for k in 0..25u8 {
        a.store.write(|w| w.put(&node(k, k))).unwrap();
    }
    // b writes n3 later than a did: b's n3 must survive a's older one.
    b.store.write(|w| w.put(&node(3, 200))).unwrap();
    let mut rounds = 0;
    while pull(&b.store, &a.store, 10) > 0 || rounds == 0 {
        rounds += 1;
    }
    assert!(rounds >= 2, "25 rows in batches of 10 take several rounds");
    pull(&a.store, &b.store, 10);
    assert_eq!(rows(&a.store), rows(&b.store));
    let n3: Node = b.store.read(|r| r.get("n3")).unwrap().unwrap();
    assert_eq!(n3.mac, Mac([0x52, 0x54, 0, 0, 0, 200]));
    // A deletion travels as a tombstone.
    a.store.write(|w| w.delete::<Node>("n7")).unwrap();
    pull(&b.store, &a.store, 10);
    assert_eq!(b.store.read(|r| r.get::<Node>("n7")).unwrap(), None);
    assert_eq!(mac_owner(&b.store, 7), None);
    // Nothing more to send once equal.
    assert!(answer(&a.store, &digest(&b.store).unwrap(), 10)
        .unwrap()
        .is_empty());
}
