//! One QEMU VM that network-boots inside a lab namespace, and what it printed on its serial
//! console.
//!
//! QEMU runs under TCG (`DROVER_QEMU_ACCEL=kvm` switches; LAB.md: KVM breaks iPXE here) with
//! `-nodefaults -nographic -serial file:LOG -monitor none -no-reboot -m 256` and one virtio NIC
//! on a tap of the lab bridge. BIOS: SeaBIOS + the NIC's iPXE option ROM (ipxe-qemu), `-boot n`.
//! UEFI: q35 + OVMF (read-only CODE, a private copy of VARS); the NIC's EFI iPXE ROM boots.
//!
//! A watcher thread reads the serial log every 50 ms and timestamps the first appearance of the
//! lines that mark boot phases (iPXE banner, iPXE's DHCP, `http://` fetches, `Linux version`,
//! the test marker), so a test can print where the time went.
//!
//! At most [`MAX_VMS`] VMs of one test binary run at once (2 cores); QEMU is killed by PID on
//! drop.

use crate::common::{read_from, read_lossy, require_cmd, require_file, stop_child, tail};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// VMs of one test binary that may run at the same time.
pub const MAX_VMS: usize = 2;

/// The limit in force: [`MAX_VMS`] unless a test raised it ([`allow_vms`]).
static LIMIT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(MAX_VMS);

/// Lets this test binary run `n` VMs at once. Only for VMs that sit idle once booted (a node
/// in service mode) and that the test boots one after the other: the limit is there for the
/// CPU that booting VMs take under TCG, and each VM takes ~250 MiB of RAM.
pub fn allow_vms(n: usize) {
    LIMIT.store(n, std::sync::atomic::Ordering::Relaxed);
}

/// How many lines of each log a failure shows.
const TAIL_LINES: usize = 60;

static SLOTS: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

/// A permit to run one VM; released on drop.
pub struct Slot;

impl Slot {
    pub fn acquire() -> Slot {
        let (lock, cvar) = &SLOTS;
        let mut running = lock.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= LIMIT.load(std::sync::atomic::Ordering::Relaxed) {
            running = cvar.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (lock, cvar) = &SLOTS;
        let mut running = lock.lock().unwrap_or_else(|e| e.into_inner());
        *running -= 1;
        cvar.notify_one();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Firmware {
    /// SeaBIOS; the virtio NIC's option ROM is iPXE.
    Bios,
    /// OVMF on q35; the virtio NIC's EFI ROM is iPXE.
    Uefi,
}

/// The QEMU command (`ip netns exec NETNS qemu-system-x86_64 ...`) that [`Vm::start`] runs,
/// for tests that start the VM some other way (the IPMI test has ipmi_sim start it).
pub fn qemu_command(netns: &str, dir: &Path, spec: &VmSpec, serial: &Path) -> Command {
    let qemu = require_cmd("qemu-system-x86_64", "qemu-system-x86");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns]).arg(qemu);
    cmd.args(::drover::lab::qemu::base_args(spec.name))
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .args(["-m", &spec.memory_mib.to_string(), "-smp", "1"])
        .arg("-netdev")
        .arg(format!(
            "tap,id=n0,ifname={},script=no,downscript=no",
            spec.tap
        ))
        .arg("-device")
        .arg(format!(
            "virtio-net-pci,netdev=n0,mac={},bootindex=1",
            spec.mac
        ));
    match spec.firmware {
        Firmware::Bios => {
            cmd.args(["-boot", "n"]);
        }
        Firmware::Uefi => {
            let args = ::drover::lab::qemu::uefi_args(dir, spec.name)
                .unwrap_or_else(|e| panic!("{e}: run scripts/setup"));
            cmd.args(args);
        }
    }
    cmd
}

/// What a test asks for.
pub struct VmSpec<'a> {
    pub name: &'a str,
    pub firmware: Firmware,
    pub mac: &'a str,
    pub tap: &'a str,
    pub memory_mib: u32,
}

/// What a VM boots from besides its NIC (which every VM has).
pub enum Medium<'a> {
    /// Nothing: the firmware network-boots.
    Network,
    /// A raw disk image as a USB stick (on an xHCI controller), booted before the network.
    Stick(&'a Path),
    /// QEMU loads `kernel` and `initrd` itself (`-append cmdline`); `disks` are virtio disks
    /// in order (`/dev/vda`, `/dev/vdb`, ...), each `(path, snapshot)`: with snapshot the
    /// image is only read and the guest's writes are dropped with the VM.
    Kernel {
        kernel: &'a Path,
        initrd: &'a Path,
        cmdline: &'a str,
        disks: &'a [(&'a Path, bool)],
    },
}

