//! Users and groups from the host's /etc/passwd and /etc/group (under the
//! configured root, not through NSS: the baseline is about these files).

use std::path::Path;

/// One line of /etc/group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Accounts {
    users: Vec<(String, u32)>,
    pub groups: Vec<Group>,
}

impl Accounts {
    /// Reads both files; a missing or unreadable one leaves its part empty
    /// (ids are then shown as numbers).
    pub fn read(passwd: &Path, group: &Path) -> Accounts {
        let users = std::fs::read_to_string(passwd)
            .map(|t| parse_passwd(&t))
            .unwrap_or_default();
        let groups = std::fs::read_to_string(group)
            .map(|t| parse_group(&t))
            .unwrap_or_default();
        Accounts { users, groups }
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn user_name(&self, uid: u32) -> String {
        self.users
            .iter()
            .find(|(_, id)| *id == uid)
            .map_or_else(|| uid.to_string(), |(n, _)| n.clone())
    }

    pub fn group_name(&self, gid: u32) -> String {
        self.groups
            .iter()
            .find(|g| g.gid == gid)
            .map_or_else(|| gid.to_string(), |g| g.name.clone())
    }

    /// `user:group` with names where known.
    pub fn owner(&self, uid: u32, gid: u32) -> String {
        format!("{}:{}", self.user_name(uid), self.group_name(gid))
    }
}

fn parse_passwd(text: &str) -> Vec<(String, u32)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let uid = fields.nth(1)?.parse().ok()?;
            Some((name.to_string(), uid))
        })
        .collect()
}

/// Parses /etc/group; malformed lines are skipped (as glibc does).
pub fn parse_group(text: &str) -> Vec<Group> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() < 4 {
                return None;
            }
            let mut members: Vec<String> = fields[3]
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            members.sort();
            members.dedup();
            Some(Group {
                name: fields[0].to_string(),
                gid: fields[2].parse().ok()?,
                members,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_members_are_sorted_and_bad_lines_skipped() {
        let groups = parse_group("root:x:0:\ndocker:x:999:bob,alice\nbroken\nx:x:notanumber:\n");
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[1].members, ["alice", "bob"]);
        assert_eq!(groups[1].gid, 999);
    }
}
