//! The compiled policy model.

use std::fmt;

use crate::conditions::Condition;
use crate::context::Scope;
use crate::error::{FieldError, ParseError};
use crate::json::Json;
use crate::matcher::Pattern;
use crate::parser;

/// Largest policy document accepted, in bytes of JSON text. AWS's own limits
/// are far lower (2,048 characters for a Transfer session policy, 20 KiB for
/// a bucket policy).
pub const MAX_POLICY_BYTES: usize = 128 * 1024;

/// Where a policy is attached; decides which fields are allowed and how its
/// statements take part in [`crate::evaluate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// A policy of the role (identity-based). No `Principal`.
    Identity,
    /// The session (scope-down) policy sent by the identity provider.
    /// No `Principal`.
    Session,
    /// The store's bucket policy (resource-based). Every statement names a
    /// `Principal` or `NotPrincipal`.
    Resource,
}

impl fmt::Display for PolicyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PolicyKind::Identity => "identity",
            PolicyKind::Session => "session",
            PolicyKind::Resource => "resource",
        })
    }
}

/// A statement's `Effect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// `"Allow"`
    Allow,
    /// `"Deny"`
    Deny,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        })
    }
}

/// The policy language version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// `"2012-10-17"`: policy variables are substituted.
    V2012_10_17,
    /// `"2008-10-17"`, also assumed when `Version` is absent: `${...}` is
    /// literal text, as in AWS.
    V2008_10_17,
}

/// A parsed and compiled IAM policy document. Parse it once, when it is
/// loaded, and share it (`Arc<Policy>`) between evaluations.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) name: String,
    pub(crate) kind: PolicyKind,
    pub(crate) version: Version,
    pub(crate) id: Option<String>,
    pub(crate) statements: Vec<Statement>,
}

impl Policy {
    /// Parses a policy from JSON text. `name` identifies it in errors and in
    /// [`crate::Decision`]s.
    pub fn parse(name: &str, json: &str, kind: PolicyKind) -> Result<Policy, ParseError> {
        if json.len() > MAX_POLICY_BYTES {
            return Err(ParseError::new(
                name,
                None,
                FieldError::whole(format!(
                    "is {} bytes long, more than the limit of {MAX_POLICY_BYTES}",
                    json.len()
                )),
            ));
        }
        let doc = Json::parse(json).map_err(|e| {
            ParseError::new(
                name,
                None,
                FieldError::whole(format!("is not valid JSON: {e}")),
            )
        })?;
        parser::parse_document(name, &doc, kind)
    }

    /// Parses a policy given as a JSON value: either a string holding the
    /// policy's JSON text (how AWS Transfer identity providers send `Policy`)
    /// or the policy object itself.
    pub fn from_value(
        name: &str,
        value: &serde_json::Value,
        kind: PolicyKind,
    ) -> Result<Policy, ParseError> {
        match value {
            serde_json::Value::String(text) => Policy::parse(name, text, kind),
            serde_json::Value::Object(_) => {
                let doc = Json::from_value(value).ok_or_else(|| {
                    ParseError::new(name, None, FieldError::whole("nests too deeply"))
                })?;
                parser::parse_document(name, &doc, kind)
            }
            other => Err(ParseError::new(
                name,
                None,
                FieldError::whole(format!(
                    "must be a JSON object or a string holding one, got {}",
                    Json::from_value(other).map_or("a value", |j| j.type_name())
                )),
            )),
        }
    }

    /// The name given at parse time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind given at parse time.
    pub fn kind(&self) -> PolicyKind {
        self.kind
    }

    /// The policy language version.
    pub fn version(&self) -> Version {
        self.version
    }

    /// The top-level `Id`, if any.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The statements, as (label, effect): the label is the `Sid`, or
    /// `Statement[i]` (zero-based) for a statement without one.
    pub fn statements(&self) -> impl Iterator<Item = (&str, Effect)> {
        self.statements.iter().map(|s| (s.label.as_str(), s.effect))
    }

