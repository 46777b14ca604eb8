//! The `Condition` element: operators, compiled at load, evaluated per request.
//!
//! Semantics follow the IAM User Guide pages "IAM JSON policy elements:
//! Condition operators", "Multivalued context keys" and "Set operators for
//! multivalued context keys":
//!
//! - Several values for one key are ORed; several keys in one operator and
//!   several operators are ANDed.
//! - **Missing key**: a positive operator is false; a negated operator
//!   (`StringNotEquals`, `StringNotLike`, `ArnNotEquals`, `ArnNotLike`,
//!   `NumericNotEquals`, `DateNotEquals`, `NotIpAddress`, and the
//!   ignore-case form) is **true**, as the AWS page documents ("If the policy
//!   condition requires that the key is not matched, such as StringNotLike or
//!   ArnNotLike, and the right key is not present, the condition is true").
//!   Any `...IfExists` form is true. `Null` tests presence itself.
//! - **Negated operators with several values** hold when the request value
//!   matches *none* of them (`NOT (v1 OR v2)`).
//! - **Set operators**: `ForAllValues:` holds when every request value
//!   satisfies the operator, and also when the key is absent or empty;
//!   `ForAnyValue:` holds when at least one does, and is false when the key
//!   is absent (for the negated operators too). Without a set operator a
//!   multi-valued key is read like `ForAnyValue:` for positive operators and
//!   like `ForAllValues:` for negated ones (no value may match), which is the
//!   natural reading of "not equal to any".
//! - **Undefined variables**: a policy value that needs an undefined variable
//!   never makes an operator hold: a positive operator ignores that value, and
//!   a negated operator is false for a request value whenever one of its
//!   policy values is unresolved. So an Allow needing the variable grants
//!   nothing and a Deny needing it does not deny.
//! - `ArnEquals` and `ArnLike` are the same operator (AWS documents both as
//!   component-wise with wildcards); see [`crate::matcher::ArnPattern`].
//! - Policy variables are read in the String and Arn families only; Numeric,
//!   Date, Bool, IpAddress and Null values are literal.
//! - A request value that cannot be read as the operator's type (a number,
//!   a date, an IP address, `true`/`false`) matches none of the policy
//!   values.
//! - Date values are ISO 8601 (`2024-05-01T12:00:00Z`, `2024-05-01`) or
//!   epoch seconds; the current time has whole-second precision.
//! - An IPv4-mapped IPv6 request address (`::ffff:10.0.0.5`) is also tested
//!   as its IPv4 address.

use std::net::IpAddr;

use ipnet::IpNet;
use time::OffsetDateTime;
use time::format_description::well_known::{Iso8601, Rfc3339};

use crate::context::{Scope, Values};
use crate::error::FieldError;
use crate::json::Json;
use crate::matcher::{ArnPattern, Case, Pattern, Template};
use crate::variables::{Key, Syntax, tokenize};

/// Most policy values accepted for one condition key.
const MAX_VALUES: usize = 1024;

/// One (operator, key, values) triple of a `Condition` block.
#[derive(Debug, Clone)]
pub(crate) struct Condition {
    set: SetOp,
    if_exists: bool,
    negated: bool,
    key: Key,
    test: Test,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetOp {
    Single,
    ForAnyValue,
    ForAllValues,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn holds<T: PartialOrd>(self, request: T, policy: T) -> bool {
        match self {
            Cmp::Eq => request == policy,
            Cmp::Lt => request < policy,
            Cmp::Le => request <= policy,
            Cmp::Gt => request > policy,
            Cmp::Ge => request >= policy,
        }
    }
}

#[derive(Debug, Clone)]
enum Test {
    Equals {
        values: Box<[Template]>,
        ignore_case: bool,
    },
    Like(Box<[Pattern]>),
    Arn(Box<[ArnPattern]>),
    Numeric(Cmp, Box<[f64]>),
    Date(Cmp, Box<[i128]>),
    Bool(Box<[bool]>),
    Ip(Box<[IpNet]>),
    Null(Box<[bool]>),
}

/// Result of testing one request value against all policy values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tri {
    /// Some policy value matches.
    Match,
    /// No policy value matches and all were resolved.
    NoMatch,
    /// No policy value matches but some needed an undefined variable.
    Unresolved,
}

/// A request value: a string, or the request time itself.
#[derive(Clone, Copy)]
enum Val<'s> {
    Str(&'s str),
    Time(i128),
}

impl Condition {
    /// The condition key, lowercased.
    pub(crate) fn key_lower(&self) -> &str {
        &self.key.lower
    }

