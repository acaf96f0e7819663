//! The rescue stick's disk layout and boot files, as pure functions (no files, no clock):
//! partition geometry from the sizes, the MBR sector, the syslinux configuration and the
//! kernel command line of appliance mode, the ext4 label a booted stick looks for, and the
//! checks `drover usb write` makes before it overwrites a disk.
//!
//! The disk is MBR-partitioned ("dos" label), because one table then serves both firmwares:
//! BIOS runs the boot code of the MBR (syslinux's `mbr.bin`), which chains to the active
//! partition's boot sector; UEFI takes a partition of type 0xEF as the EFI system partition
//! and starts `/EFI/BOOT/BOOTX64.EFI` on it. Two partitions:
//!
//! 1. the ESP (FAT, active, type 0xEF): syslinux for BIOS, `syslinux.efi` for UEFI, one
//!    configuration, the kernel and drover's initramfs;
//! 2. the data partition (ext4, type 0x83, label [`DATA_LABEL`]): the state directory.
//!
//! Not here: GPT (a hybrid table would be needed for BIOS too), more than one kernel, a boot
//! menu.

use std::net::Ipv4Addr;

/// Bytes in a sector of the image (what every USB stick presents).
pub const SECTOR: u64 = 512;
/// Partitions start on 1 MiB boundaries (flash erase blocks; what fdisk does).
pub const ALIGN: u64 = 1 << 20;
/// The ext4 label of the data partition; the appliance mounts the partition that has it.
pub const DATA_LABEL: &str = "DROVER-DATA";
/// The FAT label of the boot partition (11 characters at most).
pub const BOOT_LABEL: &str = "DROVERBOOT";
/// The smallest data partition `usb build` makes: the store, TLS files and some leases.
pub const MIN_DATA: u64 = 64 << 20;
/// Room on the ESP beyond the kernel and initramfs: syslinux's files and FAT's own tables.
pub const ESP_SLACK: u64 = 8 << 20;
/// The appliance's address when the stick does not name one (`usb build --address`): a
/// private /24 that is seldom used by default on management networks.
pub const DEFAULT_ADDRESS: &str = "10.73.0.1/24";
/// Disks larger than this are refused by `usb write` unless forced: a USB stick is rarely
/// bigger, a server's own disk usually is.
pub const MAX_WRITE_TARGET: u64 = 256 << 30;

/// Where the two partitions lie, in bytes from the start of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub total: u64,
    pub esp_start: u64,
    pub esp_len: u64,
    pub data_start: u64,
    pub data_len: u64,
}

/// Why a layout cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "--size {size} is too small: the boot files need {esp} bytes and the data partition at \
         least {data}; give at least {need} bytes"
    )]
    TooSmall {
        size: u64,
        esp: u64,
        data: u64,
        need: u64,
    },
    #[error("--size {0} is beyond what an MBR partition table can address (2 TiB)")]
    TooBig(u64),
}

fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

impl Layout {
    /// The layout of an image of `size` bytes whose ESP holds `boot_bytes` of files and
    /// whose data partition needs at least `data_bytes`.
    pub fn plan(size: u64, boot_bytes: u64, data_bytes: u64) -> Result<Layout, LayoutError> {
        let esp_len = round_up(boot_bytes + ESP_SLACK, ALIGN);
        let data_min = round_up(data_bytes.max(MIN_DATA), ALIGN);
        let esp_start = ALIGN;
        let total = size / ALIGN * ALIGN;
        let need = esp_start + esp_len + data_min;
        if total < need {
            return Err(LayoutError::TooSmall {
                size,
                esp: esp_len,
                data: data_min,
                need,
            });
        }
        if total / SECTOR > u64::from(u32::MAX) {
            return Err(LayoutError::TooBig(size));
        }
        let data_start = esp_start + esp_len;
        Ok(Layout {
            total,
            esp_start,
            esp_len,
            data_start,
            data_len: total - data_start,
        })
    }

