//! Table-driven evaluation tests, grouped by the AWS documentation page the
//! policies and expectations come from. Every case goes through [`check`].
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use time::OffsetDateTime;
use time::macros::datetime;

use crate::{Context, Decision, Policy, PolicyKind, PolicySet, Reason, Request, evaluate};

const ROLE: &str = "arn:aws:iam::000000000000:role/transfer-user";
const NOW: OffsetDateTime = datetime!(2024-05-01 12:00:00 UTC);

// ---------------------------------------------------------------- helpers

fn parse(name: &str, kind: PolicyKind, json: &str) -> Arc<Policy> {
    match Policy::parse(name, json, kind) {
        Ok(p) => Arc::new(p),
        Err(e) => panic!("test policy does not parse: {e}"),
    }
}

fn identity(name: &str, json: &str) -> Arc<Policy> {
    parse(name, PolicyKind::Identity, json)
}

fn session(name: &str, json: &str) -> Arc<Policy> {
    parse(name, PolicyKind::Session, json)
}

fn bucket(name: &str, json: &str) -> Arc<Policy> {
    parse(name, PolicyKind::Resource, json)
}

fn set(
    identity: &[&Arc<Policy>],
    session: Option<&Arc<Policy>>,
    resource: &[&Arc<Policy>],
) -> PolicySet {
    PolicySet {
        identity: identity.iter().map(|p| Arc::clone(p)).collect(),
        session: session.cloned(),
        resource: resource.iter().map(|p| Arc::clone(p)).collect(),
    }
}

/// A request under construction.
struct R {
    action: &'static str,
    resource: String,
    principal: &'static str,
    ctx: Context,
    extra: Vec<(&'static str, &'static str)>,
    now: OffsetDateTime,
}

fn r(action: &'static str, resource: &str) -> R {
    R {
        action,
        resource: resource.to_owned(),
        principal: ROLE,
        ctx: Context::new(),
        extra: Vec::new(),
        now: NOW,
    }
}

impl R {
    fn ctx(mut self, key: &str, value: &str) -> R {
        self.ctx.insert(key, value);
        self
    }
    fn ctx_multi(mut self, key: &str, values: &[&str]) -> R {
        self.ctx.insert_multi(key, values.iter().copied());
        self
    }
    fn extra(mut self, key: &'static str, value: &'static str) -> R {
        self.extra.push((key, value));
        self
    }
    fn principal(mut self, arn: &'static str) -> R {
        self.principal = arn;
        self
    }
    fn at(mut self, now: OffsetDateTime) -> R {
        self.now = now;
        self
    }
}

#[derive(Debug, Clone, Copy)]
enum Want {
    /// Allowed by (policy, statement).
    Allow(&'static str, &'static str),
    /// Explicitly denied by (policy, statement).
    Deny(&'static str, &'static str),
    /// No statement allows it.
    Implicit,
    /// Allowed by (policy, statement) but not by the session policy.
    Blocked(&'static str, &'static str),
}

fn decide(set: &PolicySet, req: &R) -> Decision {
    let request = Request {
        action: req.action,
        resource: &req.resource,
        principal_arn: req.principal,
        context: &req.ctx,
        extra: &req.extra,
        current_time: req.now,
    };
    evaluate(set, &request)
}

#[track_caller]
fn check(set: &PolicySet, req: R, want: Want) {
    let d = decide(set, &req);
    let ctx = format!("{} on {}: got \"{d}\"", req.action, req.resource);
    let deciding = d
        .deciding
        .as_ref()
        .map(|s| (s.policy.as_str(), s.statement.as_str()));
    match want {
        Want::Allow(p, s) => {
            assert!(d.allowed, "want allow by {p}/{s}; {ctx}");
            assert_eq!(d.reason, Reason::Allowed, "{ctx}");
            assert_eq!(deciding, Some((p, s)), "{ctx}");
        }
        Want::Deny(p, s) => {
            assert!(!d.allowed, "want deny by {p}/{s}; {ctx}");
            assert_eq!(d.reason, Reason::ExplicitDeny, "{ctx}");
            assert_eq!(deciding, Some((p, s)), "{ctx}");
        }
        Want::Implicit => {
            assert!(!d.allowed, "want implicit deny; {ctx}");
            assert!(
                matches!(d.reason, Reason::NoAllow { .. }),
                "want implicit deny; {ctx}"
            );
            assert_eq!(deciding, None, "{ctx}");
        }
        Want::Blocked(p, s) => {
            assert!(!d.allowed, "want session-blocked; {ctx}");
            match &d.reason {
                Reason::SessionDoesNotAllow { allowed_by } => assert_eq!(
                    (allowed_by.policy.as_str(), allowed_by.statement.as_str()),
                    (p, s),
                    "{ctx}"
                ),
                other => panic!("want session-blocked by {p}/{s}, got {other:?}; {ctx}"),
            }
        }
    }
}

use Want::{Allow, Blocked, Deny, Implicit};

/// A role policy as in the AWS Transfer Family guide "Create an IAM role and
/// policy": list the bucket, read/write/delete its objects.
fn transfer_role(bucket_name: &str) -> Arc<Policy> {
    identity(
        "transfer-role",
        &format!(
            r#"{{
          "Version": "2012-10-17",
          "Statement": [
            {{"Sid": "AllowListingOfBucket", "Effect": "Allow",
              "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
              "Resource": "arn:aws:s3:::{bucket_name}"}},
            {{"Sid": "HomeDirObjectAccess", "Effect": "Allow",
              "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject",
                         "s3:DeleteObjectVersion", "s3:GetObjectVersion"],
              "Resource": "arn:aws:s3:::{bucket_name}/*"}}
          ]}}"#
        ),
    )
}

fn allow_all(name: &str) -> Arc<Policy> {
    identity(
        name,
        r#"{"Version": "2012-10-17", "Statement":
            {"Sid": "All", "Effect": "Allow", "Action": "*", "Resource": "*"}}"#,
    )
}

// ------------------------------------------------------------ the groups

