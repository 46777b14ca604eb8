//! `VirtualPath`: the path a user sees, normalised and bounded.
//!
//! Pure: no I/O. Every path a client sends becomes a `VirtualPath` before
//! anything else looks at it, so no later layer has to think about `..`,
//! NUL bytes, doubled slashes or length.

use std::fmt;

/// The longest path accepted, in bytes, after normalisation (S3's key limit).
pub const MAX_PATH_BYTES: usize = 1024;
/// The longest single segment, in bytes.
pub const MAX_SEGMENT_BYTES: usize = 255;
/// Inputs longer than this are refused before any work is done on them.
const MAX_INPUT_BYTES: usize = 4 * MAX_PATH_BYTES;

/// Why a client path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    Nul,
    TooLong { bytes: usize },
    SegmentTooLong { bytes: usize },
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::Nul => f.write_str("path contains a NUL byte"),
            PathError::TooLong { bytes } => {
                write!(f, "path is {bytes} bytes, more than {MAX_PATH_BYTES}")
            }
            PathError::SegmentTooLong { bytes } => write!(
                f,
                "a path segment is {bytes} bytes, more than {MAX_SEGMENT_BYTES}"
            ),
        }
    }
}

impl std::error::Error for PathError {}

/// An absolute, normalised path in a user's view: `/` or `/a/b`, never a
/// trailing slash, no empty, `.` or `..` segments, no NUL, bounded length.
///
/// `..` is resolved lexically and stops at `/`: a user chrooted to their
/// home can never name anything above it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VirtualPath(String);

impl fmt::Debug for VirtualPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for VirtualPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl VirtualPath {
    /// The root, `/`.
    pub fn root() -> VirtualPath {
        VirtualPath("/".to_owned())
    }

    /// Normalises `input` as an absolute path (a relative input is taken
    /// relative to `/`).
    pub fn parse(input: &str) -> Result<VirtualPath, PathError> {
        Self::root().join(input)
    }

