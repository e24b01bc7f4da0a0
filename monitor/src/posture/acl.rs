//! POSIX access ACLs: the grants that mode bits do not show.
//!
//! `setfacl -m u:alice:rw /var/run/docker.sock` leaves the socket at mode
//! 0660 (the group bits become the ACL mask), so a check that reads only
//! `st_mode` passes while alice can drive the engine. Section 3's checks ask
//! this module for the named users and groups an ACL lets in.
//!
//! The ACL is read from the `system.posix_acl_access` extended attribute
//! (through the `xattr` crate) and decoded here: the kernel's layout is a
//! four-byte version followed by eight-byte entries, small and fixed
//! (`include/uapi/linux/posix_acl_xattr.h`), and the crates that decode it
//! link libacl, a C library this binary otherwise does without.

use std::path::Path;

const ACL_XATTR: &str = "system.posix_acl_access";
const ACL_XATTR_VERSION: u32 = 2;
const TAG_USER: u16 = 0x02;
const TAG_GROUP: u16 = 0x08;
const TAG_MASK: u16 = 0x10;

/// Who a named ACL entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grantee {
    User(u32),
    Group(u32),
}

/// One named entry with the access it really gives (its bits under the mask).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub grantee: Grantee,
    /// `rwx` bits, already limited by the ACL mask.
    pub perms: u32,
}

impl Grant {
    /// `rw-` and the like, as `getfacl` prints it.
    pub fn perms_text(&self) -> String {
        let bit = |b: u32, c: char| if self.perms & b != 0 { c } else { '-' };
        [bit(4, 'r'), bit(2, 'w'), bit(1, 'x')].iter().collect()
    }
}

/// The named users and groups `path`'s access ACL lets in, each with the
/// access it effectively has; entries the mask reduces to nothing are left
/// out. A file without an ACL (or on a file system without them) has none.
pub fn named_grants(path: &Path) -> std::io::Result<Vec<Grant>> {
    match xattr::get(path, ACL_XATTR) {
        Ok(Some(raw)) => Ok(decode(&raw)),
        Ok(None) => Ok(Vec::new()),
        // EOPNOTSUPP: the file system keeps no ACLs, so none can grant.
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Decodes the xattr; a malformed one (wrong version, torn entry) yields
/// what could be read, since the kernel itself never stores one.
fn decode(raw: &[u8]) -> Vec<Grant> {
    let Some(version) = raw.get(..4) else {
        return Vec::new();
    };
    if u32::from_le_bytes(version.try_into().unwrap()) != ACL_XATTR_VERSION {
        return Vec::new();
    }
    let entries: Vec<(u16, u32, u32)> = raw[4..]
        .chunks_exact(8)
        .map(|e| {
            (
                u16::from_le_bytes([e[0], e[1]]),
                u16::from_le_bytes([e[2], e[3]]) as u32,
                u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            )
        })
        .collect();
    // Without a mask entry there can be no named entries; with one, it
    // bounds what every named entry gets.
    let mask = entries
        .iter()
        .find(|(tag, _, _)| *tag == TAG_MASK)
        .map_or(0o7, |(_, perm, _)| *perm);
    entries
        .iter()
        .filter_map(|&(tag, perm, id)| {
            let grantee = match tag {
                TAG_USER => Grantee::User(id),
                TAG_GROUP => Grantee::Group(id),
                _ => return None,
            };
            let perms = perm & mask & 0o7;
            (perms != 0).then_some(Grant { grantee, perms })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tag: u16, perm: u16, id: u32) -> Vec<u8> {
        let mut e = tag.to_le_bytes().to_vec();
        e.extend(perm.to_le_bytes());
        e.extend(id.to_le_bytes());
        e
    }

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut raw = ACL_XATTR_VERSION.to_le_bytes().to_vec();
        for &(tag, perm, id) in entries {
            raw.extend(entry(tag, perm, id));
        }
        raw
    }

    const UNDEFINED: u32 = u32::MAX;

    #[test]
    fn named_entries_are_limited_by_the_mask() {
        let raw = acl(&[
            (0x01, 0o6, UNDEFINED),
            (TAG_USER, 0o7, 1000),
            (0x04, 0o6, UNDEFINED),
            (TAG_GROUP, 0o4, 50),
            (TAG_MASK, 0o6, UNDEFINED),
            (0x20, 0o0, UNDEFINED),
        ]);
        let grants = decode(&raw);
        assert_eq!(
            grants,
            vec![
                Grant {
                    grantee: Grantee::User(1000),
                    perms: 0o6
                },
                Grant {
                    grantee: Grantee::Group(50),
                    perms: 0o4
                },
            ]
        );
        assert_eq!(grants[0].perms_text(), "rw-");
    }

    #[test]
    fn a_mask_of_nothing_grants_nothing_and_junk_is_ignored() {
        let raw = acl(&[(TAG_USER, 0o7, 1000), (TAG_MASK, 0o0, UNDEFINED)]);
        assert!(decode(&raw).is_empty());
        assert!(decode(b"\x01\x00").is_empty());
        assert!(decode(&[1, 0, 0, 0, 2, 0, 7, 0, 1, 0, 0, 0]).is_empty());
    }
}
