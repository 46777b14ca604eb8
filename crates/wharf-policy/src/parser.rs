//! JSON policy document -> compiled [`Policy`].
//!
//! Strict where a mistake would silently change what a policy grants: unknown
//! fields, duplicate members, a lowercase `"allow"`, a `Principal` in an
//! identity policy, an unknown condition operator or an unparsable condition
//! value are all errors that name the statement and the field.

use crate::conditions;
use crate::error::{FieldError, ParseError};
use crate::json::Json;
use crate::matcher::{Case, Pattern};
use crate::policy::{Effect, Patterns, Policy, PolicyKind, Principals, Statement, Version};
use crate::variables::{Syntax, tokenize};

/// Most statements accepted in one policy.
pub(crate) const MAX_STATEMENTS: usize = 1024;
/// Most values accepted in one `Action`/`Resource`/`Principal` list.
const MAX_LIST: usize = 1024;

const TOP_FIELDS: &[&str] = &["Version", "Id", "Statement"];
const STATEMENT_FIELDS: &[&str] = &[
    "Sid",
    "Effect",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Principal",
    "NotPrincipal",
    "Condition",
];

pub(crate) fn parse_document(
    name: &str,
    doc: &Json,
    kind: PolicyKind,
) -> Result<Policy, ParseError> {
    let top = |e: FieldError| ParseError::new(name, None, e);
    let Json::Object(members) = doc else {
        return Err(top(FieldError::whole(format!(
            "must be a JSON object, got {}",
            doc.type_name()
        ))));
    };
    let mut version = None;
    let mut id = None;
    let mut statement = None;
    for (key, value) in members {
        match key.as_str() {
            "Version" => version = Some(value),
            "Id" => id = Some(value),
            "Statement" => statement = Some(value),
            other => {
                return Err(top(FieldError::at(
                    format!("field \"{other}\""),
                    format!("is unknown (a policy has {})", TOP_FIELDS.join(", ")),
                )));
            }
        }
    }
    let version = match version {
        None => Version::V2008_10_17,
        Some(Json::String(v)) if v == "2012-10-17" => Version::V2012_10_17,
        Some(Json::String(v)) if v == "2008-10-17" => Version::V2008_10_17,
        Some(other) => {
            return Err(top(FieldError::at(
                "Version",
                format!(
                    "must be \"2012-10-17\" or \"2008-10-17\", got {}",
                    show(other)
                ),
            )));
        }
    };
    let id = match id {
        None => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(top(FieldError::at(
                "Id",
                format!("must be a string, got {}", other.type_name()),
            )));
        }
    };
    let statements: Vec<&Json> = match statement {
        None => return Err(top(FieldError::at("Statement", "is required"))),
        Some(Json::Array(items)) => items.iter().collect(),
        Some(obj @ Json::Object(_)) => vec![obj],
        Some(other) => {
            return Err(top(FieldError::at(
                "Statement",
                format!(
                    "must be an object or a list of objects, got {}",
                    other.type_name()
                ),
            )));
        }
    };
    if statements.is_empty() {
        return Err(top(FieldError::at(
            "Statement",
            "must not be an empty list",
        )));
    }
    if statements.len() > MAX_STATEMENTS {
        return Err(top(FieldError::at(
            "Statement",
            format!(
                "has {} statements, more than the limit of {MAX_STATEMENTS}",
                statements.len()
            ),
        )));
    }
    let syntax_vars = version == Version::V2012_10_17;
    let mut compiled: Vec<Statement> = Vec::with_capacity(statements.len());
    for (i, st) in statements.into_iter().enumerate() {
        let sid = match st {
            Json::Object(m) => m.iter().find(|(k, _)| k == "Sid").map(|(_, v)| v),
            _ => None,
        };
        let location = match sid {
            Some(Json::String(s)) if !s.is_empty() => format!("Statement[{i}] (Sid \"{s}\")"),
            _ => format!("Statement[{i}]"),
        };
        let st = parse_statement(i, st, kind, syntax_vars)
            .map_err(|e| ParseError::new(name, Some(location.clone()), e))?;
        if compiled.iter().any(|c| c.label == st.label) {
            return Err(ParseError::new(
                name,
                Some(location),
                FieldError::at(
                    "Sid",
                    format!("\"{}\" is used by another statement", st.label),
                ),
            ));
        }
        compiled.push(st);
    }
    Ok(Policy {
        name: name.to_owned(),
        kind,
        version,
        id,
        statements: compiled,
    })
}

