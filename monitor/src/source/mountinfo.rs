//! Reading `/proc/PID/mountinfo` (proc(5)), for the sources that need the
//! mount table: the eBPF source to turn a file system's own path into the
//! path users know, the mounts source to see mounts come and go, and both
//! file sources to turn a path a container sees through a bind mount into
//! the host's ([`host_path`]).

/// One line of mountinfo: the fields dockwatch uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount's id, unique while it is mounted.
    pub id: u64,
    /// The device as the kernel's `MKDEV(major, minor)`.
    pub dev: Option<u64>,
    /// The directory of the file system shown at the mount point (`/` for
    /// a whole file system; for a bind mount, what was bound).
    pub root: Vec<u8>,
    /// Where it is mounted.
    pub point: Vec<u8>,
    /// Per-mount options (`ro,nosuid`).
    pub options: String,
    pub fstype: String,
    /// The mount source (`/dev/sda1`, `tmpfs`, `overlay`).
    pub source: Vec<u8>,
}

/// The lines of `text` that parse; the kernel writes no others.
pub fn entries(text: &[u8]) -> impl Iterator<Item = MountEntry> + '_ {
    text.split(|&b| b == b'\n').filter_map(entry)
}

/// One line: `id parent major:minor root point options [optional...] -
/// fstype source super-options`.
pub fn entry(line: &[u8]) -> Option<MountEntry> {
    let mut fields = line.split(|&b| b == b' ');
    let id = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
    let _parent = fields.next()?;
    let dev = kernel_dev(fields.next()?);
    let root = unescape(fields.next()?);
    let point = unescape(fields.next()?);
    let options = String::from_utf8_lossy(fields.next()?).into_owned();
    // Optional fields (shared:N, master:N) end at a lone "-".
    for field in fields.by_ref() {
        if field == b"-" {
            break;
        }
    }
    let fstype = String::from_utf8_lossy(fields.next()?).into_owned();
    let source = unescape(fields.next()?);
    Some(MountEntry {
        id,
        dev,
        root,
        point,
        options,
        fstype,
        source,
    })
}

/// The host path of `path` as seen by a process with mount table
/// `inside`, given the host's mount table `host`; `None` when the path is
/// in the container's own root file system or its file system is not
/// mounted on the host.
pub fn host_path(path: &[u8], inside: &[MountEntry], host: &[MountEntry]) -> Option<Vec<u8>> {
    // The last mount wins among equal mount points: it is the one on top.
    let (mount, rest) = inside
        .iter()
        .filter_map(|m| under(path, &m.point).map(|rest| (m, rest)))
        .max_by_key(|(m, _)| if m.point == b"/" { 0 } else { m.point.len() })?;
    if mount.point == b"/" || mount.fstype == "overlay" || mount.dev.is_none() {
        return None;
    }
    let in_fs = join(&mount.root, rest);
    // On the host, the mount of the same file system whose root holds the
    // path most closely (a plain mount of the whole file system usually);
    // among those, the shortest mount point, not some later bind of it.
    let (host_mount, host_rest) = host
        .iter()
        .filter(|m| m.dev == mount.dev)
        .filter_map(|m| under(&in_fs, &m.root).map(|rest| (m, rest)))
        .max_by_key(|(m, _)| (m.root.len(), std::cmp::Reverse(m.point.len())))?;
    Some(join(&host_mount.point, host_rest))
}

/// `rest` when `path` is `prefix` or lies under it (`/x` holds `/x/y`,
/// not `/xy`), as the part after the prefix, starting with `/` or empty.
fn under<'a>(path: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    if prefix == b"/" {
        return path.starts_with(b"/").then_some(path);
    }
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with(b"/")).then_some(rest)
}

fn join(base: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    if out.ends_with(b"/") && rest.starts_with(b"/") {
        out.pop();
    }
    out.extend_from_slice(rest);
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// `major:minor` as the kernel's `MKDEV`.
fn kernel_dev(text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?;
    let (major, minor) = text.split_once(':')?;
    Some((major.parse::<u64>().ok()? << 20) | minor.parse::<u64>().ok()?)
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') << 6 | (d[1] - b'0') << 3 | (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_and_unescaped() {
        let e = entry(
            b"40 27 0:40 / /etc/my\\040docker rw,nosuid shared:7 master:2 - tmpfs tmp\\134fs rw",
        )
        .unwrap();
        assert_eq!((e.id, e.dev), (40, Some(40)));
        assert_eq!(e.point, b"/etc/my docker");
        assert_eq!(e.source, b"tmp\\fs");
        assert_eq!(
            (e.fstype.as_str(), e.options.as_str()),
            ("tmpfs", "rw,nosuid")
        );
        assert_eq!(
            entry(b"27 1 254:1 / / rw - ext4 /dev/vda rw").unwrap().dev,
            Some(254 << 20 | 1)
        );
        assert!(entry(b"garbage").is_none());
    }
}
