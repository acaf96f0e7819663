//! `image build` and `image shell` through the real binary, against Debian's archive (the
//! machine's apt sources, as `scripts/lab-debian` uses them): a recipe with a file and a
//! command builds an image whose tree has the kernel (no `--kernel`), the file and the
//! command's output; `image history` shows the build and `--recipe` the stored recipe; a
//! bad package name fails with the tool's own words and stores nothing; `image shell` with a
//! command that writes one file stores a new version whose summary names that one file,
//! one that fails stores nothing, one that changes nothing stores nothing; `image build NAME`
//! alone rebuilds from the stored recipe.
//!
//! The recipe names Debian's cloud kernel: a third of the tree of `linux-image-amd64`, so
//! every unpack and import here takes a third of the time, and it has the modules the agent
//! takes (virtio_net, nfsv4).
//!
//! Needs root (namespaces, chroot, device nodes), mmdebstrap or debootstrap (scripts/setup),
//! and the Debian mirror of the apt sources. Takes minutes: two bootstraps (and a failed one), five
//! unpacks of the tree.

mod common;

use std::process::Output;

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `image shell deb -- sh -c SCRIPT`.
fn shell(d: &common::Drover, script: &str) -> Output {
    d.cli(&["image", "shell", "deb", "--", "sh", "-c", script])
}

/// [`shell`], which must succeed; its stdout.
fn shell_ok(d: &common::Drover, script: &str) -> String {
    let out = shell(d, script);
    assert!(out.status.success(), "{script}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The rows of `image history` (header dropped).
fn versions(d: &common::Drover, name: &str) -> Vec<String> {
    let out = d.cli_ok(&["image", "history", name]);
    out.lines().skip(1).map(str::to_string).collect()
}

#[test]
fn build_from_a_recipe_then_shell_commits_only_on_success() {
    common::require_root();
    if common::find_cmd("mmdebstrap").is_none() {
        common::require_cmd("debootstrap", "debootstrap");
    }
    common::require_cmd("unshare", "util-linux");
    let d = common::Drover::new();
    let recipe = d.scratch().join("node.toml");
    std::fs::write(d.scratch().join("issue.txt"), "drover test node\n").unwrap();
    std::fs::write(
        &recipe,
        r#"suite = "bookworm"
kernel = "linux-image-cloud-amd64"
packages = ["kmod"]
commands = ["echo built-by-recipe > /etc/drover-built"]

[[files]]
path = "/etc/issue"
source = "issue.txt"
mode = 0o640
"#,
    )
    .unwrap();

    // A name no suite has: the tool's error, nothing stored.
    let bad = d.cli(&[
        "image",
        "build",
        "deb",
        "--suite",
        "bookworm",
        "--packages",
        "no-such-package-drover",
    ]);
    assert!(!bad.status.success(), "{}", text(&bad));
    let msg = text(&bad);
    assert!(msg.contains("no-such-package-drover"), "{msg}");
    assert!(msg.contains("last lines"), "{msg}");
    let list = d.cli_ok(&["image", "list"]);
    assert!(
        !list.contains("deb"),
        "a failed build stored an image:\n{list}"
    );

    let out = d.cli_ok(&[
        "image",
        "build",
        "deb",
        "--recipe",
        recipe.to_str().unwrap(),
    ]);
    assert!(out.contains("added image deb"), "{out}");
    assert!(out.contains("agent initramfs"), "{out}");
    let rows = versions(&d, "deb");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].contains("build bookworm"), "{rows:?}");
    // The stored recipe has the file inline (the source file may be gone at a rebuild).
    let stored = d.cli_ok(&["image", "history", "deb", "--recipe", "1"]);
    assert!(stored.contains("suite = \"bookworm\""), "{stored}");
    assert!(stored.contains("\"kmod\""), "{stored}");
    assert!(
        stored.contains("kernel = \"linux-image-cloud-amd64\""),
        "{stored}"
    );
    assert!(
        stored.contains("content = \"drover test node\\n\""),
        "{stored}"
    );
    assert!(stored.contains("echo built-by-recipe"), "{stored}");

    // The tree: the recipe's file with its mode, the command's output, a kernel with the
    // modules the agent's initramfs takes. One shell for all (each unpacks the whole tree).
    let listing = shell_ok(
        &d,
        "stat -c %a /etc/issue; cat /etc/issue /etc/drover-built; ls /boot; \
         ls /lib/modules/*/kernel/drivers/net/virtio_net.ko*",
    );
    assert!(
        listing.starts_with("640\ndrover test node\nbuilt-by-recipe\n"),
        "{listing}"
    );
    assert!(listing.contains("-cloud-amd64"), "{listing}");
    assert!(listing.contains("virtio_net.ko"), "{listing}");
    assert!(listing.contains("nothing changed"), "{listing}");
    assert_eq!(
        versions(&d, "deb").len(),
        1,
        "a reading shell stored a version"
    );

    // A shell that writes one file: version 2, and the summary names that file only.
    let out = shell_ok(&d, "echo x > /etc/drover-test");
    assert!(out.contains("1 added, 0 changed, 0 removed"), "{out}");
    assert!(out.contains("+ /etc/drover-test"), "{out}");
    assert!(out.contains("version 2"), "{out}");
    let rows = versions(&d, "deb");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[1].contains("shell sh -c echo x"), "{rows:?}");

    // A failing command: its status, nothing stored, even though it wrote a file first.
    let failed = shell(&d, "echo y > /etc/drover-fail; exit 3");
    assert!(!failed.status.success());
    let msg = text(&failed);
    assert!(msg.contains("nothing stored"), "{msg}");
    assert!(msg.contains("exit status: 3"), "{msg}");
    assert_eq!(versions(&d, "deb").len(), 2);

    // Version 2 has the first shell's file and not the failed one's; what a shell does to
    // resolv.conf and the hostname stays in its namespaces and its copy of the host's file.
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host_conf = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let out = shell_ok(
        &d,
        "cat /etc/drover-test; test ! -e /etc/drover-fail && echo no-fail-file; \
         echo nameserver 192.0.2.1 > /etc/resolv.conf; hostname changed-in-image",
    );
    assert!(out.starts_with("x\nno-fail-file\n"), "{out}");
    assert!(out.contains("nothing changed"), "{out}");
    assert_eq!(
        std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        host_conf
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_name
    );
    assert_eq!(versions(&d, "deb").len(), 2);

    // Rebuild from the stored recipe: a new version with the recipe again; the shell's
    // file is not in it (a rebuild starts from the archive).
    let out = d.cli_ok(&["image", "build", "deb"]);
    assert!(out.contains("version 3"), "{out}");
    let again = d.cli_ok(&["image", "history", "deb", "--recipe", "3"]);
    assert_eq!(again, stored);
    let out = shell_ok(&d, "test ! -e /etc/drover-test && cat /etc/drover-built");
    assert!(out.starts_with("built-by-recipe\n"), "{out}");
}

