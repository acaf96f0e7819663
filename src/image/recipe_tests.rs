use super::*;

const FULL: &str = r#"
suite = "bookworm"
kernel = "linux-image-cloud-amd64"
packages = ["openssh-server", "file"]
commands = ["echo built > /etc/motd", "systemctl enable ssh"]

[[files]]
path = "/etc/issue"
content = "cluster \"node\"\n\ttab \\ back\u0001"
mode = 0o600

[[files]]
path = "/etc/chrony/chrony.conf"
source = "chrony.conf"
"#;

fn key_error(text: &str) -> (String, Rule) {
    match Recipe::parse(text) {
        Err(RecipeError::Key { key, rule }) => (key, rule),
        other => panic!("expected a key error for {text:?}, got {other:?}"),
    }
}

#[test]
fn parses_a_full_recipe() {
    let r = Recipe::parse(FULL).unwrap();
    assert_eq!(r.suite, "bookworm");
    assert_eq!(r.kernel, "linux-image-cloud-amd64");
    assert_eq!(r.packages, ["file", "openssh-server"]);
    assert_eq!(r.commands.len(), 2);
    assert_eq!(r.files[0].mode, 0o600);
    assert_eq!(
        r.files[0].data,
        FileData::Content("cluster \"node\"\n\ttab \\ back\u{1}".into())
    );
    assert_eq!(r.files[1].data, FileData::Source("chrony.conf".into()));
    assert_eq!(r.files[1].mode, 0o644);
    assert_eq!(
        r.include(),
        ["file", "linux-image-cloud-amd64", "openssh-server"]
    );
}

#[test]
fn a_bare_suite_takes_the_default_kernel() {
    let r = Recipe::bare("trixie").unwrap();
    assert_eq!(r.include(), [DEFAULT_KERNEL]);
    assert!(Recipe::bare("Bookworm").is_err());
}

#[test]
fn written_toml_reads_back_equal() {
    let mut r = Recipe::parse(FULL).unwrap();
    r.inline(1, "server ntp1 iburst\n".into()).unwrap();
    let back = Recipe::parse(&r.to_toml()).unwrap();
    assert_eq!(back, r);
    // A recipe with nothing but a suite too.
    let bare = Recipe::bare("bookworm").unwrap();
    assert_eq!(Recipe::parse(&bare.to_toml()).unwrap(), bare);
}

#[test]
fn errors_name_the_key() {
    assert_eq!(key_error("packages = []"), ("suite".into(), Rule::Missing));
    assert_eq!(
        key_error("suite = \"bookworm; rm\""),
        ("suite".into(), Rule::BadName)
    );
    assert_eq!(
        key_error("suite = \"bookworm\"\nkernel = \"Linux\""),
        ("kernel".into(), Rule::BadName)
    );
    assert_eq!(
        key_error("suite = \"b\"\npackages = [\"ok\", \"-bad\"]"),
        ("packages[1]".into(), Rule::BadName)
    );
    assert_eq!(
        key_error("suite = \"b\"\npackages = [\"vim\", \"vim\"]"),
        ("packages[1]".into(), Rule::Duplicate)
    );
    assert_eq!(
        key_error("suite = \"b\"\n[[files]]\npath = \"etc/x\"\ncontent = \"\""),
        ("files[0].path".into(), Rule::BadPath)
    );
    assert_eq!(
        key_error("suite = \"b\"\n[[files]]\npath = \"/etc/../x\"\ncontent = \"\""),
        ("files[0].path".into(), Rule::BadPath)
    );
    assert_eq!(
        key_error("suite = \"b\"\n[[files]]\npath = \"/x\"\ncontent = \"a\"\nsource = \"b\""),
        ("files[0]".into(), Rule::ContentOrSource)
    );
    assert_eq!(
        key_error("suite = \"b\"\n[[files]]\npath = \"/x\""),
        ("files[0]".into(), Rule::ContentOrSource)
    );
    assert_eq!(
        key_error(
            "suite = \"b\"\n[[files]]\npath = \"/x\"\ncontent = \"\"\n\
             [[files]]\npath = \"/x\"\ncontent = \"\""
        ),
        ("files[1].path".into(), Rule::DuplicatePath)
    );
    assert_eq!(
        key_error("suite = \"b\"\n[[files]]\npath = \"/x\"\ncontent = \"\"\nmode = 0o17777"),
        ("files[0].mode".into(), Rule::BadMode)
    );
    assert_eq!(
        key_error("suite = \"b\"\ncommands = [\"true\", \"  \"]"),
        ("commands[1]".into(), Rule::BadCommand)
    );
    let big = format!(
        "suite = \"b\"\n[[files]]\npath = \"/x\"\ncontent = \"{}\"",
        "a".repeat(MAX_FILE_BYTES + 1)
    );
    assert_eq!(key_error(&big), ("files[0].content".into(), Rule::TooBig));
}

#[test]
fn unknown_keys_and_wrong_types_are_refused_by_name() {
    let Err(RecipeError::Toml(msg)) = Recipe::parse("suite = \"b\"\npackage = [\"x\"]") else {
        panic!("an unknown key must be refused");
    };
    assert!(msg.contains("package"), "{msg}");
    let Err(RecipeError::Toml(msg)) = Recipe::parse("suite = 12") else {
        panic!("a number for the suite must be refused");
    };
    assert!(msg.contains("suite"), "{msg}");
}

#[test]
fn command_line_packages_join_the_recipe_once() {
    let mut r = Recipe::parse(FULL).unwrap();
    r.add_packages(&["file".into(), "vim".into()]).unwrap();
    assert_eq!(r.packages, ["file", "openssh-server", "vim"]);
    assert_eq!(
        r.add_packages(&["Bad".into()]),
        Err(RecipeError::Key {
            key: "packages[0]".into(),
            rule: Rule::BadName
        })
    );
}

#[test]
fn installed_packages_come_from_the_status_file() {
    let status = "Package: base-files\nStatus: install ok installed\nVersion: 12\n\n\
                  Package: gone\nStatus: deinstall ok config-files\n\n\
                  Package: linux-image-amd64\nVersion: 6.1\nStatus: install ok installed\n";
    let got = installed_packages(status);
    assert!(got.contains("base-files"));
    assert!(got.contains("linux-image-amd64"));
    assert!(!got.contains("gone"));
    assert_eq!(got.len(), 2);
}

#[test]
fn the_mirror_is_the_first_debian_archive_of_the_sources() {
    let deb822 = "Types: deb\n# http://snapshot.debian.org/archive/debian/2025\n\
                  URIs: http://deb.debian.org/debian\nSuites: bookworm\n\n\
                  Types: deb\nURIs: http://deb.debian.org/debian-security\n";
    assert_eq!(
        debian_mirror(deb822).as_deref(),
        Some("http://deb.debian.org/debian")
    );
    let one_line = "# deb http://old.example/debian bookworm main\n\
                    deb-src http://src.example/debian bookworm main\n\
                    deb http://security.example/debian-security bookworm-security main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm\n";
    assert_eq!(
        debian_mirror(one_line).as_deref(),
        Some("http://mirror.example/debian/")
    );
    assert_eq!(
        debian_mirror("deb http://example/ubuntu jammy main\n"),
        None
    );
}
