//! OpenIPMI's `ipmi_sim` as a LAN BMC on 127.0.0.1 for the power tests: one simulator per
//! BMC, with user `admin` / [`PASSWORD`], RMCP+ on a free UDP port, and a `chassis_control`
//! program (a shell script the test chooses) that ipmi_sim runs for power and boot-device
//! changes as `PROG get power|boot` (answering `power:0|1`, `boot:DEV`) and
//! `PROG set power 0|1 | reset 1 | shutdown 1 | boot DEV`.

use super::{require_cmd, stop_child, Drover, TempDir};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "admin";
pub const PASSWORD: &str = "drover-pw";

/// A `chassis_control` program that keeps power and boot device in files next to it.
pub const FILE_CHASSIS: &str = r#"#!/bin/sh
dir=$(dirname "$0")
echo "$*" >> "$dir/calls.log"
op=$1; shift
while [ $# -gt 0 ]; do
  case "$op $1" in
    "get power") echo "power:$(cat "$dir/power" 2>/dev/null || echo 0)"; shift;;
    "get boot") echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)"; shift;;
    "set power") echo "$2" > "$dir/power"; shift 2;;
    "set boot") echo "$2" > "$dir/boot"; shift 2;;
    "set reset"|"set shutdown") echo "$1" >> "$dir/events"; shift 2;;
    *) shift;;
  esac
done
"#;

pub struct BmcSim {
    pub port: u16,
    pub dir: PathBuf,
    child: Child,
    _tmp: Option<TempDir>,
}

/// A UDP port that nothing listens on right now.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind a UDP port on 127.0.0.1")
}

impl BmcSim {
    /// A simulator in a fresh temporary directory with the file-backed chassis.
    pub fn start(tag: &str) -> BmcSim {
        let tmp = TempDir::new(tag);
        let mut sim = BmcSim::start_in(tmp.path(), FILE_CHASSIS);
        sim._tmp = Some(tmp);
        sim
    }

    /// A simulator in a fresh temporary directory with the file-backed chassis and `emu`,
    /// ipmi_sim commands run after the BMC is added and before it is enabled (sensors, SDRs,
    /// SEL entries), and `lan`, lines for the BMC's part of lan.conf (`sol ...`).
    pub fn start_with(tag: &str, emu: &str, lan: &str) -> BmcSim {
        let tmp = TempDir::new(tag);
        let mut sim = BmcSim::start_in_with(tmp.path(), FILE_CHASSIS, emu, lan);
        sim._tmp = Some(tmp);
        sim
    }

    /// A simulator whose files live in `dir`, with `chassis` as its chassis_control program.
    pub fn start_in(dir: &Path, chassis: &str) -> BmcSim {
        BmcSim::start_in_with(dir, chassis, "", "")
    }

