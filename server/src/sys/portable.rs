//! Elsewhere: no request migration, no deferred accept, no systemd.

use std::os::fd::BorrowedFd;

use nix::errno::Errno;

/// No such setting here.
pub const MIGRATE_REQ: &str = "(Linux only) net.ipv4.tcp_migrate_req";

/// Unknown here: closing a listener resets what its queue holds.
pub fn migrate_req() -> Option<bool> {
    None
}

/// Not available here; connections are accepted as soon as they are made.
pub fn defer_accept(_fd: BorrowedFd<'_>, _secs: i32) -> Result<(), Errno> {
    Err(Errno::ENOPROTOOPT)
}

/// No systemd here: nobody to notify.
pub fn notify(_socket: Option<&std::ffi::OsStr>, _state: &str) -> std::io::Result<bool> {
    Ok(false)
}