    /// Whether some condition tests a key that starts with `prefix`
    /// (compared case-insensitively, like condition keys), e.g.
    /// `s3:ExistingObjectTag/`: callers look up costly per-request values
    /// only for policies that use them.
    pub fn tests_condition_key_prefix(&self, prefix: &str) -> bool {
        let prefix = prefix.to_lowercase();
        self.statements.iter().any(|statement| {
            statement
                .conditions
                .iter()
                .any(|condition| condition.key_lower().starts_with(&prefix))
        })
    }
}

/// One compiled statement.
#[derive(Debug, Clone)]
pub(crate) struct Statement {
    /// `Sid`, or `Statement[i]`.
    pub(crate) label: String,
    pub(crate) effect: Effect,
    /// `Action` (negated = `NotAction`).
    pub(crate) actions: Patterns,
    /// `Resource` (negated = `NotResource`).
    pub(crate) resources: Patterns,
    /// `Principal` / `NotPrincipal`: resource policies only.
    pub(crate) principal: Option<Principals>,
    pub(crate) conditions: Box<[Condition]>,
}

/// The patterns of `Action`/`Resource` (or their `Not` forms).
#[derive(Debug, Clone)]
pub(crate) struct Patterns {
    pub(crate) negated: bool,
    pub(crate) patterns: Box<[Pattern]>,
}

impl Patterns {
    /// Whether the element applies to `text`.
    ///
    /// A pattern that needs an undefined variable matches nothing; for the
    /// `Not` form it makes the whole element not apply (nothing can be said
    /// to lie outside a value that cannot be computed), so an Allow with such
    /// a `NotResource` grants nothing and such a Deny denies nothing.
    pub(crate) fn applies(&self, text: &str, scope: &Scope<'_>) -> bool {
        if self.negated {
            self.patterns
                .iter()
                .all(|p| p.matches(text, scope) == Some(false))
        } else {
            self.patterns
                .iter()
                .any(|p| p.matches(text, scope) == Some(true))
        }
    }
}

/// How a resource-policy statement's principal relates to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrincipalMatch {
    /// Does not apply to this principal.
    No,
    /// Applies to everyone (`"*"`, `{"AWS": "*"}`, or `NotPrincipal` not
    /// listing the principal): an Allow counts on its own.
    Anyone,
    /// Names the principal's ARN: an Allow is limited by the session policy.
    Named,
    /// Names the principal's account (`123456789012` or
    /// `arn:aws:iam::123456789012:root`): a Deny applies; an Allow only
    /// delegates to the identity policies and so grants nothing by itself.
    Account,
}

/// A compiled `Principal` or `NotPrincipal`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Principals {
    pub(crate) negated: bool,
    /// `"*"` or `{"AWS": "*"}`.
    pub(crate) any: bool,
    /// `AWS` principal ARNs, compared exactly.
    pub(crate) arns: Vec<Box<str>>,
    /// Account IDs named as `123456789012` or `arn:aws:iam::123456789012:root`.
    pub(crate) accounts: Vec<Box<str>>,
}

impl Principals {
    pub(crate) fn matches(&self, principal_arn: &str) -> PrincipalMatch {
        if self.any && !self.negated {
            return PrincipalMatch::Anyone;
        }
        let named = !principal_arn.is_empty() && self.arns.iter().any(|a| **a == *principal_arn);
        let account = !self.accounts.is_empty()
            && account_of(principal_arn)
                .is_some_and(|acct| self.accounts.iter().any(|a| **a == *acct));
        if self.negated {
            if self.any || named || account {
                PrincipalMatch::No
            } else {
                PrincipalMatch::Anyone
            }
        } else if self.any {
            PrincipalMatch::Anyone
        } else if named {
            PrincipalMatch::Named
        } else if account {
            PrincipalMatch::Account
        } else {
            PrincipalMatch::No
        }
    }
}

/// The account part of an ARN (`arn:aws:iam::ACCOUNT:role/x`).
fn account_of(arn: &str) -> Option<&str> {
    let [prefix, _, _, _, acct, _] = crate::matcher::split_arn(arn)?;
    (prefix == "arn" && !acct.is_empty()).then_some(acct)
}
