//! Docker's file layout, built by the tests (no Docker engine runs here):
//! created on demand and removed on drop, leaving what was there before.

use std::path::{Path, PathBuf};

/// Files and directories a test created, removed in reverse on drop.
#[derive(Default)]
pub struct Layout {
    created: Vec<PathBuf>,
}

impl Layout {
    pub fn new() -> Layout {
        Layout::default()
    }

    /// Creates `dir` and any missing parents, remembering what was new.
    pub fn dir(&mut self, dir: &str) -> &mut Layout {
        let mut missing = Vec::new();
        let mut cur = Some(Path::new(dir));
        while let Some(p) = cur {
            if p.exists() {
                break;
            }
            missing.push(p.to_path_buf());
            cur = p.parent();
        }
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {dir}: {e}"));
        self.created.extend(missing.into_iter().rev());
        self
    }

    /// Writes `path` (creating its directory), remembering it if new.
    pub fn file(&mut self, path: &str, contents: &str) -> &mut Layout {
        if let Some(parent) = Path::new(path).parent() {
            self.dir(parent.to_str().expect("utf-8 path"));
        }
        if !Path::new(path).exists() {
            self.created.push(PathBuf::from(path));
        }
        std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {path}: {e}"));
        self
    }

    /// Remembers `path` for removal although the test created it otherwise.
    pub fn track(&mut self, path: &str) -> &mut Layout {
        self.created.push(PathBuf::from(path));
        self
    }
}

impl Drop for Layout {
    fn drop(&mut self) {
        for path in self.created.iter().rev() {
            if path.is_dir() && !path.is_symlink() {
                let _ = std::fs::remove_dir_all(path);
            } else {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
