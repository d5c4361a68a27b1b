//! What listening sockets need from one platform and not another: whether
//! a closed `SO_REUSEPORT` listener hands its queued connections to the
//! rest of its group, and accepting a connection only once its request has
//! arrived, and telling systemd the server is ready.

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux;
#[cfg(any(target_os = "linux", target_os = "android"))]
pub use linux::*;

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod portable;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub use portable::*;
