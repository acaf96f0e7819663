//! Raw system calls: the only module of drover where `unsafe` is allowed. Each function is a
//! thin, checked wrapper that turns a libc call into a safe Rust signature.
//!
//! Interface lookup (getifaddrs, if_nametoindex) and the floating service address (rtnetlink,
//! a packet socket for gratuitous ARP) are used by the servers; the agent's calls
//! (modules, mounts, address configuration) live further down.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::net::Ipv4Addr;

/// One entry of getifaddrs(3), reduced to what drover needs.
#[derive(Debug, Clone)]
pub struct IfAddr {
    pub name: String,
    /// IPv4 address and prefix length, for AF_INET entries.
    pub ipv4: Option<(Ipv4Addr, u8)>,
}

/// Raises the soft limit of open files to the hard limit; returns the new soft limit.
/// Every TCP connection, TFTP transfer and open NFS file holds a descriptor, and the usual
/// soft limit (1024) is below what a boot storm needs.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// Lists the addresses of all interfaces.
pub fn interface_addrs() -> io::Result<Vec<IfAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a pointer to a list it allocated; we free it below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a non-null node of the list getifaddrs returned, valid until
        // freeifaddrs; its name is a NUL-terminated string.
        let entry = unsafe { &*cur };
        let name = unsafe { CStr::from_ptr(entry.ifa_name) }
            .to_string_lossy()
            .into_owned();
        let mut ipv4 = None;
        if !entry.ifa_addr.is_null() {
            // SAFETY: ifa_addr is non-null and points to a sockaddr whose family says its type.
            let family = unsafe { (*entry.ifa_addr).sa_family } as i32;
            if family == libc::AF_INET && !entry.ifa_netmask.is_null() {
                // SAFETY: AF_INET entries carry sockaddr_in for address and netmask.
                let (addr, mask) = unsafe {
                    let a = &*(entry.ifa_addr as *const libc::sockaddr_in);
                    let m = &*(entry.ifa_netmask as *const libc::sockaddr_in);
                    (
                        u32::from_be(a.sin_addr.s_addr),
                        u32::from_be(m.sin_addr.s_addr),
                    )
                };
                ipv4 = Some((Ipv4Addr::from(addr), mask.count_ones() as u8));
            }
        }
        out.push(IfAddr { name, ipv4 });
        cur = entry.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// The kernel index of interface `name`, if it exists.
pub fn interface_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

// ---------------------------------------------------------------------------------------------
// The node agent's calls: mounts, root switching, kernel modules, hostname, IPv4 configuration
// through the classic ioctls (SIOCSIFADDR, SIOCSIFNETMASK, SIOCSIFFLAGS, SIOCADDRT).

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in string"))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// mount(2). `fstype` and `data` may be absent (bind and move mounts).
pub fn mount(
    source: &str,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = cstr(source)?;
    let target = cstr(target)?;
    let fstype = fstype.map(cstr).transpose()?;
    let data = data.map(cstr).transpose()?;
    // SAFETY: every pointer is either null or a NUL-terminated string that outlives the call.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr().cast::<libc::c_void>()),
        )
    })
}

/// umount2(2) with MNT_DETACH.
pub fn umount_detach(target: &str) -> io::Result<()> {
    let target = cstr(target)?;
    // SAFETY: `target` is a NUL-terminated string that outlives the call.
    check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) })
}

/// The `f_type` of statfs(2) on `path` (e.g. RAMFS_MAGIC, TMPFS_MAGIC).
pub fn fs_magic(path: &str) -> io::Result<i64> {
    let path = cstr(path)?;
    // SAFETY: statfs is plain old data; zeroes are a valid value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is a valid, writable statfs.
    check(unsafe { libc::statfs(path.as_ptr(), &mut st) })?;
    Ok(st.f_type as i64)
}

/// `MODULE_INIT_COMPRESSED_FILE` (Linux 6.4+): the kernel decompresses the module itself.
pub const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

/// finit_module(2): loads the kernel module in `file` with `params`.
pub fn finit_module(file: &std::fs::File, params: &str, flags: libc::c_uint) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let params = cstr(params)?;
    // SAFETY: the fd is open for the duration of the call and `params` is NUL-terminated.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            params.as_ptr(),
            flags,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// sethostname(2).
