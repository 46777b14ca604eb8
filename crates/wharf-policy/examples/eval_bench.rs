//! Evaluations per second on one thread for a typical 5-statement set: a role
//! policy (2 statements), a scope-down session policy (2 statements, with
//! `${transfer:UserName}` and `s3:prefix`) and a bucket policy (1 ABAC
//! statement with `Principal: "*"`), over a mix of allowed and denied
//! requests.
//!
//! Run: `cargo run --release -p wharf-policy --example eval_bench`
//! (optional argument: seconds to run, default 2).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wharf_policy::{Context, Policy, PolicyKind, PolicySet, Request, evaluate};

const ROLE_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "AllowListingOfBucket", "Effect": "Allow",
     "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": "arn:aws:s3:::reports"},
    {"Sid": "HomeDirObjectAccess", "Effect": "Allow",
     "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:GetObjectVersion"],
     "Resource": "arn:aws:s3:::reports/*"}
  ]
}"#;

const SCOPE_DOWN: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Sid": "AllowListingOfUserFolder", "Effect": "Allow", "Action": "s3:ListBucket",
     "Resource": "arn:aws:s3:::reports",
     "Condition": {"StringLike": {"s3:prefix": ["${transfer:UserName}/*", "${transfer:UserName}"]}}},
    {"Sid": "HomeDirObjectAccess", "Effect": "Allow",
     "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
     "Resource": "arn:aws:s3:::reports/${transfer:UserName}/*"}
  ]
}"#;

const BUCKET_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [{
    "Sid": "TeamShared", "Effect": "Allow", "Principal": "*",
    "Action": "s3:GetObject",
    "Resource": "arn:aws:s3:::reports/shared/${aws:PrincipalTag/team}/*",
    "Condition": {
      "ArnLike": {"aws:PrincipalArn": "arn:aws:iam::000000000000:role/*"},
      "StringEquals": {"aws:PrincipalTag/team": ["blue", "red"]}
    }
  }]
}"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: f64 = match std::env::args().nth(1) {
        Some(s) => s.parse()?,
        None => 2.0,
    };
    let set = PolicySet {
        identity: vec![Arc::new(Policy::parse(
            "transfer-role",
            ROLE_POLICY,
            PolicyKind::Identity,
        )?)],
        session: Some(Arc::new(Policy::parse(
            "scope-down",
            SCOPE_DOWN,
            PolicyKind::Session,
        )?)),
        resource: vec![Arc::new(Policy::parse(
            "reports-bucket",
            BUCKET_POLICY,
            PolicyKind::Resource,
        )?)],
    };
    // A session context as a login would build it.
    let ctx = Context::new()
        .set("transfer:UserName", "alice")
        .set("aws:username", "alice")
        .set("transfer:HomeDirectory", "reports/alice")
        .set("transfer:HomeBucket", "reports")
        .set("transfer:HomeFolder", "alice")
        .set("aws:PrincipalTag/team", "blue")
        .set("aws:SourceIp", "10.0.0.5")
        .set("aws:SecureTransport", "true")
        .set("transfer:Protocol", "SFTP");
    let role = "arn:aws:iam::000000000000:role/transfer-user";
    let now = time::OffsetDateTime::now_utc();

    // (action, resource, s3:prefix, expected)
    let mix: &[(&str, &str, Option<&str>, bool)] = &[
        (
            "s3:GetObject",
            "arn:aws:s3:::reports/alice/q1.csv",
            None,
            true,
        ),
        (
            "s3:PutObject",
            "arn:aws:s3:::reports/alice/upload/big.bin",
            None,
            true,
        ),
        (
            "s3:ListBucket",
            "arn:aws:s3:::reports",
            Some("alice/"),
            true,
        ),
        (
            "s3:GetObject",
            "arn:aws:s3:::reports/shared/blue/plan.txt",
            None,
            true,
        ),
        (
            "s3:GetObject",
            "arn:aws:s3:::reports/bob/q1.csv",
            None,
            false,
        ),
        ("s3:ListBucket", "arn:aws:s3:::reports", Some("bob/"), false),
        (
            "s3:DeleteObject",
            "arn:aws:s3:::reports/shared/red/x",
            None,
            false,
        ),
        (
            "s3:GetObject",
            "arn:aws:s3:::other/alice/q1.csv",
            None,
            false,
        ),
    ];
    let extras: Vec<Vec<(&str, &str)>> = mix
        .iter()
        .map(|(_, _, prefix, _)| {
            prefix
                .map(|p| vec![("s3:prefix", p), ("s3:delimiter", "/")])
                .unwrap_or_default()
        })
        .collect();
    let requests: Vec<Request<'_>> = mix
        .iter()
        .zip(&extras)
        .map(|((action, resource, _, _), extra)| Request {
            action,
            resource,
            principal_arn: role,
            context: &ctx,
            extra,
            current_time: now,
        })
        .collect();

    // Check the mix decides as intended before timing it.
    for (req, (_, _, _, want)) in requests.iter().zip(mix) {
        let d = evaluate(&set, req);
        if d.allowed != *want {
            return Err(format!("{} on {}: {d}", req.action, req.resource).into());
        }
    }

    let budget = Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut evaluations: u64 = 0;
    let mut allowed: u64 = 0;
    while start.elapsed() < budget {
        for _ in 0..1000 {
            for req in &requests {
                let d = evaluate(black_box(&set), black_box(req));
                allowed += u64::from(d.allowed);
                evaluations += 1;
            }
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!(
        "{evaluations} evaluations in {elapsed:.2} s: {:.0} evaluations/s on one thread ({:.0} ns each, {:.0}% allowed)",
        evaluations as f64 / elapsed,
        elapsed * 1e9 / evaluations as f64,
        100.0 * allowed as f64 / evaluations as f64
    );
    Ok(())
}
