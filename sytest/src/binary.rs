//! Where the `tidings` binary under test lives.

use std::path::{Path, PathBuf};

/// Path of the `tidings` binary the tests run.
///
/// `$TIDINGS_BIN` if set; else `target/debug/tidings`, then `target/release/tidings`,
/// looked for in `$CARGO_TARGET_DIR` (if set) and in every directory from this crate up
/// to the filesystem root (so the workspace's `target/` is found).
///
/// # Panics
///
/// When no binary is found, with a message saying to run `cargo build -p tidings`.
/// Cargo does not build the binary for `cargo test -p tidings-sytest`; a stale binary
/// is used as is.
pub fn tidings_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("TIDINGS_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "TIDINGS_BIN={} does not name a file; build it with `cargo build -p tidings`",
            bin.display()
        );
        return bin;
    }
    let mut target_dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        target_dirs.push(PathBuf::from(dir));
    }
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    target_dirs.extend(manifest_dir.ancestors().map(|dir| dir.join("target")));
    for profile in ["debug", "release"] {
        for target in &target_dirs {
            let candidate = target.join(profile).join("tidings");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "the `tidings` binary was not found (looked for target/debug/tidings and \
         target/release/tidings above {}); run `cargo build -p tidings` first, \
         or set TIDINGS_BIN to its path",
        manifest_dir.display()
    );
}
