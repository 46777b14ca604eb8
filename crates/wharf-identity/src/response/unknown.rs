//! Fields of a provider's answer that are not part of the response
//! contract: listed in the [`Identity`](crate::Identity), and named (never
//! shown) in a bounded warning.

use serde_json::Value;

/// The most unknown field names one warning names.
const MAX_NAMED_FIELDS: usize = 20;
/// The most characters of one unknown field name a warning shows.
const MAX_NAME_CHARS: usize = 64;

/// The fields of a response object that are not part of the response
/// contract (SPEC section 3), in order.
pub(crate) fn unknown_fields(object: &serde_json::Map<String, Value>) -> Vec<String> {
    object
        .keys()
        .filter(|k| !super::RESPONSE_FIELDS.contains(&k.as_str()))
        .cloned()
        .collect()
}

/// The warning for the unknown fields of one provider answer, naming them
/// and never showing their values (SPEC section 3), or `None` when every
/// field is known. `redact` removes what must not be shown from a name (a
/// provider echoing the password as a key). Names are quoted and escaped,
/// shortened, and at most [`MAX_NAMED_FIELDS`] are named.
pub(crate) fn unknown_fields_warning(
    kind: &str,
    object: &serde_json::Map<String, Value>,
    redact: impl Fn(&str) -> String,
) -> Option<String> {
    let unknown = unknown_fields(object);
    if unknown.is_empty() {
        return None;
    }
    let mut names: Vec<String> = unknown
        .iter()
        .take(MAX_NAMED_FIELDS)
        .map(|name| {
            let name = redact(name);
            let short: String = name.chars().take(MAX_NAME_CHARS).collect();
            let more = if short.len() < name.len() { "..." } else { "" };
            format!("{short:?}{more}")
        })
        .collect();
    if unknown.len() > MAX_NAMED_FIELDS {
        names.push(format!("and {} more", unknown.len() - MAX_NAMED_FIELDS));
    }
    Some(format!(
        "the {kind} identity provider's answer has fields that are not part of the response \
         object, ignored: {}",
        names.join(", ")
    ))
}
