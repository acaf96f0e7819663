//! The system calls behind [`super::DirVfs`]: the `*at` family on file descriptors, Linux
//! file handles (`name_to_handle_at`, `open_by_handle_at`), `openat2` confined below a
//! directory, extended attributes, and NFSv4.2's file calls (`lseek` to data or holes,
//! `fallocate`, the `FICLONERANGE` ioctl).
//!
//! Why `unsafe` here: std has no `*at` calls and no file handles, and the crates that wrap
//! the former lack the latter, so each call is one checked `libc` call behind a safe
//! signature (the same pattern as `net::sys`). Every path argument is a `CStr` built by the
//! caller; every buffer is sized before the call and only its filled part is read back.
//! Nothing here decides policy: names are checked and permissions enforced one level up.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Linux's `MAX_HANDLE_SZ`: the largest file handle the kernel makes.
pub const MAX_KERNEL_HANDLE: usize = 128;

/// `lseek(fd, offset, SEEK_DATA or SEEK_HOLE)`: where the next data (`data`) or hole at or
/// after `offset` starts (ENXIO: none).
pub fn seek(fd: BorrowedFd, offset: u64, data: bool) -> io::Result<u64> {
    let whence = if data {
        libc::SEEK_DATA
    } else {
        libc::SEEK_HOLE
    };
    let off =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::ENXIO))?;
    // SAFETY: lseek takes plain integers; `fd` is a valid descriptor for the call.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), off, whence) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as u64)
}

/// `fallocate(fd, mode, offset, length)`.
pub fn fallocate(fd: BorrowedFd, mode: i32, offset: u64, length: u64) -> io::Result<()> {
    let einval = || io::Error::from_raw_os_error(libc::EINVAL);
    let off = libc::off_t::try_from(offset).map_err(|_| einval())?;
    let len = libc::off_t::try_from(length).map_err(|_| einval())?;
    // SAFETY: fallocate takes plain integers; `fd` is a valid descriptor for the call.
    check(unsafe { libc::fallocate(fd.as_raw_fd(), mode, off, len) })?;
    Ok(())
}

/// The `FICLONERANGE` ioctl: `length` bytes of `dst` at `dst_offset` share the blocks of
/// `src` at `src_offset` (EOPNOTSUPP, EXDEV or EINVAL where the file system cannot).
pub fn clone_range(
    src: BorrowedFd,
    src_offset: u64,
    length: u64,
    dst: BorrowedFd,
    dst_offset: u64,
) -> io::Result<()> {
    let arg = libc::file_clone_range {
        src_fd: i64::from(src.as_raw_fd()),
        src_offset,
        src_length: length,
        dest_offset: dst_offset,
    };
    // SAFETY: `arg` is a properly initialised file_clone_range that outlives the call, which
    // only reads it; both descriptors are valid for the call.
    check(unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONERANGE, &arg) })?;
    Ok(())
}

/// A kernel file handle: the file system's own name for an inode, valid across reboots and
/// restarts while the inode lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KernelHandle {
    pub kind: i32,
    pub bytes: Vec<u8>,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

const EMPTY: &CStr = c"";

/// The current directory as a base for `*at` calls.
pub fn cwd() -> BorrowedFd<'static> {
    // SAFETY: AT_FDCWD is a constant the kernel interprets, never closed, valid for the
    // whole process.
    unsafe { BorrowedFd::borrow_raw(libc::AT_FDCWD) }
}

/// The kernel handle of `dir/name` (or of `dir` itself when `name` is empty), without
/// following a final symlink, and the id of the mount it is on.
pub fn name_to_handle(dir: BorrowedFd, name: &CStr) -> io::Result<(KernelHandle, i32)> {
    // `struct file_handle` is two 32-bit words followed by the handle bytes; a u32 array
    // gives the alignment.
    let mut buf = [0u32; 2 + MAX_KERNEL_HANDLE / 4];
    buf[0] = MAX_KERNEL_HANDLE as u32;
    let mut mount_id: libc::c_int = 0;
    let flags = if name.is_empty() {
        libc::AT_EMPTY_PATH
    } else {
        0
    };
    // SAFETY: `buf` holds a file_handle header with room for MAX_KERNEL_HANDLE bytes, as
    // announced in handle_bytes; `name` is NUL-terminated; `mount_id` is a valid out-pointer.
    check(unsafe {
        libc::name_to_handle_at(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast::<libc::file_handle>(),
            &mut mount_id,
            flags,
        )
    })?;
    let len = (buf[0] as usize).min(MAX_KERNEL_HANDLE);
    let kind = buf[1] as i32;
    let bytes: Vec<u8> = buf[2..]
        .iter()
        .flat_map(|w| w.to_ne_bytes())
        .take(len)
        .collect();
    Ok((KernelHandle { kind, bytes }, mount_id))
}