    /// Whether the condition holds for the request.
    pub(crate) fn holds(&self, scope: &Scope<'_>) -> bool {
        let Some(values) = scope.lookup(&self.key) else {
            return self.when_absent();
        };
        if let Test::Null(expect_absent) = &self.test {
            // Present: `"Null": {"k": "false"}` holds.
            return expect_absent.iter().any(|absent| !absent);
        }
        let per_value = |v: Val<'_>| {
            let tri = self.test_value(v, scope);
            if self.negated {
                tri == Tri::NoMatch
            } else {
                tri == Tri::Match
            }
        };
        let all = match self.set {
            SetOp::ForAllValues => true,
            SetOp::ForAnyValue => false,
            SetOp::Single => self.negated,
        };
        match (values, &self.test) {
            (Values::Time(t, _), Test::Date(..)) => per_value(Val::Time(t.unix_timestamp_nanos())),
            _ => {
                let mut strings = scope.strings(values).map(Val::Str);
                if all {
                    strings.all(per_value)
                } else {
                    strings.any(per_value)
                }
            }
        }
    }

    fn when_absent(&self) -> bool {
        if let Test::Null(expect_absent) = &self.test {
            return expect_absent.iter().any(|absent| *absent);
        }
        if self.if_exists {
            return true;
        }
        match self.set {
            SetOp::ForAllValues => true,
            SetOp::ForAnyValue => false,
            SetOp::Single => self.negated,
        }
    }

    fn test_value(&self, v: Val<'_>, scope: &Scope<'_>) -> Tri {
        let s = match v {
            Val::Str(s) => s,
            Val::Time(t) => {
                return match &self.test {
                    Test::Date(cmp, values) => found(values.iter().any(|p| cmp.holds(t, *p))),
                    _ => Tri::NoMatch,
                };
            }
        };
        match &self.test {
            Test::Equals {
                values,
                ignore_case,
            } => any_tri(values.iter().map(|t| t.equals(s, *ignore_case, scope))),
            Test::Like(values) => any_tri(values.iter().map(|p| p.matches(s, scope))),
            Test::Arn(values) => any_tri(values.iter().map(|p| p.matches(s, scope))),
            Test::Numeric(cmp, values) => match parse_number(s) {
                Some(n) => found(values.iter().any(|p| cmp.holds(n, *p))),
                None => Tri::NoMatch,
            },
            Test::Date(cmp, values) => match parse_date(s) {
                Some(t) => found(values.iter().any(|p| cmp.holds(t, *p))),
                None => Tri::NoMatch,
            },
            Test::Bool(values) => match parse_bool(s) {
                Some(b) => found(values.contains(&b)),
                None => Tri::NoMatch,
            },
            Test::Ip(nets) => match s.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    let mapped = match ip {
                        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
                        IpAddr::V4(_) => None,
                    };
                    found(
                        nets.iter()
                            .any(|n| n.contains(&ip) || mapped.is_some_and(|m| n.contains(&m))),
                    )
                }
                Err(_) => Tri::NoMatch,
            },
            // Handled in `holds` before any value is read.
            Test::Null(_) => Tri::NoMatch,
        }
    }
}

fn found(b: bool) -> Tri {
    if b { Tri::Match } else { Tri::NoMatch }
}

fn any_tri(results: impl Iterator<Item = Option<bool>>) -> Tri {
    let mut out = Tri::NoMatch;
    for r in results {
        match r {
            Some(true) => return Tri::Match,
            Some(false) => {}
            None => out = Tri::Unresolved,
        }
    }
    out
}

fn parse_number(s: &str) -> Option<f64> {
    let n: f64 = s.trim().parse().ok()?;
    n.is_finite().then_some(n)
}

fn parse_bool(s: &str) -> Option<bool> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Epoch seconds or ISO 8601, as nanoseconds since the epoch.
pub(crate) fn parse_date(s: &str) -> Option<i128> {
    let s = s.trim();
    if !s.is_empty()
        && s.bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_digit() || (i == 0 && b == b'-'))
    {
        let secs: i64 = s.parse().ok()?;
        return OffsetDateTime::from_unix_timestamp(secs)
            .ok()
            .map(OffsetDateTime::unix_timestamp_nanos);
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.unix_timestamp_nanos());
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Iso8601::DEFAULT) {
        return Some(t.unix_timestamp_nanos());
    }
    // A date alone: midnight UTC.
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt)
        .ok()
        .map(|d| d.midnight().assume_utc().unix_timestamp_nanos())
}

