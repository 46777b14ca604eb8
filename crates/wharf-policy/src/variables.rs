//! Policy variables (`${transfer:UserName}`, `${aws:PrincipalTag/team, 'none'}`)
//! and condition key names.
//!
//! A value string is split once, at load, into [`Tok`]ens: literal text,
//! wildcards (`*`, `?`) and variable references. Evaluation never re-parses it.
//!
//! Rules, from the IAM User Guide page "IAM policy elements: Variables and
//! tags":
//! - variables are substituted only in policies of `Version` `2012-10-17`; in
//!   `2008-10-17` (and when `Version` is absent) `${...}` is literal text;
//! - `${*}`, `${?}` and `${$}` stand for the literal characters `*`, `?` and
//!   `$` (never wildcards);
//! - `${key, 'default'}` uses `default` when the key has no value;
//! - key names are case-insensitive;
//! - a variable whose key has no single value (absent, or multi-valued) and no
//!   default is *undefined*: the value that needs it matches nothing (see
//!   `matcher` and `conditions` for what that means for negated forms).
//!
//! Substituted text is always literal: a `*` inside a user name or a tag value
//! is not a wildcard.

/// The most tokens a single value may compile to; longer values are refused
/// at load (a limit on everything: they would only slow matching).
pub(crate) const MAX_TOKENS: usize = 256;

/// A condition key or variable name, lowercased once at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key {
    /// The name as written in the policy, for messages.
    pub(crate) name: Box<str>,
    /// `name` lowercased: the lookup key.
    pub(crate) lower: Box<str>,
    /// Keys that the evaluator derives from the request itself.
    pub(crate) special: Special,
}

/// Keys with a value derived from [`crate::Request`] rather than the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    /// An ordinary key, looked up in `extra` then `context`.
    None,
    /// `aws:CurrentTime`: from `Request::current_time` unless `extra` sets it.
    CurrentTime,
    /// `aws:EpochTime`: from `Request::current_time` unless `extra` sets it.
    EpochTime,
    /// `aws:PrincipalArn`: from the context, else `Request::principal_arn`.
    PrincipalArn,
}

impl Key {
    /// Builds a key from its policy spelling.
    pub(crate) fn new(name: &str) -> Key {
        let lower = lowercase(name);
        let special = match lower.as_str() {
            "aws:currenttime" => Special::CurrentTime,
            "aws:epochtime" => Special::EpochTime,
            "aws:principalarn" => Special::PrincipalArn,
            _ => Special::None,
        };
        Key {
            name: name.into(),
            lower: lower.into_boxed_str(),
            special,
        }
    }
}

/// Lowercases a key name, character by character (so that it agrees with
/// [`key_eq`]), with an ASCII fast path.
pub(crate) fn lowercase(s: &str) -> String {
    if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        s.chars().flat_map(char::to_lowercase).collect()
    }
}

/// Whether `raw` names the same key as the already-lowercased `lower`.
pub(crate) fn key_eq(lower: &str, raw: &str) -> bool {
    if raw.is_ascii() {
        raw.eq_ignore_ascii_case(lower)
    } else {
        raw.chars().flat_map(char::to_lowercase).eq(lower.chars())
    }
}

/// A variable reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Var {
    pub(crate) key: Key,
    pub(crate) default: Option<Box<str>>,
}

/// One token of a compiled value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// Literal text (already free of wildcards and escapes).
    Lit(Box<str>),
    /// `*`: any run of characters, including `/` and empty.
    Star,
    /// `?`: exactly one character.
    One,
    /// A variable, substituted literally at evaluation.
    Var(Var),
}

/// How to read a value string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Syntax {
    /// `*` and `?` are wildcards (StringLike, ArnLike, Action, Resource).
    pub(crate) wildcards: bool,
    /// `${...}` is a variable (policy `Version` 2012-10-17).
    pub(crate) variables: bool,
}

/// Resolves variables during one evaluation.
pub(crate) trait Resolver {
    /// The value of `var`, its default when undefined, or `None`.
    fn resolve<'s>(&'s self, var: &'s Var) -> Option<&'s str>;
}

/// Splits `raw` into tokens. Consecutive literals are merged and consecutive
/// stars collapse into one.
pub(crate) fn tokenize(raw: &str, syntax: Syntax) -> Result<Vec<Tok>, String> {
    let mut out = Tokens::default();
    let mut rest = raw;
    while !rest.is_empty() {
        if syntax.variables
            && let Some(after) = rest.strip_prefix("${")
        {
            let (tok, remaining) = parse_variable(after)?;
            out.push(tok);
            rest = remaining;
            continue;
        }
        // Take one character.
        let mut chars = rest.chars();
        let Some(c) = chars.next() else { break };
        rest = chars.as_str();
        match c {
            '*' if syntax.wildcards => out.push(Tok::Star),
            '?' if syntax.wildcards => out.push(Tok::One),
            _ => out.push_char(c),
        }
    }
    let toks = out.finish();
    if toks.len() > MAX_TOKENS {
        return Err(format!(
            "has {} wildcard/variable parts, more than the limit of {MAX_TOKENS}",
            toks.len()
        ));
    }
    Ok(toks)
}

