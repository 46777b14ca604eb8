//! The authorization hook every operation passes through.
//!
//! Operations are described the way AWS Transfer Family describes them to
//! IAM: an S3 action on an S3 resource named by the store's NAME. Sessions
//! plug the IAM policy engine in as their [`Authorizer`] (`wharf-session`);
//! the tests here use `HomeTargets`, a direct statement of the built-in
//! default role.

use std::fmt;

/// The S3 actions file operations map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Listing and stat: `s3:ListBucket` on the bucket, with `s3:prefix`.
    ListBucket,
    /// Reading an object.
    GetObject,
    /// Writing an object; also mkdir (`dir/`) and setstat.
    PutObject,
    /// Deleting an object; also rmdir (`dir/`).
    DeleteObject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ListBucket => "s3:ListBucket",
            Action::GetObject => "s3:GetObject",
            Action::PutObject => "s3:PutObject",
            Action::DeleteObject => "s3:DeleteObject",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request to authorize.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    pub action: Action,
    /// The store NAME (the first segment of home directories).
    pub store: &'a str,
    /// The object key; for [`Action::ListBucket`] the `s3:prefix`.
    pub key: &'a str,
    /// For [`Action::ListBucket`], the `s3:delimiter` (`/` for a directory
    /// listing, absent for a stat).
    pub delimiter: Option<&'a str>,
    /// For [`Action::GetObject`], the object's tags
    /// (`s3:ExistingObjectTag/KEY`), fetched only when the authorizer
    /// [wants them](Authorizer::wants_object_tags); empty otherwise.
    pub object_tags: &'a [(String, String)],
}

impl<'a> AccessRequest<'a> {
    /// `action` on `key` of `store`: no delimiter, no object tags (add them
    /// with [`AccessRequest::listing`] and [`AccessRequest::with_tags`]).
    pub fn new(action: Action, store: &'a str, key: &'a str) -> AccessRequest<'a> {
        AccessRequest {
            action,
            store,
            key,
            delimiter: None,
            object_tags: &[],
        }
    }

    /// A directory listing: `s3:delimiter` `/`.
    pub fn listing(self) -> AccessRequest<'a> {
        AccessRequest {
            delimiter: Some("/"),
            ..self
        }
    }

    /// With the object's tags (`s3:ExistingObjectTag/KEY`).
    pub fn with_tags(self, object_tags: &'a [(String, String)]) -> AccessRequest<'a> {
        AccessRequest {
            object_tags,
            ..self
        }
    }
}

impl AccessRequest<'_> {
    /// `arn:aws:s3:::STORE` for listings, `arn:aws:s3:::STORE/KEY` otherwise.
    pub fn resource_arn(&self) -> String {
        match self.action {
            Action::ListBucket => format!("arn:aws:s3:::{}", self.store),
            _ => format!("arn:aws:s3:::{}/{}", self.store, self.key),
        }
    }
}

/// Why a request was denied, for the log (the client only learns "denied").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub reason: String,
}

/// Decides every operation before any store is touched.
pub trait Authorizer: Send + Sync + 'static {
    fn authorize(&self, request: &AccessRequest<'_>) -> Result<(), Denied>;

    /// Whether reads must carry the object's tags in
    /// [`AccessRequest::object_tags`] (a policy tests
    /// `s3:ExistingObjectTag/KEY`). Fetching them costs a request per read,
    /// so only authorizers that look at them say yes.
    fn wants_object_tags(&self) -> bool {
        false
    }
}

/// One home-directory target: a store and a key prefix ("" for the whole
/// store), or a single object for a FILE mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub store: String,
    pub prefix: String,
    pub is_file: bool,
}

#[cfg(test)]
impl Target {
    fn contains_object(&self, store: &str, key: &str) -> bool {
        if store != self.store {
            return false;
        }
        if self.is_file {
            return key == self.prefix;
        }
        self.prefix.is_empty()
            || (key.starts_with(&self.prefix)
                && key.as_bytes().get(self.prefix.len()) == Some(&b'/'))
    }

