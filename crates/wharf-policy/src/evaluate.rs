//! The decision: AWS "policy evaluation logic" for a request inside one
//! account.
//!
//! 1. An explicit `Deny` that matches, in any identity, session or resource
//!    policy, wins.
//! 2. Otherwise the request is allowed when
//!    - an identity policy allows it **and**, when there is a session
//!      policy, the session policy allows it too; or
//!    - a resource (bucket) policy statement whose principal is everyone
//!      (`"*"`, `{"AWS": "*"}`, or a `NotPrincipal` not listing the
//!      principal) allows it: such a grant counts on its own; or
//!    - a resource policy statement naming the principal's ARN allows it and,
//!      when there is a session policy, the session policy allows it too
//!      (AWS limits grants made to a role ARN by the session policy).
//! 3. Otherwise it is an implicit deny.
//!
//! A resource-policy statement whose principal does not match does not
//! apply. One naming only the principal's account delegates to the identity
//! policies: its Deny applies, its Allow adds nothing.

use std::fmt;
use std::sync::Arc;

use crate::context::{Request, Scope};
use crate::policy::{Effect, Policy, PolicyKind, PrincipalMatch, Statement};

/// The policies that apply to one session.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    /// The role's identity policies.
    pub identity: Vec<Arc<Policy>>,
    /// The session (scope-down) policy, if the identity provider sent one.
    pub session: Option<Arc<Policy>>,
    /// The bucket policies of the store being accessed.
    pub resource: Vec<Arc<Policy>>,
}

/// The statement that decided (or, for a session-blocked allow, would have).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecidingStatement {
    /// The policy's name.
    pub policy: String,
    /// Which kind of policy it is.
    pub kind: PolicyKind,
    /// Its `Sid`, or `Statement[i]` (zero-based).
    pub statement: String,
    /// Its effect.
    pub effect: Effect,
}

impl fmt::Display for DecidingStatement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} policy \"{}\" statement \"{}\"",
            self.kind, self.policy, self.statement
        )
    }
}

/// Why the decision came out as it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Allowed by [`Decision::deciding`].
    Allowed,
    /// Denied by the explicit Deny in [`Decision::deciding`].
    ExplicitDeny,
    /// No statement allows the request.
    NoAllow {
        /// The request's action.
        action: String,
        /// The request's resource.
        resource: String,
    },
    /// An identity policy (or a resource policy naming the role) allows the
    /// request, but the session policy does not.
    SessionDoesNotAllow {
        /// The allow that the session policy did not confirm.
        allowed_by: DecidingStatement,
    },
}

/// The outcome of [`evaluate`].
///
/// `Display` reads like `allowed by identity policy "reports-rw" statement
/// "AllowRead"`, `denied by session policy "scope-down" statement
/// "DenyOthers"` or `implicit deny (no statement allows s3:GetObject on
/// arn:aws:s3:::reports/x)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The deciding statement: the Allow that granted, or the Deny that
    /// refused; `None` for an implicit deny.
    pub deciding: Option<DecidingStatement>,
    /// The details.
    pub reason: Reason,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        self.allowed
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.reason, &self.deciding) {
            (Reason::Allowed, Some(d)) => write!(f, "allowed by {d}"),
            (Reason::ExplicitDeny, Some(d)) => write!(f, "denied by {d}"),
            (Reason::Allowed | Reason::ExplicitDeny, None) => {
                f.write_str(if self.allowed { "allowed" } else { "denied" })
            }
            (Reason::NoAllow { action, resource }, _) => {
                write!(
                    f,
                    "implicit deny (no statement allows {action} on {resource})"
                )
            }
            (Reason::SessionDoesNotAllow { allowed_by }, _) => write!(
                f,
                "implicit deny (allowed by {allowed_by}, but the session policy does not allow it)"
            ),
        }
    }
}

/// A matching statement and its policy.
#[derive(Clone, Copy)]
struct Hit<'p> {
    policy: &'p Policy,
    statement: &'p Statement,
}

impl Hit<'_> {
    fn deciding(self) -> DecidingStatement {
        DecidingStatement {
            policy: self.policy.name.clone(),
            kind: self.policy.kind,
            statement: self.statement.label.clone(),
            effect: self.statement.effect,
        }
    }
}