/// Compiles a statement's `Condition` object.
pub(crate) fn compile_block(json: &Json, variables: bool) -> Result<Vec<Condition>, FieldError> {
    let Json::Object(ops) = json else {
        return Err(FieldError::at(
            "Condition",
            format!("must be an object, got {}", json.type_name()),
        ));
    };
    let mut out = Vec::new();
    for (op_name, keys) in ops {
        let field = format!("Condition.{op_name}");
        let op = Operator::parse(op_name).map_err(|m| FieldError::at("Condition", m))?;
        let Json::Object(keys) = keys else {
            return Err(FieldError::at(
                field,
                format!(
                    "must be an object of condition keys, got {}",
                    keys.type_name()
                ),
            ));
        };
        if keys.is_empty() {
            return Err(FieldError::at(field, "has no condition key"));
        }
        for (key, values) in keys {
            let field = format!("{field}.{key}");
            if key.is_empty() {
                return Err(FieldError::at(field, "has an empty condition key name"));
            }
            let strings = value_strings(values).map_err(|m| FieldError::at(&field, m))?;
            let test = op
                .compile(&strings, variables)
                .map_err(|m| FieldError::at(&field, m))?;
            out.push(Condition {
                set: op.set,
                if_exists: op.if_exists,
                negated: op.negated,
                key: Key::new(key),
                test,
            });
        }
    }
    Ok(out)
}

