//! A fresh temporary directory per server, removed on drop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Owns one directory under [`std::env::temp_dir`].
#[derive(Debug)]
pub(crate) struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates a new, empty directory; panics if that is impossible.
    pub(crate) fn new() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("baton-redis-{}-{n}-{nanos}", std::process::id());
        let path = std::env::temp_dir().join(name);
        // `create_dir`, not `create_dir_all`: it fails if the directory
        // exists, so a server never inherits someone else's data.
        if let Err(e) = std::fs::create_dir(&path) {
            panic!(
                "cannot create the redis-server directory {}: {e}",
                path.display()
            );
        }
        Self { path }
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads a file in the directory, or explains why it could not.
    pub(crate) fn read(&self, file: &str) -> String {
        let path = self.path.join(file);
        std::fs::read(&path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