/// What one policy says about the request.
struct Scan<'p> {
    deny: Option<Hit<'p>>,
    /// First Allow (for resource policies: one whose principal is anyone).
    allow: Option<Hit<'p>>,
    /// Resource policies: first Allow naming the principal.
    allow_named: Option<Hit<'p>>,
}

fn statement_matches(st: &Statement, scope: &Scope<'_>) -> bool {
    let req = scope.req;
    st.actions.applies(req.action, scope)
        && st.resources.applies(req.resource, scope)
        && st.conditions.iter().all(|c| c.holds(scope))
}

fn scan<'p>(policy: &'p Policy, scope: &Scope<'_>) -> Scan<'p> {
    let mut out = Scan {
        deny: None,
        allow: None,
        allow_named: None,
    };
    for st in &policy.statements {
        // Cheap principal test first: it decides whether the statement
        // applies at all.
        let principal = match &st.principal {
            None => PrincipalMatch::Anyone,
            Some(p) => p.matches(scope.req.principal_arn),
        };
        if principal == PrincipalMatch::No {
            continue;
        }
        // Only a Deny can still change the outcome once an Allow of this
        // kind is known.
        let useful = match (st.effect, principal) {
            (Effect::Deny, _) => true,
            (Effect::Allow, PrincipalMatch::Anyone) => out.allow.is_none(),
            (Effect::Allow, PrincipalMatch::Named) => out.allow_named.is_none(),
            (Effect::Allow, PrincipalMatch::Account | PrincipalMatch::No) => false,
        };
        if !useful || !statement_matches(st, scope) {
            continue;
        }
        let hit = Hit {
            policy,
            statement: st,
        };
        match (st.effect, principal) {
            (Effect::Deny, _) => {
                out.deny = Some(hit);
                return out;
            }
            (Effect::Allow, PrincipalMatch::Anyone) => out.allow = Some(hit),
            (Effect::Allow, _) => out.allow_named = Some(hit),
        }
    }
    out
}

fn denied_by(hit: Hit<'_>) -> Decision {
    Decision {
        allowed: false,
        deciding: Some(hit.deciding()),
        reason: Reason::ExplicitDeny,
    }
}

fn allowed_by(hit: Hit<'_>) -> Decision {
    Decision {
        allowed: true,
        deciding: Some(hit.deciding()),
        reason: Reason::Allowed,
    }
}

/// Decides `req` against `set`. Pure: no I/O, no global state; allocates
/// only the few strings of the returned [`Decision`].
pub fn evaluate(set: &PolicySet, req: &Request<'_>) -> Decision {
    let scope = Scope::new(req);

    let mut identity_allow = None;
    for policy in &set.identity {
        let s = scan(policy, &scope);
        if let Some(deny) = s.deny {
            return denied_by(deny);
        }
        identity_allow = identity_allow.or(s.allow);
    }

    let session = match &set.session {
        None => None,
        Some(policy) => {
            let s = scan(policy, &scope);
            if let Some(deny) = s.deny {
                return denied_by(deny);
            }
            Some(s.allow)
        }
    };

    let mut resource_any = None;
    let mut resource_named = None;
    for policy in &set.resource {
        let s = scan(policy, &scope);
        if let Some(deny) = s.deny {
            return denied_by(deny);
        }
        resource_any = resource_any.or(s.allow);
        resource_named = resource_named.or(s.allow_named);
    }

    // A bucket-policy grant to everyone counts on its own.
    if let Some(hit) = resource_any {
        return allowed_by(hit);
    }
    // Grants to the role (identity policies, bucket policy naming the role)
    // are limited by the session policy.
    if let Some(hit) = identity_allow.or(resource_named) {
        return match session {
            None | Some(Some(_)) => allowed_by(hit),
            Some(None) => Decision {
                allowed: false,
                deciding: None,
                reason: Reason::SessionDoesNotAllow {
                    allowed_by: hit.deciding(),
                },
            },
        };
    }
    Decision {
        allowed: false,
        deciding: None,
        reason: Reason::NoAllow {
            action: req.action.to_owned(),
            resource: req.resource.to_owned(),
        },
    }
}
