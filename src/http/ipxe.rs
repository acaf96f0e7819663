//! Renders iPXE scripts from the store: the boot script of a known node, and the discovery
//! script for a machine drover does not know. Pure functions of their inputs (no I/O).
//!
//! Kernel and initrd URLs list every server in `servers` as fallbacks (`||` chains), so a
//! pool of members can serve one node: the member the node reached first, then the other
//! live members (`pool::peers`). A failed boot asks the servers for a new script in the same
//! order. The agent's `drover.server` lists them too, and `drover.dns` / `drover.ntp` name
//! the other members after the servers iPXE got from DHCP ([`Also`]): iPXE shows only the
//! first address of a DHCP option. When the node's root mode (its own, else its image's) is NFS,
//! the kernel line also carries `drover.root=nfs:HOST:/root` (HOST: the pool's floating
//! service address when one is configured, else the first server's host, the address the
//! node reached drover at), and the agent mounts that instead of downloading
//! the rootfs; a RAM root whose swarm is off (the node's setting, else its group's as the
//! caller fills it in, else its image's) carries `drover.swarm=0`. Under UEFI the kernel must be told its initrd's name
//! (`initrd=NAME`, see LAB.md); the name is the URL's last segment, so the kernel line names
//! it for BIOS and UEFI alike.

use crate::store::model::{Image, Node, RootMode};
use std::fmt::Write;
use std::net::Ipv4Addr;

/// Name and time servers an agent gets after the first one DHCP gave iPXE (`${dns}`,
/// `${42:ipv4}`): the other live pool members, when this member serves DNS / NTP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Also {
    pub dns: Vec<Ipv4Addr>,
    pub ntp: Vec<Ipv4Addr>,
}

/// `${setting}` followed by `,ADDR` for each address.
fn with_also(setting: &str, also: &[Ipv4Addr]) -> String {
    also.iter().fold(setting.to_string(), |mut s, a| {
        let _ = write!(s, ",{a}");
        s
    })
}

/// `chain SERVER/PATH || chain NEXT/PATH ...` over `servers`.
fn chain(servers: &[String], path: &str) -> String {
    let tries: Vec<String> = servers.iter().map(|s| format!("chain {s}{path}")).collect();
    tries.join(" || ")
}

/// NFS's well-known port: left out of `drover.root`.
const NFS_PORT: u16 = 2049;

/// How the HTTP paths name version `pin` of image `name` (`/images/NAME@N/kernel`), or its
/// latest version (`/images/NAME/kernel`). Image names have no `@`, so this is unambiguous;
/// the agent's `drover.image` carries the same form.
pub fn image_path_name(name: &str, pin: Option<u32>) -> String {
    match pin {
        Some(n) => format!("{name}@{n}"),
        None => name.to_string(),
    }
}

/// Splits an HTTP image path name ([`image_path_name`]) into the image name and the pinned
/// version; `None` for a malformed version.
pub fn parse_image_path_name(s: &str) -> Option<(&str, Option<u32>)> {
    match s.split_once('@') {
        None => Some((s, None)),
        Some((name, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            Some((name, Some(n.parse().ok()?)))
        }
        Some(_) => None,
    }
}

/// The boot script of `node`, booting `image` (already at version `pin`, when pinned) from
/// the HTTP servers `servers` (`http://host[:port]`, first preferred; at least one); an NFS
/// root is mounted on `nfs_port` from `nfs_host` (the pool's service address) if given, else
/// from the first server's host.
pub fn boot_script(
    node: &Node,
    image: &Image,
    pin: Option<u32>,
    servers: &[String],
    also: &Also,
    nfs_port: u16,
    nfs_host: Option<Ipv4Addr>,
) -> String {
    let place = Place {
        servers,
        also,
        nfs_port,
        nfs_host,
    };
    render(node, image, pin, &place, false)
}

/// Where a script sends the node: the HTTP servers, the other name and time servers, and
/// the NFS root's port and host (see [`boot_script`]).
pub struct Place<'a> {
    pub servers: &'a [String],
    pub also: &'a Also,
    pub nfs_port: u16,
    pub nfs_host: Option<Ipv4Addr>,
}

