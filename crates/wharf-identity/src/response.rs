//! Validation of an identity provider's response (SPEC section 3).
//!
//! Here: [`validate_response`] and the fields it checks itself (role,
//! policy, keys, POSIX profile, session tags). The home directory (PATH or
//! LOGICAL, its paths and mappings) is checked in `home`; fields outside
//! the response contract are named in `unknown`.

mod home;
mod unknown;

use std::collections::BTreeMap;

use serde_json::Value;

use self::unknown::unknown_fields;
pub(crate) use self::unknown::unknown_fields_warning;

/// The fields of the response contract (SPEC section 3), as the response
/// object names them: what a provider's answer may hold, and what the
/// ldap and sql providers may fill from attributes and columns.
pub(crate) const RESPONSE_FIELDS: [&str; 8] = [
    "Role",
    "Policy",
    "HomeDirectoryType",
    "HomeDirectory",
    "HomeDirectoryDetails",
    "PublicKeys",
    "PosixProfile",
    "SessionTags",
];
use crate::{AuthorizedKey, Identity, PosixProfile, ValidationContext};

/// The most public keys one response may hold.
const MAX_KEYS: usize = 100;
/// The most session tags.
const MAX_TAGS: usize = 50;

/// Validates a response object into an [`Identity`], or says precisely why
/// it denies the login.
pub fn validate_response(
    response: &Value,
    username: &str,
    context: &ValidationContext,
) -> Result<Identity, String> {
    let Value::Object(object) = response else {
        return Err("the response is not a JSON object".to_owned());
    };
    if object.is_empty() {
        return Err("the identity provider returned an empty response (denied)".to_owned());
    }
    let unknown_fields = unknown_fields(object);

    let role = match string_field(object, "Role")? {
        None => None,
        Some(role) if role.starts_with("arn:") => Some(
            context
                .roles
                .iter()
                .find(|(_, arn)| arn.as_str() == role)
                .map(|(name, _)| name.clone())
                .ok_or_else(|| format!("Role {role:?} is not the ARN of a role in [roles]"))?,
        ),
        Some(role) => {
            if !context.roles.contains_key(role) {
                return Err(format!("Role {role:?} is not in [roles]"));
            }
            Some(role.to_owned())
        }
    };

    let policy = match object.get("Policy") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(value) => {
            let policy = json_or_string("Policy", value)?;
            if !policy.is_object() {
                return Err("Policy must be an IAM policy document (a JSON object)".to_owned());
            }
            if let Some(check) = &context.check_policy {
                check(&policy).map_err(|e| format!("Policy does not parse: {e}"))?;
            }
            Some(policy)
        }
    };

    let home = home::home(object, username, &context.stores)?;

    let public_keys = match object.get("PublicKeys") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => {
            if items.len() > MAX_KEYS {
                return Err(format!("PublicKeys has more than {MAX_KEYS} keys"));
            }
            items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(line) => {
                        AuthorizedKey::parse(line).map_err(|e| format!("PublicKeys[{i}]: {e}"))
                    }
                    _ => Err(format!("PublicKeys[{i}] must be a string")),
                })
                .collect::<Result<_, _>>()?
        }
        Some(_) => return Err("PublicKeys must be a list of OpenSSH public keys".to_owned()),
    };

    let posix_profile = match object.get("PosixProfile") {
        None | Some(Value::Null) => None,
        Some(value) => Some(posix_profile(value)?),
    };
    let session_tags = match object.get("SessionTags") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(value) => session_tags(value)?,
    };

    Ok(Identity {
        username: username.to_owned(),
        role,
        policy,
        home,
        public_keys,
        posix_profile,
        session_tags,
        unknown_fields,
    })
}

fn string_field<'a>(
    object: &'a serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, String> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{field} must be a string")),
    }
}

/// A value that AWS sends as a JSON string holding JSON, which wharf also
/// accepts as the JSON itself.
fn json_or_string(field: &str, value: &Value) -> Result<Value, String> {
    match value {
        Value::String(text) => serde_json::from_str(text)
            .map_err(|e| format!("{field} is a string that is not valid JSON: {e}")),
        other => Ok(other.clone()),
    }
}

fn session_tags(value: &Value) -> Result<BTreeMap<String, String>, String> {
    let tags = json_or_string("SessionTags", value)?;
    let Value::Object(object) = tags else {
        return Err("SessionTags must be an object of {\"key\": \"value\"}".to_owned());
    };
    if object.len() > MAX_TAGS {
        return Err(format!("SessionTags has more than {MAX_TAGS} tags"));
    }
    let mut out = BTreeMap::new();
    for (key, value) in object {
        if key.is_empty() || key.len() > 128 {
            return Err("SessionTags keys must be 1 to 128 characters".to_owned());
        }
        let Value::String(value) = value else {
            return Err(format!("SessionTags.{key} must be a string"));
        };
        if value.len() > 256 {
            return Err(format!("SessionTags.{key} is longer than 256 characters"));
        }
        out.insert(key.clone(), value.clone());
    }
    Ok(out)
}

fn posix_profile(value: &Value) -> Result<PosixProfile, String> {
    let Value::Object(object) = value else {
        return Err("PosixProfile must be an object with Uid and Gid".to_owned());
    };
    let id = |field: &str| -> Result<u32, String> {
        object
            .get(field)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("PosixProfile.{field} must be a number from 0 to 4294967295"))
    };
    let secondary = match object.get("SecondaryGids") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| "PosixProfile.SecondaryGids must hold numbers".to_owned())
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("PosixProfile.SecondaryGids must be a list".to_owned()),
    };
    Ok(PosixProfile {
        uid: id("Uid")?,
        gid: id("Gid")?,
        secondary_gids: secondary,
    })
}

#[cfg(test)]
mod tests;