    fn start_in_with(dir: &Path, chassis: &str, emu: &str, lan: &str) -> BmcSim {
        let bin = require_cmd("ipmi_sim", "openipmi");
        std::fs::create_dir_all(dir.join("state")).expect("create the simulator dir");
        let script = dir.join("chassis.sh");
        std::fs::write(&script, chassis).expect("write the chassis script");
        let mut perm = std::fs::metadata(&script)
            .expect("chassis script")
            .permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&script, perm).expect("chmod the chassis script");
        for _ in 0..5 {
            let port = free_udp_port();
            let conf = format!(
                "name \"drover-test\"\nset_working_mc 0x20\n  startlan 1\n    addr 127.0.0.1 {port}\n    priv_limit admin\n    allowed_auths_callback none md2 md5 straight\n    allowed_auths_user none md2 md5 straight\n    allowed_auths_operator none md2 md5 straight\n    allowed_auths_admin none md2 md5 straight\n    guid a123456789abcdefa123456789abcdef\n  endlan\n{lan}  chassis_control \"{}\"\n  user 2 true \"{USER}\" \"{PASSWORD}\" admin 10 none md2 md5 straight\n",
                script.display()
            );
            std::fs::write(dir.join("lan.conf"), conf).expect("write lan.conf");
            std::fs::write(
                dir.join("sim.emu"),
                format!(
                    "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02\n\
                     {emu}mc_enable 0x20\n"
                ),
            )
            .expect("write sim.emu");
            let log = std::fs::File::create(dir.join("ipmi_sim.log")).expect("simulator log");
            let err = log.try_clone().expect("dup of a log file descriptor");
            let child = Command::new(&bin)
                .arg("-c")
                .arg(dir.join("lan.conf"))
                .arg("-f")
                .arg(dir.join("sim.emu"))
                .arg("-s")
                .arg(dir.join("state"))
                .arg("-n")
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(err)
                .spawn()
                .expect("spawn ipmi_sim");
            let mut sim = BmcSim {
                port,
                dir: dir.to_path_buf(),
                child,
                _tmp: None,
            };
            if sim.wait_ready(Duration::from_secs(10)) {
                return sim;
            }
            // Lost the port to another process between probing and binding: try another.
        }
        panic!(
            "ipmi_sim did not come up; see {}",
            dir.join("ipmi_sim.log").display()
        );
    }

    /// Waits until the simulator answers an RMCP presence ping.
    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP socket");
        sock.set_read_timeout(Some(Duration::from_millis(100))).ok();
        let ping = [
            0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, 0x80, 0x01, 0x00, 0x00,
        ];
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return false;
            }
            let _ = sock.send_to(&ping, ("127.0.0.1", self.port));
            if sock.recv(&mut buf).is_ok() {
                return true;
            }
        }
        false
    }

    /// `host:port` for `drover node set --bmc`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The power state the chassis program holds (file-backed chassis only).
    pub fn power(&self) -> String {
        std::fs::read_to_string(self.dir.join("power"))
            .unwrap_or_else(|_| "0".into())
            .trim()
            .to_string()
    }

    pub fn boot(&self) -> String {
        std::fs::read_to_string(self.dir.join("boot"))
            .unwrap_or_else(|_| "default".into())
            .trim()
            .to_string()
    }

    /// `ipmitool -I lanplus -C 3 -H 127.0.0.1 -p PORT -U admin -P PASSWORD ARGS...` stdout.
    pub fn ipmitool(&self, args: &[&str]) -> String {
        self.ipmitool_via(&["-I", "lanplus", "-C", "3"], args)
    }

    /// The same over IPMI v1.5 (`-I lan -A MD5`).
    pub fn ipmitool_v15(&self, args: &[&str]) -> String {
        self.ipmitool_via(&["-I", "lan", "-A", "MD5"], args)
    }

    fn ipmitool_via(&self, interface: &[&str], args: &[&str]) -> String {
        let bin = require_cmd("ipmitool", "ipmitool");
        let port = self.port.to_string();
        let out = Command::new(bin)
            .args(interface)
            .args(["-H", "127.0.0.1", "-p", &port])
            .args(["-U", USER, "-P", PASSWORD])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ipmitool");
        assert!(
            out.status.success(),
            "ipmitool {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for BmcSim {
    fn drop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(2));
    }
}

/// Cell `col` of `node`'s row in a `drover power` table (NODE BMC RESULT DETAIL): 1 the BMC,
/// 2 the result, 3 the detail (the rest of the line).
pub fn power_cell(table: &str, node: &str, col: usize) -> String {
    let line = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(node))
        .unwrap_or_else(|| panic!("no row for {node} in:\n{table}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    if col == 3 {
        cells[3..].join(" ")
    } else {
        cells[col].to_string()
    }
}

/// Adds node `name` (MAC `mac`) with BMC `addr`, `user` and `password` (through a password
/// file), and `extra` options of `node set`.
pub fn add_node_with_bmc(
    d: &Drover,
    (name, mac): (&str, &str),
    addr: &str,
    (user, password): (&str, &str),
    extra: &[&str],
) {
    let pw = d.scratch().join(format!("bmc-pw-{name}"));
    std::fs::write(&pw, format!("{password}\n")).unwrap();
    d.cli_ok(&["node", "add", name, "--mac", mac]);
    let mut args = vec!["node", "set", name, "--bmc", addr, "--bmc-user", user];
    args.extend(["--bmc-password-file", pw.to_str().unwrap()]);
    args.extend(extra);
    d.cli_ok(&args);
}