/// The boot script of a node in service mode (`crate::service`): as [`boot_script`], plus
/// `drover.service=1` and the service initrd (sshd and busybox) after drover's initramfs,
/// so the agent stays in the initramfs with an ssh server. An image without a rootfs (no
/// drover agent) boots as usual: nothing could keep it in service mode.
pub fn service_script(node: &Node, image: &Image, pin: Option<u32>, place: &Place<'_>) -> String {
    render(node, image, pin, place, image.rootfs.is_some())
}

fn render(
    node: &Node,
    image: &Image,
    pin: Option<u32>,
    place: &Place<'_>,
    service: bool,
) -> String {
    let Place {
        servers,
        also,
        nfs_port,
        nfs_host,
    } = *place;
    let mut s = String::from("#!ipxe\n");
    let path_name = image_path_name(&image.name, pin);
    let _ = writeln!(
        s,
        "echo drover: booting {} with image {}{}",
        node.name,
        image.name,
        pin.map_or(String::new(), |n| format!(" version {n}"))
    );
    let base = |server: &str| format!("{server}/images/{path_name}");
    let (initrd_name, agent) = if image.rootfs.is_some() {
        ("initramfs", true)
    } else if image.initrd.is_some() {
        ("initrd", false)
    } else {
        ("", false)
    };
    let mut args = Vec::new();
    if !initrd_name.is_empty() {
        args.push(format!("initrd={initrd_name}"));
    }
    if service {
        args.push(format!("initrd={}", crate::service::TOOLS_NAME));
        args.push(crate::service::CMDLINE_FLAG.to_string());
    }
    if !image.cmdline.trim().is_empty() {
        args.push(image.cmdline.trim().to_string());
    }
    args.push(format!("drover.node={}", node.name));
    args.push(format!("drover.server={}", servers.join(",")));
    if agent {
        args.push(format!("drover.image={path_name}"));
        if node.root.unwrap_or(image.root) == RootMode::Nfs {
            let host = nfs_host.map_or_else(|| host_of(&servers[0]).to_string(), |h| h.to_string());
            args.push(if nfs_port == NFS_PORT {
                format!("drover.root=nfs:{host}:/root")
            } else {
                format!("drover.root=nfs:{host}:{nfs_port}:/root")
            });
            // Each a `PersistentPath` (no spaces or commas), 512 bytes at most in all.
            if !image.persistent.is_empty() {
                args.push(format!("drover.persistent={}", image.persistent.join(",")));
            }
        } else if !node.swarm.unwrap_or(image.swarm) {
            // The swarm is on by default: only "off" goes on the line.
            args.push("drover.swarm=0".into());
        }
        args.extend(
            [
                "drover.mac=${mac}",
                "drover.ip=${ip}",
                "drover.netmask=${netmask}",
                "drover.gw=${gateway}",
            ]
            .map(String::from),
        );
        args.push(format!("drover.dns={}", with_also("${dns}", &also.dns)));
        // DHCP option 42 (drover's own NTP when it serves NTP; empty otherwise).
        args.push(format!("drover.ntp={}", with_also("${42:ipv4}", &also.ntp)));
        args.push("drover.domain=${domain}".into());
    }
    let args = args.join(" ");
    let kernel: Vec<String> = servers
        .iter()
        .map(|srv| format!("kernel {}/kernel {args}", base(srv)))
        .collect();
    let _ = writeln!(s, "{} || goto failed", kernel.join(" || "));
    if !initrd_name.is_empty() {
        let initrd: Vec<String> = servers
            .iter()
            .map(|srv| format!("initrd {}/{initrd_name}", base(srv)))
            .collect();
        let _ = writeln!(s, "{} || goto failed", initrd.join(" || "));
    }
    if service {
        let tools: Vec<String> = servers
            .iter()
            .map(|srv| format!("initrd {srv}{}", crate::service::TOOLS_PATH))
            .collect();
        let _ = writeln!(s, "{} || goto failed", tools.join(" || "));
    }
    s.push_str("boot || goto failed\n");
    s.push_str(":failed\n");
    let _ = writeln!(
        s,
        "echo drover: boot of {} failed; trying again in 10 s",
        node.name
    );
    s.push_str("sleep 10\n");
    let _ = writeln!(s, "{}", chain(servers, "/boot/${mac}"));
    s
}