    fn contains_prefix(&self, store: &str, prefix: &str) -> bool {
        if store != self.store {
            return false;
        }
        let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
        prefix == self.prefix || self.contains_object(store, prefix)
    }
}

/// The built-in default role (SPEC section 3), for tests: every action
/// inside the home directory targets, nothing else. (Sessions express the
/// same rule as an IAM policy; see `wharf_session::default_role_document`.)
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) struct HomeTargets {
    targets: Vec<Target>,
}

#[cfg(test)]
impl HomeTargets {
    pub(crate) fn new(targets: Vec<Target>) -> HomeTargets {
        HomeTargets { targets }
    }
}

#[cfg(test)]
impl Authorizer for HomeTargets {
    fn authorize(&self, request: &AccessRequest<'_>) -> Result<(), Denied> {
        let inside = match request.action {
            Action::ListBucket => self
                .targets
                .iter()
                .any(|t| t.contains_prefix(request.store, request.key)),
            _ => {
                let key = request.key;
                self.targets.iter().any(|t| {
                    t.contains_object(request.store, key)
                        // mkdir/rmdir of the target directory itself ("prefix/")
                        || (!t.is_file
                            && key.strip_suffix('/') == Some(t.prefix.as_str())
                            && request.store == t.store)
                })
            }
        };
        if inside {
            Ok(())
        } else {
            Err(Denied {
                reason: format!(
                    "the default role allows only the home directory targets; {} on {} is outside them",
                    request.action,
                    request.resource_arn()
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> HomeTargets {
        HomeTargets::new(vec![
            Target {
                store: "reports".into(),
                prefix: "alice".into(),
                is_file: false,
            },
            Target {
                store: "shared".into(),
                prefix: "".into(),
                is_file: false,
            },
            Target {
                store: "pub".into(),
                prefix: "files/readme.txt".into(),
                is_file: true,
            },
        ])
    }

    #[track_caller]
    fn check(action: Action, store: &str, key: &str, allowed: bool) {
        let request = AccessRequest {
            action,
            store,
            key,
            delimiter: Some("/"),
            object_tags: &[],
        };
        assert_eq!(
            targets().authorize(&request).is_ok(),
            allowed,
            "{action} {store}/{key}"
        );
    }

    #[test]
    fn default_role_allows_only_inside_targets() {
        use Action::*;
        check(GetObject, "reports", "alice/a.txt", true);
        check(PutObject, "reports", "alice/deep/er/a.txt", true);
        check(PutObject, "reports", "alice/", true);
        check(GetObject, "reports", "alice", false);
        check(GetObject, "reports", "alicex/a.txt", false);
        check(GetObject, "reports", "bob/a.txt", false);
        check(GetObject, "other", "alice/a.txt", false);
        check(ListBucket, "reports", "alice/", true);
        check(ListBucket, "reports", "alice", true);
        check(ListBucket, "reports", "alice/sub/", true);
        check(ListBucket, "reports", "", false);
        check(ListBucket, "reports", "al", false);
        check(DeleteObject, "shared", "anything/at/all", true);
        check(ListBucket, "shared", "", true);
        check(GetObject, "pub", "files/readme.txt", true);
        check(GetObject, "pub", "files/other.txt", false);
        check(PutObject, "pub", "files/readme.txt/x", false);
    }

    #[test]
    fn resource_arns_name_the_store() {
        let list = AccessRequest {
            action: Action::ListBucket,
            store: "reports",
            key: "alice/",
            delimiter: Some("/"),
            object_tags: &[],
        };
        assert_eq!(list.resource_arn(), "arn:aws:s3:::reports");
        let get = AccessRequest {
            action: Action::GetObject,
            ..list
        };
        assert_eq!(get.resource_arn(), "arn:aws:s3:::reports/alice/");
    }
}
