//! Matching of actions, resources and condition values.
//!
//! A [`Pattern`] is compiled once from tokens into the cheapest matcher that
//! fits: `*` alone, an exact literal, a literal prefix followed by `*`, or a
//! general glob (`*` matches any run of characters including `/` and `:`,
//! `?` exactly one character). A [`Template`] is a literal value that may
//! contain variables (the `StringEquals` family). An [`ArnPattern`] compares
//! the six colon-separated ARN components one by one (the `Arn*` operators).
//!
//! Matching returns `Option<bool>`: `None` when a variable the value needs is
//! undefined ("unresolved"); callers decide what that means.

use crate::variables::{Resolver, Tok};

/// Letter case rule for a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Case {
    /// Byte-exact (resources, condition values).
    Sensitive,
    /// ASCII case folded (actions, which are ASCII names).
    AsciiInsensitive,
}

/// One resolved element of a glob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    Lit(&'a str),
    Star,
    One,
}

/// Pieces resolved on the stack for values up to this many tokens.
const STACK_PIECES: usize = 16;

/// Length in bytes of the UTF-8 character starting at `bytes[i]` (clamped).
fn char_len_at(bytes: &[u8], i: usize) -> usize {
    let len = match bytes.get(i) {
        Some(&b) if b < 0x80 => 1,
        Some(&b) if b < 0xE0 => 2,
        Some(&b) if b < 0xF0 => 3,
        Some(_) => 4,
        None => 1,
    };
    len.min(bytes.len().saturating_sub(i)).max(1)
}

fn lit_at(text: &[u8], at: usize, lit: &str, case: Case) -> bool {
    match text.get(at..at.saturating_add(lit.len())) {
        Some(s) => match case {
            Case::Sensitive => s == lit.as_bytes(),
            Case::AsciiInsensitive => s.eq_ignore_ascii_case(lit.as_bytes()),
        },
        None => false,
    }
}