/// Parses what follows `${`, returning the token and the text after `}`.
fn parse_variable(after: &str) -> Result<(Tok, &str), String> {
    // Escapes.
    for (esc, lit) in [("*}", "*"), ("?}", "?"), ("$}", "$")] {
        if let Some(rest) = after.strip_prefix(esc) {
            return Ok((Tok::Lit(lit.into()), rest));
        }
    }
    let end_key = after.find([',', '}']).ok_or_else(|| {
        "has an unterminated policy variable \"${\" (no closing \"}\")".to_owned()
    })?;
    let name = after[..end_key].trim();
    if name.is_empty() {
        return Err("has an empty policy variable \"${}\"".to_owned());
    }
    let tail = &after[end_key..];
    if let Some(rest) = tail.strip_prefix('}') {
        let var = Var {
            key: Key::new(name),
            default: None,
        };
        return Ok((Tok::Var(var), rest));
    }
    // `, 'default'}`
    let rest = tail.get(1..).unwrap_or("").trim_start();
    let bad_default = || {
        format!(
            "has a malformed default in policy variable \"${{{name}, ...}}\" (expected ${{{name}, 'value'}})"
        )
    };
    let quoted = rest.strip_prefix('\'').ok_or_else(bad_default)?;
    let close = quoted.find('\'').ok_or_else(bad_default)?;
    let default = &quoted[..close];
    let rest = quoted[close + 1..]
        .trim_start()
        .strip_prefix('}')
        .ok_or_else(bad_default)?;
    let var = Var {
        key: Key::new(name),
        default: Some(default.into()),
    };
    Ok((Tok::Var(var), rest))
}

#[derive(Default)]
struct Tokens {
    toks: Vec<Tok>,
    lit: String,
}

impl Tokens {
    fn push_char(&mut self, c: char) {
        self.lit.push(c);
    }

    fn flush(&mut self) {
        if !self.lit.is_empty() {
            let lit = std::mem::take(&mut self.lit);
            self.toks.push(Tok::Lit(lit.into_boxed_str()));
        }
    }

    fn push(&mut self, tok: Tok) {
        match tok {
            Tok::Lit(s) => self.lit.push_str(&s),
            Tok::Star => {
                self.flush();
                if self.toks.last() != Some(&Tok::Star) {
                    self.toks.push(Tok::Star);
                }
            }
            other => {
                self.flush();
                self.toks.push(other);
            }
        }
    }

    fn finish(mut self) -> Vec<Tok> {
        self.flush();
        self.toks
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const GLOB_VARS: Syntax = Syntax {
        wildcards: true,
        variables: true,
    };

    fn lit(s: &str) -> Tok {
        Tok::Lit(s.into())
    }

    fn var(name: &str, default: Option<&str>) -> Tok {
        Tok::Var(Var {
            key: Key::new(name),
            default: default.map(Into::into),
        })
    }

    #[test]
    fn splits_literals_wildcards_and_variables() {
        let toks = tokenize("arn:aws:s3:::b/${transfer:UserName}/*", GLOB_VARS).unwrap();
        assert_eq!(
            toks,
            vec![
                lit("arn:aws:s3:::b/"),
                var("transfer:UserName", None),
                lit("/"),
                Tok::Star
            ]
        );
    }

    #[test]
    fn escapes_are_literal_and_merge() {
        let toks = tokenize("a${*}b${?}${$}c*?", GLOB_VARS).unwrap();
        assert_eq!(toks, vec![lit("a*b?$c"), Tok::Star, Tok::One]);
    }

    #[test]
    fn defaults() {
        let toks = tokenize("${aws:PrincipalTag/team, 'none'}", GLOB_VARS).unwrap();
        assert_eq!(toks, vec![var("aws:PrincipalTag/team", Some("none"))]);
        let toks = tokenize("${x,''}", GLOB_VARS).unwrap();
        assert_eq!(toks, vec![var("x", Some(""))]);
        assert!(tokenize("${x, none}", GLOB_VARS).is_err());
        assert!(tokenize("${x, 'none'", GLOB_VARS).is_err());
    }

    #[test]
    fn malformed_variables_are_errors() {
        assert!(tokenize("${", GLOB_VARS).is_err());
        assert!(tokenize("a${b", GLOB_VARS).is_err());
        assert!(tokenize("${}", GLOB_VARS).is_err());
        assert!(tokenize("${ }", GLOB_VARS).is_err());
    }

    #[test]
    fn no_variables_in_2008_policies() {
        let toks = tokenize(
            "${x}*",
            Syntax {
                wildcards: true,
                variables: false,
            },
        )
        .unwrap();
        assert_eq!(toks, vec![lit("${x}"), Tok::Star]);
    }

    #[test]
    fn stars_collapse_and_literal_mode_keeps_wildcards() {
        assert_eq!(
            tokenize("a**b", GLOB_VARS).unwrap(),
            vec![lit("a"), Tok::Star, lit("b")]
        );
        let literal = Syntax {
            wildcards: false,
            variables: true,
        };
        assert_eq!(tokenize("a*?b", literal).unwrap(), vec![lit("a*?b")]);
    }

    #[test]
    fn keys_are_case_insensitive() {
        let k = Key::new("aws:PrincipalTag/Team");
        assert_eq!(&*k.lower, "aws:principaltag/team");
        assert!(key_eq(&k.lower, "AWS:principalTAG/team"));
        assert!(!key_eq(&k.lower, "aws:principaltag/teams"));
        assert_eq!(Key::new("AWS:CurrentTime").special, Special::CurrentTime);
    }
}
