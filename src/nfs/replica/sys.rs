//! The few system calls that applying and reading layer copies needs beyond `fs::sys`:
//! extended attributes on a descriptor, `linkat` by name, `utimensat` without following a
//! final symlink, and `chmod` of an inode through its `/proc/self/fd` link.
//!
//! Why `unsafe` here: std and `fs::sys` lack these calls; each is one checked `libc` call
//! behind a safe signature, with NUL-terminated names and buffers sized before the call.
//! Nothing here decides policy: names are checked and confinement enforced one level up.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn check_len(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// The names of the extended attributes of the file or directory open as `fd` (not O_PATH).
pub fn list_xattrs(fd: BorrowedFd) -> io::Result<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: `buf` is writable for its full length, which is what we pass.
    let n =
        check_len(unsafe { libc::flistxattr(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })?;
    buf.truncate(n);
    Ok(buf
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}

/// The value of extended attribute `name`, at most `max` bytes (a longer one is an error).
pub fn get_xattr(fd: BorrowedFd, name: &CStr, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; max];
    // SAFETY: `name` is NUL-terminated; `buf` is writable for its full length.
    let n = check_len(unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    })?;
    buf.truncate(n);
    Ok(buf)
}

pub fn set_xattr(fd: BorrowedFd, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated; `value` is readable for its length.
    check(unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })
}

pub fn remove_xattr(fd: BorrowedFd, name: &CStr) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated.
    check(unsafe { libc::fremovexattr(fd.as_raw_fd(), name.as_ptr()) })
}

/// `to_dir/to` becomes another name of `from_dir/from` (a final symlink is not followed).
pub fn link_at(from_dir: BorrowedFd, from: &CStr, to_dir: BorrowedFd, to: &CStr) -> io::Result<()> {
    // SAFETY: both names are NUL-terminated; flags 0 does not follow symlinks.
    check(unsafe {
        libc::linkat(
            from_dir.as_raw_fd(),
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
            0,
        )
    })
}

/// Sets the modification time of `dir/name` (a symlink itself, not its target); the access
/// time is left alone.
pub fn set_mtime_at(dir: BorrowedFd, name: &CStr, secs: i64, nanos: u32) -> io::Result<()> {
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: secs as libc::time_t,
            tv_nsec: nanos as libc::c_long,
        },
    ];
    // SAFETY: `name` is NUL-terminated and `times` holds the two timespecs utimensat reads.
    check(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// chmod of the inode behind `proc_link` (a `/proc/self/fd/N` link to a non-symlink).
pub fn chmod_path(proc_link: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: `proc_link` is NUL-terminated.
    check(unsafe { libc::chmod(proc_link.as_ptr(), mode as libc::mode_t) })
}

/// Flushes the whole file system holding `fd`.
pub fn syncfs(fd: BorrowedFd) -> io::Result<()> {
    // SAFETY: a plain descriptor argument.
    check(unsafe { libc::syncfs(fd.as_raw_fd()) })
}