#[test]
fn build_and_shell_refuse_clearly() {
    let d = common::Drover::new();
    let out = d.cli(&["image", "build", "none"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no stored recipe"), "{}", text(&out));
    let bad = d.scratch().join("bad.toml");
    std::fs::write(&bad, "suite = \"bookworm\"\npackages = [\"Bad_Name\"]\n").unwrap();
    let out = d.cli(&["image", "build", "x", "--recipe", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("packages[0]"), "{}", text(&out));
    if common::is_root() {
        // An image of a kernel and its own initrd has no tree to open.
        let k = d.scratch().join("vmlinuz");
        let i = d.scratch().join("initrd");
        std::fs::write(&k, b"kernel").unwrap();
        std::fs::write(&i, b"initrd").unwrap();
        d.cli_ok(&[
            "image",
            "add",
            "plain",
            "--kernel",
            k.to_str().unwrap(),
            "--initrd",
            i.to_str().unwrap(),
        ]);
        let out = d.cli(&["image", "shell", "plain", "--", "true"]);
        assert!(!out.status.success());
        assert!(text(&out).contains("has no root tree"), "{}", text(&out));
        // A mirror nothing answers on (the discard port of loopback): the tool's words and
        // the question, nothing stored.
        let out = d.cli(&[
            "image",
            "build",
            "nomirror",
            "--suite",
            "bookworm",
            "--mirror",
            "http://127.0.0.1:9/debian",
        ]);
        assert!(!out.status.success());
        let msg = text(&out);
        assert!(
            msg.contains("is the mirror http://127.0.0.1:9/debian reachable"),
            "{msg}"
        );
        assert!(msg.contains("last lines"), "{msg}");
        assert!(!d.cli_ok(&["image", "list"]).contains("nomirror"));
    }
}
