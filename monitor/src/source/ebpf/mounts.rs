//! Where a file system is mounted, by device: an inode hook names an inode
//! from the root of its own file system ([`PATH_FS_ROOT`]), and the path a
//! user knows starts at that file system's mount point.
//!
//! [`PATH_FS_ROOT`]: monitor_common::PATH_FS_ROOT

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use crate::source::mountinfo;

/// The host's mounts as this process sees them.
pub static MOUNTS: LazyLock<Mounts> = LazyLock::new(Mounts::default);

/// Mount points by kernel device number (`MKDEV(major, minor)`), read from
/// /proc/self/mountinfo; read again when a device is not there (a file
/// system mounted since).
#[derive(Default)]
pub struct Mounts {
    by_dev: Mutex<HashMap<u64, Vec<u8>>>,
}

impl Mounts {
    /// The mount point of the root of the file system `dev`, or `None`
    /// when no mount shows that root (only a bind of one of its
    /// directories, or none at all).
    pub fn mount_point(&self, dev: u64) -> Option<Vec<u8>> {
        let mut by_dev = self.by_dev.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(point) = by_dev.get(&dev) {
            return Some(point.clone());
        }
        let text = std::fs::read("/proc/self/mountinfo").ok()?;
        *by_dev = parse(&text);
        by_dev.get(&dev).cloned()
    }
}

/// Each device's first mount of its root directory.
fn parse(mountinfo: &[u8]) -> HashMap<u64, Vec<u8>> {
    let mut by_dev = HashMap::new();
    for entry in mountinfo::entries(mountinfo) {
        if let (Some(dev), b"/") = (entry.dev, entry.root.as_slice()) {
            by_dev.entry(dev).or_insert(entry.point);
        }
    }
    by_dev
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_of_file_systems_by_device() {
        let info = b"22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
            25 22 0:21 / /run rw,nosuid - tmpfs tmpfs rw\n\
            26 22 0:21 /containerd /mnt/bind rw - tmpfs tmpfs rw\n\
            27 22 0:30 / /mnt/with\\040space rw - tmpfs tmpfs rw\n";
        let by_dev = parse(info);
        assert_eq!(by_dev[&(254 << 20)], b"/");
        assert_eq!(
            by_dev[&21], b"/run",
            "the bind of a subdirectory is no root"
        );
        assert_eq!(by_dev[&30], b"/mnt/with space");
    }

    #[test]
    fn this_process_root_file_system_is_found() {
        use std::os::unix::fs::MetadataExt;
        let dev = std::fs::metadata("/").unwrap().dev();
        let dev = super::super::decode::kernel_dev(dev);
        assert_eq!(Mounts::default().mount_point(dev).unwrap(), b"/");
    }
}
