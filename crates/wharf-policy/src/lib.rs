//! `wharf-policy`: a pure AWS IAM policy evaluator.
//!
//! **Owns**: parsing IAM policy JSON (identity, session/scope-down and
//! bucket policies) into a compiled form, once at load; policy variables
//! (`${transfer:UserName}`, `${aws:PrincipalTag/team, 'none'}`, escapes);
//! the condition operators (String*, Arn*, Bool, Null, Numeric*, Date*,
//! IpAddress, `...IfExists`, `ForAnyValue:`/`ForAllValues:`); and the
//! decision, with the statement that made it, following the AWS "policy
//! evaluation logic" for a request inside one account.
//!
//! **Must not know**: I/O of any kind (no files, network, clock or
//! environment: the caller passes the time), protocols (SFTP, FTP), storage
//! backends, users or identity providers. It depends on no other wharf
//! crate. Callers map their operations to S3 actions and ARNs and build the
//! [`Context`] of condition keys.
//!
//! ```
//! use std::sync::Arc;
//! use wharf_policy::{Context, Policy, PolicyKind, PolicySet, Request, evaluate};
//!
//! let role = Policy::parse("reports-rw", r#"{
//!     "Version": "2012-10-17",
//!     "Statement": [{"Sid": "AllowRead", "Effect": "Allow",
//!                    "Action": "s3:GetObject", "Resource": "arn:aws:s3:::reports/*"}]
//! }"#, PolicyKind::Identity)?;
//! let scope_down = Policy::parse("scope-down", r#"{
//!     "Version": "2012-10-17",
//!     "Statement": [{"Sid": "Home", "Effect": "Allow", "Action": "s3:*",
//!                    "Resource": "arn:aws:s3:::reports/${transfer:UserName}/*"}]
//! }"#, PolicyKind::Session)?;
//! let set = PolicySet {
//!     identity: vec![Arc::new(role)],
//!     session: Some(Arc::new(scope_down)),
//!     resource: vec![],
//! };
//! let ctx = Context::new().set("transfer:UserName", "alice");
//! let now = time::OffsetDateTime::UNIX_EPOCH;
//! let role_arn = "arn:aws:iam::000000000000:role/transfer";
//!
//! let ok = Request::new("s3:GetObject", "arn:aws:s3:::reports/alice/a.txt", role_arn, &ctx, now);
//! assert_eq!(evaluate(&set, &ok).to_string(),
//!            r#"allowed by identity policy "reports-rw" statement "AllowRead""#);
//!
//! let other = Request::new("s3:GetObject", "arn:aws:s3:::reports/bob/a.txt", role_arn, &ctx, now);
//! assert!(!evaluate(&set, &other).allowed);
//! # Ok::<(), wharf_policy::ParseError>(())
//! ```
//!
//! Where AWS documentation leaves a case open, the choice made is written
//! beside the code that makes it: the `conditions` module (missing keys,
//! negated operators, set operators, undefined variables), the `matcher`
//! module (ARN components), the `variables` module (defaults, escapes,
//! literal substitution) and [`evaluate`] (principals, session policy).

#![warn(missing_docs)]

mod conditions;
mod context;
mod error;
mod evaluate;
mod json;
mod matcher;
mod parser;
mod policy;
mod variables;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use context::{Context, Request};
pub use error::ParseError;
pub use evaluate::{DecidingStatement, Decision, PolicySet, Reason, evaluate};
pub use policy::{Effect, MAX_POLICY_BYTES, Policy, PolicyKind, Version};