    /// The first sector: `boot_code` (at most 440 bytes), a disk signature, the two
    /// partition entries and the 0x55AA mark.
    pub fn mbr(&self, boot_code: &[u8], signature: u32) -> Result<[u8; 512], MbrError> {
        if boot_code.len() > 440 {
            return Err(MbrError::BootCodeTooBig(boot_code.len()));
        }
        let mut s = [0u8; 512];
        s[..boot_code.len()].copy_from_slice(boot_code);
        s[440..444].copy_from_slice(&signature.to_le_bytes());
        let entries = [
            (0x80, 0xef, self.esp_start, self.esp_len),
            (0x00, 0x83, self.data_start, self.data_len),
        ];
        for (i, (status, kind, start, len)) in entries.into_iter().enumerate() {
            let e = &mut s[446 + 16 * i..446 + 16 * (i + 1)];
            let (first, last) = (start / SECTOR, (start + len) / SECTOR - 1);
            e[0] = status;
            e[1..4].copy_from_slice(&chs(first));
            e[4] = kind;
            e[5..8].copy_from_slice(&chs(last));
            // `plan` keeps every sector number below 2^32.
            e[8..12].copy_from_slice(&(first as u32).to_le_bytes());
            e[12..16].copy_from_slice(&((len / SECTOR) as u32).to_le_bytes());
        }
        s[510] = 0x55;
        s[511] = 0xaa;
        Ok(s)
    }
}

/// The MBR boot code does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MbrError {
    #[error("the MBR boot code is {0} bytes; at most 440 fit before the partition table")]
    BootCodeTooBig(usize),
}

/// CHS of a sector in the 255-head, 63-sector geometry that BIOSes assume for USB disks;
/// past cylinder 1023 the conventional "use the LBA" value.
fn chs(lba: u64) -> [u8; 3] {
    const HEADS: u64 = 255;
    const SECTORS: u64 = 63;
    let cylinder = lba / (HEADS * SECTORS);
    if cylinder > 1023 {
        return [0xfe, 0xff, 0xff];
    }
    let head = (lba / SECTORS) % HEADS;
    let sector = lba % SECTORS + 1;
    [
        head as u8,
        (sector as u8) | (((cylinder >> 2) & 0xc0) as u8),
        (cylinder & 0xff) as u8,
    ]
}

/// What the stick's kernel command line tells appliance mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplianceParams {
    /// The address and prefix length to serve the segment on.
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    /// The interface to serve on; without it, the first Ethernet interface with a carrier.
    pub interface: Option<String>,
    /// The label of the data partition.
    pub data_label: String,
}

/// A bad `drover.*` key of appliance mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("{key}={value:?}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: &'static str,
    },
}

/// Parses `ADDRESS/PREFIX` (an IPv4 address of a host in a /8 to /30 network).
pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8), &'static str> {
    let (ip, prefix) = s
        .split_once('/')
        .ok_or("expected ADDRESS/PREFIX, as 10.73.0.1/24")?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| "not an IPv4 address")?;
    let prefix: u8 = prefix.parse().map_err(|_| "the prefix is not a number")?;
    if !(8..=30).contains(&prefix) {
        return Err("the prefix must be 8 to 30");
    }
    let host = u32::from(ip) & !(u32::MAX << (32 - prefix));
    if host == 0 || host == !(u32::MAX << (32 - prefix)) {
        return Err("the address is the network's or its broadcast address");
    }
    Ok((ip, prefix))
}

/// The key that selects appliance mode on the kernel command line.
pub const MODE_KEY: &str = "drover.mode";
pub const MODE_APPLIANCE: &str = "appliance";

/// Whether the `(key, value)` words of a command line select appliance mode.
pub fn is_appliance(words: &[(String, Option<String>)]) -> bool {
    lookup(words, MODE_KEY) == Some(MODE_APPLIANCE)
}

fn lookup<'a>(words: &'a [(String, Option<String>)], key: &str) -> Option<&'a str> {
    // Later duplicates win, as for the kernel's own parameters.
    words
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_deref().unwrap_or("").trim())
        .filter(|v| !v.is_empty())
}

