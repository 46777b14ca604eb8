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

/// A run of `count` loopback ports that are all free now, below Linux's
/// ephemeral range (so no outgoing connection takes one), as the
/// `passive_ports` value `"LOW-HIGH"`. Each test picks its own range
/// instead of sharing a fixed one.
pub fn free_port_range(count: u16) -> String {
    use std::net::TcpListener;
    // Start from a different place in each process, to spread concurrent
    // tests apart.
    let seed = u32::from(std::process::id() as u16) as usize;
    let span = 32_000 - 20_000 - usize::from(count);
    for attempt in 0..500usize {
        let low = 20_000 + (seed * 7919 + attempt * 104_729) % span;
        let low = u16::try_from(low).unwrap_or(20_000);
        let free = (low..low + count).all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok());
        if free {
            return format!("{low}-{}", low + count - 1);
        }
    }
    panic!("no free range of {count} loopback ports");
}