pub fn sethostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`'s bytes, valid for the call.
    check(unsafe { libc::sethostname(name.as_ptr().cast::<libc::c_char>(), name.len()) })
}

/// Sends SIGTERM to process `pid` (`drover lab down` stopping its lab's server).
pub fn terminate(pid: u32) -> io::Result<()> {
    signal(pid, libc::SIGTERM)
}

/// Sends SIGKILL to process `pid` (`drover lab kill-member`: a crash, with no goodbye).
pub fn kill(pid: u32) -> io::Result<()> {
    signal(pid, libc::SIGKILL)
}

fn signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether file descriptor `fd` is open.
pub fn fd_is_open(fd: i32) -> bool {
    // SAFETY: F_GETFD only queries the descriptor table.
    unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
}

/// Makes `file` the process's stdin, stdout and stderr.
pub fn set_stdio(file: &std::fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    for fd in 0..3 {
        // SAFETY: dup2 onto 0..2 replaces the standard descriptors; `file` stays open.
        if unsafe { libc::dup2(file.as_raw_fd(), fd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A datagram socket for the interface ioctls, closed on drop.
struct IoctlSocket(std::os::fd::OwnedFd);

impl IoctlSocket {
    fn new() -> io::Result<Self> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly opened descriptor that nothing else owns.
        Ok(IoctlSocket(unsafe {
            std::os::fd::OwnedFd::from_raw_fd(fd)
        }))
    }

    /// ioctl(2) with a pointer argument.
    ///
    /// SAFETY (for callers): `arg` must be the structure that `request` expects.
    unsafe fn ioctl<T>(&self, request: libc::c_ulong, arg: &mut T) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: guaranteed by the caller (see above); the fd is open.
        check(unsafe { libc::ioctl(self.0.as_raw_fd(), request as _, arg as *mut T) })
    }
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not a valid interface name"),
        ));
    }
    // SAFETY: ifreq is plain old data; zeroes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(req)
}

fn sockaddr_in(addr: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(addr).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes) and both are plain data;
    // the kernel reads the AF_INET address back out of the generic sockaddr.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// Sets interface `name`'s IPv4 address and netmask (SIOCSIFADDR, SIOCSIFNETMASK).
pub fn set_ipv4(name: &str, addr: Ipv4Addr, netmask: Ipv4Addr) -> io::Result<()> {
    let sock = IoctlSocket::new()?;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_addr = sockaddr_in(addr);
    // SAFETY: SIOCSIFADDR takes an ifreq carrying an address.
    unsafe { sock.ioctl(libc::SIOCSIFADDR, &mut req) }?;
    let mut req = ifreq(name)?;
    req.ifr_ifru.ifru_netmask = sockaddr_in(netmask);
    // SAFETY: SIOCSIFNETMASK takes an ifreq carrying a netmask.
    unsafe { sock.ioctl(libc::SIOCSIFNETMASK, &mut req) }
}

/// Sets IFF_UP on interface `name` (SIOCGIFFLAGS + SIOCSIFFLAGS).
pub fn interface_up(name: &str) -> io::Result<()> {
    let sock = IoctlSocket::new()?;
    let mut req = ifreq(name)?;
    // SAFETY: SIOCGIFFLAGS fills ifru_flags of an ifreq.
    unsafe { sock.ioctl(libc::SIOCGIFFLAGS, &mut req) }?;
    // SAFETY: the kernel just wrote ifru_flags, so reading that union member is valid.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: SIOCSIFFLAGS reads ifru_flags of an ifreq.
    unsafe { sock.ioctl(libc::SIOCSIFFLAGS, &mut req) }
}

/// `struct rtentry` from <net/route.h> (the libc crate has it only for musl).
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

/// Adds the IPv4 default route via `gateway` (SIOCADDRT). EEXIST means it is already there.
pub fn add_default_route(gateway: Ipv4Addr) -> io::Result<()> {
    let sock = IoctlSocket::new()?;
    let mut rt = RtEntry {
        rt_pad1: 0,
        rt_dst: sockaddr_in(Ipv4Addr::UNSPECIFIED),
        rt_gateway: sockaddr_in(gateway),
        rt_genmask: sockaddr_in(Ipv4Addr::UNSPECIFIED),
        rt_flags: (libc::RTF_UP | libc::RTF_GATEWAY) as libc::c_ushort,
        rt_pad2: 0,
        rt_pad3: 0,
        rt_pad4: std::ptr::null_mut(),
        rt_metric: 0,
        rt_dev: std::ptr::null_mut(),
        rt_mtu: 0,
        rt_window: 0,
        rt_irtt: 0,
    };
    // SAFETY: SIOCADDRT takes a struct rtentry, which RtEntry mirrors field for field.
    unsafe { sock.ioctl(libc::SIOCADDRT, &mut rt) }
}

/// CLOCK_BOOTTIME: time since the kernel started, for boot timing lines.
pub fn boottime() -> std::time::Duration {
    // SAFETY: timespec is plain old data; zeroes are a valid value.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

// ---------------------------------------------------------------------------------------------
// The NTP server's clock reads: the wall clock and the kernel's synchronisation state.

/// CLOCK_REALTIME as (seconds, nanoseconds) since the Unix epoch; seconds are negative before
/// 1970. The NTP server stamps receive and transmit times with it.
pub fn realtime() -> (i64, u32) {
    // SAFETY: timespec is plain old data; zeroes are a valid value.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a valid, writable timespec. CLOCK_REALTIME always exists, so the call
    // cannot fail with a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec as i64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
}

/// clock_getres(CLOCK_REALTIME) in nanoseconds (1 on any modern kernel).
pub fn realtime_resolution_nanos() -> u64 {
    // SAFETY: timespec is plain old data; zeroes are a valid value.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a valid, writable timespec.
    if unsafe { libc::clock_getres(libc::CLOCK_REALTIME, &mut ts) } != 0 {
        return 1;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
        .max(1)
}

/// What adjtimex(2) says about the system clock's synchronisation, read-only (`modes = 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelClock {
    /// The return value: TIME_OK, TIME_INS, TIME_DEL, TIME_OOP, TIME_WAIT or TIME_ERROR.
    pub state: i32,
    /// The `status` bits (STA_UNSYNC, STA_INS, STA_DEL, ...).
    pub status: i32,
    /// Maximum error in microseconds; the synchronisation daemon sets it to its root distance
    /// and the kernel adds 500 ppm of it per second since.
    pub maxerror_us: i64,
    /// Estimated error in microseconds.
    pub esterror_us: i64,
}

