use super::*;
use std::io::Cursor;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("drover-import-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(1000);
    h.set_gid(100);
    h.set_mtime(1_700_000_000);
    h.set_size(size);
    h
}

fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
    b.append_data(&mut h, path, data).unwrap();
}

fn dir(b: &mut tar::Builder<Vec<u8>>, path: &str) {
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    b.append_data(&mut h, path, io::empty()).unwrap();
}

fn link(b: &mut tar::Builder<Vec<u8>>, kind: tar::EntryType, path: &str, target: &str) {
    let mut h = header(kind, 0o777, 0);
    b.append_link(&mut h, path, target).unwrap();
}

/// A root tree with two kernels, a hard link, a device node, a symlink and a file
/// capability (an xattr in a PAX record).
fn rootfs_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    dir(&mut b, "boot/");
    file(&mut b, "boot/vmlinuz-6.1.0-9-amd64", b"old kernel");
    file(&mut b, "boot/vmlinuz-6.1.0-10-amd64", b"new kernel");
    file(&mut b, "boot/initrd.img-6.1.0-10-amd64", b"initrd");
    dir(&mut b, "bin/");
    b.append_pax_extensions([("SCHILY.xattr.security.capability", &b"\x01\x00\x00\x02"[..])])
        .unwrap();
    file(&mut b, "bin/ping", b"ping");
    link(&mut b, tar::EntryType::Link, "bin/ping6", "bin/ping");
    link(&mut b, tar::EntryType::Symlink, "bin/sh", "busybox");
    dir(&mut b, "dev/");
    let mut h = header(tar::EntryType::Char, 0o666, 0);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    b.append_data(&mut h, "dev/null", io::empty()).unwrap();
    b.into_inner().unwrap()
}

fn compress(c: Compression, data: &[u8]) -> Vec<u8> {
    match c {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => {
            ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
        }
        Compression::Xz => {
            let mut out = Vec::new();
            lzma_rs::xz_compress(&mut Cursor::new(data), &mut out).unwrap();
            out
        }
    }
}

/// (name, type, size, link target, xattrs) of every entry.
type Listing = Vec<(String, tar::EntryType, u64, Option<String>, Vec<String>)>;

fn list(tar_bytes: &[u8]) -> Listing {
    let mut a = tar::Archive::new(tar_bytes);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let xattrs = e
                .pax_extensions()
                .unwrap()
                .map(|p| {
                    p.flat_map(|x| x.ok().map(|x| x.key().unwrap_or("").to_string()))
                        .collect()
                })
                .unwrap_or_default();
            (
                clean(&e.path_bytes()),
                e.header().entry_type(),
                e.size(),
                e.link_name().unwrap().map(|l| l.display().to_string()),
                xattrs,
            )
        })
        .collect()
}