/// AWS Transfer Family, "Example scope-down policy" / "Creating a session
/// policy for an Amazon S3 bucket" (the `${transfer:UserName}` form):
/// https://docs.aws.amazon.com/transfer/latest/userguide/users-policies-session.html
#[test]
fn transfer_scope_down_by_user_name() {
    let role = transfer_role("bucket");
    let scope = session(
        "scope-down",
        r#"{
      "Version": "2012-10-17",
      "Statement": [
        {"Sid": "AllowListingOfUserFolder", "Effect": "Allow", "Action": ["s3:ListBucket"],
         "Resource": ["arn:aws:s3:::bucket"],
         "Condition": {"StringLike": {"s3:prefix": ["${transfer:UserName}/*", "${transfer:UserName}"]}}},
        {"Sid": "HomeDirObjectAccess", "Effect": "Allow",
         "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject",
                    "s3:DeleteObjectVersion", "s3:GetObjectVersion"],
         "Resource": "arn:aws:s3:::bucket/${transfer:UserName}/*"}
      ]}"#,
    );
    let s = set(&[&role], Some(&scope), &[]);
    let alice = |action, res: &str| r(action, res).ctx("transfer:UserName", "alice");
    let obj = ("transfer-role", "HomeDirObjectAccess");
    let list = ("transfer-role", "AllowListingOfBucket");

    check(
        &s,
        alice("s3:GetObject", "arn:aws:s3:::bucket/alice/a.txt"),
        Allow(obj.0, obj.1),
    );
    check(
        &s,
        alice("s3:PutObject", "arn:aws:s3:::bucket/alice/sub/dir/b.bin"),
        Allow(obj.0, obj.1),
    );
    check(
        &s,
        alice("s3:DeleteObject", "arn:aws:s3:::bucket/alice/x"),
        Allow(obj.0, obj.1),
    );
    check(
        &s,
        alice("s3:GetObject", "arn:aws:s3:::bucket/bob/a.txt"),
        Blocked(obj.0, obj.1),
    );
    // The home folder object itself is outside `alice/*`.
    check(
        &s,
        alice("s3:DeleteObject", "arn:aws:s3:::bucket/alice"),
        Blocked(obj.0, obj.1),
    );
    check(
        &s,
        alice("s3:ListBucket", "arn:aws:s3:::bucket").extra("s3:prefix", "alice/"),
        Allow(list.0, list.1),
    );
    check(
        &s,
        alice("s3:ListBucket", "arn:aws:s3:::bucket").extra("s3:prefix", "alice"),
        Allow(list.0, list.1),
    );
    check(
        &s,
        alice("s3:ListBucket", "arn:aws:s3:::bucket").extra("s3:prefix", "alice/deep/er/"),
        Allow(list.0, list.1),
    );
    check(
        &s,
        alice("s3:ListBucket", "arn:aws:s3:::bucket").extra("s3:prefix", "bob/"),
        Blocked(list.0, list.1),
    );
    check(
        &s,
        alice("s3:ListBucket", "arn:aws:s3:::bucket").extra("s3:prefix", "alice-evil/"),
        Blocked(list.0, list.1),
    );
    check(
        &s,
        alice("s3:ListBucket", "arn:aws:s3:::bucket").extra("s3:prefix", ""),
        Blocked(list.0, list.1),
    );
    // No s3:prefix at all: StringLike on a missing key is false.
    check(
        &s,
        alice("s3:ListBucket", "arn:aws:s3:::bucket"),
        Blocked(list.0, list.1),
    );
    // The role allows GetBucketLocation; the session policy does not.
    check(
        &s,
        alice("s3:GetBucketLocation", "arn:aws:s3:::bucket"),
        Blocked(list.0, list.1),
    );
    // Actions are case-insensitive, resources are not.
    check(
        &s,
        alice("S3:GETOBJECT", "arn:aws:s3:::bucket/alice/a.txt"),
        Allow(obj.0, obj.1),
    );
    check(
        &s,
        alice("s3:GetObject", "arn:aws:s3:::bucket/Alice/a.txt"),
        Blocked(obj.0, obj.1),
    );
    // Without a user name the variable is undefined: nothing is granted.
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::bucket/alice/a.txt"),
        Blocked(obj.0, obj.1),
    );
    // Substituted text is literal: a `*` user name is not a wildcard.
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::bucket/x/a").ctx("transfer:UserName", "*"),
        Blocked(obj.0, obj.1),
    );
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::bucket/*/a").ctx("transfer:UserName", "*"),
        Allow(obj.0, obj.1),
    );
    // Neither policy covers another bucket.
    check(
        &s,
        alice("s3:GetObject", "arn:aws:s3:::other/alice/a.txt"),
        Implicit,
    );
}

/// AWS Transfer Family, "Example session policy" (`${transfer:HomeBucket}`,
/// `${transfer:HomeFolder}`, `${transfer:HomeDirectory}`):
/// https://docs.aws.amazon.com/transfer/latest/userguide/session-policy.html
#[test]
fn transfer_session_policy_by_home() {
    let role = identity(
        "transfer-role",
        r#"{"Version": "2012-10-17", "Statement": [
          {"Sid": "List", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::*"},
          {"Sid": "Objects", "Effect": "Allow", "Action": "s3:*Object*", "Resource": "arn:aws:s3:::*/*"}]}"#,
    );
    let scope = session(
        "home-session",
        r#"{
      "Version": "2012-10-17",
      "Statement": [
        {"Sid": "AllowListingOfUserFolder", "Action": ["s3:ListBucket"], "Effect": "Allow",
         "Resource": ["arn:aws:s3:::${transfer:HomeBucket}"],
         "Condition": {"StringLike": {"s3:prefix": ["${transfer:HomeFolder}/*", "${transfer:HomeFolder}"]}}},
        {"Sid": "HomeDirObjectAccess", "Effect": "Allow",
         "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:DeleteObjectVersion",
                    "s3:GetObjectVersion", "s3:GetObjectACL", "s3:PutObjectACL"],
         "Resource": "arn:aws:s3:::${transfer:HomeDirectory}*"}
      ]}"#,
    );
    let s = set(&[&role], Some(&scope), &[]);
    let home = |action, res: &str| {
        r(action, res)
            .ctx("transfer:HomeBucket", "reports")
            .ctx("transfer:HomeFolder", "alice")
            .ctx("transfer:HomeDirectory", "reports/alice/")
    };
    check(
        &s,
        home("s3:ListBucket", "arn:aws:s3:::reports").extra("s3:prefix", "alice/"),
        Allow("transfer-role", "List"),
    );
    check(
        &s,
        home("s3:ListBucket", "arn:aws:s3:::reports").extra("s3:prefix", "alice"),
        Allow("transfer-role", "List"),
    );
    check(
        &s,
        home("s3:ListBucket", "arn:aws:s3:::other").extra("s3:prefix", "alice/"),
        Blocked("transfer-role", "List"),
    );
    check(
        &s,
        home("s3:ListBucket", "arn:aws:s3:::reports").extra("s3:prefix", "bob/"),
        Blocked("transfer-role", "List"),
    );
    check(
        &s,
        home("s3:GetObject", "arn:aws:s3:::reports/alice/q1.csv"),
        Allow("transfer-role", "Objects"),
    );
    check(
        &s,
        home(
            "s3:DeleteObjectVersion",
            "arn:aws:s3:::reports/alice/q1.csv",
        ),
        Allow("transfer-role", "Objects"),
    );
    check(
        &s,
        home("s3:PutObject", "arn:aws:s3:::reports/bob/q1.csv"),
        Blocked("transfer-role", "Objects"),
    );
    check(
        &s,
        home("s3:GetObject", "arn:aws:s3:::reports/alicex/q1.csv"),
        Blocked("transfer-role", "Objects"),
    );
    // The doc's warning: a HomeDirectory without its trailing slash also
    // grants sibling folders that share the prefix.
    let no_slash = r("s3:GetObject", "arn:aws:s3:::reports/alice2/x")
        .ctx("transfer:HomeDirectory", "reports/alice");
    check(&s, no_slash, Allow("transfer-role", "Objects"));
    // LOGICAL home without an Entry "/": the variables are undefined.
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::reports/alice/q1.csv"),
        Blocked("transfer-role", "Objects"),
    );
    check(
        &s,
        r("s3:ListBucket", "arn:aws:s3:::reports").extra("s3:prefix", "alice/"),
        Blocked("transfer-role", "List"),
    );
}

/// IAM User Guide, "IAM tutorial: Define permissions to access AWS resources
/// based on tags" (ABAC), as a bucket policy for everyone in the account.
#[test]
fn abac_bucket_policy_with_principal_star() {
    let abac = bucket(
        "shared-bucket",
        r#"{
      "Version": "2012-10-17",
      "Statement": [{
        "Sid": "TeamFolders", "Effect": "Allow", "Principal": "*",
        "Action": ["s3:GetObject", "s3:PutObject"],
        "Resource": "arn:aws:s3:::shared/${aws:PrincipalTag/team}/*",
        "Condition": {
          "ArnLike": {"aws:PrincipalArn": "arn:aws:iam::000000000000:role/*"},
          "StringEquals": {"aws:PrincipalTag/team": ["blue", "red"]}
        }
      }]}"#,
    );
    let narrow = session(
        "narrow",
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}}"#,
    );
    let alone = set(&[], None, &[&abac]);
    let with_session = set(&[], Some(&narrow), &[&abac]);
    let got = Allow("shared-bucket", "TeamFolders");
    let blue = |res: &str| r("s3:GetObject", res).ctx("aws:PrincipalTag/team", "blue");

    check(&alone, blue("arn:aws:s3:::shared/blue/plan.txt"), got);
    check(&alone, blue("arn:aws:s3:::shared/red/plan.txt"), Implicit);
    check(
        &alone,
        r("s3:GetObject", "arn:aws:s3:::shared/red/plan.txt").ctx("aws:PrincipalTag/team", "red"),
        got,
    );
    check(
        &alone,
        r("s3:GetObject", "arn:aws:s3:::shared/green/x").ctx("aws:PrincipalTag/team", "green"),
        Implicit,
    );
    check(
        &alone,
        r("s3:GetObject", "arn:aws:s3:::shared/blue/plan.txt"),
        Implicit,
    );
    check(
        &alone,
        blue("arn:aws:s3:::shared/blue/x").principal("arn:aws:iam::111111111111:role/x"),
        Implicit,
    );
    // Tag key names are case-insensitive, tag values are not.
    check(
        &alone,
        r("s3:GetObject", "arn:aws:s3:::shared/blue/x").ctx("AWS:PrincipalTag/TEAM", "blue"),
        got,
    );
    check(
        &alone,
        r("s3:GetObject", "arn:aws:s3:::shared/blue/x").ctx("aws:PrincipalTag/team", "Blue"),
        Implicit,
    );
    check(
        &alone,
        blue("arn:aws:s3:::shared/blue/x")
            .ctx("aws:PrincipalArn", "arn:aws:iam::000000000000:user/u"),
        Implicit,
    );
    // A Principal-* grant counts on its own, whatever the session policy says.
    check(
        &with_session,
        blue("arn:aws:s3:::shared/blue/plan.txt"),
        got,
    );
    check(
        &with_session,
        r("s3:DeleteObject", "arn:aws:s3:::shared/blue/x").ctx("aws:PrincipalTag/team", "blue"),
        Implicit,
    );
}

