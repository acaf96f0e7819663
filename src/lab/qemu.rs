//! The QEMU command line of a lab VM, and the running VM.
//!
//! A VM runs under TCG (`DROVER_QEMU_ACCEL` overrides; KVM breaks iPXE on the machines this
//! was built on) with one virtio NIC on the lab segment (`-netdev stream` to the segment's
//! unix socket, or `-netdev dgram` from the VM's own datagram socket to the segment's) and its serial console on a unix socket (`lab console`) that QEMU also logs
//! to a file (`lab status`, `lab run --expect`). BIOS: SeaBIOS and the NIC's iPXE option ROM
//! (`-boot n`). UEFI: q35 and OVMF, with a private copy of the variable store.
//!
//! Not here: which VMs a lab has (`super::cmd`), the segment (`super::segment`).

use super::serve::Paths;
use super::LabError;
use crate::store::model::Mac;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The firmware a VM boots with.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// SeaBIOS; the NIC's option ROM is iPXE.
    Bios,
    /// OVMF on q35; the NIC's EFI ROM is iPXE.
    Uefi,
}

/// How a VM's NIC reaches the segment (QEMU's socket netdevs).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Netdev {
    /// A unix stream connection, each frame after its 4-byte length.
    #[default]
    Stream,
    /// Unix datagrams, one frame each, from the VM's own socket.
    Dgram,
}

/// Memory of a lab VM: enough for the kernel and an initramfs.
pub const MEMORY_MIB: u32 = 256;
/// How long a VM gets to exit after SIGKILL is sent (it cannot refuse).
const REAP: Duration = Duration::from_secs(5);

/// One VM of a lab.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct VmSpec {
    pub name: String,
    pub mac: Mac,
    pub firmware: Firmware,
    #[serde(default)]
    pub netdev: Netdev,
}

/// Finds `program` on `PATH`.
pub fn find(program: &str, package: &'static str) -> Result<PathBuf, LabError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or(LabError::Missing {
            program: program.into(),
            package,
        })
}

/// OVMF's code and variable-store templates (the 4 MiB builds first).
fn ovmf() -> Result<(PathBuf, PathBuf), LabError> {
    let dir = Path::new("/usr/share/OVMF");
    [
        ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
        ("OVMF_CODE.fd", "OVMF_VARS.fd"),
    ]
    .iter()
    .map(|(c, v)| (dir.join(c), dir.join(v)))
    .find(|(c, v)| c.is_file() && v.is_file())
    .ok_or(LabError::Missing {
        program: dir.join("OVMF_CODE_4M.fd").display().to_string(),
        package: "ovmf",
    })
}

/// The arguments every drover VM starts with: its name, the accelerator (TCG unless
/// `DROVER_QEMU_ACCEL` says otherwise), no default devices, no display, no monitor, and an
/// exit instead of a reboot.
pub fn base_args(name: &str) -> Vec<String> {
    let accel = std::env::var("DROVER_QEMU_ACCEL").unwrap_or_else(|_| "tcg".into());
    ["-name", name, "-accel", &accel]
        .into_iter()
        .chain([
            "-nodefaults",
            "-nographic",
            "-monitor",
            "none",
            "-no-reboot",
        ])
        .map(String::from)
        .collect()
}

/// QEMU's arguments for UEFI: q35, OVMF's code read-only and a private copy of its
/// variable store (`<dir>/<name>.OVMF_VARS.fd`, made now).
pub fn uefi_args(dir: &Path, name: &str) -> Result<Vec<String>, LabError> {
    let (code, vars) = ovmf()?;
    let mine = dir.join(format!("{name}.OVMF_VARS.fd"));
    std::fs::copy(&vars, &mine).map_err(LabError::io("copying", vars.display()))?;
    Ok(vec![
        "-machine".into(),
        "q35".into(),
        "-drive".into(),
        format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            code.display()
        ),
        "-drive".into(),
        format!("if=pflash,format=raw,unit=1,file={}", mine.display()),
    ])
}

/// The command that runs `vm` on the lab in `paths`.
pub fn command(paths: &Paths, vm: &VmSpec) -> Result<Command, LabError> {
    let qemu = find("qemu-system-x86_64", "qemu-system-x86")?;
    let console = paths.console(&vm.name);
    let log = paths.serial_log(&vm.name);
    let _ = std::fs::remove_file(&console);
    let _ = std::fs::remove_file(&log);
    let mut cmd = Command::new(qemu);
    cmd.args(base_args(&vm.name))
        .args(["-m", &MEMORY_MIB.to_string(), "-smp", "1"])
        .arg("-chardev")
        .arg(format!(
            "socket,id=console,path={},server=on,wait=off,logfile={}",
            console.display(),
            log.display()
        ))
        .args(["-serial", "chardev:console"])
        .arg("-netdev")
        .arg(match vm.netdev {
            Netdev::Stream => format!(
                "stream,id=lab,server=off,addr.type=unix,addr.path={}",
                paths.segment().display()
            ),
            Netdev::Dgram => {
                let local = paths.vm_dgram(&vm.name);
                let _ = std::fs::remove_file(&local);
                format!(
                    "dgram,id=lab,local.type=unix,local.path={},remote.type=unix,remote.path={}",
                    local.display(),
                    paths.segment_dgram().display()
                )
            }
        })
        .arg("-device")
        .arg(format!(
            "virtio-net-pci,netdev=lab,mac={},bootindex=1",
            vm.mac
        ));
    match vm.firmware {
        Firmware::Bios => {
            cmd.args(["-boot", "n"]);
        }
        Firmware::Uefi => {
            cmd.args(uefi_args(&paths.dir, &vm.name)?);
        }
    }
    Ok(cmd)
}

/// A running VM; killed (by its PID) when dropped.
pub struct Vm {
    pub spec: VmSpec,
    child: Child,
}

impl Vm {
    /// Starts `spec` on the lab in `paths`; QEMU's own messages go to `<name>.qemu.log`.
    pub fn start(paths: &Paths, spec: &VmSpec) -> Result<Vm, LabError> {
        let mut cmd = command(paths, spec)?;
        let log_path = paths.dir.join(format!("{}.qemu.log", spec.name));
        let log = std::fs::File::create(&log_path)
            .map_err(LabError::io("creating", log_path.display()))?;
        let err = log
            .try_clone()
            .map_err(LabError::io("opening", log_path.display()))?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(err);
        let child = cmd
            .spawn()
            .map_err(LabError::io("starting QEMU for", &spec.name))?;
        Ok(Vm {
            spec: spec.clone(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once QEMU has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        let _ = self.child.kill();
        let deadline = std::time::Instant::now() + REAP;
        while self.exited().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