/// Labels of the serial-console events the watcher timestamps.
pub mod event {
    /// iPXE runs (its banner; under BIOS after the ROM's 2 s "Press Ctrl-B").
    pub const IPXE: &str = "iPXE running";
    /// iPXE's DHCP finished ("Configuring (net0 ...)... ok").
    pub const DHCP: &str = "iPXE DHCP done";
    /// iPXE's first fetch (script or loader) over HTTP or TFTP.
    pub const FETCH: &str = "first fetch";
    /// The last fetch line before the kernel ran: kernel and initrd are loaded.
    pub const LOADED: &str = "kernel+initrd loaded";
    /// The kernel's console is up (it replays its log from "Linux version").
    pub const LINUX: &str = "Linux version";
    /// The kernel starts the initramfs's /init.
    pub const INIT: &str = "Run /init";
    /// A test marker (`DROVER-BOOT-OK`, `DROVER-RAMROOT-OK`).
    pub const MARKER: &str = "marker";
}

#[derive(Default)]
struct Watch {
    text: String,
    line_start: usize,
    events: Vec<(String, Duration)>,
    last_fetch: Option<Duration>,
}

impl Watch {
    fn seen(&self, label: &str) -> Option<Duration> {
        self.events
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, t)| *t)
    }

    fn record(&mut self, label: &str, at: Duration) {
        if self.seen(label).is_none() {
            self.events.push((label.to_string(), at));
        }
    }

    /// Appends new serial bytes and classifies each completed line.
    fn feed(&mut self, bytes: &[u8], at: Duration) {
        self.text.push_str(&String::from_utf8_lossy(bytes));
        while let Some(nl) = self.text[self.line_start..].find('\n') {
            let end = self.line_start + nl;
            let line = self.text[self.line_start..end].to_string();
            self.line_start = end + 1;
            self.classify(&line, at);
        }
    }

    fn classify(&mut self, raw: &str, at: Duration) {
        let line = clean_line(raw);
        let line = line.trim_start();
        if line.contains("Open Source Network Boot Firmware") || line.contains("iPXE initialising")
        {
            self.record(event::IPXE, at);
        }
        if line.contains("Configuring (net") && line.contains("ok") {
            self.record(event::DHCP, at);
        }
        if line.starts_with("http://") || line.starts_with("tftp://") {
            self.record(event::FETCH, at);
            if self.seen(event::LINUX).is_none() {
                self.last_fetch = Some(at);
            }
        }
        if line.contains("Linux version") {
            self.record(event::LINUX, at);
            if let Some(t) = self.last_fetch {
                self.record(event::LOADED, t);
            }
        }
        if line.contains("] Run /") && line.contains("as init process") {
            self.record(event::INIT, at);
        }
        if line.starts_with("DROVER-BOOT-OK") || line.starts_with("DROVER-RAMROOT-OK") {
            self.record(event::MARKER, at);
        }
    }
}

pub struct Vm {
    pub name: String,
    pub firmware: Firmware,
    pub mac: String,
    child: Option<Child>,
    serial: PathBuf,
    qemu_log: PathBuf,
    started: Instant,
    watch: Arc<Mutex<Watch>>,
    stop: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
    other_logs: Vec<(String, PathBuf)>,
    _slot: Slot,
}

impl Vm {
    /// Starts QEMU inside namespace `netns` (its name), writing its files into `dir`.
    /// Blocks while [`MAX_VMS`] (or the [`allow_vms`] limit) VMs of this test binary run.
    pub fn start(netns: &str, dir: &Path, spec: &VmSpec) -> Vm {
        Vm::launch(netns, dir, spec, &Medium::Network)
    }

    /// Like [`Vm::start`], booting from `medium` instead of the network.
    pub fn start_from(netns: &str, dir: &Path, spec: &VmSpec, medium: &Medium) -> Vm {
        Vm::launch(netns, dir, spec, medium)
    }