/// AWS Transfer Family, "Prevent users from creating a directory in an S3
/// bucket" (Deny `s3:PutObject` on `arn:aws:s3:::bucket/*/`).
#[test]
fn mkdir_denied_by_trailing_slash() {
    let role = identity(
        "no-mkdir",
        r#"{"Version": "2012-10-17", "Statement": [
          {"Sid": "ReadWrite", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"],
           "Resource": "arn:aws:s3:::bucket/*"},
          {"Sid": "DenyMkdir", "Effect": "Deny", "Action": "s3:PutObject",
           "Resource": "arn:aws:s3:::bucket/*/"}]}"#,
    );
    let s = set(&[&role], None, &[]);
    check(
        &s,
        r("s3:PutObject", "arn:aws:s3:::bucket/dir/"),
        Deny("no-mkdir", "DenyMkdir"),
    );
    check(
        &s,
        r("s3:PutObject", "arn:aws:s3:::bucket/a/b/c/"),
        Deny("no-mkdir", "DenyMkdir"),
    );
    check(
        &s,
        r("s3:PutObject", "arn:aws:s3:::bucket/dir/file.txt"),
        Allow("no-mkdir", "ReadWrite"),
    );
    check(
        &s,
        r("s3:PutObject", "arn:aws:s3:::bucket/file.txt"),
        Allow("no-mkdir", "ReadWrite"),
    );
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::bucket/dir/"),
        Allow("no-mkdir", "ReadWrite"),
    );
}

/// IAM User Guide, "IAM JSON policy elements: NotAction" and "NotResource".
#[test]
fn not_action_and_not_resource() {
    let all = allow_all("admin");
    let read_only = identity(
        "read-only",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "DenyWrites", "Effect": "Deny",
            "NotAction": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"}}"#,
    );
    let s = set(&[&all, &read_only], None, &[]);
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::b/x"),
        Allow("admin", "All"),
    );
    check(
        &s,
        r("s3:getobject", "arn:aws:s3:::b/x"),
        Allow("admin", "All"),
    );
    check(
        &s,
        r("s3:ListBucket", "arn:aws:s3:::b"),
        Allow("admin", "All"),
    );
    check(
        &s,
        r("s3:PutObject", "arn:aws:s3:::b/x"),
        Deny("read-only", "DenyWrites"),
    );

    let fence = identity(
        "fence",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "OnlyReports", "Effect": "Deny", "Action": "s3:*",
            "NotResource": ["arn:aws:s3:::reports", "arn:aws:s3:::reports/*"]}}"#,
    );
    let s = set(&[&all, &fence], None, &[]);
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::other/x"),
        Deny("fence", "OnlyReports"),
    );
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::reports/x"),
        Allow("admin", "All"),
    );
    check(
        &s,
        r("s3:ListBucket", "arn:aws:s3:::reports"),
        Allow("admin", "All"),
    );
    // NotResource does not cover other services' actions here (Action s3:*).
    check(
        &s,
        r("sns:Publish", "arn:aws:sns:us-east-1:000000000000:t"),
        Allow("admin", "All"),
    );

    let not_secret = identity(
        "not-secret",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "ReadAllButSecret", "Effect": "Allow",
            "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::secret/*"}}"#,
    );
    let s = set(&[&not_secret], None, &[]);
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::public/x"),
        Allow("not-secret", "ReadAllButSecret"),
    );
    check(&s, r("s3:GetObject", "arn:aws:s3:::secret/x"), Implicit);

    let not_iam = identity(
        "not-iam",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "AllButIam", "Effect": "Allow",
            "NotAction": "iam:*", "Resource": "*"}}"#,
    );
    let s = set(&[&not_iam], None, &[]);
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::b/x"),
        Allow("not-iam", "AllButIam"),
    );
    check(
        &s,
        r("IAM:CreateUser", "arn:aws:iam::000000000000:user/u"),
        Implicit,
    );

    // NotResource needing an undefined variable: an Allow grants nothing...
    let home_only_not = identity(
        "nr-var",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "AllButPrivate", "Effect": "Allow",
            "Action": "s3:GetObject", "NotResource": "arn:aws:s3:::${transfer:HomeBucket}/private/*"}}"#,
    );
    let s = set(&[&home_only_not], None, &[]);
    check(&s, r("s3:GetObject", "arn:aws:s3:::b/x"), Implicit);
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::b/x").ctx("transfer:HomeBucket", "b"),
        Allow("nr-var", "AllButPrivate"),
    );
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::b/private/x").ctx("transfer:HomeBucket", "b"),
        Implicit,
    );
    // ... and a Deny denies nothing.
    let outside_home = identity(
        "outside-home",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "DenyOutsideHome", "Effect": "Deny",
            "Action": "s3:*", "NotResource": "arn:aws:s3:::${transfer:HomeBucket}/*"}}"#,
    );
    let s = set(&[&all, &outside_home], None, &[]);
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::b/x"),
        Allow("admin", "All"),
    );
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::c/x").ctx("transfer:HomeBucket", "b"),
        Deny("outside-home", "DenyOutsideHome"),
    );
}

/// IAM User Guide, "AWS: Denies access to AWS based on the source IP".
#[test]
fn deny_with_not_ip_address() {
    let all = allow_all("admin");
    let ip = identity(
        "ip-fence",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "DenyOutsideNetworks", "Effect": "Deny",
            "Action": "*", "Resource": "*",
            "Condition": {"NotIpAddress": {"aws:SourceIp": ["192.0.2.0/24", "203.0.113.0/24", "2001:db8::/32"]}}}}"#,
    );
    let s = set(&[&all, &ip], None, &[]);
    let deny = Deny("ip-fence", "DenyOutsideNetworks");
    let get = || r("s3:GetObject", "arn:aws:s3:::b/x");
    check(
        &s,
        get().ctx("aws:SourceIp", "192.0.2.10"),
        Allow("admin", "All"),
    );
    check(
        &s,
        get().ctx("aws:SourceIp", "203.0.113.255"),
        Allow("admin", "All"),
    );
    check(&s, get().ctx("aws:SourceIp", "198.51.100.1"), deny);
    check(
        &s,
        get().ctx("aws:SourceIp", "2001:db8::1"),
        Allow("admin", "All"),
    );
    check(&s, get().ctx("aws:SourceIp", "2001:db9::1"), deny);
    check(
        &s,
        get().ctx("aws:SourceIp", "::ffff:192.0.2.10"),
        Allow("admin", "All"),
    );
    // A negated operator on a missing key is true (AWS: "the condition is true").
    check(&s, get(), deny);
    check(&s, get().ctx("aws:SourceIp", "not-an-ip"), deny);

    let single = identity(
        "one-host",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "FromBastion", "Effect": "Allow",
            "Action": "s3:*", "Resource": "*",
            "Condition": {"IpAddress": {"aws:SourceIp": "203.0.113.5"}}}}"#,
    );
    let s = set(&[&single], None, &[]);
    check(
        &s,
        get().ctx("aws:SourceIp", "203.0.113.5"),
        Allow("one-host", "FromBastion"),
    );
    check(&s, get().ctx("aws:SourceIp", "203.0.113.6"), Implicit);
    check(&s, get(), Implicit);
}

/// Amazon S3 User Guide, "Bucket policy examples": deny requests that do not
/// use TLS (`aws:SecureTransport` false). Also IAM "Boolean condition
/// operators" and "...IfExists".
#[test]
fn bool_secure_transport() {
    let role = transfer_role("bucket");
    let tls_string = bucket(
        "tls-only",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "DenyInsecure", "Effect": "Deny",
            "Principal": "*", "Action": "s3:*",
            "Resource": ["arn:aws:s3:::bucket", "arn:aws:s3:::bucket/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}}"#,
    );
    let tls_bool = bucket(
        "tls-only-bool",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "DenyInsecure", "Effect": "Deny",
            "Principal": {"AWS": "*"}, "Action": "s3:*", "Resource": "arn:aws:s3:::bucket/*",
            "Condition": {"Bool": {"aws:SecureTransport": false}}}}"#,
    );
    let get = || r("s3:GetObject", "arn:aws:s3:::bucket/x");
    let ok = Allow("transfer-role", "HomeDirObjectAccess");
    for (policy, name) in [(&tls_string, "tls-only"), (&tls_bool, "tls-only-bool")] {
        let s = set(&[&role], None, &[policy]);
        check(&s, get().ctx("aws:SecureTransport", "true"), ok);
        check(&s, get().ctx("aws:SecureTransport", "TRUE"), ok);
        check(
            &s,
            get().ctx("aws:SecureTransport", "false"),
            Deny(name, "DenyInsecure"),
        );
        // Bool is a positive operator: a missing key does not match.
        check(&s, get(), ok);
    }

    let mfa = identity(
        "mfa",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "UnlessNoMfa", "Effect": "Allow",
            "Action": "s3:*", "Resource": "*",
            "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "true"}}}}"#,
    );
    let s = set(&[&mfa], None, &[]);
    check(&s, get(), Allow("mfa", "UnlessNoMfa"));
    check(
        &s,
        get().ctx("aws:MultiFactorAuthPresent", "true"),
        Allow("mfa", "UnlessNoMfa"),
    );
    check(
        &s,
        get().ctx("aws:MultiFactorAuthPresent", "false"),
        Implicit,
    );
    check(
        &s,
        get().ctx("aws:MultiFactorAuthPresent", "maybe"),
        Implicit,
    );
}