/// adjtimex(2) with `modes = 0`: reads the kernel clock state and changes nothing.
pub fn adjtimex_read() -> io::Result<KernelClock> {
    // SAFETY: timex is plain old data; zeroes are a valid value, and modes = 0 makes the call
    // read-only.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a valid, writable timex.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(KernelClock {
        state,
        status: tx.status,
        maxerror_us: tx.maxerror as i64,
        esterror_us: tx.esterror as i64,
    })
}

// ---------------------------------------------------------------------------------------------
// The floating service address (`net::floating`): rtnetlink requests and gratuitous ARP.

/// Opens a socket(2) and takes ownership of its descriptor.
fn owned_socket(
    domain: libc::c_int,
    kind: libc::c_int,
    protocol: libc::c_int,
) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly opened descriptor that nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// How long [`netlink_request`] waits for the kernel's answer (it answers at once; this
/// only bounds a kernel that does not).
const NETLINK_TIMEOUT_US: libc::suseconds_t = 500_000;

/// Sends one rtnetlink request (`net::netlink`) and returns the first reply datagram.
pub fn netlink_request(request: &[u8]) -> io::Result<Vec<u8>> {
    use std::os::fd::AsRawFd;
    let sock = owned_socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
    let fd = sock.as_raw_fd();
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: NETLINK_TIMEOUT_US,
    };
    // SAFETY: SO_RCVTIMEO takes a timeval; pointer and length describe `timeout`.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    })?;
    // SAFETY: sockaddr_nl is plain old data; zeroes (pid 0: the kernel) are a valid value.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: the buffer and the address are valid for the call; their lengths are theirs.
    let sent = unsafe {
        libc::sendto(
            fd,
            request.as_ptr().cast(),
            request.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; 8192];
    // SAFETY: `buf` is writable for its whole length.
    let got = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(got as usize);
    Ok(buf)
}