/// Glob match of `text` against `pieces`: linear in the common cases,
/// O(pattern x text) at worst, no recursion and no allocation.
pub(crate) fn glob(pieces: &[Piece<'_>], text: &str, case: Case) -> bool {
    let tb = text.as_bytes();
    let mut pi = 0;
    let mut t = 0;
    // Where to resume after the most recent star: (piece after it, text
    // position its match currently ends at).
    let mut star: Option<(usize, usize)> = None;
    loop {
        if let Some(piece) = pieces.get(pi) {
            match *piece {
                Piece::Star => {
                    if pi + 1 == pieces.len() {
                        return true;
                    }
                    star = Some((pi + 1, t));
                    pi += 1;
                    continue;
                }
                Piece::One => {
                    if t < tb.len() {
                        t += char_len_at(tb, t);
                        pi += 1;
                        continue;
                    }
                }
                Piece::Lit(lit) => {
                    if lit_at(tb, t, lit, case) {
                        t += lit.len();
                        pi += 1;
                        continue;
                    }
                }
            }
        } else if t == tb.len() {
            return true;
        }
        // Mismatch: let the last star swallow one more character.
        match star {
            Some((resume, end)) if end < tb.len() => {
                let next = end + char_len_at(tb, end);
                star = Some((resume, next));
                pi = resume;
                t = next;
            }
            _ => return false,
        }
    }
}

fn piece<'s>(tok: &'s Tok, r: &'s impl Resolver) -> Option<Piece<'s>> {
    Some(match tok {
        Tok::Lit(s) => Piece::Lit(s),
        Tok::Star => Piece::Star,
        Tok::One => Piece::One,
        Tok::Var(v) => Piece::Lit(r.resolve(v)?),
    })
}

/// Resolves `toks` into pieces (on the stack when short) and calls `f`.
/// `None` when a variable is undefined.
fn with_pieces<R>(toks: &[Tok], r: &impl Resolver, f: impl FnOnce(&[Piece<'_>]) -> R) -> Option<R> {
    if toks.len() <= STACK_PIECES {
        let mut buf = [Piece::Star; STACK_PIECES];
        for (slot, tok) in buf.iter_mut().zip(toks) {
            *slot = piece(tok, r)?;
        }
        Some(f(&buf[..toks.len()]))
    } else {
        let pieces = toks
            .iter()
            .map(|t| piece(t, r))
            .collect::<Option<Vec<_>>>()?;
        Some(f(&pieces))
    }
}

/// A compiled wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    kind: PatternKind,
    case: Case,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternKind {
    /// `*`
    Any,
    /// No wildcard, no variable.
    Exact(Box<str>),
    /// `literal*`
    Prefix(Box<str>),
    /// Wildcards, no variables.
    Glob(Box<[Tok]>),
    /// Contains variables.
    Dynamic(Box<[Tok]>),
}

impl Pattern {
    /// Compiles tokens (for `AsciiInsensitive`, literals are lowercased).
    pub(crate) fn compile(mut toks: Vec<Tok>, case: Case) -> Pattern {
        if case == Case::AsciiInsensitive {
            for tok in &mut toks {
                if let Tok::Lit(s) = tok {
                    *s = s.to_ascii_lowercase().into_boxed_str();
                }
            }
        }
        let has_vars = toks.iter().any(|t| matches!(t, Tok::Var(_)));
        let kind = match toks.as_slice() {
            _ if has_vars => PatternKind::Dynamic(toks.into_boxed_slice()),
            [] => PatternKind::Exact("".into()),
            [Tok::Star] => PatternKind::Any,
            [Tok::Lit(s)] => PatternKind::Exact(s.clone()),
            [Tok::Lit(s), Tok::Star] => PatternKind::Prefix(s.clone()),
            _ => PatternKind::Glob(toks.into_boxed_slice()),
        };
        Pattern { kind, case }
    }

    /// Whether `text` matches; `None` when a needed variable is undefined.
    pub(crate) fn matches(&self, text: &str, r: &impl Resolver) -> Option<bool> {
        match &self.kind {
            PatternKind::Any => Some(true),
            PatternKind::Exact(s) => Some(match self.case {
                Case::Sensitive => text == &**s,
                Case::AsciiInsensitive => text.eq_ignore_ascii_case(s),
            }),
            PatternKind::Prefix(p) => Some(lit_at(text.as_bytes(), 0, p, self.case)),
            PatternKind::Glob(toks) | PatternKind::Dynamic(toks) => {
                with_pieces(toks, r, |pieces| glob(pieces, text, self.case))
            }
        }
    }

    /// Whether the pattern needs variables.
    #[cfg(test)]
    pub(crate) fn is_dynamic(&self) -> bool {
        matches!(self.kind, PatternKind::Dynamic(_))
    }
}

/// A literal value, possibly with variables (the `StringEquals` family).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Template {
    Static(Box<str>),
    Dynamic(Box<[Tok]>),
}

impl Template {
    /// Compiles tokens produced without wildcards.
    pub(crate) fn compile(toks: Vec<Tok>) -> Template {
        match toks.as_slice() {
            [] => Template::Static("".into()),
            [Tok::Lit(s)] => Template::Static(s.clone()),
            _ => Template::Dynamic(toks.into_boxed_slice()),
        }
    }

    /// Whether `text` equals the value; `ignore_case` folds Unicode case.
    pub(crate) fn equals(&self, text: &str, ignore_case: bool, r: &impl Resolver) -> Option<bool> {
        match self {
            Template::Static(s) => Some(if ignore_case {
                eq_ignore_case(text, s)
            } else {
                text == &**s
            }),
            Template::Dynamic(toks) => with_pieces(toks, r, |pieces| {
                let parts = pieces.iter().map(|p| match p {
                    Piece::Lit(s) => *s,
                    // Templates are tokenized without wildcards.
                    Piece::Star => "*",
                    Piece::One => "?",
                });
                if ignore_case {
                    parts
                        .flat_map(str::chars)
                        .flat_map(char::to_lowercase)
                        .eq(text.chars().flat_map(char::to_lowercase))
                } else {
                    let mut rest = text;
                    for part in parts {
                        match rest.strip_prefix(part) {
                            Some(r) => rest = r,
                            None => return false,
                        }
                    }
                    rest.is_empty()
                }
            }),
        }
    }
}

/// Unicode case-insensitive equality without allocation.
pub(crate) fn eq_ignore_case(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        a.chars()
            .flat_map(char::to_lowercase)
            .eq(b.chars().flat_map(char::to_lowercase))
    }
}

/// An ARN pattern compared component by component.
///
/// The six parts are `arn:partition:service:region:account:resource`. The
/// first five end at the first five colons; wildcards inside them never cross
/// a colon. The sixth (resource) part is the rest of the string and may itself
/// contain `:` and `/`, which its wildcards do match. A value that is not an
/// ARN (fewer than six parts) matches no ARN pattern, except the pattern `*`
/// alone, which matches any value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArnPattern {
    /// `*`
    Any,
    Parts(Box<[Pattern; 6]>),
}

