//! Parses arbitrary bytes as a policy of each kind and, when one parses,
//! evaluates a few requests against it. Neither may ever panic.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use wharf_policy::{Context, Policy, PolicyKind, PolicySet, Request, evaluate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ctx = Context::new()
        .set("transfer:UserName", "alice")
        .set("aws:PrincipalTag/team", "blue")
        .set("aws:SourceIp", "10.0.0.5")
        .set_multi("aws:TagKeys", ["a", "b"]);
    let extra = [("s3:prefix", "alice/"), ("s3:max-keys", "10")];
    let now = time::OffsetDateTime::UNIX_EPOCH;
    for kind in [
        PolicyKind::Identity,
        PolicyKind::Session,
        PolicyKind::Resource,
    ] {
        let Ok(policy) = Policy::parse("fuzz", text, kind) else {
            continue;
        };
        let policy = Arc::new(policy);
        let set = match kind {
            PolicyKind::Identity => PolicySet {
                identity: vec![policy],
                ..PolicySet::default()
            },
            PolicyKind::Session => PolicySet {
                session: Some(policy),
                ..PolicySet::default()
            },
            PolicyKind::Resource => PolicySet {
                resource: vec![policy],
                ..PolicySet::default()
            },
        };
        for (action, resource) in [
            ("s3:GetObject", "arn:aws:s3:::reports/alice/a.txt"),
            ("s3:ListBucket", "arn:aws:s3:::reports"),
            ("S3:PUTOBJECT", "arn:aws:s3:::reports/é/?*/"),
        ] {
            let req = Request {
                action,
                resource,
                principal_arn: "arn:aws:iam::000000000000:role/r",
                context: &ctx,
                extra: &extra,
                current_time: now,
            };
            let decision = evaluate(&set, &req);
            let _ = decision.to_string();
        }
    }
});