/// Broadcasts an ARP payload (`net::arp`) on interface `index` through a packet socket;
/// the kernel adds the Ethernet header (broadcast destination, ARP ethertype).
pub fn send_arp(index: u32, payload: &[u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let proto = (libc::ETH_P_ARP as u16).to_be();
    let sock = owned_socket(libc::AF_PACKET, libc::SOCK_DGRAM, libc::c_int::from(proto))?;
    // SAFETY: sockaddr_ll is plain old data; zeroes are a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as libc::c_ushort;
    to.sll_protocol = proto;
    to.sll_ifindex = index as libc::c_int;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    // SAFETY: the payload and the address are valid for the call; their lengths are theirs.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            payload.as_ptr().cast(),
            payload.len(),
            0,
            (&to as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A packet socket receiving whole Ethernet frames of `ethertype` on interface `index`, with
/// the NIC's multicast filter opened (LLDP goes to 01:80:c2:00:00:0e, which no driver
/// accepts unasked) and reads that give up after `timeout` (then `WouldBlock`/`TimedOut`).
/// Read frames from the returned file with `read`.
pub fn frame_socket(
    index: u32,
    ethertype: u16,
    timeout: std::time::Duration,
) -> io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let proto = ethertype.to_be();
    let sock = owned_socket(libc::AF_PACKET, libc::SOCK_RAW, libc::c_int::from(proto))?;
    let fd = sock.as_raw_fd();
    // SAFETY: sockaddr_ll is plain old data; zeroes are a valid value.
    let mut at: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    at.sll_family = libc::AF_PACKET as libc::c_ushort;
    at.sll_protocol = proto;
    at.sll_ifindex = index as libc::c_int;
    // SAFETY: the address is valid for the call; its length is its own.
    check(unsafe {
        libc::bind(
            fd,
            (&at as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    // SAFETY: packet_mreq is plain old data; zeroes are a valid value.
    let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
    mreq.mr_ifindex = index as libc::c_int;
    mreq.mr_type = libc::PACKET_MR_ALLMULTI as libc::c_ushort;
    // SAFETY: PACKET_ADD_MEMBERSHIP takes a packet_mreq; pointer and length describe it.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&mreq as *const libc::packet_mreq).cast(),
            std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
        )
    })?;
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros() as i32),
    };
    // SAFETY: SO_RCVTIMEO takes a timeval; pointer and length describe `tv`.
    check(unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    })?;
    Ok(std::fs::File::from(sock))
}

/// Restarts the machine at once (the agent, as PID 1, after its discovery was adopted:
/// nothing is mounted that needs syncing).
pub fn reboot() -> io::Error {
    // SAFETY: plain reboot(2) call; returns only on failure.
    unsafe { libc::reboot(libc::RB_AUTOBOOT) };
    io::Error::last_os_error()
}