fn parse_statement(
    index: usize,
    json: &Json,
    kind: PolicyKind,
    variables: bool,
) -> Result<Statement, FieldError> {
    let Json::Object(members) = json else {
        return Err(FieldError::whole(format!(
            "a statement must be an object, got {}",
            json.type_name()
        )));
    };
    let mut f: [Option<&Json>; STATEMENT_FIELDS.len()] = [None; STATEMENT_FIELDS.len()];
    for (key, value) in members {
        let Some(pos) = STATEMENT_FIELDS.iter().position(|n| n == key) else {
            return Err(FieldError::at(
                format!("field \"{key}\""),
                format!(
                    "is unknown (a statement has {})",
                    STATEMENT_FIELDS.join(", ")
                ),
            ));
        };
        if let Some(slot) = f.get_mut(pos) {
            *slot = Some(value);
        }
    }
    let [
        sid,
        effect,
        action,
        not_action,
        resource,
        not_resource,
        principal,
        not_principal,
        condition,
    ] = f;

    let label = match sid {
        None => format!("Statement[{index}]"),
        Some(Json::String(s)) if s.is_empty() => format!("Statement[{index}]"),
        Some(Json::String(s)) => s.clone(),
        Some(other) => {
            return Err(FieldError::at(
                "Sid",
                format!("must be a string, got {}", other.type_name()),
            ));
        }
    };

    let effect = match effect {
        None => return Err(FieldError::at("Effect", "is required")),
        Some(Json::String(e)) if e == "Allow" => Effect::Allow,
        Some(Json::String(e)) if e == "Deny" => Effect::Deny,
        Some(other) => {
            return Err(FieldError::at(
                "Effect",
                format!("must be \"Allow\" or \"Deny\", got {}", show(other)),
            ));
        }
    };

    let actions = match (action, not_action) {
        (Some(_), Some(_)) => {
            return Err(FieldError::at(
                "Action",
                "and NotAction cannot both be present",
            ));
        }
        (None, None) => return Err(FieldError::at("Action", "(or NotAction) is required")),
        (Some(a), None) => compile_actions("Action", a, false)?,
        (None, Some(a)) => compile_actions("NotAction", a, true)?,
    };

    let resources = match (resource, not_resource) {
        (Some(_), Some(_)) => {
            return Err(FieldError::at(
                "Resource",
                "and NotResource cannot both be present",
            ));
        }
        (None, None) => {
            return Err(FieldError::at("Resource", "(or NotResource) is required"));
        }
        (Some(r), None) => compile_resources("Resource", r, false, variables)?,
        (None, Some(r)) => compile_resources("NotResource", r, true, variables)?,
    };

    let principal = match (principal, not_principal, kind) {
        (Some(_), Some(_), _) => {
            return Err(FieldError::at(
                "Principal",
                "and NotPrincipal cannot both be present",
            ));
        }
        (Some(_), None, PolicyKind::Identity | PolicyKind::Session) => {
            return Err(FieldError::at(
                "Principal",
                format!("is not allowed in {} policy", article(kind)),
            ));
        }
        (None, Some(_), PolicyKind::Identity | PolicyKind::Session) => {
            return Err(FieldError::at(
                "NotPrincipal",
                format!("is not allowed in {} policy", article(kind)),
            ));
        }
        (None, None, PolicyKind::Resource) => {
            return Err(FieldError::at(
                "Principal",
                "(or NotPrincipal) is required in a resource policy",
            ));
        }
        (None, None, _) => None,
        (Some(p), None, PolicyKind::Resource) => Some(compile_principal("Principal", p, false)?),
        (None, Some(p), PolicyKind::Resource) => Some(compile_principal("NotPrincipal", p, true)?),
    };

    let conditions = match condition {
        None => Vec::new(),
        Some(c) => conditions::compile_block(c, variables)?,
    };

    Ok(Statement {
        label,
        effect,
        actions,
        resources,
        principal,
        conditions: conditions.into_boxed_slice(),
    })
}

fn article(kind: PolicyKind) -> &'static str {
    match kind {
        PolicyKind::Identity => "an identity",
        PolicyKind::Session => "a session",
        PolicyKind::Resource => "a resource",
    }
}

/// A JSON value quoted for a message (strings in quotes, others by type).
fn show(json: &Json) -> String {
    match json {
        Json::String(s) => format!("\"{s}\""),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.clone(),
        other => other.type_name().to_owned(),
    }
}