impl ArnPattern {
    /// Compiles tokens (read with wildcards); `Err` when the pattern does not
    /// have six colon-separated parts.
    pub(crate) fn compile(toks: Vec<Tok>) -> Result<ArnPattern, String> {
        if toks == [Tok::Star] {
            return Ok(ArnPattern::Any);
        }
        let mut parts: Vec<Vec<Tok>> = vec![Vec::new()];
        for tok in toks {
            match tok {
                Tok::Lit(s) if parts.len() < 6 && s.contains(':') => {
                    let mut segs = s.split(':');
                    if let Some(first) = segs.next()
                        && !first.is_empty()
                        && let Some(cur) = parts.last_mut()
                    {
                        cur.push(Tok::Lit(first.into()));
                    }
                    let mut rest_lit = String::new();
                    for seg in segs {
                        if parts.len() < 6 {
                            parts.push(Vec::new());
                            if !seg.is_empty()
                                && let Some(cur) = parts.last_mut()
                            {
                                cur.push(Tok::Lit(seg.into()));
                            }
                        } else {
                            // Colons inside the resource part are literal.
                            rest_lit.push(':');
                            rest_lit.push_str(seg);
                        }
                    }
                    if !rest_lit.is_empty()
                        && let Some(cur) = parts.last_mut()
                    {
                        match cur.last_mut() {
                            Some(Tok::Lit(prev)) => {
                                let mut joined = prev.to_string();
                                joined.push_str(&rest_lit);
                                *prev = joined.into_boxed_str();
                            }
                            _ => cur.push(Tok::Lit(rest_lit.into_boxed_str())),
                        }
                    }
                }
                other => {
                    if let Some(cur) = parts.last_mut() {
                        cur.push(other);
                    }
                }
            }
        }
        let compiled: Vec<Pattern> = parts
            .into_iter()
            .map(|toks| Pattern::compile(toks, Case::Sensitive))
            .collect();
        let arr: [Pattern; 6] = compiled.try_into().map_err(|v: Vec<Pattern>| {
            format!(
                "is not an ARN pattern: it has {} colon-separated parts, an ARN has 6 (arn:partition:service:region:account:resource)",
                v.len()
            )
        })?;
        Ok(ArnPattern::Parts(Box::new(arr)))
    }

    /// Whether `text` matches; `None` when a needed variable is undefined.
    pub(crate) fn matches(&self, text: &str, r: &impl Resolver) -> Option<bool> {
        let parts = match self {
            ArnPattern::Any => return Some(true),
            ArnPattern::Parts(parts) => parts,
        };
        let text_parts = split_arn(text);
        let mut all = true;
        for (pattern, part) in parts.iter().zip(text_parts.unwrap_or([""; 6])) {
            all &= pattern.matches(part, r)?;
        }
        Some(all && text_parts.is_some())
    }
}

