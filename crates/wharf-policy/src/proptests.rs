//! Property tests: invariants of the evaluation logic over generated policy
//! sets, and the wildcard matcher against a reference implementation.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Value, json};
use time::macros::datetime;

use crate::matcher::{Case, Pattern};
use crate::variables::{Syntax, Var, tokenize};
use crate::{Context, Policy, PolicyKind, PolicySet, Reason, Request, evaluate};

const ROLE: &str = "arn:aws:iam::000000000000:role/r";

const ACTIONS: &[&str] = &[
    "s3:GetObject",
    "s3:PutObject",
    "s3:*",
    "*",
    "s3:Get*",
    "s3:?utObject",
    "s3:ListBucket",
];
const RESOURCES: &[&str] = &[
    "*",
    "arn:aws:s3:::b",
    "arn:aws:s3:::b/*",
    "arn:aws:s3:::b/a/*",
    "arn:aws:s3:::b/${transfer:UserName}/*",
    "arn:aws:s3:::${transfer:HomeBucket}/*",
    "arn:aws:s3:::c/*",
];
const CONDITIONS: &[&str] = &[
    r#"{"StringLike": {"s3:prefix": ["a/*", "${transfer:UserName}/*"]}}"#,
    r#"{"StringNotEquals": {"aws:PrincipalTag/team": "blue"}}"#,
    r#"{"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}"#,
    r#"{"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/8", "2001:db8::/32"]}}"#,
    r#"{"Bool": {"aws:SecureTransport": "true"}}"#,
    r#"{"ForAllValues:StringEquals": {"aws:TagKeys": ["x", "y"]}}"#,
    r#"{"ForAnyValue:StringLike": {"aws:TagKeys": "x*"}}"#,
    r#"{"Null": {"s3:prefix": "true"}}"#,
    r#"{"DateLessThan": {"aws:CurrentTime": "2024-06-01T00:00:00Z"}}"#,
    r#"{"StringEqualsIfExists": {"aws:PrincipalTag/team": "${transfer:UserName, 'blue'}"}}"#,
    r#"{"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:role/r"}}"#,
];
const PRINCIPALS: &[&str] = &[
    r#""*""#,
    r#"{"AWS": "*"}"#,
    r#"{"AWS": "arn:aws:iam::000000000000:role/r"}"#,
    r#"{"AWS": "arn:aws:iam::000000000000:role/other"}"#,
    r#"{"AWS": "000000000000"}"#,
];

#[derive(Debug, Clone)]
struct GenStatement {
    deny: bool,
    not_action: bool,
    actions: Vec<usize>,
    not_resource: bool,
    resources: Vec<usize>,
    condition: Option<usize>,
    principal: usize,
    not_principal: bool,
}

fn statement() -> impl Strategy<Value = GenStatement> {
    (
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.15),
        prop::collection::vec(0..ACTIONS.len(), 1..3),
        prop::bool::weighted(0.15),
        prop::collection::vec(0..RESOURCES.len(), 1..3),
        prop::option::weighted(0.5, 0..CONDITIONS.len()),
        0..PRINCIPALS.len(),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(
                deny,
                not_action,
                actions,
                not_resource,
                resources,
                condition,
                principal,
                not_principal,
            )| {
                GenStatement {
                    deny,
                    not_action,
                    actions,
                    not_resource,
                    resources,
                    condition,
                    principal,
                    not_principal,
                }
            },
        )
}

fn render(st: &GenStatement, sid: usize, kind: PolicyKind) -> Value {
    let mut obj = serde_json::Map::new();
    obj.insert("Sid".into(), json!(format!("S{sid}")));
    obj.insert(
        "Effect".into(),
        json!(if st.deny { "Deny" } else { "Allow" }),
    );
    let actions: Vec<&str> = st.actions.iter().map(|&i| ACTIONS[i]).collect();
    obj.insert(
        if st.not_action { "NotAction" } else { "Action" }.into(),
        json!(actions),
    );
    let resources: Vec<&str> = st.resources.iter().map(|&i| RESOURCES[i]).collect();
    obj.insert(
        if st.not_resource {
            "NotResource"
        } else {
            "Resource"
        }
        .into(),
        json!(resources),
    );
    if let Some(c) = st.condition {
        obj.insert(
            "Condition".into(),
            serde_json::from_str(CONDITIONS[c]).unwrap(),
        );
    }
    if kind == PolicyKind::Resource {
        obj.insert(
            if st.not_principal {
                "NotPrincipal"
            } else {
                "Principal"
            }
            .into(),
            serde_json::from_str(PRINCIPALS[st.principal]).unwrap(),
        );
    }
    Value::Object(obj)
}

