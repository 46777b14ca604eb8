//! Entry point for the fuzz target `fuzz/fuzz_targets/vfs_path.rs`, also
//! run over generated inputs by this crate's tests as a smoke run.

use crate::path::{MAX_PATH_BYTES, MAX_SEGMENT_BYTES, VirtualPath};

/// Checks what every normalised path must be.
fn check(path: &VirtualPath) {
    let text = path.as_str();
    assert!(text.starts_with('/'), "{text:?}");
    assert!(text == "/" || !text.ends_with('/'), "{text:?}");
    assert!(!text.contains("//") && !text.contains('\0'), "{text:?}");
    assert!(text.len() <= MAX_PATH_BYTES, "{} bytes", text.len());
    for segment in path.segments() {
        assert!(
            !segment.is_empty() && segment != "." && segment != "..",
            "{text:?}"
        );
        assert!(segment.len() <= MAX_SEGMENT_BYTES, "{text:?}");
    }
    // Normalising a normal path changes nothing.
    assert_eq!(VirtualPath::parse(text).as_ref(), Ok(path), "{text:?}");
}

/// Two client paths (split at the first NUL-free `\n`): the first parsed,
/// the second joined to it, as a session resolves a path against its
/// working directory; the result never escapes the root and is normal.
pub fn vfs_path(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (first, second) = text.split_once('\n').unwrap_or((&text, ""));
    let Ok(base) = VirtualPath::parse(first) else {
        return;
    };
    check(&base);
    if let Ok(joined) = base.join(second) {
        check(&joined);
        if !second.starts_with('/') && !second.split('/').any(|s| s == "..") {
            assert!(joined.starts_with(&base), "{joined:?} left {base:?}");
        }
        let parent = joined.parent();
        check(&parent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smoke run of the fuzz target over generated inputs.
    #[test]
    fn the_fuzz_target_survives_generated_inputs() {
        let seeds: [&[u8]; 5] = [
            b"/home/alice\n../../etc/passwd",
            b"a/./b//c/\n..",
            b"/\n/x/../../y/.",
            b"caf\xc3\xa9/\xfe\n\0",
            b"..\n../..",
        ];
        let alphabet = b"/./a\n\xc3\xa9";
        wharf_test_support::fuzz::mutated_inputs(&seeds, 20_000, 5, alphabet, vfs_path);
        // Long inputs: many segments, and one segment at the limits.
        vfs_path("a/".repeat(600).as_bytes());
        vfs_path("x".repeat(MAX_SEGMENT_BYTES + 1).as_bytes());
        vfs_path(format!("/{}\n{}", "b".repeat(255), "c/".repeat(400)).as_bytes());
    }
}