/// Sends a whole Ethernet frame (header included) on interface `index` through a packet
/// socket: the lab's stand-in for a switch announcing itself over LLDP.
pub fn send_frame(index: u32, frame: &[u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let sock = owned_socket(libc::AF_PACKET, libc::SOCK_RAW, 0)?;
    // SAFETY: sockaddr_ll is plain old data; zeroes are a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as libc::c_ushort;
    to.sll_ifindex = index as libc::c_int;
    to.sll_halen = 6;
    let dest = frame.get(..6).ok_or(io::ErrorKind::InvalidInput)?;
    to.sll_addr[..6].copy_from_slice(dest);
    // SAFETY: the frame and the address are valid for the call; their lengths are theirs.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&to as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Batched UDP: recvmmsg(2) and sendmmsg(2), several datagrams per system call.

/// Most datagrams one [`recv_batch`] or [`send_batch`] call handles.
pub const MAX_BATCH: usize = 32;

/// One datagram of a [`recv_batch`]: its length in its slot, whether the kernel cut it to the
/// slot's size, and its sender (`None` for an address family drover does not serve).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub len: usize,
    pub truncated: bool,
    pub from: Option<std::net::SocketAddr>,
}

/// The socket address the kernel wrote into `name`, if it is IPv4 or IPv6.
fn socket_addr_of(name: &libc::sockaddr_storage) -> Option<std::net::SocketAddr> {
    use std::net::{Ipv6Addr, SocketAddrV4, SocketAddrV6};
    match i32::from(name.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in; storage is large and
            // aligned enough for every socket address type.
            let a =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddrV4::new(ip, u16::from_be(a.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a =
                unsafe { &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            let port = u16::from_be(a.sin6_port);
            Some(SocketAddrV6::new(ip, port, a.sin6_flowinfo, a.sin6_scope_id).into())
        }
        _ => None,
    }
}

/// Receives up to [`MAX_BATCH`] datagrams without blocking, one per `slot`-byte slot of
/// `buf`, and appends what arrived to `out` (cleared first). `WouldBlock` when none is queued.
pub fn recv_batch(
    fd: std::os::fd::BorrowedFd<'_>,
    buf: &mut [u8],
    slot: usize,
    out: &mut Vec<Received>,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    out.clear();
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut names: [libc::sockaddr_storage; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let mut iovs: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let mut count = 0;
    for (i, chunk) in buf
        .chunks_exact_mut(slot.max(1))
        .take(MAX_BATCH)
        .enumerate()
    {
        iovs[i] = libc::iovec {
            iov_base: chunk.as_mut_ptr().cast(),
            iov_len: chunk.len(),
        };
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
        h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        h.msg_iov = &mut iovs[i];
        h.msg_iovlen = 1;
        count = i + 1;
    }
    // SAFETY: the first `count` headers point at buffers, names and iovecs that live (and are
    // not otherwise borrowed) until the call returns; the kernel writes at most their sizes.
    let got = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            hdrs.as_mut_ptr(),
            count as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if got < 0 {
        return Err(io::Error::last_os_error());
    }
    for (h, name) in hdrs.iter().zip(&names).take(got as usize) {
        out.push(Received {
            len: h.msg_len as usize,
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            from: socket_addr_of(name),
        });
    }
    Ok(())
}

/// Sends up to [`MAX_BATCH`] datagrams (`bytes`, destination) without blocking, in order;
/// returns how many the kernel took (the rest did not fit its buffer). `WouldBlock` when none.
pub fn send_batch(
    fd: std::os::fd::BorrowedFd<'_>,
    datagrams: &[(&[u8], std::net::SocketAddr)],
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let names: Vec<socket2::SockAddr> = datagrams
        .iter()
        .take(MAX_BATCH)
        .map(|(_, to)| socket2::SockAddr::from(*to))
        .collect();
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut iovs: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let mut hdrs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    for (i, ((bytes, _), name)) in datagrams.iter().zip(&names).enumerate() {
        iovs[i] = libc::iovec {
            // The kernel only reads through a send's iovec.
            iov_base: bytes.as_ptr().cast_mut().cast(),
            iov_len: bytes.len(),
        };
        let h = &mut hdrs[i].msg_hdr;
        h.msg_name = name.as_ptr().cast_mut().cast();
        h.msg_namelen = name.len();
        h.msg_iov = &mut iovs[i];
        h.msg_iovlen = 1;
    }
    // SAFETY: the first `names.len()` headers point at datagrams, names and iovecs that live
    // until the call returns; the kernel only reads them (and writes msg_len).
    let sent = unsafe {
        libc::sendmmsg(
            fd.as_raw_fd(),
            hdrs.as_mut_ptr(),
            names.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

/// sync(2): flushes every file system (before PID 1 reboots).
pub fn sync() {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Reaps every child that has exited (PID 1 inherits orphans, whose zombies only it can
/// clear); returns their pids. Never blocks.
pub fn reap_children() -> Vec<u32> {
    let mut reaped = Vec::new();
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only to `status`, a valid local.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return reaped;
        }
        // A positive pid fits in u32.
        reaped.push(pid as u32);
    }
}

/// Forks the process: `Ok(None)` in the child, `Ok(Some(pid))` in the parent. Only for a
/// single-threaded caller (the agent starts its seeder before any thread): the child gets
/// only the calling thread, and a lock another thread held would stay locked in it.
pub fn fork() -> io::Result<Option<u32>> {
    // SAFETY: fork has no memory-safety preconditions; the single-thread rule above keeps
    // the child's locks (stdio, allocator) consistent.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        // A positive pid fits in u32.
        pid => Ok(Some(pid as u32)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn batches_of_datagrams_both_ways() {
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (to, from) = (server.local_addr().unwrap(), client.local_addr().unwrap());
        let long = [7u8; 20];
        let sent = send_batch(client.as_fd(), &[(b"one", to), (b"three", to), (&long, to)]);
        assert_eq!(sent.unwrap(), 3);
        let (mut buf, mut got) = ([0u8; 16 * 4], Vec::new());
        server
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        // Block until the first is there (recv_batch itself never waits).
        server.peek(&mut [0u8; 1]).unwrap();
        recv_batch(server.as_fd(), &mut buf, 16, &mut got).unwrap();
        let first = Received {
            len: 3,
            truncated: false,
            from: Some(from),
        };
        assert_eq!(got[0], first);
        assert_eq!(&buf[..3], b"one");
        // The loopback queue holds all three by now; the over-long one is cut and flagged.
        assert_eq!(got.len(), 3, "{got:?}");
        assert_eq!((got[1].len, got[1].truncated), (5, false));
        assert_eq!(&buf[16..21], b"three");
        assert_eq!((got[2].len, got[2].truncated), (16, true));
        let err = recv_batch(server.as_fd(), &mut buf, 16, &mut got).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    }
}
