//! Finding the programs tests drive: the repository's Python virtualenv
//! (paramiko, boto3, moto) and system tools.

use std::path::{Path, PathBuf};

/// The repository root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A program on `PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The virtualenv's Python (`$WHARF_PYTHON`, else `<root>/.venv/bin/python3`).
/// Panics with the setup command when it is missing.
pub fn venv_python() -> PathBuf {
    if let Some(path) = std::env::var_os("WHARF_PYTHON") {
        return PathBuf::from(path);
    }
    let python = workspace_root().join(".venv/bin/python3");
    assert!(
        python.is_file(),
        "{} not found: run scripts/setup-test-env to create the test virtualenv",
        python.display()
    );
    python
}

/// A required system program; panics with the setup command when missing.
pub fn require(name: &str) -> PathBuf {
    find_in_path(name).unwrap_or_else(|| {
        panic!("{name} not found on PATH: run scripts/setup-test-env to install the test tools")
    })
}