/// Opens the inode named by `handle` on the file system of `mount`, with open(2) `flags`.
pub fn open_by_handle(mount: BorrowedFd, handle: &KernelHandle, flags: i32) -> io::Result<OwnedFd> {
    if handle.bytes.len() > MAX_KERNEL_HANDLE {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut buf = [0u32; 2 + MAX_KERNEL_HANDLE / 4];
    buf[0] = handle.bytes.len() as u32;
    buf[1] = handle.kind as u32;
    for (i, chunk) in handle.bytes.chunks(4).enumerate() {
        let mut word = [0u8; 4];
        word[..chunk.len()].copy_from_slice(chunk);
        buf[2 + i] = u32::from_ne_bytes(word);
    }
    // SAFETY: `buf` is a complete file_handle whose handle_bytes fits the buffer.
    let fd = check(unsafe {
        libc::open_by_handle_at(
            mount.as_raw_fd(),
            buf.as_mut_ptr().cast::<libc::file_handle>(),
            flags | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn openat(dir: BorrowedFd, name: &CStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: `name` is NUL-terminated; the mode argument is read only with O_CREAT.
    let fd = check(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the relative `path` below `dir` with O_PATH|O_NOFOLLOW, never leaving `dir`:
/// `openat2` with RESOLVE_BENEATH (no absolute paths, no `..` above `dir`),
/// RESOLVE_NO_SYMLINKS (no symlink anywhere on the way; a symlink as the last component is
/// opened as itself) and RESOLVE_NO_XDEV (no mount crossed).
pub fn open_beneath(dir: BorrowedFd, path: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: an all-zero `struct open_how` is a valid value of plain integers.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_XDEV;
    // SAFETY: `path` is NUL-terminated and `how` is a complete `struct open_how` whose size
    // we pass; the kernel only reads both.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns (and fits a c_int).
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

/// The value of extended attribute `name` of the file at `path` (a /proc/self/fd magic link
/// to a regular file or directory, followed to the inode), into `buf`; its length.
pub fn getxattr(path: &CStr, name: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: both strings are NUL-terminated; `buf` is writable for the length we pass.
    let n = unsafe {
        libc::getxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Sets extended attribute `name` of the file at `path` (as for [`getxattr`]) to `value`.
pub fn setxattr(path: &CStr, name: &CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated; `value` is readable for the length we pass.
    check(unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    })?;
    Ok(())
}

/// lstat of `dir/name`, or fstat of `dir` itself when `name` is empty.
pub fn stat(dir: BorrowedFd, name: &CStr) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `struct stat` is a valid value of plain integers.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let flags = libc::AT_SYMLINK_NOFOLLOW
        | if name.is_empty() {
            libc::AT_EMPTY_PATH
        } else {
            0
        };
    // SAFETY: `name` is NUL-terminated and `st` is a valid out-pointer.
    check(unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut st, flags) })?;
    Ok(st)
}

pub fn statvfs(fd: BorrowedFd) -> io::Result<libc::statvfs> {
    // SAFETY: an all-zero `struct statvfs` is a valid value of plain integers.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer.
    check(unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

pub fn mkdirat(dir: BorrowedFd, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) })?;
    Ok(())
}

pub fn mknodat(dir: BorrowedFd, name: &CStr, mode: u32, dev: u64) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated.
    check(unsafe {
        libc::mknodat(
            dir.as_raw_fd(),
            name.as_ptr(),
            mode as libc::mode_t,
            dev as libc::dev_t,
        )
    })?;
    Ok(())
}

pub fn symlinkat(target: &CStr, dir: BorrowedFd, name: &CStr) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated.
    check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })?;
    Ok(())
}

pub fn unlinkat(dir: BorrowedFd, name: &CStr, remove_dir: bool) -> io::Result<()> {
    let flags = if remove_dir { libc::AT_REMOVEDIR } else { 0 };
    // SAFETY: `name` is NUL-terminated.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) })?;
    Ok(())
}

pub fn renameat(
    from_dir: BorrowedFd,
    from: &CStr,
    to_dir: BorrowedFd,
    to: &CStr,
) -> io::Result<()> {
    // SAFETY: both names are NUL-terminated.
    check(unsafe {
        libc::renameat(
            from_dir.as_raw_fd(),
            from.as_ptr(),
            to_dir.as_raw_fd(),
            to.as_ptr(),
        )
    })?;
    Ok(())
}

/// A new name `dir/name` for the inode behind `fd` (which may be an O_PATH descriptor).
pub fn link_fd(fd: BorrowedFd, dir: BorrowedFd, name: &CStr) -> io::Result<()> {
    // SAFETY: both names are NUL-terminated; AT_EMPTY_PATH makes `fd` itself the source.
    check(unsafe {
        libc::linkat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    })?;
    Ok(())
}

/// The target of the symlink behind `fd` (an O_PATH descriptor of the link itself).
pub fn readlink_fd(fd: BorrowedFd) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: `buf` is writable for its full length, which is what we pass.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// chown of the inode behind `fd` itself (a symlink is not followed); `None` leaves an id.
pub fn chown_fd(fd: BorrowedFd, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    // (uid_t)-1 leaves the owner unchanged.
    let uid = uid.unwrap_or(u32::MAX);
    let gid = gid.unwrap_or(u32::MAX);
    // SAFETY: the empty path is NUL-terminated; AT_EMPTY_PATH makes `fd` the target.
    check(unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            EMPTY.as_ptr(),
            uid,
            gid,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

/// A timestamp for [`set_times`]: `None` leaves it, `Some(None)` is the server's now.
pub type TimeArg = Option<Option<(i64, u32)>>;

/// utimensat on `path` (a /proc/self/fd magic link to a non-symlink inode).
pub fn set_times(path: &CStr, atime: TimeArg, mtime: TimeArg) -> io::Result<()> {
    let conv = |t: TimeArg| match t {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(None) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(Some((s, n))) => libc::timespec {
            tv_sec: s as libc::time_t,
            tv_nsec: n as libc::c_long,
        },
    };
    let times = [conv(atime), conv(mtime)];
    // SAFETY: `path` is NUL-terminated and `times` holds the two timespecs utimensat reads.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, path.as_ptr(), times.as_ptr(), 0) })?;
    Ok(())
}

/// One raw entry of a directory listing.
pub struct RawEntry {
    pub name: Vec<u8>,
    /// The position after this entry (`d_off`), to seek to for the rest of the listing.
    pub next: i64,
}

/// Reads directory entries from the current position of `dir` (an O_RDONLY directory
/// descriptor); an empty result means the end.
pub fn getdents(dir: BorrowedFd, buf: &mut [u8]) -> io::Result<Vec<RawEntry>> {
    // SAFETY: `buf` is writable for its full length, which is what we pass.
    let n = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            dir.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let filled = &buf[..n as usize];
    // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
    let mut out = Vec::new();
    let mut at = 0;
    while at + 19 <= filled.len() {
        let rec = &filled[at..];
        let next = i64::from_ne_bytes(rec[8..16].try_into().unwrap_or_default());
        let reclen = u16::from_ne_bytes([rec[16], rec[17]]) as usize;
        if reclen < 19 || reclen > rec.len() {
            break;
        }
        let name_field = &rec[19..reclen];
        let end = name_field
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(name_field.len());
        out.push(RawEntry {
            name: name_field[..end].to_vec(),
            next,
        });
        at += reclen;
    }
    Ok(out)
}

/// A C string for a path or name; a NUL byte inside makes it invalid.
pub fn cstr(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

pub fn makedev(major: u32, minor: u32) -> u64 {
    let (ma, mi) = (major as u64, minor as u64);
    ((ma & 0xfff) << 8) | ((ma & !0xfff) << 32) | (mi & 0xff) | ((mi & !0xff) << 12)
}

pub fn major(dev: u64) -> u32 {
    (((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)) as u32
}

pub fn minor(dev: u64) -> u32 {
    ((dev & 0xff) | ((dev >> 12) & !0xff)) as u32
}
