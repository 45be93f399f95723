//! Where the binaries, drivers and client environments live.

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `target/debug/<name>` (or `$CARGO_TARGET_DIR/debug/<name>`), the binary `cargo build
/// --workspace --bins` leaves there. Integration tests of another package cannot use
/// `CARGO_BIN_EXE_*`, hence the path. `COURIER_BIN_DIR` points the tests at other builds
/// (e.g. `target/release`).
pub(crate) fn binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("COURIER_BIN_DIR") {
        let path = PathBuf::from(dir).join(name);
        assert!(
            path.is_file(),
            "{} not found (COURIER_BIN_DIR)",
            path.display()
        );
        return path;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let target = if target.is_relative() {
        workspace_root().join(target)
    } else {
        target
    };
    let path = target.join("debug").join(name);
    assert!(
        path.is_file(),
        "{} not found: build it first with `cargo build --workspace --bins` (scripts/test-all does)",
        path.display()
    );
    path
}

pub(crate) fn node_clients_dir() -> PathBuf {
    let dir = workspace_root().join("tests/clients/node");
    assert!(
        dir.join("node_modules/sio4").is_dir(),
        "node clients not installed in {}: run scripts/install-deps",
        dir.display()
    );
    dir
}

pub(crate) fn python_clients_dir() -> PathBuf {
    workspace_root().join("tests/clients/python")
}

/// The interpreter of `.venv4` or `.venv5`.
pub(crate) fn python_venv(major: u8) -> PathBuf {
    let python = python_clients_dir().join(format!(".venv{major}/bin/python"));
    assert!(
        python.is_file(),
        "{} missing: run scripts/install-deps",
        python.display()
    );
    python
}