/// Splits an ARN into its six parts: five up to the first five colons, then
/// the rest. `None` when it has fewer than five colons.
pub(crate) fn split_arn(text: &str) -> Option<[&str; 6]> {
    let mut parts = [""; 6];
    let mut rest = text;
    for slot in parts.iter_mut().take(5) {
        let i = rest.as_bytes().iter().position(|&b| b == b':')?;
        // `:` is ASCII, so both sides are on character boundaries.
        *slot = rest.get(..i)?;
        rest = rest.get(i + 1..)?;
    }
    parts[5] = rest;
    Some(parts)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::variables::{Syntax, Var, tokenize};

    struct Vars(&'static [(&'static str, &'static str)]);

    impl Resolver for Vars {
        fn resolve<'s>(&'s self, var: &'s Var) -> Option<&'s str> {
            self.0
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&var.key.lower))
                .map(|(_, v)| *v)
                .or(var.default.as_deref())
        }
    }

    const NONE: Vars = Vars(&[]);
    const GLOB: Syntax = Syntax {
        wildcards: true,
        variables: true,
    };

    fn pat(s: &str, case: Case) -> Pattern {
        Pattern::compile(tokenize(s, GLOB).unwrap(), case)
    }

    #[test]
    fn fast_kinds() {
        assert_eq!(pat("*", Case::Sensitive).kind, PatternKind::Any);
        assert_eq!(pat("**", Case::Sensitive).kind, PatternKind::Any);
        assert_eq!(
            pat("s3:GetObject", Case::AsciiInsensitive).kind,
            PatternKind::Exact("s3:getobject".into())
        );
        assert_eq!(
            pat("s3:Get*", Case::AsciiInsensitive).kind,
            PatternKind::Prefix("s3:get".into())
        );
        assert!(matches!(
            pat("s3:*Object", Case::Sensitive).kind,
            PatternKind::Glob(_)
        ));
        assert!(pat("a/${x}", Case::Sensitive).is_dynamic());
    }

    #[test]
    fn glob_semantics() {
        let cases: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("a*", "a", true),
            ("a*b", "ab", true),
            ("a*b", "a/x/b", true),
            ("a*b", "a/x/bc", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "aéc", true),
            ("*.txt", "dir/a.txt", true),
            ("*a*a*a", "aaa", true),
            ("*a*a*a", "aa", false),
            ("a*b*c", "abxbc", true),
            ("", "", true),
            ("", "x", false),
            ("?", "", false),
            ("é*", "été", true),
        ];
        for (p, t, want) in cases {
            assert_eq!(
                pat(p, Case::Sensitive).matches(t, &NONE),
                Some(*want),
                "{p} vs {t}"
            );
        }
    }

    #[test]
    fn case_rules() {
        assert_eq!(
            pat("s3:Get*", Case::AsciiInsensitive).matches("S3:GETOBJECT", &NONE),
            Some(true)
        );
        assert_eq!(
            pat("s3:*object", Case::AsciiInsensitive).matches("S3:GetObject", &NONE),
            Some(true)
        );
        assert_eq!(
            pat("arn:aws:s3:::B/*", Case::Sensitive).matches("arn:aws:s3:::b/x", &NONE),
            Some(false)
        );
    }

    #[test]
    fn variables_are_literal_and_may_be_undefined() {
        let vars = Vars(&[("transfer:username", "a*b")]);
        let p = pat("home/${transfer:UserName}/*", Case::Sensitive);
        assert_eq!(p.matches("home/a*b/x", &vars), Some(true));
        assert_eq!(p.matches("home/axxb/x", &vars), Some(false));
        assert_eq!(p.matches("home/a*b/x", &NONE), None);
        let d = pat("home/${transfer:UserName, 'nobody'}/*", Case::Sensitive);
        assert_eq!(d.matches("home/nobody/x", &NONE), Some(true));
    }

    #[test]
    fn templates() {
        let lit = Syntax {
            wildcards: false,
            variables: true,
        };
        let t = Template::compile(tokenize("team-${aws:PrincipalTag/team}", lit).unwrap());
        let vars = Vars(&[("aws:principaltag/team", "Blue")]);
        assert_eq!(t.equals("team-Blue", false, &vars), Some(true));
        assert_eq!(t.equals("team-blue", false, &vars), Some(false));
        assert_eq!(t.equals("TEAM-BLUE", true, &vars), Some(true));
        assert_eq!(t.equals("team-Blu", false, &vars), Some(false));
        assert_eq!(t.equals("team-Blue", false, &NONE), None);
        let s = Template::compile(tokenize("a*", lit).unwrap());
        assert_eq!(s.equals("a*", false, &NONE), Some(true));
        assert_eq!(s.equals("ab", false, &NONE), Some(false));
    }

    fn arn(s: &str) -> ArnPattern {
        ArnPattern::compile(tokenize(s, GLOB).unwrap()).unwrap()
    }

    #[test]
    fn arn_components() {
        let p = arn("arn:aws:iam::*:role/x");
        assert_eq!(
            p.matches("arn:aws:iam::000000000000:role/x", &NONE),
            Some(true)
        );
        // `*` in the account part must not swallow a colon.
        assert_eq!(p.matches("arn:aws:iam::a:b:role/x", &NONE), Some(false));
        // A whole-string glob would match this; component matching does not.
        assert_eq!(
            p.matches("arn:aws:iam::000:extra:role/x", &NONE),
            Some(false)
        );
        // A pattern whose wildcard would have to cross colons is not an ARN.
        assert!(ArnPattern::compile(tokenize("arn:aws:*:role/x", GLOB).unwrap()).is_err());
        let r = arn("arn:aws:iam::000000000000:role/*");
        assert_eq!(
            r.matches("arn:aws:iam::000000000000:role/a/b:c", &NONE),
            Some(true)
        );
        assert_eq!(
            r.matches("arn:aws:iam::000000000000:user/a", &NONE),
            Some(false)
        );
        assert_eq!(r.matches("not-an-arn", &NONE), Some(false));
        assert_eq!(arn("*").matches("anything", &NONE), Some(true));
        assert!(ArnPattern::compile(tokenize("arn:aws:s3", GLOB).unwrap()).is_err());
        let vars = Vars(&[("aws:principaltag/acct", "000000000000")]);
        let v = arn("arn:aws:iam::${aws:PrincipalTag/acct}:role/*");
        assert_eq!(
            v.matches("arn:aws:iam::000000000000:role/x", &vars),
            Some(true)
        );
        assert_eq!(v.matches("arn:aws:iam::000000000000:role/x", &NONE), None);
    }

    #[test]
    fn split_arn_parts() {
        assert_eq!(
            split_arn("arn:aws:s3:::b/k:x"),
            Some(["arn", "aws", "s3", "", "", "b/k:x"])
        );
        assert_eq!(split_arn("arn:aws:s3::"), None);
        assert_eq!(
            split_arn("arn:a:b:c:d:"),
            Some(["arn", "a", "b", "c", "d", ""])
        );
    }

    #[test]
    fn arn_resource_part_keeps_colons() {
        let p = arn("arn:aws:logs:us-east-1:000000000000:log-group:g:*");
        assert_eq!(
            p.matches(
                "arn:aws:logs:us-east-1:000000000000:log-group:g:log-stream:s",
                &NONE
            ),
            Some(true)
        );
        assert_eq!(
            p.matches("arn:aws:logs:us-east-1:000000000000:log-group:h:x", &NONE),
            Some(false)
        );
    }
}