#[test]
fn tarballs_of_each_compression_import_to_the_same_tree_and_kernel() {
    let d = tmpdir("tarballs");
    let blobs = Blobs::new(&d.join("state"));
    let plain = rootfs_tar();
    for (c, ext) in [
        (Compression::None, "tar"),
        (Compression::Gzip, "tar.gz"),
        (Compression::Zstd, "tar.zst"),
        (Compression::Xz, "tar.xz"),
    ] {
        let src = d.join(format!("root.{ext}"));
        fs::write(&src, compress(c, &plain)).unwrap();
        let rootfs = import_rootfs(&blobs, &src).unwrap();
        let stored = read_blob(&blobs, &rootfs.blob);
        assert_eq!(stored, plain, "{ext}: the tar as given, decompressed");
        let kernel =
            kernel_from_tree(&blobs, crate::image::Tar::Blob(&blobs, &rootfs.blob), &src).unwrap();
        let k = read_blob(&blobs, &kernel.blob);
        assert_eq!(k, b"new kernel", "{ext}: the newest vmlinuz by version");
    }
    let listing = list(&plain);
    let ping = listing.iter().find(|e| e.0 == "bin/ping").unwrap();
    assert_eq!(ping.4, ["SCHILY.xattr.security.capability"]);
    // No temporary files are left next to the blobs.
    let leftovers: Vec<_> = fs::read_dir(blobs.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_tree_without_a_kernel_needs_one() {
    let d = tmpdir("nokernel");
    let blobs = Blobs::new(&d.join("state"));
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "etc/hostname", b"x");
    let src = d.join("root.tar");
    fs::write(&src, b.into_inner().unwrap()).unwrap();
    let rootfs = import_rootfs(&blobs, &src).unwrap();
    let e =
        kernel_from_tree(&blobs, crate::image::Tar::Blob(&blobs, &rootfs.blob), &src).unwrap_err();
    assert!(e.to_string().contains("--kernel"), "{e}");
    // bzip2 is named, not mistaken for a tar.
    fs::write(&src, b"BZh91AY&SY").unwrap();
    let e = import_rootfs(&blobs, &src).unwrap_err();
    assert!(e.to_string().contains("bzip2"), "{e}");
    fs::remove_dir_all(&d).unwrap();
}

/// Layer 1 (gzip) and layer 2 (plain) of a container image: layer 2 deletes `etc/a`, makes
/// `opt/` opaque (hiding `opt/x`, keeping its own `opt/z`), and replaces `etc/b`.
fn layers() -> (Vec<u8>, Vec<u8>) {
    let mut l1 = tar::Builder::new(Vec::new());
    dir(&mut l1, "etc/");
    file(&mut l1, "etc/a", b"a");
    file(&mut l1, "etc/b", b"old b");
    dir(&mut l1, "opt/");
    file(&mut l1, "opt/x", b"x");
    l1.append_pax_extensions([("SCHILY.xattr.user.k", &b"v"[..])])
        .unwrap();
    file(&mut l1, "usr/bin/ls", b"ls");
    link(&mut l1, tar::EntryType::Link, "usr/bin/dir", "usr/bin/ls");
    file(&mut l1, "boot/vmlinuz-6.1", b"kernel");
    let mut l2 = tar::Builder::new(Vec::new());
    file(&mut l2, "etc/.wh.a", b"");
    file(&mut l2, "opt/z", b"z");
    file(&mut l2, "opt/.wh..wh..opq", b"");
    file(&mut l2, "etc/b", b"new b");
    (
        compress(Compression::Gzip, &l1.into_inner().unwrap()),
        l2.into_inner().unwrap(),
    )
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn check_merged(blobs: &Blobs, rootfs: &ImageFile) {
    let merged = read_blob(blobs, &rootfs.blob);
    let listing = list(&merged);
    let names: Vec<&str> = listing.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "etc",
            "opt",
            "usr/bin/ls",
            "usr/bin/dir",
            "boot/vmlinuz-6.1",
            "opt/z",
            "etc/b"
        ]
    );
    let ls = &listing[2];
    assert_eq!(ls.4, ["SCHILY.xattr.user.k"], "the PAX record came along");
    assert_eq!(listing[3].1, tar::EntryType::Link);
    assert_eq!(listing[3].3.as_deref(), Some("usr/bin/ls"));
    let mut a = tar::Archive::new(&merged[..]);
    let mut b = a
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.path().unwrap().to_str() == Some("etc/b"))
        .unwrap();
    let mut text = String::new();
    b.read_to_string(&mut text).unwrap();
    assert_eq!(text, "new b");
    assert_eq!(b.header().uid().unwrap(), 1000);
    assert_eq!(b.header().mode().unwrap(), 0o644);
}