/// A statement that never matches, to stand in for a removed one.
fn inert(sid: usize, kind: PolicyKind) -> Value {
    let mut v = json!({"Sid": format!("S{sid}"), "Effect": "Allow", "Action": "none:none", "Resource": "arn:none"});
    if kind == PolicyKind::Resource {
        v["Principal"] = json!("*");
    }
    v
}

fn build(name: &str, kind: PolicyKind, statements: &[Value]) -> Arc<Policy> {
    let doc = json!({"Version": "2012-10-17", "Statement": statements});
    Arc::new(Policy::from_value(name, &doc, kind).unwrap())
}

#[derive(Debug, Clone)]
struct GenSet {
    identity: Vec<Vec<GenStatement>>,
    session: Option<Vec<GenStatement>>,
    resource: Vec<Vec<GenStatement>>,
}

fn policy_set() -> impl Strategy<Value = GenSet> {
    let policy = || prop::collection::vec(statement(), 1..4);
    (
        prop::collection::vec(policy(), 0..3),
        prop::option::of(policy()),
        prop::collection::vec(policy(), 0..2),
    )
        .prop_map(|(identity, session, resource)| GenSet {
            identity,
            session,
            resource,
        })
}

/// Rendered statements per policy, so tests can edit them.
struct Rendered {
    identity: Vec<Vec<Value>>,
    session: Option<Vec<Value>>,
    resource: Vec<Vec<Value>>,
}

impl Rendered {
    fn new(g: &GenSet) -> Rendered {
        let r = |p: &Vec<GenStatement>, kind| {
            p.iter()
                .enumerate()
                .map(|(i, s)| render(s, i, kind))
                .collect::<Vec<_>>()
        };
        Rendered {
            identity: g
                .identity
                .iter()
                .map(|p| r(p, PolicyKind::Identity))
                .collect(),
            session: g.session.as_ref().map(|p| r(p, PolicyKind::Session)),
            resource: g
                .resource
                .iter()
                .map(|p| r(p, PolicyKind::Resource))
                .collect(),
        }
    }

    fn set(&self) -> PolicySet {
        PolicySet {
            identity: self
                .identity
                .iter()
                .enumerate()
                .map(|(i, s)| build(&format!("id{i}"), PolicyKind::Identity, s))
                .collect(),
            session: self
                .session
                .as_ref()
                .map(|s| build("session", PolicyKind::Session, s)),
            resource: self
                .resource
                .iter()
                .enumerate()
                .map(|(i, s)| build(&format!("res{i}"), PolicyKind::Resource, s))
                .collect(),
        }
    }

    /// All (kind, policy index, statement index) of Allow statements.
    fn allows(&self) -> Vec<(PolicyKind, usize, usize)> {
        let mut out = Vec::new();
        let mut scan = |kind, pi, stmts: &Vec<Value>| {
            for (si, s) in stmts.iter().enumerate() {
                if s["Effect"] == "Allow" {
                    out.push((kind, pi, si));
                }
            }
        };
        for (pi, p) in self.identity.iter().enumerate() {
            scan(PolicyKind::Identity, pi, p);
        }
        if let Some(p) = &self.session {
            scan(PolicyKind::Session, 0, p);
        }
        for (pi, p) in self.resource.iter().enumerate() {
            scan(PolicyKind::Resource, pi, p);
        }
        out
    }

    fn statements_mut(&mut self, kind: PolicyKind, pi: usize) -> Option<&mut Vec<Value>> {
        match kind {
            PolicyKind::Identity => self.identity.get_mut(pi),
            PolicyKind::Session => self.session.as_mut(),
            PolicyKind::Resource => self.resource.get_mut(pi),
        }
    }
}

