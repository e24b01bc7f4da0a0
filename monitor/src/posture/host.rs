//! Where the baseline's files live. Every path the checks read goes through
//! [`HostPaths`], so a test (or an offline scan of a mounted image) can point
//! the whole baseline at another root.

use std::path::{Component, Path, PathBuf};

use super::PostureConfig;

/// Unit directories systemd reads, most specific first.
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];

#[derive(Debug, Clone)]
pub struct HostPaths {
    root: PathBuf,
}

impl HostPaths {
    pub fn new(config: &PostureConfig) -> HostPaths {
        HostPaths {
            root: config.root.clone(),
        }
    }

    /// The running host itself (root `/`), whose processes are this
    /// machine's: not an image mounted elsewhere.
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// `path` (absolute, as on the host) under the configured root.
    pub fn path(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        if self.root == Path::new("/") {
            return path.to_path_buf();
        }
        let mut out = self.root.clone();
        for part in path.components() {
            if let Component::Normal(p) = part {
                out.push(p);
            }
        }
        out
    }

    pub fn daemon_json(&self) -> PathBuf {
        self.path("/etc/docker/daemon.json")
    }

    pub fn etc_group(&self) -> PathBuf {
        self.path("/etc/group")
    }

    /// pam_env's file: every login session's environment.
    pub fn etc_environment(&self) -> PathBuf {
        self.path("/etc/environment")
    }

    /// What every login shell sources.
    pub fn profile_d(&self) -> PathBuf {
        self.path("/etc/profile.d")
    }

    pub fn etc_passwd(&self) -> PathBuf {
        self.path("/etc/passwd")
    }

    pub fn etc_docker(&self) -> PathBuf {
        self.path("/etc/docker")
    }

    pub fn certs_d(&self) -> PathBuf {
        self.path("/etc/docker/certs.d")
    }

    pub fn default_docker(&self) -> PathBuf {
        self.path("/etc/default/docker")
    }

    pub fn sysconfig_docker(&self) -> PathBuf {
        self.path("/etc/sysconfig/docker")
    }

    pub fn var_lib_docker(&self) -> PathBuf {
        self.path("/var/lib/docker")
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.path("/var/lib/docker/containers")
    }

    pub fn apparmor_enabled(&self) -> PathBuf {
        self.path("/sys/module/apparmor/parameters/enabled")
    }

    /// Every place a unit file `name` may live, most specific first.
    pub fn unit_candidates(&self, name: &str) -> Vec<PathBuf> {
        UNIT_DIRS
            .iter()
            .map(|dir| self.path(Path::new(dir).join(name)))
            .collect()
    }

    /// The unit file systemd would load for `name`, if any exists.
    pub fn unit(&self, name: &str) -> Option<PathBuf> {
        self.unit_candidates(name).into_iter().find(|p| p.exists())
    }

    /// Drop-in directories for unit `name` (`docker.service.d`).
    pub fn unit_dropin_dirs(&self, name: &str) -> Vec<PathBuf> {
        UNIT_DIRS
            .iter()
            .map(|dir| self.path(Path::new(dir).join(format!("{name}.d"))))
            .collect()
    }
}

/// `path` with its directory resolved through symlinks (`/var/run` is
/// `/run` on most hosts), which is how the kernel reports it in events. The
/// file itself need not exist.
pub fn resolved(path: &Path) -> PathBuf {
    if let Ok(full) = std::fs::canonicalize(path) {
        return full;
    }
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => match std::fs::canonicalize(dir) {
            Ok(dir) => dir.join(name),
            Err(_) => path.to_path_buf(),
        },
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_rebased_under_the_root() {
        let config = PostureConfig {
            root: PathBuf::from("/tmp/x"),
            ..PostureConfig::default()
        };
        let host = HostPaths::new(&config);
        assert_eq!(
            host.daemon_json(),
            Path::new("/tmp/x/etc/docker/daemon.json")
        );
        let host = HostPaths::new(&PostureConfig::default());
        assert_eq!(host.daemon_json(), Path::new("/etc/docker/daemon.json"));
    }
}