/// IAM User Guide, "AWS: Allows access within specific dates" and "Date
/// condition operators".
#[test]
fn dates_and_current_time() {
    let window = identity(
        "window",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "Q2", "Effect": "Allow",
            "Action": "s3:*", "Resource": "*",
            "Condition": {
              "DateGreaterThan": {"aws:CurrentTime": "2020-04-01T00:00:00Z"},
              "DateLessThan": {"aws:CurrentTime": "2020-06-30T23:59:59Z"}}}}"#,
    );
    let s = set(&[&window], None, &[]);
    let get = || r("s3:GetObject", "arn:aws:s3:::b/x");
    let ok = Allow("window", "Q2");
    check(&s, get().at(datetime!(2020-05-01 00:00:00 UTC)), ok);
    check(&s, get().at(datetime!(2020-07-01 00:00:00 UTC)), Implicit);
    check(&s, get().at(datetime!(2020-06-30 23:59:59 UTC)), Implicit);
    check(&s, get().at(datetime!(2020-06-30 23:59:58.999 UTC)), ok);
    check(&s, get().at(datetime!(2020-03-31 23:00:00 UTC)), Implicit);
    check(&s, get().at(datetime!(2020-05-01 01:00:00 +02:00)), ok);
    // `extra` overrides the request time (as a test harness would).
    check(
        &s,
        get().extra("aws:CurrentTime", "2020-05-01T00:00:00Z"),
        ok,
    );
    check(&s, get().extra("aws:CurrentTime", "not a date"), Implicit);

    let epoch = identity(
        "epoch",
        r#"{"Version": "2012-10-17", "Statement": [
            {"Sid": "Before", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
             "Condition": {"DateLessThanEquals": {"aws:EpochTime": 1714564800}}},
            {"Sid": "May", "Effect": "Allow", "Action": "s3:PutObject", "Resource": "*",
             "Condition": {"StringLike": {"aws:CurrentTime": "2024-05-*"}}},
            {"Sid": "Day", "Effect": "Allow", "Action": "s3:DeleteObject", "Resource": "*",
             "Condition": {"DateGreaterThanEquals": {"aws:CurrentTime": "2024-05-01"}}}]}"#,
    );
    let s = set(&[&epoch], None, &[]);
    check(&s, get(), Allow("epoch", "Before"));
    check(&s, get().at(datetime!(2024-05-01 12:00:01 UTC)), Implicit);
    check(
        &s,
        r("s3:PutObject", "arn:aws:s3:::b/x"),
        Allow("epoch", "May"),
    );
    check(
        &s,
        r("s3:PutObject", "arn:aws:s3:::b/x").at(datetime!(2024-06-01 00:00:00 UTC)),
        Implicit,
    );
    check(
        &s,
        r("s3:DeleteObject", "arn:aws:s3:::b/x"),
        Allow("epoch", "Day"),
    );
    check(
        &s,
        r("s3:DeleteObject", "arn:aws:s3:::b/x").at(datetime!(2024-04-30 23:59:59 UTC)),
        Implicit,
    );
}

/// IAM User Guide, "Condition operator to check existence of condition keys"
/// (`Null`).
#[test]
fn null_operator() {
    let all = allow_all("admin");
    let need_tag = identity(
        "need-tag",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "DenyUntagged", "Effect": "Deny",
            "Action": "*", "Resource": "*", "Condition": {"Null": {"aws:PrincipalTag/team": "true"}}}}"#,
    );
    let s = set(&[&all, &need_tag], None, &[]);
    let get = || r("s3:GetObject", "arn:aws:s3:::b/x");
    check(&s, get(), Deny("need-tag", "DenyUntagged"));
    check(
        &s,
        get().ctx("aws:PrincipalTag/team", "blue"),
        Allow("admin", "All"),
    );

    let listing = identity(
        "listing",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "ListWithPrefix", "Effect": "Allow",
            "Action": "s3:ListBucket", "Resource": "*", "Condition": {"Null": {"s3:prefix": false}}}}"#,
    );
    let s = set(&[&listing], None, &[]);
    check(
        &s,
        r("s3:ListBucket", "arn:aws:s3:::b").extra("s3:prefix", "x/"),
        Allow("listing", "ListWithPrefix"),
    );
    check(
        &s,
        r("s3:ListBucket", "arn:aws:s3:::b").extra("s3:prefix", ""),
        Allow("listing", "ListWithPrefix"),
    );
    check(&s, r("s3:ListBucket", "arn:aws:s3:::b"), Implicit);
}

/// IAM User Guide, "Multivalued context key examples" and "Set operators for
/// multivalued context keys" (`aws:TagKeys`).
#[test]
fn set_operators() {
    let all = allow_all("admin");
    let deny_tags = identity(
        "deny-tags",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "DenyRestrictedTags", "Effect": "Deny",
            "Action": ["s3:PutObject"], "Resource": ["*"],
            "Condition": {"ForAllValues:StringNotLike": {"aws:TagKeys": "key1*"}}}}"#,
    );
    let s = set(&[&all, &deny_tags], None, &[]);
    let put = |keys: &[&str]| r("s3:PutObject", "arn:aws:s3:::b/x").ctx_multi("aws:TagKeys", keys);
    let denied = Deny("deny-tags", "DenyRestrictedTags");
    check(&s, put(&["key1:legal"]), Allow("admin", "All"));
    check(
        &s,
        put(&["key1:hr", "key1:personnel"]),
        Allow("admin", "All"),
    );
    check(&s, put(&["key2:audit"]), denied);
    check(&s, put(&["key1:a", "key2:b"]), Allow("admin", "All"));
    // ForAllValues on a missing (or empty) key is true.
    check(&s, put(&[]), denied);
    check(&s, r("s3:PutObject", "arn:aws:s3:::b/x"), denied);

    let only = identity(
        "only-these",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "AllowedKeys", "Effect": "Allow",
            "Action": "s3:PutObject", "Resource": "*",
            "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["environment", "cost-center"]}}}}"#,
    );
    let s = set(&[&only], None, &[]);
    check(
        &s,
        put(&["environment"]),
        Allow("only-these", "AllowedKeys"),
    );
    check(
        &s,
        put(&["environment", "cost-center"]),
        Allow("only-these", "AllowedKeys"),
    );
    check(&s, put(&["environment", "owner"]), Implicit);
    check(
        &s,
        r("s3:PutObject", "arn:aws:s3:::b/x"),
        Allow("only-these", "AllowedKeys"),
    );

    let any = identity(
        "any-of",
        r#"{"Version": "2012-10-17", "Statement": [
            {"Sid": "AnyKey", "Effect": "Allow", "Action": "s3:PutObject", "Resource": "*",
             "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": ["environment", "cost-center"]}}},
            {"Sid": "AnyOther", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
             "Condition": {"ForAnyValue:StringNotEquals": {"aws:TagKeys": "environment"}}}]}"#,
    );
    let s = set(&[&any], None, &[]);
    check(
        &s,
        put(&["owner", "environment"]),
        Allow("any-of", "AnyKey"),
    );
    check(&s, put(&["owner"]), Implicit);
    // ForAnyValue on a missing key is false.
    check(&s, r("s3:PutObject", "arn:aws:s3:::b/x"), Implicit);
    let get = |keys: &[&str]| r("s3:GetObject", "arn:aws:s3:::b/x").ctx_multi("aws:TagKeys", keys);
    check(
        &s,
        get(&["environment", "owner"]),
        Allow("any-of", "AnyOther"),
    );
    check(&s, get(&["environment"]), Implicit);
    check(&s, r("s3:GetObject", "arn:aws:s3:::b/x"), Implicit);

    // No set operator on a multi-valued key: any value may match.
    let plain = identity(
        "plain",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "Plain", "Effect": "Allow",
            "Action": "s3:PutObject", "Resource": "*",
            "Condition": {"StringEquals": {"aws:TagKeys": "b"}}}}"#,
    );
    let s = set(&[&plain], None, &[]);
    check(&s, put(&["a", "b"]), Allow("plain", "Plain"));
    check(&s, put(&["a", "c"]), Implicit);
}