/// Reads appliance mode's keys: `drover.address=CIDR` (default [`DEFAULT_ADDRESS`]),
/// `drover.gw=IP`, `drover.interface=NAME`, `drover.data=LABEL` (default [`DATA_LABEL`]).
pub fn appliance_params(words: &[(String, Option<String>)]) -> Result<ApplianceParams, ParamError> {
    let invalid = |key, value: &str, reason| ParamError::Invalid {
        key,
        value: value.to_string(),
        reason,
    };
    let cidr = lookup(words, "drover.address").unwrap_or(DEFAULT_ADDRESS);
    let (address, prefix) = parse_cidr(cidr).map_err(|r| invalid("drover.address", cidr, r))?;
    let gateway = lookup(words, "drover.gw")
        .map(|g| {
            g.parse::<Ipv4Addr>()
                .map_err(|_| invalid("drover.gw", g, "not an IPv4 address"))
        })
        .transpose()?;
    let interface = lookup(words, "drover.interface")
        .map(|i| {
            let ok = i.len() < 16
                && i.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            ok.then(|| i.to_string())
                .ok_or_else(|| invalid("drover.interface", i, "not an interface name"))
        })
        .transpose()?;
    let data_label = lookup(words, "drover.data").unwrap_or(DATA_LABEL);
    if data_label.len() > 16 || !data_label.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("drover.data", data_label, "not an ext4 label"));
    }
    Ok(ApplianceParams {
        address,
        prefix,
        gateway,
        interface,
        data_label: data_label.to_string(),
    })
}

/// The kernel command line of the stick.
pub fn cmdline(address: (Ipv4Addr, u8), gateway: Option<Ipv4Addr>, consoles: &[String]) -> String {
    let mut words: Vec<String> = consoles.iter().map(|c| format!("console={c}")).collect();
    words.push(format!("{MODE_KEY}={MODE_APPLIANCE}"));
    words.push(format!("drover.address={}/{}", address.0, address.1));
    if let Some(gw) = gateway {
        words.push(format!("drover.gw={gw}"));
    }
    words.push(format!("drover.data={DATA_LABEL}"));
    words.join(" ")
}

/// Where `usb build` puts the kernel and initramfs on the ESP.
pub const KERNEL_FILE: &str = "vmlinuz";
pub const INITRD_FILE: &str = "initrd.img";

/// The syslinux configuration (the same for BIOS's `ldlinux.sys` and UEFI's
/// `syslinux.efi`): boot the one kernel at once, say so on the first serial port too.
pub fn syslinux_cfg(cmdline: &str) -> String {
    format!(
        "SERIAL 0 115200\nDEFAULT drover\nPROMPT 0\nTIMEOUT 0\nLABEL drover\n  KERNEL \
         /{KERNEL_FILE}\n  INITRD /{INITRD_FILE}\n  APPEND {cmdline}\n"
    )
}

/// The ext4 superblock starts 1024 bytes into the partition.
pub const EXT4_SUPERBLOCK: usize = 1024;
/// The bytes to read from a partition to learn its ext4 label.
pub const EXT4_PROBE_LEN: usize = EXT4_SUPERBLOCK + 0x88;

/// The label of an ext2/3/4 file system from its first [`EXT4_PROBE_LEN`] bytes, or `None`
/// if they hold no such file system.
pub fn ext4_label(head: &[u8]) -> Option<String> {
    let sb = head.get(EXT4_SUPERBLOCK..EXT4_PROBE_LEN)?;
    // s_magic at 0x38, s_volume_name (16 bytes, NUL padded) at 0x78.
    if sb[0x38..0x3a] != [0x53, 0xef] {
        return None;
    }
    let name = &sb[0x78..0x88];
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    Some(String::from_utf8_lossy(&name[..end]).into_owned())
}

/// Parses a size: bytes, or a number with `K`, `M`, `G` or `T` (powers of 1024, an
/// optional trailing `iB`/`B`).
pub fn parse_size(s: &str) -> Result<u64, &'static str> {
    let t = s.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (num, shift) = match t.chars().last() {
        Some('K' | 'k') => (&t[..t.len() - 1], 10),
        Some('M' | 'm') => (&t[..t.len() - 1], 20),
        Some('G' | 'g') => (&t[..t.len() - 1], 30),
        Some('T' | 't') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| "expected a size such as 2G, 512M or a number of bytes")?;
    n.checked_mul(1 << shift).ok_or("the size overflows")
}

/// What `usb write` knows about its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub is_block_device: bool,
    /// The device or one of its partitions is mounted (or used as swap).
    pub mounted: Vec<String>,
    pub size: u64,
}

