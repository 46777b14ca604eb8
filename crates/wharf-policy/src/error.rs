//! Load-time errors.

use std::fmt;

/// Why a policy document was refused.
///
/// Its `Display` names the policy, the statement (its `Sid` when it has one,
/// always its zero-based index) and the field:
///
/// ```text
/// policy "scope-down": Statement[1] (Sid "AllowList"): Effect must be "Allow" or "Deny", got "allow"
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    policy: String,
    statement: Option<String>,
    field: Option<String>,
    message: String,
}

impl ParseError {
    pub(crate) fn new(policy: &str, statement: Option<String>, err: FieldError) -> ParseError {
        ParseError {
            policy: policy.to_owned(),
            statement,
            field: err.field,
            message: err.message,
        }
    }

    /// The policy's name, as given to [`crate::Policy::parse`].
    pub fn policy(&self) -> &str {
        &self.policy
    }

    /// The statement, as `Statement[i]` or `Statement[i] (Sid "...")`, when
    /// the error is inside one.
    pub fn statement(&self) -> Option<&str> {
        self.statement.as_deref()
    }

    /// The field (`Effect`, `Action`, `Condition.StringLike.s3:prefix`...),
    /// when the error is about one.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// What is wrong, without the location.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policy \"{}\": ", self.policy)?;
        if let Some(st) = &self.statement {
            write!(f, "{st}: ")?;
        }
        match &self.field {
            Some(field) => write!(f, "{field} {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ParseError {}

/// An error about one field, before the policy and statement are known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    pub(crate) field: Option<String>,
    pub(crate) message: String,
}

impl FieldError {
    /// An error about `field`; `message` continues the sentence
    /// (`must be a string`, `is required`...).
    pub(crate) fn at(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    /// An error about the document as a whole.
    pub(crate) fn whole(message: impl Into<String>) -> FieldError {
        FieldError {
            field: None,
            message: message.into(),
        }
    }
}