#[test]
fn an_oci_layout_merges_its_layers_with_whiteouts() {
    let d = tmpdir("oci");
    let blobs = Blobs::new(&d.join("state"));
    let oci = d.join("layout");
    fs::create_dir_all(oci.join("blobs/sha256")).unwrap();
    let (l1, l2) = layers();
    let put = |data: &[u8]| {
        let hex = sha256_hex(data);
        fs::write(oci.join("blobs/sha256").join(&hex), data).unwrap();
        format!("sha256:{hex}")
    };
    let (d1, d2) = (put(&l1), put(&l2));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d1},
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d2},
        ],
    });
    let m = put(manifest.to_string().as_bytes());
    // A multi-platform index picks linux/amd64.
    let inner = serde_json::json!({"schemaVersion": 2, "manifests": [
        {"digest": "sha256:00", "platform": {"os": "linux", "architecture": "arm64"}},
        {"digest": m, "platform": {"os": "linux", "architecture": "amd64"}},
    ]});
    let i = put(inner.to_string().as_bytes());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"digest": i}]});
    fs::write(oci.join("index.json"), index.to_string()).unwrap();
    fs::write(oci.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();

    let from_dir = import_rootfs(&blobs, &oci).unwrap();
    check_merged(&blobs, &from_dir);

    // The same layout as a tar (`podman save --format oci-archive`).
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", &oci).unwrap();
    let archive = d.join("oci.tar");
    fs::write(&archive, b.into_inner().unwrap()).unwrap();
    let from_tar = import_rootfs(&blobs, &archive).unwrap();
    assert_eq!(from_tar, from_dir, "same layers, same bytes");

    // A layer whose bytes do not match its digest is refused.
    let path = oci
        .join("blobs/sha256")
        .join(d2.strip_prefix("sha256:").unwrap());
    let mut corrupt = l2.clone();
    corrupt[600] ^= 1;
    fs::write(&path, corrupt).unwrap();
    let e = import_rootfs(&blobs, &oci).unwrap_err();
    assert!(matches!(e, ImportError::Digest { .. }), "{e}");
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_docker_save_archive_merges_its_layers() {
    let d = tmpdir("docker");
    let blobs = Blobs::new(&d.join("state"));
    let (l1, l2) = layers();
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "aaa/layer.tar", &l1);
    file(&mut b, "bbb/layer.tar", &l2);
    let manifest =
        r#"[{"Config":"c.json","RepoTags":["x:1"],"Layers":["aaa/layer.tar","./bbb/layer.tar"]}]"#;
    file(&mut b, "manifest.json", manifest.as_bytes());
    let src = d.join("saved.tar.gz");
    fs::write(&src, compress(Compression::Gzip, &b.into_inner().unwrap())).unwrap();
    let rootfs = import_rootfs(&blobs, &src).unwrap();
    check_merged(&blobs, &rootfs);
    let kernel =
        kernel_from_tree(&blobs, crate::image::Tar::Blob(&blobs, &rootfs.blob), &src).unwrap();
    assert_eq!(read_blob(&blobs, &kernel.blob), b"kernel");

    // A layer the manifest names but the archive lacks.
    let mut b = tar::Builder::new(Vec::new());
    file(
        &mut b,
        "manifest.json",
        br#"[{"Layers":["gone/layer.tar"]}]"#,
    );
    fs::write(&src, b.into_inner().unwrap()).unwrap();
    let e = import_rootfs(&blobs, &src).unwrap_err();
    assert!(e.to_string().contains("gone/layer.tar"), "{e}");
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_directory_keeps_hard_links_and_devices_when_imported() {
    use std::os::unix::fs::PermissionsExt;
    let d = tmpdir("dir");
    let blobs = Blobs::new(&d.join("state"));
    let root = d.join("root");
    fs::create_dir_all(root.join("boot")).unwrap();
    fs::write(root.join("boot/vmlinuz-1"), b"k").unwrap();
    fs::write(root.join("a"), b"data").unwrap();
    fs::set_permissions(root.join("a"), fs::Permissions::from_mode(0o4750)).unwrap();
    fs::hard_link(root.join("a"), root.join("b")).unwrap();
    let rootfs = import_rootfs(&blobs, &root).unwrap();
    let listing = list(&read_blob(&blobs, &rootfs.blob));
    let names: Vec<_> = listing.iter().map(|e| (e.0.as_str(), e.1)).collect();
    assert_eq!(
        names,
        [
            ("a", tar::EntryType::Regular),
            ("b", tar::EntryType::Link),
            ("boot", tar::EntryType::Directory),
            ("boot/vmlinuz-1", tar::EntryType::Regular),
        ]
    );
    assert_eq!(listing[1].3.as_deref(), Some("a"));
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn merge_rules() {
    // A file replacing a directory removes the directory's tree; a later directory over a
    // directory merges.
    let d = tmpdir("merge");
    let mk = |name: &str, entries: &[(&str, bool)]| {
        let mut b = tar::Builder::new(Vec::new());
        for (p, is_dir) in entries {
            if *is_dir {
                dir(&mut b, p);
            } else {
                file(&mut b, p, b"x");
            }
        }
        let path = d.join(name);
        fs::write(&path, b.into_inner().unwrap()).unwrap();
        path
    };
    let l0 = mk(
        "l0",
        &[("a/", true), ("a/1", false), ("c/", true), ("c/1", false)],
    );
    let l1 = mk("l1", &[("a", false), ("c/", true), ("c/2", false)]);
    let mut m = Merge::default();
    m.add_layer(0, &l0).unwrap();
    m.add_layer(1, &l1).unwrap();
    let names: Vec<&str> = m.entries.keys().map(String::as_str).collect();
    assert_eq!(names, ["a", "c", "c/1", "c/2"]);
    // Paths that leave the root are refused.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = header(tar::EntryType::Regular, 0o644, 1);
    h.as_old_mut().name[..6].copy_from_slice(b"../etc");
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    let bad = d.join("bad");
    fs::write(&bad, b.into_inner().unwrap()).unwrap();
    assert!(Merge::default().add_layer(0, &bad).is_err());
    assert_eq!(blob_path("sha256:../x"), None);
    assert_eq!(blob_path("sha256:ab"), Some("blobs/sha256/ab".into()));
    fs::remove_dir_all(&d).unwrap();
}

/// All of blob `id`, through the store's reader.
fn read_blob(blobs: &Blobs, id: &str) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut blobs.open(id).unwrap(), &mut out).unwrap();
    out
}