    /// Resolves `input` against `self`: absolute inputs replace it, relative
    /// ones are appended, then `.`/`..` are resolved.
    pub fn join(&self, input: &str) -> Result<VirtualPath, PathError> {
        if input.len() > MAX_INPUT_BYTES {
            return Err(PathError::TooLong { bytes: input.len() });
        }
        if input.contains('\0') {
            return Err(PathError::Nul);
        }
        let mut segments: Vec<&str> = if input.starts_with('/') {
            Vec::new()
        } else {
            self.segments().collect()
        };
        for segment in input.split('/') {
            match segment {
                "" | "." => {}
                ".." => {
                    segments.pop();
                }
                other => {
                    if other.len() > MAX_SEGMENT_BYTES {
                        return Err(PathError::SegmentTooLong { bytes: other.len() });
                    }
                    segments.push(other);
                }
            }
        }
        let mut path = String::with_capacity(input.len() + self.0.len() + 1);
        for segment in &segments {
            path.push('/');
            path.push_str(segment);
        }
        if path.is_empty() {
            path.push('/');
        }
        if path.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong { bytes: path.len() });
        }
        Ok(VirtualPath(path))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The segments, root first; none for `/`.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }

    /// The last segment, or "" for `/`.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or("")
    }

    /// The parent directory (`/` for `/`).
    pub fn parent(&self) -> VirtualPath {
        match self.0.rfind('/') {
            Some(0) | None => VirtualPath::root(),
            Some(index) => VirtualPath(self.0[..index].to_owned()),
        }
    }

    /// Whether `self` is `other` or inside it.
    pub fn starts_with(&self, other: &VirtualPath) -> bool {
        other.is_root()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }

    /// The path below `base`, without a leading slash ("" when equal), or
    /// `None` when `self` is not inside `base`.
    pub fn strip_prefix(&self, base: &VirtualPath) -> Option<&str> {
        if !self.starts_with(base) {
            return None;
        }
        if base.is_root() {
            return Some(&self.0[1..]);
        }
        let rest = &self.0[base.0.len()..];
        Some(rest.strip_prefix('/').unwrap_or(rest))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[track_caller]
    fn check(base: &str, input: &str, expected: Result<&str, PathError>) {
        let base = VirtualPath::parse(base).unwrap();
        let got = base.join(input);
        assert_eq!(
            got.as_ref().map(|p| p.as_str()).map_err(Clone::clone),
            expected,
            "{base} + {input:?}"
        );
    }

    #[test]
    fn normalisation() {
        check("/", "", Ok("/"));
        check("/", ".", Ok("/"));
        check("/", "/", Ok("/"));
        check("/", "a", Ok("/a"));
        check("/", "/a/b/", Ok("/a/b"));
        check("/", "//a//b//", Ok("/a/b"));
        check("/", "a/./b/.", Ok("/a/b"));
        check("/", "a/../b", Ok("/b"));
        check("/home", "x", Ok("/home/x"));
        check("/home", "/x", Ok("/x"));
        check("/home/alice", "..", Ok("/home"));
        check("/home/alice", "../..", Ok("/"));
        check("/home/alice", "../../../../etc/passwd", Ok("/etc/passwd"));
        check("/", "..", Ok("/"));
        check("/", "/../../..", Ok("/"));
        check("/", "a/..", Ok("/"));
        check("/", "...", Ok("/..."));
        check("/", "a b/c\\d", Ok("/a b/c\\d"));
        check("/", "é/日本", Ok("/é/日本"));
    }

    #[test]
    fn hostile_inputs_are_refused() {
        check("/", "a\0b", Err(PathError::Nul));
        check("/", "\0", Err(PathError::Nul));
        let long_segment = "x".repeat(256);
        check(
            "/",
            &long_segment,
            Err(PathError::SegmentTooLong { bytes: 256 }),
        );
        check("/", &"x".repeat(255), Ok(&format!("/{}", "x".repeat(255))));
        let long_path = vec!["y".repeat(100); 11].join("/");
        check("/", &long_path, Err(PathError::TooLong { bytes: 1111 }));
        let huge = "a/".repeat(10_000);
        check("/", &huge, Err(PathError::TooLong { bytes: 20_000 }));
        // Many `..` cannot produce anything outside the root.
        check("/", &"../".repeat(1000), Ok("/"));
    }

    #[test]
    fn relations() {
        let p = |s: &str| VirtualPath::parse(s).unwrap();
        assert!(p("/a/b").starts_with(&p("/a")));
        assert!(p("/a").starts_with(&p("/a")));
        assert!(p("/a").starts_with(&p("/")));
        assert!(!p("/ab").starts_with(&p("/a")));
        assert_eq!(p("/a/b/c").strip_prefix(&p("/a")), Some("b/c"));
        assert_eq!(p("/a").strip_prefix(&p("/a")), Some(""));
        assert_eq!(p("/a").strip_prefix(&p("/")), Some("a"));
        assert_eq!(p("/ab").strip_prefix(&p("/a")), None);
        assert_eq!(p("/a/b").parent(), p("/a"));
        assert_eq!(p("/a").parent(), p("/"));
        assert_eq!(p("/").parent(), p("/"));
        assert_eq!(p("/a/b").file_name(), "b");
    }

    proptest! {
        #[test]
        fn normalisation_is_idempotent(input in "[a./\\x00é]{0,40}") {
            if let Ok(once) = VirtualPath::parse(&input) {
                let twice = VirtualPath::parse(once.as_str()).unwrap();
                prop_assert_eq!(&once, &twice);
                prop_assert!(once.as_str().starts_with('/'));
                prop_assert!(once.is_root() || !once.as_str().ends_with('/'));
                prop_assert!(once.segments().all(|s| s != "." && s != ".." && !s.is_empty()));
            }
        }

        #[test]
        fn joining_never_escapes_the_root(base in "(/[a-c]{1,3}){0,4}", input in "[a-c./]{0,30}") {
            let base = VirtualPath::parse(&base).unwrap();
            let joined = base.join(&input).unwrap();
            prop_assert!(!joined.as_str().contains("/../"));
            prop_assert!(joined.starts_with(&VirtualPath::root()));
        }
    }
}
