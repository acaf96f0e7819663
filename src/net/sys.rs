//! Raw system calls: the only module of drover where `unsafe` is allowed. Each function is a
//! thin, checked wrapper that turns a libc call into a safe Rust signature.
//!
//! Interface lookup (getifaddrs, if_nametoindex) is used by the servers; the agent's calls
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