/// A string or a non-empty list of strings.
fn string_list<'j>(field: &str, json: &'j Json) -> Result<Vec<&'j str>, FieldError> {
    let out: Vec<&str> = match json {
        Json::String(s) => vec![s.as_str()],
        Json::Array(items) => items
            .iter()
            .map(|item| match item {
                Json::String(s) => Ok(s.as_str()),
                other => Err(FieldError::at(
                    field,
                    format!("values must be strings, got {}", other.type_name()),
                )),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(FieldError::at(
                field,
                format!(
                    "must be a string or a list of strings, got {}",
                    other.type_name()
                ),
            ));
        }
    };
    if out.is_empty() {
        return Err(FieldError::at(field, "must not be an empty list"));
    }
    if out.len() > MAX_LIST {
        return Err(FieldError::at(
            field,
            format!(
                "has {} values, more than the limit of {MAX_LIST}",
                out.len()
            ),
        ));
    }
    Ok(out)
}

fn compile_actions(field: &str, json: &Json, negated: bool) -> Result<Patterns, FieldError> {
    let syntax = Syntax {
        wildcards: true,
        // AWS does not substitute variables in Action.
        variables: false,
    };
    let patterns = string_list(field, json)?
        .into_iter()
        .map(|a| {
            if a != "*" && !a.contains(':') {
                return Err(FieldError::at(
                    field,
                    format!("value \"{a}\" is not of the form \"service:action\" (or \"*\")"),
                ));
            }
            tokenize(a, syntax)
                .map(|t| Pattern::compile(t, Case::AsciiInsensitive))
                .map_err(|m| FieldError::at(field, format!("value \"{a}\" {m}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Patterns {
        negated,
        patterns: patterns.into_boxed_slice(),
    })
}

fn compile_resources(
    field: &str,
    json: &Json,
    negated: bool,
    variables: bool,
) -> Result<Patterns, FieldError> {
    let syntax = Syntax {
        wildcards: true,
        variables,
    };
    let patterns = string_list(field, json)?
        .into_iter()
        .map(|r| {
            if r != "*" && !r.starts_with("arn:") {
                return Err(FieldError::at(
                    field,
                    format!("value \"{r}\" is not an ARN (arn:...) or \"*\""),
                ));
            }
            tokenize(r, syntax)
                .map(|t| Pattern::compile(t, Case::Sensitive))
                .map_err(|m| FieldError::at(field, format!("value \"{r}\" {m}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Patterns {
        negated,
        patterns: patterns.into_boxed_slice(),
    })
}

/// `"*"`, or an object of principal types: `AWS` (ARNs, account IDs, `*`),
/// and `Service`, `Federated`, `CanonicalUser` (accepted; they never name a
/// wharf principal).
fn compile_principal(field: &str, json: &Json, negated: bool) -> Result<Principals, FieldError> {
    let mut out = Principals {
        negated,
        ..Principals::default()
    };
    match json {
        Json::String(s) if s == "*" => out.any = true,
        Json::Object(types) => {
            if types.is_empty() {
                return Err(FieldError::at(field, "must name at least one principal"));
            }
            for (ty, values) in types {
                let sub = format!("{field}.{ty}");
                let values = string_list(&sub, values)?;
                match ty.as_str() {
                    "AWS" => {
                        for v in values {
                            add_aws_principal(&sub, v, &mut out)?;
                        }
                    }
                    "Service" | "Federated" | "CanonicalUser" => {}
                    other => {
                        return Err(FieldError::at(
                            field,
                            format!(
                                "type \"{other}\" is unknown (expected AWS, Service, Federated or CanonicalUser)"
                            ),
                        ));
                    }
                }
            }
        }
        other => {
            return Err(FieldError::at(
                field,
                format!(
                    "must be \"*\" or an object such as {{\"AWS\": \"arn:...\"}}, got {}",
                    show(other)
                ),
            ));
        }
    }
    Ok(out)
}

fn add_aws_principal(field: &str, v: &str, out: &mut Principals) -> Result<(), FieldError> {
    if v == "*" {
        out.any = true;
    } else if v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit()) {
        out.accounts.push(v.into());
    } else if let Some(rest) = v.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.splitn(5, ':').collect();
        match parts.as_slice() {
            [_, "iam", "", acct, "root"] => out.accounts.push((*acct).into()),
            [_, _, _, _, _] => {
                if v.contains('*') || v.contains('?') {
                    return Err(FieldError::at(
                        field,
                        format!(
                            "value \"{v}\" has a wildcard: principals are named exactly (or \"*\")"
                        ),
                    ));
                }
                out.arns.push(v.into());
            }
            _ => {
                return Err(FieldError::at(
                    field,
                    format!("value \"{v}\" is not an ARN"),
                ));
            }
        }
    } else {
        return Err(FieldError::at(
            field,
            format!("value \"{v}\" is not \"*\", an account ID or an ARN"),
        ));
    }
    Ok(())
}
