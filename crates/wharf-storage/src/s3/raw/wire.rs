//! The bodies of S3 requests and responses that `raw` handles: percent
//! encoding of keys and queries, the CompleteMultipartUpload document, and
//! the XML of error, InitiateMultipartUpload, UploadPartCopy and
//! GetObjectTagging responses.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ErrorBody {
    #[serde(default)]
    pub(super) code: String,
    #[serde(default)]
    pub(super) message: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InitiateResult {
    upload_id: String,
}

#[derive(Debug, Deserialize)]
struct CopyPartResult {
    #[serde(rename = "ETag", default)]
    etag: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tagging {
    #[serde(default)]
    tag_set: TagSet,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagSet {
    #[serde(default)]
    tag: Vec<Tag>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    key: String,
    #[serde(default)]
    value: String,
}

/// The tags of a GetObjectTagging response body.
pub(crate) fn parse_tagging(body: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).ok()?;
    let tagging = quick_xml::de::from_str::<Tagging>(text).ok()?;
    Some(
        tagging
            .tag_set
            .tag
            .into_iter()
            .map(|tag| (tag.key, tag.value))
            .collect(),
    )
}

/// A part that has been uploaded.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub(crate) number: u32,
    pub(crate) etag: String,
}

/// Percent-encodes everything but RFC 3986 unreserved characters (and `/`
/// when `keep_slash`), the way SigV4 canonicalizes S3 paths and queries.
pub(crate) fn encode(value: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(HEX[usize::from(byte >> 4)] as char);
                out.push(HEX[usize::from(byte & 15)] as char);
            }
        }
    }
    out
}

fn xml_escape(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Builds the body of CompleteMultipartUpload.
pub(crate) fn complete_body(parts: &[Part]) -> String {
    let mut body = String::from("<CompleteMultipartUpload>");
    for part in parts {
        body.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>{}</ETag></Part>",
            part.number,
            xml_escape(&part.etag)
        ));
    }
    body.push_str("</CompleteMultipartUpload>");
    body
}

/// The S3 error code and message of an error response body, if it is one.
pub(super) fn error_body(body: &[u8]) -> ErrorBody {
    std::str::from_utf8(body)
        .ok()
        .filter(|text| text.contains("<Error"))
        .and_then(|text| quick_xml::de::from_str::<ErrorBody>(text).ok())
        .unwrap_or_default()
}

pub(crate) fn parse_upload_id(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    quick_xml::de::from_str::<InitiateResult>(text)
        .ok()
        .map(|r| r.upload_id)
        .filter(|id| !id.is_empty())
}

pub(crate) fn parse_copy_etag(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    quick_xml::de::from_str::<CopyPartResult>(text)
        .ok()
        .map(|r| r.etag)
        .filter(|etag| !etag.is_empty())
}