/// Why `usb write` refuses a target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("is not a block device (give the whole disk, as /dev/sdX)")]
    NotBlockDevice,
    #[error("is in use ({}): unmount it first", .0.join(", "))]
    Mounted(Vec<String>),
    #[error(
        "is {size} bytes, bigger than {limit} bytes: is it really the USB stick? \
         --force writes it anyway"
    )]
    TooBig { size: u64, limit: u64 },
    #[error("is {size} bytes, smaller than the {image} bytes of the image")]
    TooSmall { size: u64, image: u64 },
}

/// Checks a target before `usb write` overwrites it. `force` lifts only the size limit:
/// a mounted disk or a file is never written.
pub fn check_target(t: &Target, image: u64, force: bool) -> Result<(), Refusal> {
    if !t.is_block_device {
        return Err(Refusal::NotBlockDevice);
    }
    if !t.mounted.is_empty() {
        return Err(Refusal::Mounted(t.mounted.clone()));
    }
    if t.size < image {
        return Err(Refusal::TooSmall {
            size: t.size,
            image,
        });
    }
    if t.size > MAX_WRITE_TARGET && !force {
        return Err(Refusal::TooBig {
            size: t.size,
            limit: MAX_WRITE_TARGET,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<(String, Option<String>)> {
        crate::agent::cmdline::split(s)
    }

    #[test]
    fn plan_aligns_and_fills_the_image() {
        let l = Layout::plan(256 << 20, 20 << 20, 0).unwrap();
        assert_eq!(l.esp_start, 1 << 20);
        assert_eq!(l.esp_len, 28 << 20);
        assert_eq!(l.data_start, 29 << 20);
        assert_eq!(l.data_start + l.data_len, 256 << 20);
        // A size that is not a whole MiB is cut down to one.
        let odd = Layout::plan((256 << 20) + 5, 20 << 20, 0).unwrap();
        assert_eq!(odd.total, 256 << 20);
    }

    #[test]
    fn plan_refuses_too_small_and_too_big() {
        let err = Layout::plan(64 << 20, 20 << 20, 0).unwrap_err();
        assert!(matches!(err, LayoutError::TooSmall { need, .. } if need == 93 << 20));
        let err = Layout::plan(100 << 20, 20 << 20, 80 << 20).unwrap_err();
        assert!(matches!(err, LayoutError::TooSmall { .. }));
        assert_eq!(
            Layout::plan(3 << 40, 0, 0).unwrap_err(),
            LayoutError::TooBig(3 << 40)
        );
    }

    #[test]
    fn mbr_has_the_code_the_entries_and_the_mark() {
        let l = Layout::plan(256 << 20, 20 << 20, 0).unwrap();
        let code = [0xfa; 440];
        let m = l.mbr(&code, 0x1234_5678).unwrap();
        assert_eq!(&m[..440], &code[..]);
        assert_eq!(&m[440..444], &[0x78, 0x56, 0x34, 0x12]);
        // ESP: active, type 0xEF, LBA 2048, 28 MiB of sectors.
        assert_eq!(m[446], 0x80);
        assert_eq!(m[450], 0xef);
        assert_eq!(&m[454..458], &2048u32.to_le_bytes());
        assert_eq!(&m[458..462], &(28u32 * 2048).to_le_bytes());
        // CHS of LBA 2048 in 255/63 geometry: cylinder 0, head 32, sector 33.
        assert_eq!(&m[447..450], &[32, 33, 0]);
        // Data: inactive, Linux, right after the ESP, to the end.
        assert_eq!(m[462], 0);
        assert_eq!(m[466], 0x83);
        assert_eq!(&m[470..474], &(29u32 * 2048).to_le_bytes());
        assert_eq!(&m[474..478], &((256u32 - 29) * 2048).to_le_bytes());
        assert!(m[478..510].iter().all(|&b| b == 0));
        assert_eq!(&m[510..], &[0x55, 0xaa]);
        assert_eq!(
            l.mbr(&[0; 441], 0).unwrap_err(),
            MbrError::BootCodeTooBig(441)
        );
    }

    #[test]
    fn chs_past_1023_cylinders_says_lba() {
        assert_eq!(chs(1024 * 255 * 63), [0xfe, 0xff, 0xff]);
        assert_eq!(chs(0), [0, 1, 0]);
        // Cylinder 256 puts its high bits into the sector byte.
        assert_eq!(chs(256 * 255 * 63), [0, 0x41, 0]);
    }

    #[test]
    fn cmdline_round_trips_through_appliance_params() {
        let c = cmdline(
            ("198.18.0.1".parse().unwrap(), 24),
            Some("198.18.0.254".parse().unwrap()),
            &["tty0".into(), "ttyS0,115200".into()],
        );
        assert_eq!(
            c,
            "console=tty0 console=ttyS0,115200 drover.mode=appliance \
             drover.address=198.18.0.1/24 drover.gw=198.18.0.254 drover.data=DROVER-DATA"
        );
        let w = words(&c);
        assert!(is_appliance(&w));
        let p = appliance_params(&w).unwrap();
        assert_eq!(p.address, "198.18.0.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(p.prefix, 24);
        assert_eq!(p.gateway, Some("198.18.0.254".parse().unwrap()));
        assert_eq!(p.interface, None);
        assert_eq!(p.data_label, DATA_LABEL);
        assert!(syslinux_cfg(&c).contains(&format!("  APPEND {c}\n")));
    }

    #[test]
    fn appliance_params_default_and_refuse() {
        assert!(!is_appliance(&words("console=ttyS0 drover.mode=agent")));
        let p = appliance_params(&words("drover.mode=appliance")).unwrap();
        assert_eq!(
            format!("{}/{}", p.address, p.prefix),
            DEFAULT_ADDRESS.to_string()
        );
        for bad in [
            "drover.address=10.0.0.0/24",
            "drover.address=10.0.0.255/24",
            "drover.address=10.0.0.1",
            "drover.address=10.0.0.1/31",
            "drover.gw=gateway",
            "drover.interface=a/b",
            "drover.data=waytoolongforanext4label",
        ] {
            assert!(appliance_params(&words(bad)).is_err(), "{bad} was accepted");
        }
        let p = appliance_params(&words("drover.interface=eno1 drover.data=MINE")).unwrap();
        assert_eq!(p.interface.as_deref(), Some("eno1"));
        assert_eq!(p.data_label, "MINE");
    }

    #[test]
    fn ext4_label_reads_the_superblock() {
        let mut head = vec![0u8; EXT4_PROBE_LEN];
        assert_eq!(ext4_label(&head), None);
        head[EXT4_SUPERBLOCK + 0x38] = 0x53;
        head[EXT4_SUPERBLOCK + 0x39] = 0xef;
        head[EXT4_SUPERBLOCK + 0x78..EXT4_SUPERBLOCK + 0x78 + 11].copy_from_slice(b"DROVER-DATA");
        assert_eq!(ext4_label(&head).as_deref(), Some("DROVER-DATA"));
        // A full 16-byte label has no NUL; a short read is no file system.
        head[EXT4_SUPERBLOCK + 0x78..EXT4_SUPERBLOCK + 0x88].copy_from_slice(b"ABCDEFGHIJKLMNOP");
        assert_eq!(ext4_label(&head).as_deref(), Some("ABCDEFGHIJKLMNOP"));
        assert_eq!(ext4_label(&head[..1100]), None);
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn write_targets_are_checked() {
        let stick = Target {
            is_block_device: true,
            mounted: vec![],
            size: 16 << 30,
        };
        assert_eq!(check_target(&stick, 1 << 30, false), Ok(()));
        let file = Target {
            is_block_device: false,
            ..stick.clone()
        };
        assert_eq!(
            check_target(&file, 1 << 30, true),
            Err(Refusal::NotBlockDevice)
        );
        let mounted = Target {
            mounted: vec!["/dev/sdb1 on /media/x".into()],
            ..stick.clone()
        };
        assert!(matches!(
            check_target(&mounted, 1 << 30, true),
            Err(Refusal::Mounted(_))
        ));
        let disk = Target {
            size: 2 << 40,
            ..stick.clone()
        };
        assert!(matches!(
            check_target(&disk, 1 << 30, false),
            Err(Refusal::TooBig { .. })
        ));
        assert_eq!(check_target(&disk, 1 << 30, true), Ok(()));
        assert!(matches!(
            check_target(&stick, 32 << 30, true),
            Err(Refusal::TooSmall { .. })
        ));
    }
}