/// IAM User Guide, "...IfExists condition operators".
#[test]
fn if_exists() {
    let dept = identity(
        "dept",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "FinanceOrUntagged", "Effect": "Allow",
            "Action": "s3:*", "Resource": "*",
            "Condition": {"StringEqualsIfExists": {"aws:PrincipalTag/department": "finance"}}}}"#,
    );
    let s = set(&[&dept], None, &[]);
    let get = || r("s3:GetObject", "arn:aws:s3:::b/x");
    check(&s, get(), Allow("dept", "FinanceOrUntagged"));
    check(
        &s,
        get().ctx("aws:PrincipalTag/department", "finance"),
        Allow("dept", "FinanceOrUntagged"),
    );
    check(&s, get().ctx("aws:PrincipalTag/department", "hr"), Implicit);

    let all = allow_all("admin");
    let sftp_only = identity(
        "sftp-only",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "DenyOtherProtocols", "Effect": "Deny",
            "Action": "s3:*", "Resource": "*",
            "Condition": {"StringNotEqualsIfExists": {"transfer:Protocol": "SFTP"}}}}"#,
    );
    let s = set(&[&all, &sftp_only], None, &[]);
    check(
        &s,
        get().ctx("transfer:Protocol", "SFTP"),
        Allow("admin", "All"),
    );
    check(
        &s,
        get().ctx("transfer:Protocol", "FTPS"),
        Deny("sftp-only", "DenyOtherProtocols"),
    );
    // IfExists on a missing key is true, so this Deny applies.
    check(&s, get(), Deny("sftp-only", "DenyOtherProtocols"));

    let max = identity(
        "max-keys",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "SmallPages", "Effect": "Allow",
            "Action": "s3:ListBucket", "Resource": "*",
            "Condition": {"NumericLessThanEqualsIfExists": {"s3:max-keys": "100"}}}}"#,
    );
    let s = set(&[&max], None, &[]);
    check(
        &s,
        r("s3:ListBucket", "arn:aws:s3:::b"),
        Allow("max-keys", "SmallPages"),
    );
    check(
        &s,
        r("s3:ListBucket", "arn:aws:s3:::b").extra("s3:max-keys", "1000"),
        Implicit,
    );
}

