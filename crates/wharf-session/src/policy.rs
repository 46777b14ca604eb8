//! The bridge from the virtual filesystem's authorization hook to the IAM
//! policy engine.
//!
//! Every session is authorized by IAM policy evaluation, the built-in
//! default role included: it is written as an ordinary identity policy
//! (allow everything inside the home directory targets), so bucket policies
//! and session policies apply to it exactly as to a configured role.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use wharf_identity::{Home, Identity};
use wharf_policy::{Context, Policy, PolicyKind, PolicySet, Request, evaluate};
use wharf_vfs::{AccessRequest, Action, Authorizer, Denied, Target};

/// The ARN sessions without a `Role` run as.
pub const DEFAULT_ROLE_ARN: &str = "arn:aws:iam::000000000000:role/wharf-default-role";

/// Escapes IAM wildcard and variable characters in a literal.
fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '*' => out.push_str("${*}"),
            '?' => out.push_str("${?}"),
            '$' => out.push_str("${$}"),
            other => out.push(other),
        }
    }
    out
}

/// The built-in default role as an identity policy document.
pub fn default_role_document(targets: &[Target]) -> Value {
    let mut statements = Vec::new();
    for (i, target) in targets.iter().enumerate() {
        let store = literal(&target.store);
        let prefix = literal(&target.prefix);
        if target.is_file {
            statements.push(json!({
                "Sid": format!("Target{i}Object"),
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": format!("arn:aws:s3:::{store}/{prefix}"),
            }));
            statements.push(json!({
                "Sid": format!("Target{i}List"),
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": format!("arn:aws:s3:::{store}"),
                "Condition": {"StringEquals": {"s3:prefix": [target.prefix]}},
            }));
        } else if target.prefix.is_empty() {
            statements.push(json!({
                "Sid": format!("Target{i}"),
                "Effect": "Allow",
                "Action": ["s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": [format!("arn:aws:s3:::{store}"), format!("arn:aws:s3:::{store}/*")],
            }));
        } else {
            statements.push(json!({
                "Sid": format!("Target{i}Objects"),
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": format!("arn:aws:s3:::{store}/{prefix}/*"),
            }));
            statements.push(json!({
                "Sid": format!("Target{i}List"),
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": format!("arn:aws:s3:::{store}"),
                "Condition": {"StringLike": {"s3:prefix": [prefix.clone(), format!("{prefix}/*")]}},
            }));
        }
    }
    if statements.is_empty() {
        statements
            .push(json!({"Sid": "Nothing", "Effect": "Deny", "Action": "s3:*", "Resource": "*"}));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// A configured role, compiled.
#[derive(Debug, Clone)]
pub struct RolePolicies {
    pub arn: String,
    pub policies: Vec<Arc<Policy>>,
    pub tags: BTreeMap<String, String>,
}

/// Authorizes one session's operations with the policy engine.
pub struct PolicyAuthorizer {
    identity: Vec<Arc<Policy>>,
    session: Option<Arc<Policy>>,
    bucket_policies: Arc<BTreeMap<String, Arc<Policy>>>,
    principal_arn: String,
    context: Context,
    /// Some policy tests `s3:ExistingObjectTag/KEY`.
    wants_object_tags: bool,
}

/// The condition key prefix of object tags.
const OBJECT_TAG_KEY: &str = "s3:ExistingObjectTag/";

impl std::fmt::Debug for PolicyAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyAuthorizer")
            .field("principal_arn", &self.principal_arn)
            .finish_non_exhaustive()
    }
}

/// What a session's context keys are built from, besides its identity.
pub struct SessionFacts<'a> {
    pub source_ip: std::net::IpAddr,
    pub secure_transport: bool,
    pub protocol: &'a str,
}

/// The `transfer:Home*` variables: from HomeDirectory (PATH) or from the
/// Target of the Entry `/` (LOGICAL), else undefined.
fn home_parts(home: &Home) -> Option<(String, String)> {
    match home {
        Home::Path { store, prefix } => Some((store.clone(), prefix.clone())),
        Home::Logical(entries) => entries
            .iter()
            .find(|e| e.entry == "/" && !e.is_file)
            .map(|e| (e.store.clone(), e.prefix.clone())),
    }
}

impl PolicyAuthorizer {
    /// Builds the authorizer of one session. `role` is `None` for the
    /// built-in default role, whose policy comes from `targets`.
    pub fn new(
        identity: &Identity,
        role: Option<&RolePolicies>,
        targets: &[Target],
        bucket_policies: Arc<BTreeMap<String, Arc<Policy>>>,
        facts: &SessionFacts<'_>,
    ) -> Result<PolicyAuthorizer, String> {
        let (policies, principal_arn, role_tags) = match role {
            Some(role) => (role.policies.clone(), role.arn.clone(), role.tags.clone()),
            None => {
                let document = default_role_document(targets);
                let policy =
                    Policy::from_value("wharf-default-role", &document, PolicyKind::Identity)
                        .map_err(|e| format!("cannot build the default role policy: {e}"))?;
                (
                    vec![Arc::new(policy)],
                    DEFAULT_ROLE_ARN.to_owned(),
                    BTreeMap::new(),
                )
            }
        };
        let session = match &identity.policy {
            Some(value) => Some(Arc::new(
                Policy::from_value("session policy", value, PolicyKind::Session)
                    .map_err(|e| format!("the session policy does not parse: {e}"))?,
            )),
            None => None,
        };
        let mut context = Context::new()
            .set("transfer:UserName", identity.username.clone())
            .set("aws:username", identity.username.clone())
            .set("aws:PrincipalArn", principal_arn.clone())
            .set("aws:SourceIp", facts.source_ip.to_string())
            .set("aws:SecureTransport", facts.secure_transport.to_string())
            .set("transfer:Protocol", facts.protocol);
        if let Some((bucket, folder)) = home_parts(&identity.home) {
            let directory = if folder.is_empty() {
                bucket.clone()
            } else {
                format!("{bucket}/{folder}")
            };
            context.insert("transfer:HomeDirectory", directory);
            context.insert("transfer:HomeBucket", bucket);
            context.insert("transfer:HomeFolder", folder);
        }
        // Role tags first, then the session's own tags override them.
        let mut tags = role_tags;
        tags.extend(identity.session_tags.clone());
        let mut tag_keys = Vec::with_capacity(tags.len());
        for (key, value) in tags {
            context.insert(&format!("aws:PrincipalTag/{key}"), value);
            tag_keys.push(key);
        }
        if !tag_keys.is_empty() {
            context.insert_multi("aws:PrincipalTagKeys", tag_keys);
        }
        let wants_object_tags = policies
            .iter()
            .chain(session.iter())
            .chain(bucket_policies.values())
            .any(|policy| policy.tests_condition_key_prefix(OBJECT_TAG_KEY));
        Ok(PolicyAuthorizer {
            identity: policies,
            session,
            bucket_policies,
            principal_arn,
            context,
            wants_object_tags,
        })
    }

    /// Evaluates one request, for `wharf policy simulate` too.
    pub fn decide(
        &self,
        action: &str,
        resource: &str,
        extra: &[(&str, &str)],
        store: Option<&str>,
    ) -> wharf_policy::Decision {
        let set = PolicySet {
            identity: self.identity.clone(),
            session: self.session.clone(),
            resource: store
                .and_then(|s| self.bucket_policies.get(s))
                .map(|p| vec![p.clone()])
                .unwrap_or_default(),
        };
        let request = Request::new(
            action,
            resource,
            &self.principal_arn,
            &self.context,
            time::OffsetDateTime::now_utc(),
        )
        .with_extra(extra);
        evaluate(&set, &request)
    }

    pub fn principal_arn(&self) -> &str {
        &self.principal_arn
    }

    /// The effective policies, for `wharf test-idp`.
    pub fn describe(&self) -> Value {
        json!({
            "PrincipalArn": self.principal_arn,
            "IdentityPolicies": self.identity.iter().map(|p| p.name().to_owned()).collect::<Vec<_>>(),
            "SessionPolicy": self.session.is_some(),
            "BucketPolicies": self.bucket_policies.keys().cloned().collect::<Vec<_>>(),
            "Context": self.context.iter().map(|(k, v)| (k.to_owned(), json!(v))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

impl Authorizer for PolicyAuthorizer {
    fn authorize(&self, request: &AccessRequest<'_>) -> Result<(), Denied> {
        let resource = request.resource_arn();
        let decision = if request.action == Action::ListBucket {
            let mut extra: [(&str, &str); 2] = [("s3:prefix", request.key), ("", "")];
            let n = match request.delimiter {
                Some(delimiter) => {
                    extra[1] = ("s3:delimiter", delimiter);
                    2
                }
                None => 1,
            };
            self.decide(
                request.action.as_str(),
                &resource,
                &extra[..n],
                Some(request.store),
            )
        } else if request.object_tags.is_empty() {
            self.decide(request.action.as_str(), &resource, &[], Some(request.store))
        } else {
            let names: Vec<String> = request
                .object_tags
                .iter()
                .map(|(key, _)| format!("{OBJECT_TAG_KEY}{key}"))
                .collect();
            let extra: Vec<(&str, &str)> = names
                .iter()
                .zip(request.object_tags)
                .map(|(name, (_, value))| (name.as_str(), value.as_str()))
                .collect();
            self.decide(
                request.action.as_str(),
                &resource,
                &extra,
                Some(request.store),
            )
        };
        if decision.allowed {
            Ok(())
        } else {
            Err(Denied {
                reason: decision.to_string(),
            })
        }
    }

    fn wants_object_tags(&self) -> bool {
        self.wants_object_tags
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use wharf_identity::LogicalEntry;

    fn identity(home: Home, policy: Option<Value>, tags: &[(&str, &str)]) -> Identity {
        Identity {
            username: "alice".into(),
            role: None,
            policy,
            home,
            public_keys: vec![],
            posix_profile: None,
            session_tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            unknown_fields: vec![],
        }
    }

    fn facts() -> SessionFacts<'static> {
        SessionFacts {
            source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            secure_transport: true,
            protocol: "SFTP",
        }
    }

    fn request<'a>(action: Action, store: &'a str, key: &'a str) -> AccessRequest<'a> {
        AccessRequest {
            action,
            store,
            key,
            delimiter: if action == Action::ListBucket {
                Some("/")
            } else {
                None
            },
            object_tags: &[],
        }
    }

    #[track_caller]
    fn check(auth: &PolicyAuthorizer, action: Action, store: &str, key: &str, allowed: bool) {
        let got = auth.authorize(&request(action, store, key));
        assert_eq!(got.is_ok(), allowed, "{action} {store}/{key}: {got:?}");
    }

    #[test]
    fn the_default_role_allows_only_inside_the_targets() {
        let targets = vec![
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
                prefix: "docs/r*.txt".into(),
                is_file: true,
            },
        ];
        let id = identity(
            Home::Path {
                store: "reports".into(),
                prefix: "alice".into(),
            },
            None,
            &[],
        );
        let auth = PolicyAuthorizer::new(&id, None, &targets, Arc::default(), &facts()).unwrap();
        use Action::*;
        check(&auth, GetObject, "reports", "alice/a.txt", true);
        check(&auth, PutObject, "reports", "alice/", true);
        check(&auth, GetObject, "reports", "alicex/a", false);
        check(&auth, GetObject, "reports", "bob/a", false);
        check(&auth, ListBucket, "reports", "alice/", true);
        check(&auth, ListBucket, "reports", "alice", true);
        check(&auth, ListBucket, "reports", "", false);
        check(&auth, DeleteObject, "shared", "x/y", true);
        check(&auth, ListBucket, "shared", "", true);
        check(&auth, GetObject, "pub", "docs/r*.txt", true);
        // The `*` in the target is literal, not a wildcard.
        check(&auth, GetObject, "pub", "docs/rx.txt", false);
        check(&auth, GetObject, "other", "alice/a", false);
    }

    #[test]
    fn a_session_policy_narrows_the_default_role() {
        let targets = vec![Target {
            store: "reports".into(),
            prefix: "".into(),
            is_file: false,
        }];
        let scope_down = json!({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::reports/${transfer:UserName}/*"},
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::reports",
             "Condition": {"StringLike": {"s3:prefix": ["${transfer:UserName}/*", "${transfer:UserName}"]}}}
        ]});
        let id = identity(
            Home::Path {
                store: "reports".into(),
                prefix: "alice".into(),
            },
            Some(scope_down),
            &[],
        );
        let auth = PolicyAuthorizer::new(&id, None, &targets, Arc::default(), &facts()).unwrap();
        check(&auth, Action::GetObject, "reports", "alice/a", true);
        check(&auth, Action::GetObject, "reports", "bob/a", false);
        check(&auth, Action::DeleteObject, "reports", "alice/a", false);
        check(&auth, Action::ListBucket, "reports", "alice/", true);
        check(&auth, Action::ListBucket, "reports", "bob/", false);
    }

    #[test]
    fn session_tags_drive_abac_in_a_bucket_policy() {
        let bucket = Policy::from_value(
            "shared-bucket",
            &json!({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": "arn:aws:s3:::shared/${aws:PrincipalTag/team}/*",
                "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::000000000000:role/*"}}
            }]}),
            PolicyKind::Resource,
        )
        .unwrap();
        let buckets: Arc<BTreeMap<String, Arc<Policy>>> = Arc::new(
            [("shared".to_owned(), Arc::new(bucket))]
                .into_iter()
                .collect(),
        );
        let targets = vec![Target {
            store: "home".into(),
            prefix: "alice".into(),
            is_file: false,
        }];
        let home = Home::Logical(vec![LogicalEntry {
            entry: "/".into(),
            store: "home".into(),
            prefix: "alice".into(),
            is_file: false,
        }]);
        let blue = identity(home.clone(), None, &[("team", "blue")]);
        let auth = PolicyAuthorizer::new(&blue, None, &targets, buckets.clone(), &facts()).unwrap();
        check(&auth, Action::GetObject, "shared", "blue/plan.txt", true);
        check(&auth, Action::GetObject, "shared", "red/plan.txt", false);
        let untagged = identity(home, None, &[]);
        let auth = PolicyAuthorizer::new(&untagged, None, &targets, buckets, &facts()).unwrap();
        check(&auth, Action::GetObject, "shared", "blue/plan.txt", false);
        let described = auth.describe();
        assert_eq!(
            described["Context"]["transfer:HomeFolder"],
            json!(["alice"])
        );
    }
}