/// The script for a machine drover does not know, when discovery is on: boots `image`'s
/// kernel and initramfs (drover's agent) with `drover.discover=1`, so the agent reports the
/// machine's inventory and waits to be adopted. The servers are tried in order, as in
/// [`boot_script`]; a failed boot asks again. `cmdline` is the image's own kernel parameters
/// (its console, for one).
pub fn discovery_script(image: &str, cmdline: &str, servers: &[String]) -> String {
    let mut s = String::from("#!ipxe\n");
    let _ = writeln!(
        s,
        "echo drover: ${{mac}} is not a known node; discovering it with image {image}"
    );
    let args = [
        "initrd=initramfs".to_string(),
        cmdline.trim().to_string(),
        "drover.discover=1".to_string(),
        format!("drover.server={}", servers.join(",")),
        "drover.mac=${mac}".into(),
        "drover.ip=${ip}".into(),
        "drover.netmask=${netmask}".into(),
        "drover.gw=${gateway}".into(),
        "drover.dns=${dns}".into(),
    ]
    .join(" ");
    let fetch = |what: &str, tail: &str| {
        servers
            .iter()
            .map(|srv| format!("{what} {srv}/images/{image}/{tail}"))
            .collect::<Vec<_>>()
            .join(" || ")
    };
    let _ = writeln!(
        s,
        "{} || goto failed",
        fetch("kernel", &format!("kernel {args}"))
    );
    let _ = writeln!(s, "{} || goto failed", fetch("initrd", "initramfs"));
    s.push_str("boot || goto failed\n:failed\n");
    s.push_str("echo drover: discovery boot failed; trying again in 10 s\nsleep 10\n");
    let _ = writeln!(s, "{}", chain(servers, "/boot/${mac}"));
    s
}