    fn launch(netns: &str, dir: &Path, spec: &VmSpec, medium: &Medium) -> Vm {
        require_file(
            Path::new("/usr/lib/ipxe/qemu/efi-virtio.rom"),
            "the virtio NIC's iPXE ROM from Debian package `ipxe-qemu`: run scripts/setup",
        );
        let slot = Slot::acquire();
        let serial = dir.join(format!("{}.serial.log", spec.name));
        let qemu_log = dir.join(format!("{}.qemu.log", spec.name));
        let _ = std::fs::remove_file(&serial);
        let mut cmd = qemu_command(netns, dir, spec, &serial);
        match medium {
            Medium::Network => {}
            Medium::Stick(disk) => {
                // bootindex 0 puts the stick before the NIC (bootindex 1) for both firmwares.
                cmd.arg("-drive")
                    .arg(format!(
                        "if=none,id=stick,format=raw,file={}",
                        disk.display()
                    ))
                    .args(["-device", "qemu-xhci", "-device"])
                    .arg("usb-storage,drive=stick,bootindex=0");
            }
            Medium::Kernel {
                kernel,
                initrd,
                cmdline,
                disks,
            } => {
                cmd.arg("-kernel")
                    .arg(kernel)
                    .arg("-initrd")
                    .arg(initrd)
                    .arg("-append")
                    .arg(cmdline);
                for (disk, snapshot) in disks.iter() {
                    let snapshot = if *snapshot { "on" } else { "off" };
                    cmd.arg("-drive").arg(format!(
                        "if=virtio,format=raw,snapshot={snapshot},file={}",
                        disk.display()
                    ));
                }
            }
        }
        let log = std::fs::File::create(&qemu_log).expect("create the QEMU log");
        let log2 = log.try_clone().expect("dup of a log file descriptor");
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        let started = Instant::now();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start QEMU ({cmd:?}): {e}"));

        let watch = Arc::new(Mutex::new(Watch::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (watch, stop, serial) = (watch.clone(), stop.clone(), serial.clone());
            std::thread::spawn(move || {
                let mut offset = 0u64;
                loop {
                    let last = stop.load(Ordering::Relaxed);
                    let bytes = read_from(&serial, offset);
                    if !bytes.is_empty() {
                        offset += bytes.len() as u64;
                        let mut w = watch.lock().unwrap_or_else(|e| e.into_inner());
                        w.feed(&bytes, started.elapsed());
                    }
                    if last {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Vm {
            name: spec.name.to_string(),
            firmware: spec.firmware,
            mac: spec.mac.to_string(),
            child: Some(child),
            serial,
            qemu_log,
            started,
            watch,
            stop,
            watcher: Some(watcher),
            other_logs: Vec::new(),
            _slot: slot,
        }
    }

    /// Adds a log (e.g. drover's) whose tail a failing wait shows next to the serial log.
    pub fn show_on_failure(&mut self, label: &str, path: &Path) {
        self.other_logs
            .push((label.to_string(), path.to_path_buf()));
    }

    pub fn serial_path(&self) -> &Path {
        &self.serial
    }

    /// Everything on the serial console so far (read directly, not through the watcher).
    pub fn serial(&self) -> String {
        read_lossy(&self.serial)
    }

    /// Time since QEMU started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until the serial console shows `needle`; returns the time since QEMU started.
    /// Panics on timeout, or when QEMU exits first, with the last lines of the serial log, of
    /// QEMU's own output and of every log added with [`Vm::show_on_failure`].
    pub fn wait_serial(&mut self, needle: &str, timeout: Duration) -> Duration {
        let deadline = Instant::now() + timeout;
        loop {
            if self.serial().contains(needle) {
                let at = self.started.elapsed();
                self.watch.lock().unwrap().record(needle, at);
                return at;
            }
            let exited = match self.child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(status))) => Some(status.to_string()),
                None => Some("not running".into()),
                _ => None,
            };
            if let Some(status) = exited {
                if self.serial().contains(needle) {
                    continue;
                }
                self.fail(&format!(
                    "QEMU {} exited ({status}) before its console showed {needle:?}",
                    self.name
                ));
            }
            if Instant::now() >= deadline {
                self.fail(&format!(
                    "VM {} did not show {needle:?} on its console within {timeout:?}",
                    self.name
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for `needle` like [`Vm::wait_serial`], then for the end of its line, and returns
    /// that line (see [`Vm::line_with`]). A guest that stops mid-line gives what it wrote.
    pub fn wait_line(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_serial(needle, timeout);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(line) = self.line_with(needle) {
                return line;
            }
            let running = matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)));
            if !running || Instant::now() >= deadline {
                let serial = self.serial();
                return serial
                    .find(needle)
                    .map(|i| clean_line(&serial[i..]))
                    .unwrap_or_default();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first whole serial line containing `needle`, without `\r` and escape sequences.
    pub fn line_with(&self, needle: &str) -> Option<String> {
        // Only whole lines: the guest may still be writing the last one.
        let serial = self.serial();
        let complete = serial.rfind('\n').map_or("", |end| &serial[..end]);
        complete
            .lines()
            .find(|l| l.contains(needle))
            .map(|l| clean_line(&l[l.find(needle).unwrap_or(0)..]))
    }

    /// Waits for QEMU to exit (the guest powered off); panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.fail(&format!(
            "QEMU {} did not exit within {timeout:?}",
            self.name
        ));
    }

    fn fail(&self, what: &str) -> ! {
        let mut msg = format!("{what}\n");
        let _ = writeln!(
            msg,
            "---- serial console of {} ({}), last {TAIL_LINES} lines ----\n{}",
            self.name,
            self.serial.display(),
            tail(&clean_text(&self.serial()), TAIL_LINES)
        );
        let _ = writeln!(
            msg,
            "---- QEMU output ({}) ----\n{}",
            self.qemu_log.display(),
            tail(&read_lossy(&self.qemu_log), 20)
        );
        for (label, path) in &self.other_logs {
            let _ = writeln!(
                msg,
                "---- {label} ({}), last {TAIL_LINES} lines ----\n{}",
                path.display(),
                tail(&read_lossy(path), TAIL_LINES)
            );
        }
        let _ = writeln!(msg, "---- phases so far ----\n{}", self.phase_table());
        panic!("{msg}");
    }

    /// Timestamped boot events and the phases between them, as a table.
    pub fn phase_table(&self) -> String {
        // Let the watcher catch up with the file first.
        std::thread::sleep(Duration::from_millis(60));
        let w = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        let at = |l: &str| w.seen(l);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "boot of {} ({:?}, {}):",
            self.name, self.firmware, self.mac
        );
        let mut events = w.events.clone();
        events.sort_by_key(|(_, t)| *t);
        for (label, t) in &events {
            let _ = writeln!(out, "  {:>7.2}s  {label}", t.as_secs_f64());
        }
        let phases = [
            ("firmware -> iPXE running", None, at(event::IPXE)),
            ("iPXE -> DHCP done", at(event::IPXE), at(event::DHCP)),
            (
                "DHCP -> kernel+initrd loaded",
                at(event::DHCP),
                at(event::LOADED),
            ),
            (
                "loaded -> Linux console",
                at(event::LOADED),
                at(event::LINUX),
            ),
            ("Linux -> /init", at(event::LINUX), at(event::INIT)),
            ("/init -> marker", at(event::INIT), at(event::MARKER)),
            ("total: QEMU start -> marker", None, at(event::MARKER)),
        ];
        for (label, from, to) in phases {
            let d = match to {
                Some(to) => {
                    let from = from.unwrap_or_default();
                    format!("{:>7.2}s", to.saturating_sub(from).as_secs_f64())
                }
                None => "      --".to_string(),
            };
            let _ = writeln!(out, "  {d}  {label}");
        }
        out
    }

    /// Prints the phase table to the real stderr (not captured by the test harness), so it
    /// shows in every `cargo test` run.
    pub fn print_phases(&self) {
        let table = self.phase_table();
        let _ = std::io::stderr().write_all(table.as_bytes());
    }

    /// Time from QEMU start to an event, if it was seen.
    pub fn event(&self, label: &str) -> Option<Duration> {
        self.watch.lock().unwrap().seen(label)
    }

    /// Kills QEMU (by PID) and stops the watcher.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_child(&mut child, Duration::from_millis(500));
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.watcher.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Removes ANSI escape sequences and carriage returns.
pub fn clean_line(line: &str) -> String {
    ::drover::lab::progress::clean(line)
}

pub fn clean_text(text: &str) -> String {
    text.lines().map(clean_line).collect::<Vec<_>>().join("\n")
}

/// The value of `key=` in a marker line such as `DROVER-BOOT-OK node=n1`.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}