/// A condition value: a string, boolean or number, or a non-empty list of them.
fn value_strings(json: &Json) -> Result<Vec<String>, String> {
    fn scalar(j: &Json) -> Result<String, String> {
        match j {
            Json::String(s) => Ok(s.clone()),
            Json::Bool(b) => Ok(b.to_string()),
            Json::Number(n) => Ok(n.clone()),
            other => Err(format!(
                "values must be strings, booleans or numbers, got {}",
                other.type_name()
            )),
        }
    }
    let out = match json {
        Json::Array(items) => items.iter().map(scalar).collect::<Result<Vec<_>, _>>()?,
        other => vec![scalar(other)?],
    };
    if out.is_empty() {
        return Err("has an empty list of values".to_owned());
    }
    if out.len() > MAX_VALUES {
        return Err(format!(
            "has {} values, more than the limit of {MAX_VALUES}",
            out.len()
        ));
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    StringEquals { ignore_case: bool },
    StringLike,
    Arn,
    Numeric(Cmp),
    Date(Cmp),
    Bool,
    Ip,
    Null,
}

#[derive(Debug, Clone, Copy)]
struct Operator {
    set: SetOp,
    if_exists: bool,
    negated: bool,
    family: Family,
}

impl Operator {
    fn parse(name: &str) -> Result<Operator, String> {
        let (set, rest) = if let Some(r) = name.strip_prefix("ForAnyValue:") {
            (SetOp::ForAnyValue, r)
        } else if let Some(r) = name.strip_prefix("ForAllValues:") {
            (SetOp::ForAllValues, r)
        } else {
            (SetOp::Single, name)
        };
        let (if_exists, base) = match rest.strip_suffix("IfExists") {
            Some(b) => (true, b),
            None => (false, rest),
        };
        use Family as F;
        let (negated, family) = match base {
            "StringEquals" => (false, F::StringEquals { ignore_case: false }),
            "StringNotEquals" => (true, F::StringEquals { ignore_case: false }),
            "StringEqualsIgnoreCase" => (false, F::StringEquals { ignore_case: true }),
            "StringNotEqualsIgnoreCase" => (true, F::StringEquals { ignore_case: true }),
            "StringLike" => (false, F::StringLike),
            "StringNotLike" => (true, F::StringLike),
            "ArnEquals" | "ArnLike" => (false, F::Arn),
            "ArnNotEquals" | "ArnNotLike" => (true, F::Arn),
            "NumericEquals" => (false, F::Numeric(Cmp::Eq)),
            "NumericNotEquals" => (true, F::Numeric(Cmp::Eq)),
            "NumericLessThan" => (false, F::Numeric(Cmp::Lt)),
            "NumericLessThanEquals" => (false, F::Numeric(Cmp::Le)),
            "NumericGreaterThan" => (false, F::Numeric(Cmp::Gt)),
            "NumericGreaterThanEquals" => (false, F::Numeric(Cmp::Ge)),
            "DateEquals" => (false, F::Date(Cmp::Eq)),
            "DateNotEquals" => (true, F::Date(Cmp::Eq)),
            "DateLessThan" => (false, F::Date(Cmp::Lt)),
            "DateLessThanEquals" => (false, F::Date(Cmp::Le)),
            "DateGreaterThan" => (false, F::Date(Cmp::Gt)),
            "DateGreaterThanEquals" => (false, F::Date(Cmp::Ge)),
            "Bool" => (false, F::Bool),
            "IpAddress" => (false, F::Ip),
            "NotIpAddress" => (true, F::Ip),
            "Null" => (false, F::Null),
            "BinaryEquals" => {
                return Err(format!(
                    "operator \"{name}\" is not supported (wharf has no binary condition keys)"
                ));
            }
            _ => return Err(format!("operator \"{name}\" is unknown")),
        };
        if family == F::Null && (if_exists || set != SetOp::Single) {
            return Err(format!(
                "operator \"{name}\" is invalid: Null takes neither IfExists nor a set operator"
            ));
        }
        Ok(Operator {
            set,
            if_exists,
            negated,
            family,
        })
    }

    fn compile(&self, values: &[String], variables: bool) -> Result<Test, String> {
        let literal = Syntax {
            wildcards: false,
            variables,
        };
        let glob = Syntax {
            wildcards: true,
            variables,
        };
        let bad = |v: &str, what: &str| format!("value \"{v}\" is not {what}");
        Ok(match self.family {
            Family::StringEquals { ignore_case } => Test::Equals {
                values: values
                    .iter()
                    .map(|v| {
                        tokenize(v, literal)
                            .map(Template::compile)
                            .map_err(|m| format!("value \"{v}\" {m}"))
                    })
                    .collect::<Result<_, _>>()?,
                ignore_case,
            },
            Family::StringLike => Test::Like(
                values
                    .iter()
                    .map(|v| {
                        tokenize(v, glob)
                            .map(|t| Pattern::compile(t, Case::Sensitive))
                            .map_err(|m| format!("value \"{v}\" {m}"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Family::Arn => Test::Arn(
                values
                    .iter()
                    .map(|v| {
                        tokenize(v, glob)
                            .and_then(ArnPattern::compile)
                            .map_err(|m| format!("value \"{v}\" {m}"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Family::Numeric(cmp) => Test::Numeric(
                cmp,
                values
                    .iter()
                    .map(|v| parse_number(v).ok_or_else(|| bad(v, "a number")))
                    .collect::<Result<_, _>>()?,
            ),
            Family::Date(cmp) => Test::Date(
                cmp,
                values
                    .iter()
                    .map(|v| {
                        parse_date(v).ok_or_else(|| bad(v, "a date (ISO 8601 or epoch seconds)"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Family::Bool => Test::Bool(
                values
                    .iter()
                    .map(|v| parse_bool(v).ok_or_else(|| bad(v, "\"true\" or \"false\"")))
                    .collect::<Result<_, _>>()?,
            ),
            Family::Ip => Test::Ip(
                values
                    .iter()
                    .map(|v| parse_net(v).ok_or_else(|| bad(v, "an IP address or CIDR block")))
                    .collect::<Result<_, _>>()?,
            ),
            Family::Null => Test::Null(
                values
                    .iter()
                    .map(|v| parse_bool(v).ok_or_else(|| bad(v, "\"true\" or \"false\"")))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if let Ok(net) = s.parse::<IpNet>() {
        return Some(net.trunc());
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn operator_names() {
        assert!(Operator::parse("ForAnyValue:StringLikeIfExists").is_ok());
        assert!(
            Operator::parse("StringLikee")
                .unwrap_err()
                .contains("\"StringLikee\"")
        );
        assert!(Operator::parse("NullIfExists").is_err());
        assert!(Operator::parse("ForAllValues:Null").is_err());
        assert!(
            Operator::parse("BinaryEquals")
                .unwrap_err()
                .contains("not supported")
        );
    }

    #[test]
    fn dates() {
        let a = parse_date("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(parse_date("1714564800"), Some(a));
        assert_eq!(parse_date("2024-05-01T14:00:00+02:00"), Some(a));
        assert!(parse_date("2024-05-01").unwrap() < a);
        assert_eq!(parse_date("yesterday"), None);
        assert_eq!(parse_date("99999999999999999999999"), None);
    }

    #[test]
    fn nets() {
        assert_eq!(
            parse_net("10.1.2.3/8").unwrap(),
            "10.0.0.0/8".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            parse_net("2001:db8::1").unwrap(),
            "2001:db8::1/128".parse::<IpNet>().unwrap()
        );
        assert!(parse_net("10.0.0.0/33").is_none());
    }
}