/// The host of `http://host[:port][/path]`: a name, an IPv4 address, a bracketed IPv6
/// address, or an iPXE setting like `${next-server}`.
fn host_of(server: &str) -> &str {
    let rest = server.strip_prefix("http://").unwrap_or(server);
    let authority = rest.split('/').next().unwrap_or(rest);
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// The script for a machine that is not a node, or a node without an image: says what to
/// do and asks `servers` again every `retry_secs` seconds, so the machine boots as soon as
/// the admin has added it.
pub fn waiting_script(reason: &str, servers: &[String], retry_secs: u32) -> String {
    format!(
        "#!ipxe\n\
         echo drover: {reason}\n\
         echo drover: asking again in {retry_secs} s\n\
         sleep {retry_secs}\n\
         {}\n",
        chain(servers, "/boot/${mac}")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::model::ImageFile;

    fn file() -> ImageFile {
        ImageFile {
            blob: "0".repeat(64),
            size: 1,
        }
    }

    #[test]
    fn discovery_script_boots_the_agent_in_discovery_mode_from_every_server() {
        let servers = [
            "http://10.0.0.1:8080".to_string(),
            "http://10.0.0.2:8080".into(),
        ];
        let s = discovery_script("disc", "console=ttyS0", &servers);
        assert!(s.starts_with("#!ipxe\n"));
        let kernel = s.lines().find(|l| l.starts_with("kernel ")).unwrap();
        assert!(kernel.contains(
            "http://10.0.0.1:8080/images/disc/kernel initrd=initramfs console=ttyS0 drover."
        ));
        assert!(kernel.contains(" || kernel http://10.0.0.2:8080/images/disc/kernel "));
        assert!(kernel.contains("drover.discover=1"));
        assert!(kernel.contains("drover.server=http://10.0.0.1:8080,http://10.0.0.2:8080"));
        assert!(kernel.contains("drover.mac=${mac}"));
        assert!(s.contains("initrd http://10.0.0.2:8080/images/disc/initramfs || goto failed"));
        assert!(s.ends_with(
            "chain http://10.0.0.1:8080/boot/${mac} || chain http://10.0.0.2:8080/boot/${mac}\n"
        ));
    }

    #[test]
    fn service_mode_adds_the_flag_and_the_tools_initrd_after_the_agent() {
        let servers = ["http://10.0.0.1".to_string(), "http://10.0.0.2".into()];
        let also = Also::default();
        let place = Place {
            servers: &servers,
            also: &also,
            nfs_port: 2049,
            nfs_host: None,
        };
        let image = agent_image(RootMode::Ram);
        let s = service_script(&node(), &image, None, &place);
        let kernel = s.lines().find(|l| l.starts_with("kernel ")).unwrap();
        assert!(kernel.contains(" initrd=initramfs initrd=tools.cpio drover.service=1 "));
        let initrds: Vec<&str> = s.lines().filter(|l| l.starts_with("initrd ")).collect();
        assert_eq!(
            initrds,
            [
                "initrd http://10.0.0.1/images/img/initramfs || \
                 initrd http://10.0.0.2/images/img/initramfs || goto failed",
                "initrd http://10.0.0.1/service/tools.cpio || \
                 initrd http://10.0.0.2/service/tools.cpio || goto failed",
            ]
        );
        // Without service mode, and for an image without drover's agent: none of it.
        assert!(!script(&image, &servers).contains("service"));
        let plain = Image {
            rootfs: None,
            initrd: Some(file()),
            ..image
        };
        assert!(!service_script(&node(), &plain, None, &place).contains("service"));
    }

    /// `image`'s script for `node()` from `servers`, NFS on its standard port.
    fn script(image: &Image, servers: &[String]) -> String {
        boot_script(&node(), image, None, servers, &Also::default(), 2049, None)
    }

    /// An image that boots drover's agent (an initramfs and a root image), swarm on.
    fn agent_image(root: RootMode) -> Image {
        Image {
            name: "img".into(),
            kernel: file(),
            initrd: None,
            cmdline: String::new(),
            rootfs: Some(file()),
            initramfs: Some(file()),
            root,
            persistent: Vec::new(),
            versions: Vec::new(),
            swarm: true,
        }
    }

    fn node() -> Node {
        Node {
            name: "n1".into(),
            mac: "52:54:00:00:00:01".parse().unwrap(),
            ip: None,
            image: Some("img".into()),
            group: None,
            aliases: Vec::new(),
            root: None,
            image_version: None,
            swarm: None,
        }
    }

    #[test]
    fn kernel_line_names_its_initrd_and_lists_fallbacks() {
        let image = Image {
            name: "img".into(),
            kernel: file(),
            initrd: Some(file()),
            cmdline: "console=ttyS0".into(),
            rootfs: None,
            initramfs: None,
            root: Default::default(),
            persistent: Vec::new(),
            versions: Vec::new(),
            swarm: true,
        };
        let servers = vec![
            "http://10.0.0.1".to_string(),
            "http://10.0.0.2:8080".to_string(),
        ];
        let s = script(&image, &servers);
        assert!(s.starts_with("#!ipxe\n"));
        assert!(s.contains(
            "kernel http://10.0.0.1/images/img/kernel initrd=initrd console=ttyS0 drover.node=n1 \
             drover.server=http://10.0.0.1,http://10.0.0.2:8080 || kernel http://10.0.0.2:8080/images/img/kernel"
        ), "{s}");
        assert!(s.contains("initrd http://10.0.0.1/images/img/initrd || initrd http://10.0.0.2:8080/images/img/initrd || goto failed"));
        assert!(!s.contains("drover.ip="));
    }

    #[test]
    fn ram_root_images_boot_the_agent_with_its_parameters() {
        let image = agent_image(RootMode::Ram);
        let s = script(&image, &["http://10.0.0.1".to_string()]);
        assert!(s.contains("initrd=initramfs drover.node=n1"), "{s}");
        assert!(s.contains("drover.ip=${ip} drover.netmask=${netmask}"));
        assert!(s.contains("drover.dns=${dns} drover.ntp=${42:ipv4} drover.domain"));
        assert!(s.contains("initrd http://10.0.0.1/images/img/initramfs || goto failed"));
        assert!(!s.contains("drover.root="), "{s}");
        assert!(
            s.ends_with("sleep 10\nchain http://10.0.0.1/boot/${mac}\n"),
            "{s}"
        );
    }

    #[test]
    fn swarm_off_goes_on_the_line_the_node_first() {
        let mut image = agent_image(RootMode::Ram);
        let servers = ["http://10.0.0.1".to_string()];
        let with = |n: &Node, image: &Image| {
            boot_script(n, image, None, &servers, &Also::default(), 2049, None)
                .contains(" drover.swarm=0 ")
        };
        let mut n = node();
        assert!(!with(&n, &image), "on by default");
        image.swarm = false;
        assert!(with(&n, &image));
        n.swarm = Some(true);
        assert!(!with(&n, &image), "the node's own setting wins");
        image.swarm = true;
        n.swarm = Some(false);
        assert!(with(&n, &image));
        // An NFS root fetches no image: nothing to turn off.
        image.root = RootMode::Nfs;
        assert!(!with(&n, &image));
    }

    #[test]
    fn nfs_root_passes_the_server_and_follows_node_then_image() {
        let mut image = Image {
            persistent: vec!["/var/log".into()],
            ..agent_image(RootMode::Nfs)
        };
        let servers = ["http://10.0.0.1:8080".to_string()];
        let s = script(&image, &servers);
        assert!(s.contains(" drover.root=nfs:10.0.0.1:/root "), "{s}");
        assert!(s.contains(" drover.persistent=/var/log "), "{s}");
        assert!(
            s.contains("initrd http://10.0.0.1:8080/images/img/initramfs"),
            "{s}"
        );
        assert!(!s.contains("rootfs"), "{s}");
        // The node's own setting wins over the image's, both ways.
        let mut n = node();
        n.root = Some(RootMode::Ram);
        assert!(
            !boot_script(&n, &image, None, &servers, &Also::default(), 2049, None)
                .contains("drover.root=")
        );
        image.root = RootMode::Ram;
        n.root = Some(RootMode::Nfs);
        assert!(
            boot_script(&n, &image, None, &servers, &Also::default(), 2049, None)
                .contains("drover.root=nfs:10.0.0.1:/root")
        );
        // An image without a rootfs has no agent to mount anything.
        image.rootfs = None;
        image.initramfs = None;
        assert!(
            !boot_script(&n, &image, None, &servers, &Also::default(), 2049, None)
                .contains("drover.root=")
        );
        // Another NFS port travels with the host.
        image.rootfs = Some(file());
        image.initramfs = Some(file());
        assert!(
            boot_script(&n, &image, None, &servers, &Also::default(), 20049, None)
                .contains("drover.root=nfs:10.0.0.1:20049:/root")
        );
        // The pool's service address, when there is one, instead of the answering member.
        let vip = Some(Ipv4Addr::new(10, 0, 0, 5));
        let s = boot_script(&n, &image, None, &servers, &Also::default(), 2049, vip);
        assert!(s.contains(" drover.root=nfs:10.0.0.5:/root "), "{s}");
        assert!(
            s.contains("kernel http://10.0.0.1:8080/images/img/kernel"),
            "{s}"
        );
    }

    #[test]
    fn hosts_of_server_urls() {
        assert_eq!(host_of("http://10.0.0.1"), "10.0.0.1");
        assert_eq!(host_of("http://10.0.0.1:8080/x"), "10.0.0.1");
        assert_eq!(host_of("http://${next-server}:8080"), "${next-server}");
        assert_eq!(host_of("http://[fd00::1]:80"), "[fd00::1]");
        assert_eq!(host_of("http://boot.cluster"), "boot.cluster");
    }

    #[test]
    fn pool_members_are_fallbacks_for_every_fetch_and_service() {
        let image = agent_image(RootMode::Ram);
        let servers = ["http://10.0.0.2", "http://10.0.0.1", "http://10.0.0.3"].map(String::from);
        let also = Also {
            dns: vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 3)],
            ntp: Vec::new(),
        };
        let s = boot_script(&node(), &image, None, &servers, &also, 2049, None);
        assert!(
            s.contains(
                "initrd http://10.0.0.2/images/img/initramfs || initrd \
                 http://10.0.0.1/images/img/initramfs || initrd \
                 http://10.0.0.3/images/img/initramfs || goto failed"
            ),
            "{s}"
        );
        assert_eq!(s.matches("kernel http://").count(), 3, "{s}");
        assert!(s.contains(
            "drover.server=http://10.0.0.2,http://10.0.0.1,http://10.0.0.3 drover.image=img"
        ));
        assert!(s.contains("drover.dns=${dns},10.0.0.1,10.0.0.3 drover.ntp=${42:ipv4} "));
        assert!(s.ends_with(
            "chain http://10.0.0.2/boot/${mac} || chain http://10.0.0.1/boot/${mac} || \
             chain http://10.0.0.3/boot/${mac}\n"
        ));
        let w = waiting_script("unknown", &servers[..2], 10);
        assert!(w.ends_with(
            "sleep 10\nchain http://10.0.0.2/boot/${mac} || chain http://10.0.0.1/boot/${mac}\n"
        ));
    }
}