#[derive(Debug, Clone)]
struct GenRequest {
    action: &'static str,
    resource: &'static str,
    principal: &'static str,
    user: Option<&'static str>,
    home_bucket: Option<&'static str>,
    team: Option<&'static str>,
    ip: Option<&'static str>,
    secure: Option<&'static str>,
    prefix: Option<&'static str>,
    tags: Option<Vec<&'static str>>,
    month: u8,
}

fn request() -> impl Strategy<Value = GenRequest> {
    (
        prop::sample::select(vec![
            "s3:GetObject",
            "s3:PutObject",
            "s3:ListBucket",
            "S3:getobject",
        ]),
        prop::sample::select(vec![
            "arn:aws:s3:::b/a/x",
            "arn:aws:s3:::b/alice/y",
            "arn:aws:s3:::c/z",
            "arn:aws:s3:::b",
        ]),
        prop::sample::select(vec![
            ROLE,
            "arn:aws:iam::000000000000:role/other",
            "arn:aws:iam::111111111111:role/r",
        ]),
        prop::option::of(prop::sample::select(vec!["alice", "a"])),
        prop::option::of(prop::sample::select(vec!["b", "c"])),
        prop::option::of(prop::sample::select(vec!["blue", "red"])),
        prop::option::of(prop::sample::select(vec![
            "10.1.2.3",
            "192.0.2.1",
            "2001:db8::5",
        ])),
        prop::option::of(prop::sample::select(vec!["true", "false"])),
        prop::option::of(prop::sample::select(vec!["a/", "alice/", ""])),
        prop::option::of(prop::collection::vec(
            prop::sample::select(vec!["x", "y", "xz"]),
            0..3,
        )),
        5u8..7,
    )
        .prop_map(
            |(
                action,
                resource,
                principal,
                user,
                home_bucket,
                team,
                ip,
                secure,
                prefix,
                tags,
                month,
            )| {
                GenRequest {
                    action,
                    resource,
                    principal,
                    user,
                    home_bucket,
                    team,
                    ip,
                    secure,
                    prefix,
                    tags,
                    month,
                }
            },
        )
}

struct Built {
    ctx: Context,
    extra: Vec<(&'static str, &'static str)>,
}

fn built(g: &GenRequest) -> Built {
    let mut ctx = Context::new();
    let pairs = [
        ("transfer:UserName", g.user),
        ("transfer:HomeBucket", g.home_bucket),
        ("aws:PrincipalTag/team", g.team),
        ("aws:SourceIp", g.ip),
        ("aws:SecureTransport", g.secure),
    ];
    for (k, v) in pairs {
        if let Some(v) = v {
            ctx.insert(k, v);
        }
    }
    if let Some(tags) = &g.tags {
        ctx.insert_multi("aws:TagKeys", tags.iter().copied());
    }
    let extra = g.prefix.map(|p| ("s3:prefix", p)).into_iter().collect();
    Built { ctx, extra }
}

fn decide(set: &PolicySet, g: &GenRequest, b: &Built) -> crate::Decision {
    let now = if g.month == 5 {
        datetime!(2024-05-15 00:00:00 UTC)
    } else {
        datetime!(2024-06-15 00:00:00 UTC)
    };
    let req = Request {
        action: g.action,
        resource: g.resource,
        principal_arn: g.principal,
        context: &b.ctx,
        extra: &b.extra,
        current_time: now,
    };
    evaluate(set, &req)
}

/// Reference glob: plain recursion over characters.
fn reference(p: &[char], t: &[char]) -> bool {
    match p.split_first() {
        None => t.is_empty(),
        Some(('*', rest)) => (0..=t.len()).any(|i| reference(rest, &t[i..])),
        Some(('?', rest)) => !t.is_empty() && reference(rest, &t[1..]),
        Some((c, rest)) => t.first() == Some(c) && reference(rest, &t[1..]),
    }
}

struct NoVars;