/// IAM User Guide, "IAM policy elements: Variables and tags" ("Specifying
/// default values", "Special characters", "Policy variables with no value").
#[test]
fn variable_defaults_escapes_and_versions() {
    let shared = identity(
        "shared",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "TeamOrCompany", "Effect": "Allow",
            "Action": "s3:GetObject", "Resource": "arn:aws:s3:::shared/${aws:PrincipalTag/team, 'company-wide'}/*"}}"#,
    );
    let s = set(&[&shared], None, &[]);
    let ok = Allow("shared", "TeamOrCompany");
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::shared/blue/x").ctx("aws:PrincipalTag/team", "blue"),
        ok,
    );
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::shared/company-wide/x"),
        ok,
    );
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::shared/blue/x"),
        Implicit,
    );
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::shared/company-wide/x")
            .ctx("aws:PrincipalTag/team", "blue"),
        Implicit,
    );

    let escapes = identity(
        "escapes",
        r#"{"Version": "2012-10-17", "Statement": [
            {"Sid": "Star", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/${*}lit${?}/*"},
            {"Sid": "Dollar", "Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::b/${$}home/*"}]}"#,
    );
    let s = set(&[&escapes], None, &[]);
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::b/*lit?/x"),
        Allow("escapes", "Star"),
    );
    check(&s, r("s3:GetObject", "arn:aws:s3:::b/xlity/x"), Implicit);
    check(
        &s,
        r("s3:PutObject", "arn:aws:s3:::b/$home/x"),
        Allow("escapes", "Dollar"),
    );
    check(&s, r("s3:PutObject", "arn:aws:s3:::b/home/x"), Implicit);

    let cond_default = identity(
        "cond-default",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "PublicOrHome", "Effect": "Allow",
            "Action": "s3:ListBucket", "Resource": "*",
            "Condition": {"StringEquals": {"s3:prefix": "${transfer:HomeFolder, 'public'}/"}}}}"#,
    );
    let s = set(&[&cond_default], None, &[]);
    let list = |p: &'static str| r("s3:ListBucket", "arn:aws:s3:::b").extra("s3:prefix", p);
    check(&s, list("public/"), Allow("cond-default", "PublicOrHome"));
    check(
        &s,
        list("alice/").ctx("transfer:HomeFolder", "alice"),
        Allow("cond-default", "PublicOrHome"),
    );
    check(
        &s,
        list("public/").ctx("transfer:HomeFolder", "alice"),
        Implicit,
    );

    // Version 2008-10-17 (and no Version at all): `${...}` is literal text.
    for (name, version) in [("v2008", r#""Version": "2008-10-17","#), ("no-version", "")] {
        let old = identity(
            name,
            &format!(
                r#"{{{version} "Statement": {{"Sid": "Literal", "Effect": "Allow", "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::b/${{transfer:UserName}}/*"}}}}"#
            ),
        );
        let s = set(&[&old], None, &[]);
        check(
            &s,
            r("s3:GetObject", "arn:aws:s3:::b/alice/x").ctx("transfer:UserName", "alice"),
            Implicit,
        );
        check(
            &s,
            r("s3:GetObject", "arn:aws:s3:::b/${transfer:UserName}/x"),
            Allow(name, "Literal"),
        );
    }
}

/// IAM User Guide, "Policy variables with no value": a statement needing an
/// undefined variable does not match (an Allow grants nothing, a Deny does
/// not deny).
#[test]
fn undefined_variables() {
    let all = allow_all("admin");
    let protect = identity(
        "protect",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "KeepProtected", "Effect": "Deny",
            "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::b/${aws:PrincipalTag/protected}/*"}}"#,
    );
    let s = set(&[&all, &protect], None, &[]);
    check(
        &s,
        r("s3:DeleteObject", "arn:aws:s3:::b/x/y"),
        Allow("admin", "All"),
    );
    check(
        &s,
        r("s3:DeleteObject", "arn:aws:s3:::b/x/y").ctx("aws:PrincipalTag/protected", "x"),
        Deny("protect", "KeepProtected"),
    );

    let user_prefix = identity(
        "user-prefix",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "OwnPrefix", "Effect": "Allow",
            "Action": "s3:ListBucket", "Resource": "*",
            "Condition": {"StringEquals": {"s3:prefix": "${transfer:UserName}/"}}}}"#,
    );
    let s = set(&[&user_prefix], None, &[]);
    check(
        &s,
        r("s3:ListBucket", "arn:aws:s3:::b").extra("s3:prefix", "/"),
        Implicit,
    );
    check(
        &s,
        r("s3:ListBucket", "arn:aws:s3:::b")
            .extra("s3:prefix", "bob/")
            .ctx("transfer:UserName", "bob"),
        Allow("user-prefix", "OwnPrefix"),
    );
    // A multi-valued key is not a variable: it counts as undefined.
    check(
        &s,
        r("s3:ListBucket", "arn:aws:s3:::b")
            .extra("s3:prefix", "a/")
            .ctx_multi("transfer:UserName", &["a", "b"]),
        Implicit,
    );

    let list_all = identity(
        "list-all",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "List", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}}"#,
    );
    let outside = identity(
        "outside",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "DenyOutsideHome", "Effect": "Deny",
            "Action": "s3:ListBucket", "Resource": "*",
            "Condition": {"StringNotLike": {"s3:prefix": "${transfer:HomeFolder}/*"}}}}"#,
    );
    let s = set(&[&list_all, &outside], None, &[]);
    let list = |p: &'static str| r("s3:ListBucket", "arn:aws:s3:::b").extra("s3:prefix", p);
    check(&s, list("x/"), Allow("list-all", "List"));
    check(
        &s,
        list("bob/").ctx("transfer:HomeFolder", "alice"),
        Deny("outside", "DenyOutsideHome"),
    );
    check(
        &s,
        list("alice/x").ctx("transfer:HomeFolder", "alice"),
        Allow("list-all", "List"),
    );

    // Per-request keys serve as variables too.
    let by_prefix = identity(
        "by-prefix",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "UnderPrefix", "Effect": "Allow",
            "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/${s3:prefix}*"}}"#,
    );
    let s = set(&[&by_prefix], None, &[]);
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::b/docs/x").extra("s3:prefix", "docs/"),
        Allow("by-prefix", "UnderPrefix"),
    );
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::b/other/x").extra("s3:prefix", "docs/"),
        Implicit,
    );
}

/// IAM User Guide, "Amazon Resource Name (ARN) condition operators": each
/// of the six components is compared separately.
#[test]
fn arn_like_components() {
    let arn_bucket = bucket(
        "arn-bucket",
        r#"{"Version": "2012-10-17", "Statement": [
            {"Sid": "RoleX", "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
             "Resource": "arn:aws:s3:::shared/*",
             "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/x"}}},
            {"Sid": "AnyRoleEquals", "Effect": "Allow", "Principal": "*", "Action": "s3:PutObject",
             "Resource": "arn:aws:s3:::shared/*",
             "Condition": {"ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::000000000000:role/*"}}},
            {"Sid": "OneChar", "Effect": "Allow", "Principal": "*", "Action": "s3:DeleteObject",
             "Resource": "arn:aws:s3:::shared/*",
             "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::00000000000?:role/x"}}},
            {"Sid": "SourceArn", "Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket",
             "Resource": "*",
             "Condition": {"ArnLike": {"custom:SourceArn": "arn:aws:sns:*:*:topic"}}}]}"#,
    );
    let s = set(&[], None, &[&arn_bucket]);
    let get = |p: &'static str| r("s3:GetObject", "arn:aws:s3:::shared/f").principal(p);
    check(
        &s,
        get("arn:aws:iam::000000000000:role/x"),
        Allow("arn-bucket", "RoleX"),
    );
    check(
        &s,
        get("arn:aws:iam::123456789012:role/x"),
        Allow("arn-bucket", "RoleX"),
    );
    check(&s, get("arn:aws:iam::000000000000:role/xy"), Implicit);
    // A whole-string glob would let `*` swallow "000:evil"; components do not.
    check(&s, get("arn:aws:iam::000:evil:role/x"), Implicit);
    check(&s, get("arn:aws:sts::000000000000:role/x"), Implicit);
    check(
        &s,
        r("s3:PutObject", "arn:aws:s3:::shared/f"),
        Allow("arn-bucket", "AnyRoleEquals"),
    );
    check(
        &s,
        r("s3:PutObject", "arn:aws:s3:::shared/f").principal("arn:aws:iam::000000000000:user/u"),
        Implicit,
    );
    check(
        &s,
        r("s3:DeleteObject", "arn:aws:s3:::shared/f").principal("arn:aws:iam::000000000009:role/x"),
        Allow("arn-bucket", "OneChar"),
    );
    check(
        &s,
        r("s3:DeleteObject", "arn:aws:s3:::shared/f")
            .principal("arn:aws:iam::0000000000099:role/x"),
        Implicit,
    );
    let list =
        |v: &'static str| r("s3:ListBucket", "arn:aws:s3:::shared").extra("custom:SourceArn", v);
    check(
        &s,
        list("arn:aws:sns:us-east-1:000000000000:topic"),
        Allow("arn-bucket", "SourceArn"),
    );
    check(
        &s,
        list("arn:aws:sns:us-east-1:000000000000:topic:extra"),
        Implicit,
    );
    check(&s, list("not-an-arn"), Implicit);

    let all = allow_all("admin");
    let admins = identity(
        "admins-only",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "DenyNonAdmins", "Effect": "Deny",
            "Action": "s3:DeleteBucket", "Resource": "*",
            "Condition": {"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::000000000000:role/admin-*"}}}}"#,
    );
    let s = set(&[&all, &admins], None, &[]);
    let del = |p: &'static str| r("s3:DeleteBucket", "arn:aws:s3:::b").principal(p);
    check(
        &s,
        del("arn:aws:iam::000000000000:role/admin-1"),
        Allow("admin", "All"),
    );
    check(
        &s,
        del("arn:aws:iam::000000000000:role/user"),
        Deny("admins-only", "DenyNonAdmins"),
    );
    // aws:PrincipalArn from the context wins over the request's principal.
    check(
        &s,
        del("arn:aws:iam::000000000000:role/user")
            .ctx("aws:PrincipalArn", "arn:aws:iam::000000000000:role/admin-2"),
        Allow("admin", "All"),
    );
}

/// IAM User Guide, "IAM JSON policy elements: Action" (case-insensitive) and
/// "Resource" (case-sensitive); "String condition operators".
#[test]
fn case_sensitivity() {
    let p = identity(
        "cases",
        r#"{"Version": "2012-10-17", "Statement": [
            {"Sid": "Lower", "Effect": "Allow", "Action": "S3:getobject", "Resource": "arn:aws:s3:::Reports/*"},
            {"Sid": "Prefix", "Effect": "Allow", "Action": "s3:List*", "Resource": "*"},
            {"Sid": "One", "Effect": "Allow", "Action": "s3:?utObject", "Resource": "*"}]}"#,
    );
    let s = set(&[&p], None, &[]);
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::Reports/x"),
        Allow("cases", "Lower"),
    );
    check(&s, r("s3:GetObject", "arn:aws:s3:::reports/x"), Implicit);
    check(
        &s,
        r("S3:LISTBUCKETVERSIONS", "arn:aws:s3:::b"),
        Allow("cases", "Prefix"),
    );
    check(
        &s,
        r("s3:putobject", "arn:aws:s3:::b/x"),
        Allow("cases", "One"),
    );
    check(&s, r("s3:PPutObject", "arn:aws:s3:::b/x"), Implicit);

    let strings = identity(
        "strings",
        r#"{"Version": "2012-10-17", "Statement": [
            {"Sid": "Exact", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
             "Condition": {"StringEquals": {"aws:PrincipalTag/team": "Blue"}}},
            {"Sid": "Folded", "Effect": "Allow", "Action": "s3:PutObject", "Resource": "*",
             "Condition": {"StringEqualsIgnoreCase": {"aws:PrincipalTag/team": "blue"}}},
            {"Sid": "NotFolded", "Effect": "Allow", "Action": "s3:DeleteObject", "Resource": "*",
             "Condition": {"StringNotEqualsIgnoreCase": {"aws:PrincipalTag/team": "RED"}}}]}"#,
    );
    let s = set(&[&strings], None, &[]);
    let team = |a, t| r(a, "arn:aws:s3:::b/x").ctx("aws:PrincipalTag/team", t);
    check(&s, team("s3:GetObject", "Blue"), Allow("strings", "Exact"));
    check(&s, team("s3:GetObject", "blue"), Implicit);
    check(&s, team("s3:PutObject", "BLUE"), Allow("strings", "Folded"));
    check(&s, team("s3:DeleteObject", "red"), Implicit);
    check(
        &s,
        team("s3:DeleteObject", "blue"),
        Allow("strings", "NotFolded"),
    );
    check(
        &s,
        r("s3:DeleteObject", "arn:aws:s3:::b/x"),
        Allow("strings", "NotFolded"),
    );
}

/// IAM User Guide, "Policy evaluation logic" and "Session policies": the
/// session policy limits identity-based grants and grants to the role ARN
/// in a resource policy; it never grants by itself; explicit denies win.
#[test]
fn session_and_resource_policy_interplay() {
    let role = transfer_role("reports");
    let scope = session(
        "scope-down",
        r#"{"Version": "2012-10-17", "Statement": [
            {"Sid": "ReadOnly", "Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket"], "Resource": "*"},
            {"Sid": "DenyOthers", "Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::reports/private/*"}]}"#,
    );
    let broad_session = session(
        "broad",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "Everything", "Effect": "Allow", "Action": "*", "Resource": "*"}}"#,
    );
    let s = set(&[&role], Some(&scope), &[]);
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::reports/q1.csv"),
        Allow("transfer-role", "HomeDirObjectAccess"),
    );
    check(
        &s,
        r("s3:PutObject", "arn:aws:s3:::reports/q1.csv"),
        Blocked("transfer-role", "HomeDirObjectAccess"),
    );
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::reports/private/x"),
        Deny("scope-down", "DenyOthers"),
    );
    // The session policy never grants beyond the role.
    let s = set(&[], Some(&broad_session), &[]);
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::reports/q1.csv"),
        Implicit,
    );
    let s = set(&[&role], Some(&broad_session), &[]);
    check(&s, r("s3:GetObject", "arn:aws:s3:::other/q1.csv"), Implicit);

    let to_role = bucket(
        "to-role",
        &format!(
            r#"{{"Version": "2012-10-17", "Statement": {{"Sid": "RoleWrites", "Effect": "Allow",
                "Principal": {{"AWS": ["arn:aws:iam::000000000000:role/other", "{ROLE}"]}},
                "Action": "s3:PutObject", "Resource": "arn:aws:s3:::drop/*"}}}}"#
        ),
    );
    let put = || r("s3:PutObject", "arn:aws:s3:::drop/in.csv");
    check(
        &set(&[], None, &[&to_role]),
        put(),
        Allow("to-role", "RoleWrites"),
    );
    check(
        &set(&[], Some(&scope), &[&to_role]),
        put(),
        Blocked("to-role", "RoleWrites"),
    );
    check(
        &set(&[], Some(&broad_session), &[&to_role]),
        put(),
        Allow("to-role", "RoleWrites"),
    );
    check(
        &set(&[], None, &[&to_role]),
        put().principal("arn:aws:iam::000000000000:role/third"),
        Implicit,
    );

    let to_everyone = bucket(
        "to-everyone",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "PublicRead", "Effect": "Allow",
            "Principal": {"AWS": "*"}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::drop/*"}}"#,
    );
    let narrow = session(
        "narrow",
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}}"#,
    );
    check(
        &set(&[], Some(&narrow), &[&to_everyone]),
        r("s3:GetObject", "arn:aws:s3:::drop/in.csv"),
        Allow("to-everyone", "PublicRead"),
    );

    let to_account = bucket(
        "to-account",
        r#"{"Version": "2012-10-17", "Statement": [
            {"Sid": "Delegate", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:root"},
             "Action": "s3:*", "Resource": "arn:aws:s3:::drop/*"},
            {"Sid": "NoDeletes", "Effect": "Deny", "Principal": {"AWS": "000000000000"},
             "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::drop/*"}]}"#,
    );
    let drop_all = identity(
        "drop-all",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "Drop", "Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::drop/*"}}"#,
    );
    // An account principal delegates to identity policies: no grant alone.
    check(&set(&[], None, &[&to_account]), put(), Implicit);
    check(
        &set(&[&drop_all], None, &[&to_account]),
        put(),
        Allow("drop-all", "Drop"),
    );
    check(
        &set(&[&drop_all], None, &[&to_account]),
        r("s3:DeleteObject", "arn:aws:s3:::drop/x"),
        Deny("to-account", "NoDeletes"),
    );
    check(
        &set(&[&drop_all], None, &[&to_account]),
        r("s3:DeleteObject", "arn:aws:s3:::drop/x").principal("arn:aws:iam::111111111111:role/r"),
        Allow("drop-all", "Drop"),
    );

    // Explicit deny in a bucket policy beats an identity allow; an identity
    // deny beats a Principal-* bucket allow.
    let no_private = bucket(
        "no-private",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "DenyPrivate", "Effect": "Deny",
            "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::reports/private/*"}}"#,
    );
    check(
        &set(&[&role], None, &[&no_private]),
        r("s3:GetObject", "arn:aws:s3:::reports/private/x"),
        Deny("no-private", "DenyPrivate"),
    );
    check(
        &set(&[&role], None, &[&no_private]),
        r("s3:GetObject", "arn:aws:s3:::reports/public/x"),
        Allow("transfer-role", "HomeDirObjectAccess"),
    );
    let deny_drop = identity(
        "deny-drop",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "NoDrop", "Effect": "Deny", "Action": "*", "Resource": "arn:aws:s3:::drop/*"}}"#,
    );
    check(
        &set(&[&deny_drop], None, &[&to_everyone]),
        r("s3:GetObject", "arn:aws:s3:::drop/in.csv"),
        Deny("deny-drop", "NoDrop"),
    );

    // NotPrincipal: deny everyone except the admin role.
    let except_admin = bucket(
        "except-admin",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "OnlyAdmin", "Effect": "Deny",
            "NotPrincipal": {"AWS": "arn:aws:iam::000000000000:role/admin"},
            "Action": "s3:*", "Resource": "arn:aws:s3:::vault/*"}}"#,
    );
    let all = allow_all("admin");
    let s = set(&[&all], None, &[&except_admin]);
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::vault/x").principal("arn:aws:iam::000000000000:role/admin"),
        Allow("admin", "All"),
    );
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::vault/x"),
        Deny("except-admin", "OnlyAdmin"),
    );

    // A Deny naming another principal does not apply to ours.
    let deny_other = bucket(
        "deny-other",
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "NotYou", "Effect": "Deny",
            "Principal": {"AWS": "arn:aws:iam::000000000000:role/other"}, "Action": "s3:*", "Resource": "*"}}"#,
    );
    check(
        &set(&[&all], None, &[&deny_other]),
        r("s3:GetObject", "arn:aws:s3:::b/x"),
        Allow("admin", "All"),
    );
}

/// IAM User Guide, "Numeric condition operators" (`s3:max-keys`).
#[test]
fn numeric_operators() {
    let p = identity(
        "numbers",
        r#"{"Version": "2012-10-17", "Statement": [
            {"Sid": "AtMostTen", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*",
             "Condition": {"NumericLessThanEquals": {"s3:max-keys": "10"}}},
            {"Sid": "Exactly", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "*",
             "Condition": {"NumericEquals": {"custom:n": [1, 2.5]}}},
            {"Sid": "NotSeven", "Effect": "Allow", "Action": "s3:PutObject", "Resource": "*",
             "Condition": {"NumericNotEquals": {"custom:n": 7}, "NumericGreaterThan": {"custom:m": -1}}}]}"#,
    );
    let s = set(&[&p], None, &[]);
    let list = |n: &'static str| r("s3:ListBucket", "arn:aws:s3:::b").extra("s3:max-keys", n);
    check(&s, list("10"), Allow("numbers", "AtMostTen"));
    check(&s, list("9.5"), Allow("numbers", "AtMostTen"));
    check(&s, list("11"), Implicit);
    check(&s, list("ten"), Implicit);
    check(&s, r("s3:ListBucket", "arn:aws:s3:::b"), Implicit);
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::b/x").extra("custom:n", "2.5"),
        Allow("numbers", "Exactly"),
    );
    check(
        &s,
        r("s3:GetObject", "arn:aws:s3:::b/x").extra("custom:n", "2"),
        Implicit,
    );
    // Several operators AND; a negated operator on a missing key is true.
    check(
        &s,
        r("s3:PutObject", "arn:aws:s3:::b/x").extra("custom:m", "0"),
        Allow("numbers", "NotSeven"),
    );
    check(
        &s,
        r("s3:PutObject", "arn:aws:s3:::b/x")
            .extra("custom:m", "0")
            .extra("custom:n", "7"),
        Implicit,
    );
    check(
        &s,
        r("s3:PutObject", "arn:aws:s3:::b/x").extra("custom:n", "8"),
        Implicit,
    );
}

/// `Display` of decisions, as logged on `ACCESS_DENIED`.
#[test]
fn decision_display() {
    let role = identity(
        "reports-rw",
        r#"{"Version": "2012-10-17", "Statement": [
            {"Sid": "AllowRead", "Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::reports/*"},
            {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::reports/keep/*"}]}"#,
    );
    let scope = session(
        "scope-down",
        r#"{"Version": "2012-10-17", "Statement": [
            {"Sid": "Home", "Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::reports/alice/*"},
            {"Sid": "DenyOthers", "Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::reports/bob/*"}]}"#,
    );
    let s = set(&[&role], Some(&scope), &[]);
    let show = |action, res: &str| decide(&s, &r(action, res)).to_string();
    assert_eq!(
        show("s3:GetObject", "arn:aws:s3:::reports/alice/a"),
        r#"allowed by identity policy "reports-rw" statement "AllowRead""#
    );
    assert_eq!(
        show("s3:GetObject", "arn:aws:s3:::reports/bob/a"),
        r#"denied by session policy "scope-down" statement "DenyOthers""#
    );
    assert_eq!(
        show("s3:DeleteObject", "arn:aws:s3:::reports/keep/a"),
        r#"denied by identity policy "reports-rw" statement "Statement[1]""#
    );
    assert_eq!(
        show("s3:GetObject", "arn:aws:s3:::reports/x"),
        r#"implicit deny (allowed by identity policy "reports-rw" statement "AllowRead", but the session policy does not allow it)"#
    );
    assert_eq!(
        show("s3:GetObject", "arn:aws:s3:::other/x"),
        "implicit deny (no statement allows s3:GetObject on arn:aws:s3:::other/x)"
    );
    let d = decide(&s, &r("s3:GetObject", "arn:aws:s3:::reports/bob/a"));
    let deciding = d.deciding.unwrap();
    assert_eq!(deciding.kind, PolicyKind::Session);
    assert_eq!(deciding.effect, crate::Effect::Deny);
}

// ------------------------------------------------------------ parse errors

#[track_caller]
fn parse_err(kind: PolicyKind, json: &str, want: &str) {
    match Policy::parse("p", json, kind) {
        Ok(_) => panic!("want error {want:?}, but the policy parsed"),
        Err(e) => assert_eq!(e.to_string(), want),
    }
}

#[test]
fn parse_errors_name_statement_and_field() {
    use PolicyKind::{Identity, Resource, Session};
    let e = Policy::parse(
        "scope-down",
        r#"{"Version": "2012-10-17", "Statement": [
            {"Sid": "Home", "Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Sid": "AllowList", "Effect": "allow", "Action": "s3:ListBucket", "Resource": "*"}]}"#,
        Session,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"policy "scope-down": Statement[1] (Sid "AllowList"): Effect must be "Allow" or "Deny", got "allow""#
    );
    assert_eq!(e.policy(), "scope-down");
    assert_eq!(e.statement(), Some(r#"Statement[1] (Sid "AllowList")"#));
    assert_eq!(e.field(), Some("Effect"));

    parse_err(
        Identity,
        r#"{"Version": "2012-10-17", "Statements": []}"#,
        r#"policy "p": field "Statements" is unknown (a policy has Version, Id, Statement)"#,
    );
    parse_err(
        Identity,
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Actions": "s3:*", "Resource": "*"}}"#,
        r#"policy "p": Statement[0]: field "Actions" is unknown (a statement has Sid, Effect, Action, NotAction, Resource, NotResource, Principal, NotPrincipal, Condition)"#,
    );
    parse_err(
        Identity,
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*",
            "Condition": {"StringLikee": {"s3:prefix": "a"}}}}"#,
        r#"policy "p": Statement[0]: Condition operator "StringLikee" is unknown"#,
    );
    parse_err(
        Identity,
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "S", "Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}}"#,
        r#"policy "p": Statement[0] (Sid "S"): Principal is not allowed in an identity policy"#,
    );
    parse_err(
        Session,
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Deny", "NotPrincipal": {"AWS": "*"}, "Action": "s3:*", "Resource": "*"}}"#,
        r#"policy "p": Statement[0]: NotPrincipal is not allowed in a session policy"#,
    );
    parse_err(
        Resource,
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}}"#,
        r#"policy "p": Statement[0]: Principal (or NotPrincipal) is required in a resource policy"#,
    );
    parse_err(
        Identity,
        r#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Action": "s3:*", "Resource": "*"}]}"#,
        r#"policy "p": Statement[1]: Effect is required"#,
    );
    parse_err(
        Identity,
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*", "NotAction": "s3:Get*", "Resource": "*"}}"#,
        r#"policy "p": Statement[0]: Action and NotAction cannot both be present"#,
    );
    parse_err(
        Identity,
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*"}}"#,
        r#"policy "p": Statement[0]: Resource (or NotResource) is required"#,
    );
    parse_err(
        Identity,
        r#"{"Version": "2020-01-01", "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}}"#,
        r#"policy "p": Version must be "2012-10-17" or "2008-10-17", got "2020-01-01""#,
    );
    parse_err(
        Identity,
        r#"{"Version": "2012-10-17", "Statement": {"Sid": "N", "Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*",
            "Condition": {"NumericLessThan": {"s3:max-keys": "ten"}}}}"#,
        r#"policy "p": Statement[0] (Sid "N"): Condition.NumericLessThan.s3:max-keys value "ten" is not a number"#,
    );
    parse_err(
        Identity,
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/${transfer:UserName"}}"#,
        r#"policy "p": Statement[0]: Resource value "arn:aws:s3:::b/${transfer:UserName" has an unterminated policy variable "${" (no closing "}")"#,
    );
    parse_err(
        Identity,
        r#"{"Version": "2012-10-17", "Statement": [{"Sid": "A", "Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Sid": "A", "Effect": "Deny", "Action": "s3:*", "Resource": "*"}]}"#,
        r#"policy "p": Statement[1] (Sid "A"): Sid "A" is used by another statement"#,
    );
    parse_err(
        Identity,
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*",
            "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/33"}}}}"#,
        r#"policy "p": Statement[0]: Condition.IpAddress.aws:SourceIp value "10.0.0.0/33" is not an IP address or CIDR block"#,
    );
    parse_err(
        Identity,
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "GetObject", "Resource": "*"}}"#,
        r#"policy "p": Statement[0]: Action value "GetObject" is not of the form "service:action" (or "*")"#,
    );
    parse_err(
        Identity,
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "reports/*"}}"#,
        r#"policy "p": Statement[0]: Resource value "reports/*" is not an ARN (arn:...) or "*""#,
    );
    parse_err(
        Identity,
        r#"{"Version": "2012-10-17", "Statement": []}"#,
        r#"policy "p": Statement must not be an empty list"#,
    );
    parse_err(
        Identity,
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": [], "Resource": "*"}}"#,
        r#"policy "p": Statement[0]: Action must not be an empty list"#,
    );
    parse_err(
        Identity,
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*",
            "Condition": {"StringEquals": {"s3:prefix": null}}}}"#,
        r#"policy "p": Statement[0]: Condition.StringEquals.s3:prefix values must be strings, booleans or numbers, got null"#,
    );
    parse_err(
        Identity,
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*",
            "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*"}}}}"#,
        r#"policy "p": Statement[0]: Condition.ArnLike.aws:PrincipalArn value "arn:aws:iam::*" is not an ARN pattern: it has 5 colon-separated parts, an ARN has 6 (arn:partition:service:region:account:resource)"#,
    );
    parse_err(
        Identity,
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*",
            "Condition": {"NullIfExists": {"s3:prefix": "true"}}}}"#,
        r#"policy "p": Statement[0]: Condition operator "NullIfExists" is invalid: Null takes neither IfExists nor a set operator"#,
    );
    parse_err(
        Resource,
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:role/*"}, "Action": "s3:*", "Resource": "*"}}"#,
        r#"policy "p": Statement[0]: Principal.AWS value "arn:aws:iam::000000000000:role/*" has a wildcard: principals are named exactly (or "*")"#,
    );
    parse_err(
        Resource,
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Principal": "someone", "Action": "s3:*", "Resource": "*"}}"#,
        r#"policy "p": Statement[0]: Principal must be "*" or an object such as {"AWS": "arn:..."}, got "someone""#,
    );
    parse_err(
        Identity,
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*",
            "Condition": {"Bool": {"aws:SecureTransport": "yes"}}}}"#,
        r#"policy "p": Statement[0]: Condition.Bool.aws:SecureTransport value "yes" is not "true" or "false""#,
    );

    // JSON-level errors.
    let dup = Policy::parse(
        "p",
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Deny", "Effect": "Allow", "Action": "s3:*", "Resource": "*"}}"#,
        Identity,
    )
    .unwrap_err();
    assert!(
        dup.to_string()
            .starts_with(r#"policy "p": is not valid JSON: duplicate member "Effect""#),
        "{dup}"
    );
    let bad = Policy::parse("p", "{", Identity).unwrap_err();
    assert!(
        bad.to_string()
            .starts_with(r#"policy "p": is not valid JSON"#),
        "{bad}"
    );
    let big = format!("{{\"Id\": \"{}\"}}", "x".repeat(crate::MAX_POLICY_BYTES));
    let big = Policy::parse("p", &big, Identity).unwrap_err();
    assert!(big.to_string().contains("more than the limit"), "{big}");
    parse_err(
        Identity,
        "[]",
        r#"policy "p": must be a JSON object, got an array"#,
    );
}

#[test]
fn policy_from_value_accepts_string_or_object() {
    let doc = serde_json::json!({
        "Version": "2012-10-17",
        "Id": "home",
        "Statement": [{"Sid": "Home", "Effect": "Allow", "Action": "s3:*",
                       "Resource": "arn:aws:s3:::b/${transfer:UserName}/*"}]
    });
    let from_obj = Policy::from_value("obj", &doc, PolicyKind::Session).unwrap();
    let text = serde_json::Value::String(doc.to_string());
    let from_str = Policy::from_value("str", &text, PolicyKind::Session).unwrap();
    for p in [from_obj, from_str] {
        assert_eq!(p.id(), Some("home"));
        assert_eq!(p.kind(), PolicyKind::Session);
        assert_eq!(p.version(), crate::Version::V2012_10_17);
        assert_eq!(
            p.statements().collect::<Vec<_>>(),
            [("Home", crate::Effect::Allow)]
        );
    }
    let err = Policy::from_value("n", &serde_json::json!(42), PolicyKind::Session).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"policy "n": must be a JSON object or a string holding one, got a number"#
    );
    let err =
        Policy::from_value("s", &serde_json::json!("not json"), PolicyKind::Session).unwrap_err();
    assert!(
        err.to_string()
            .starts_with(r#"policy "s": is not valid JSON"#),
        "{err}"
    );
}

#[test]
fn tells_which_policies_test_object_tags() {
    let tagged = identity(
        "tagged",
        r#"{"Version":"2012-10-17","Statement":[
            {"Effect":"Allow","Action":"s3:ListBucket","Resource":"*"},
            {"Effect":"Allow","Action":"s3:GetObject","Resource":"*",
             "Condition":{"StringEquals":{"S3:ExistingObjectTag/classification":"public"}}}]}"#,
    );
    let plain = identity(
        "plain",
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*",
            "Condition":{"StringEquals":{"aws:PrincipalTag/team":"a"}}}}"#,
    );
    assert!(tagged.tests_condition_key_prefix("s3:ExistingObjectTag/"));
    assert!(!plain.tests_condition_key_prefix("s3:ExistingObjectTag/"));
    assert!(plain.tests_condition_key_prefix("aws:principaltag/"));
}

/// S3 User Guide, "Tagging and access control policies", example 1: read
/// only objects tagged `environment=production` (the key is per request).
#[test]
fn existing_object_tag_grants_reads_of_tagged_objects_only() {
    let p = identity(
        "tags",
        r#"{"Version":"2012-10-17","Statement":[{"Sid":"ProductionOnly","Effect":"Allow",
            "Action":"s3:GetObject","Resource":"arn:aws:s3:::awsexamplebucket1/*",
            "Condition":{"StringEquals":{"s3:ExistingObjectTag/environment":"production"}}}]}"#,
    );
    let s = set(&[&p], None, &[]);
    let object = "arn:aws:s3:::awsexamplebucket1/report.csv";
    check(
        &s,
        r("s3:GetObject", object).extra("s3:ExistingObjectTag/environment", "production"),
        Want::Allow("tags", "ProductionOnly"),
    );
    check(
        &s,
        r("s3:GetObject", object).extra("s3:ExistingObjectTag/environment", "staging"),
        Want::Implicit,
    );
    // An untagged object has no such key: the StringEquals fails.
    check(&s, r("s3:GetObject", object), Want::Implicit);
    // Another tag does not stand in for it.
    check(
        &s,
        r("s3:GetObject", object).extra("s3:ExistingObjectTag/owner", "production"),
        Want::Implicit,
    );
}
