//! Image versions end to end below the CLI: records older than versions, new versions,
//! rollback, pins of nodes and groups, and what the boot path picks.

use crate::admin::{self, AddImage, AdminError, ImageChange, Made, NodeChange};
use crate::http::ipxe;
use crate::store::model::{Group, Image, ImageFile, ImageFiles, Node};
use crate::store::{Store, View};
use std::path::PathBuf;

fn temp_store(name: &str) -> (Store, PathBuf) {
    let dir = std::env::temp_dir().join(format!("drover-versions-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    (Store::open(&dir).unwrap(), dir)
}

fn file(c: char, size: u64) -> ImageFile {
    ImageFile {
        blob: c.to_string().repeat(64),
        size,
    }
}

fn files(c: char) -> ImageFiles {
    ImageFiles {
        kernel: file(c, 10),
        initrd: None,
        rootfs: Some(file(c.to_ascii_uppercase(), 100)),
        initramfs: Some(file('f', 5)),
    }
}

fn add(what: &str) -> AddImage {
    AddImage {
        replace: true,
        settings: ImageChange::default(),
        made: Made {
            by: "local test".into(),
            what: what.into(),
        },
    }
}

/// An image record as drovers before versions wrote it (no `versions` member).
const LEGACY: &str = r#"{"name":"img","kernel":{"blob":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":10},"initrd":null,"cmdline":"quiet","rootfs":{"blob":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","size":100},"initramfs":{"blob":"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff","size":5}}"#;

fn node(name: &str, image: Option<&str>, group: Option<&str>) -> Node {
    Node {
        name: name.into(),
        mac: format!(
            "52:54:00:00:00:{:02x}",
            name.len() + name.as_bytes()[0] as usize
        )
        .parse()
        .unwrap(),
        ip: None,
        image: image.map(Into::into),
        group: group.map(Into::into),
        aliases: Vec::new(),
        root: None,
        image_version: None,
        swarm: None,
    }
}

#[test]
fn a_record_older_than_versions_is_version_1() {
    let legacy: Image = serde_json::from_str(LEGACY).unwrap();
    assert!(legacy.versions.is_empty());
    let h = legacy.history();
    assert_eq!(h.len(), 1);
    assert_eq!((h[0].number, h[0].created_ms), (1, 0));
    assert_eq!(h[0].files, files('a'));
    assert_eq!(legacy.latest_version(), 1);
    assert_eq!(legacy.version_files(1), Some(files('a')));
    assert_eq!(legacy.version_files(2), None);
    // Written back unchanged, it stays without versions (old drovers read it the same).
    assert!(!serde_json::to_string(&legacy).unwrap().contains("versions"));
}

#[test]
fn changes_add_versions_and_rollback_appends() {
    let (store, dir) = temp_store("rollback");
    let legacy: Image = serde_json::from_str(LEGACY).unwrap();
    store.write(|w| w.put(&legacy)).unwrap();

    let v2 = admin::record_files(&store, "img", files('b'), &add("import b.tar")).unwrap();
    assert_eq!(v2.cmdline, "quiet", "settings are kept");
    let h = v2.history();
    assert_eq!(h.iter().map(|v| v.number).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(h[0].files, files('a'), "the old files became version 1");
    assert_eq!(
        (h[1].by.as_str(), h[1].what.as_str()),
        ("local test", "import b.tar")
    );
    assert!(h[1].created_ms > 0);
    assert_eq!(v2.files(), files('b'));

    let v3 = admin::rollback_image(&store, "img", 1, "user admin").unwrap();
    let h = v3.history();
    assert_eq!(h.len(), 3);
    assert_eq!(h[2].number, 3);
    assert_eq!(h[2].what, "rollback to 1");
    assert_eq!(h[2].by, "user admin");
    assert_eq!(v3.files(), files('a'));
    assert_eq!(h[1].files, files('b'), "history is append-only");
    // Every version's blobs are what a member must hold.
    let blobs: Vec<&str> = v3.all_files().map(|f| f.blob.as_str()).collect();
    assert!(blobs.contains(&"b".repeat(64).as_str()));

    let e = admin::rollback_image(&store, "img", 9, "x").unwrap_err();
    assert!(matches!(e, AdminError::NoVersion { version: 9, .. }), "{e}");
    assert!(e.to_string().contains("drover image history img"), "{e}");
    let e = admin::rollback_image(&store, "nope", 1, "x").unwrap_err();
    assert!(matches!(e, AdminError::Unknown { .. }), "{e}");

    // Without `replace`, an existing name is refused.
    let fresh = AddImage {
        replace: false,
        ..add("add")
    };
    assert!(matches!(
        admin::record_files(&store, "img", files('c'), &fresh),
        Err(AdminError::Exists { .. })
    ));
    let new = admin::record_files(&store, "new", files('c'), &fresh).unwrap();
    assert_eq!(new.history().len(), 1);
    assert_eq!(new.history()[0].what, "add");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn pins_of_nodes_and_groups_pick_what_boots() {
    let (store, dir) = temp_store("pins");
    admin::record_files(&store, "img", files('a'), &add("add")).unwrap();
    admin::record_files(&store, "img", files('b'), &add("add")).unwrap();
    admin::record_files(&store, "img", files('c'), &add("add")).unwrap();
    let group = |pin| Group {
        name: "rack".into(),
        image: Some("img".into()),
        image_version: pin,
        swarm: None,
    };
    admin::put_group(&store, &group(Some(2))).unwrap();
    assert!(matches!(
        admin::put_group(&store, &group(Some(7))),
        Err(AdminError::NoVersion {
            field: "image_version",
            ..
        })
    ));
    let nodes = [
        node("own", Some("img"), Some("rack")),
        node("grp", None, Some("rack")),
        node("grpown", None, Some("rack")),
    ];
    admin::add_nodes(&store, &nodes).unwrap();
    let pin = |n: &str, v| {
        admin::set_node(
            &store,
            n,
            &NodeChange {
                image_version: Some(v),
                ..Default::default()
            },
        )
    };
    pin("grpown", Some(1)).unwrap();
    assert!(matches!(
        pin("own", Some(4)),
        Err(AdminError::NoVersion { version: 4, .. })
    ));

    let view = View::load(&store).unwrap();
    let boots = |n: &str| {
        let node = view.nodes.get(n).unwrap();
        let (image, pin) = view.boot_image_of(node).unwrap();
        (image.kernel.blob.chars().next().unwrap(), pin)
    };
    // A node with its own image ignores the group's pin; the group's nodes follow it unless
    // they pin themselves.
    assert_eq!(boots("own"), ('c', None));
    assert_eq!(boots("grp"), ('b', Some(2)));
    assert_eq!(boots("grpown"), ('a', Some(1)));

    // The boot script names the pinned version's files.
    let node = view.nodes.get("grp").unwrap();
    let (image, pinned) = view.boot_image_of(node).unwrap();
    let script = ipxe::boot_script(
        node,
        &image,
        pinned,
        &["http://10.0.0.1".to_string()],
        &ipxe::Also::default(),
        2049,
        None,
    );
    assert!(
        script.contains("kernel http://10.0.0.1/images/img@2/kernel"),
        "{script}"
    );
    assert!(script.contains("drover.image=img@2 "), "{script}");
    assert!(script.contains("with image img version 2"), "{script}");
    assert_eq!(ipxe::parse_image_path_name("img@2"), Some(("img", Some(2))));
    assert_eq!(ipxe::parse_image_path_name("img"), Some(("img", None)));
    assert_eq!(ipxe::parse_image_path_name("img@"), None);
    assert_eq!(ipxe::parse_image_path_name("img@x"), None);

    // Back to following: the latest.
    pin("grpown", None).unwrap();
    let view = View::load(&store).unwrap();
    let node = view.nodes.get("grpown").unwrap();
    assert_eq!(
        view.boot_image_of(node).unwrap().1,
        Some(2),
        "the group's pin again"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