impl crate::variables::Resolver for NoVars {
    fn resolve<'s>(&'s self, _: &'s Var) -> Option<&'s str> {
        None
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// An explicit Deny that matches wins, whatever else is in the set and
    /// whichever kind of policy holds it.
    #[test]
    fn matching_explicit_deny_always_wins(g in policy_set(), q in request(), place in 0..3usize) {
        let mut rendered = Rendered::new(&g);
        let deny = |kind| {
            let mut v = json!({"Sid": "ForcedDeny", "Effect": "Deny",
                               "Action": q.action, "Resource": q.resource});
            if kind == PolicyKind::Resource {
                v["Principal"] = json!("*");
            }
            v
        };
        match place {
            0 => rendered.identity.push(vec![deny(PolicyKind::Identity)]),
            1 => rendered.session.get_or_insert_with(Vec::new).push(deny(PolicyKind::Session)),
            _ => rendered.resource.push(vec![deny(PolicyKind::Resource)]),
        }
        let b = built(&q);
        let d = decide(&rendered.set(), &q, &b);
        prop_assert!(!d.allowed, "{d}");
        prop_assert_eq!(d.reason, Reason::ExplicitDeny);
    }

    /// A session policy never grants beyond what the set grants without it.
    #[test]
    fn session_policy_never_widens(g in policy_set(), q in request()) {
        let with = Rendered::new(&g);
        let mut without = Rendered::new(&g);
        without.session = None;
        let b = built(&q);
        let d_with = decide(&with.set(), &q, &b);
        let d_without = decide(&without.set(), &q, &b);
        prop_assert!(!d_with.allowed || d_without.allowed, "with: {d_with}; without: {d_without}");
    }

    /// Removing an Allow statement never turns a denied request into an
    /// allowed one.
    #[test]
    fn removing_an_allow_never_widens(g in policy_set(), q in request(), pick in any::<prop::sample::Index>()) {
        let before = Rendered::new(&g);
        let allows = before.allows();
        prop_assume!(!allows.is_empty());
        let (kind, pi, si) = allows[pick.index(allows.len())];
        let mut after = Rendered::new(&g);
        if let Some(stmts) = after.statements_mut(kind, pi) {
            stmts[si] = inert(si, kind);
        }
        let b = built(&q);
        let d_before = decide(&before.set(), &q, &b);
        let d_after = decide(&after.set(), &q, &b);
        prop_assert!(d_before.allowed || !d_after.allowed, "before: {d_before}; after: {d_after}");
    }

    /// Actions are case-insensitive: the decision does not depend on the
    /// case the client's action arrives in.
    #[test]
    fn action_case_does_not_matter(g in policy_set(), q in request()) {
        let set = Rendered::new(&g).set();
        let b = built(&q);
        let upper = GenRequest { action: "S3:GETOBJECT", ..q.clone() };
        let lower = GenRequest { action: "s3:getobject", ..q };
        let (du, dl) = (decide(&set, &upper, &b), decide(&set, &lower, &b));
        prop_assert_eq!(du.allowed, dl.allowed);
        prop_assert_eq!(du.deciding, dl.deciding);
    }

    /// The compiled glob agrees with a naive recursive matcher.
    #[test]
    fn glob_agrees_with_reference(p in "[ab/*?é]{0,12}", t in "[ab/é]{0,16}") {
        let syntax = Syntax { wildcards: true, variables: false };
        let pattern = Pattern::compile(tokenize(&p, syntax).unwrap(), Case::Sensitive);
        let pc: Vec<char> = p.chars().collect();
        let tc: Vec<char> = t.chars().collect();
        prop_assert_eq!(pattern.matches(&t, &NoVars), Some(reference(&pc, &tc)), "pattern {:?} text {:?}", p, t);
    }

    /// Case-insensitive globs agree with the reference on lowercased input.
    #[test]
    fn ascii_insensitive_glob_agrees_with_reference(p in "[aB:*?]{0,10}", t in "[AbB:a]{0,14}") {
        let syntax = Syntax { wildcards: true, variables: false };
        let pattern = Pattern::compile(tokenize(&p, syntax).unwrap(), Case::AsciiInsensitive);
        let pc: Vec<char> = p.to_ascii_lowercase().chars().collect();
        let tc: Vec<char> = t.to_ascii_lowercase().chars().collect();
        prop_assert_eq!(pattern.matches(&t, &NoVars), Some(reference(&pc, &tc)));
    }

    /// The parser returns an error, never panics, on arbitrary text.
    #[test]
    fn parser_never_panics(s in "\\PC{0,200}") {
        let _ = Policy::parse("p", &s, PolicyKind::Resource);
    }
}
