use std::fmt;

/// Why a username is refused before any provider is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsernameError {
    Length(usize),
    Character(char),
    Start(char),
}

impl fmt::Display for UsernameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsernameError::Length(n) => {
                write!(f, "username must be 3 to 100 characters long, got {n}")
            }
            UsernameError::Character(c) => write!(
                f,
                "username may contain only letters, digits, '_', '.', '@' and '-', not {c:?}"
            ),
            UsernameError::Start(c) => write!(f, "username must not start with {c:?}"),
        }
    }
}

impl std::error::Error for UsernameError {}

/// AWS Transfer Family's rule: 3 to 100 characters of ASCII letters, digits,
/// `_ . @ -`, not starting with `- . @`.
pub fn check_username(name: &str) -> Result<(), UsernameError> {
    let count = name.chars().count();
    if !(3..=100).contains(&count) {
        return Err(UsernameError::Length(count));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-')))
    {
        return Err(UsernameError::Character(bad));
    }
    match name.chars().next() {
        Some(first @ ('-' | '.' | '@')) => Err(UsernameError::Start(first)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_username_rules() {
        for good in [
            "bob",
            "alice.smith",
            "a_b",
            "user@example.com",
            "x-1",
            "A1b",
            &"a".repeat(100),
        ] {
            assert_eq!(check_username(good), Ok(()), "{good}");
        }
        let cases = [
            ("ab", UsernameError::Length(2)),
            ("", UsernameError::Length(0)),
            (&"a".repeat(101), UsernameError::Length(101)),
            ("-bob", UsernameError::Start('-')),
            (".bob", UsernameError::Start('.')),
            ("@bob", UsernameError::Start('@')),
            ("bo b", UsernameError::Character(' ')),
            ("bob/..", UsernameError::Character('/')),
            ("bob\0x", UsernameError::Character('\0')),
            ("bób", UsernameError::Character('ó')),
            ("bob$", UsernameError::Character('$')),
        ];
        for (bad, expected) in cases {
            assert_eq!(check_username(bad), Err(expected), "{bad:?}");
        }
    }
}
