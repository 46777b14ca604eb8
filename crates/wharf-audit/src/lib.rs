//! The structured activity log, in the AWS Transfer Family schema.
//!
//! One JSON object per line, field names exactly as AWS Transfer Family writes
//! them to CloudWatch (`activity-type`, `session-id`, `bytes-in`, ...), so that
//! existing parsers keep working. wharf adds `timestamp`, `protocol`,
//! `duration-ms` (on `CLOSE`) and `reason` (on failures and denials).
//!
//! This crate knows the schema and where lines go. It does not know protocols,
//! stores or policies: callers fill in [`SessionFields`] once per session and
//! an [`Event`] per activity. It never sees a password: no field can hold one.

use std::io::Write;
use std::sync::Arc;

mod metrics;
pub use metrics::Metrics;

use parking_lot::Mutex;
use serde::Serialize;

/// What happened; the `activity-type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Activity {
    Connected,
    AuthFailure,
    Open,
    Close,
    PartialClose,
    Mkdir,
    Rmdir,
    Delete,
    Rename,
    Setstat,
    Error,
    Disconnected,
    AccessDenied,
}

/// The fields that stay the same for every line of one session.
///
/// Built by the front-end at connection time and completed at login.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SessionFields {
    pub session_id: String,
    pub resource_arn: String,
    pub protocol: &'static str,
    pub source_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ciphers: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_public_key_fingerprint: Option<String>,
}

/// One activity. Fields left `None` are not written.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Event<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_path: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_in: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_out: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

#[derive(Serialize)]
struct Line<'a> {
    timestamp: String,
    #[serde(rename = "activity-type")]
    activity: Activity,
    #[serde(flatten)]
    session: &'a SessionFields,
    #[serde(flatten)]
    event: &'a Event<'a>,
}

/// Where log lines go. Cheap to clone; every clone writes to the same place.
#[derive(Clone)]
pub struct AuditLog {
    sink: Arc<Mutex<Box<dyn Write + Send>>>,
    /// Counters of every line written (`/metrics`).
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog")
    }
}

impl AuditLog {
    /// Lines go to standard output.
    pub fn stdout() -> Self {
        Self::to_writer(Box::new(std::io::stdout()))
    }

    /// Lines go to any writer (a file, or a buffer in tests).
    pub fn to_writer(writer: Box<dyn Write + Send>) -> Self {
        AuditLog {
            sink: Arc::new(Mutex::new(writer)),
            metrics: Arc::new(Metrics::default()),
        }
    }

    /// The counters of the lines written so far.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Lines are dropped (for commands that are not servers).
    pub fn discard() -> Self {
        Self::to_writer(Box::new(std::io::sink()))
    }

    /// Writes one line. A failing sink is reported on stderr once per line and
    /// never fails the operation being logged.
    pub fn record(&self, activity: Activity, session: &SessionFields, event: &Event<'_>) {
        self.metrics.count(activity, session, event);
        let line = Line {
            timestamp: now_rfc3339(),
            activity,
            session,
            event,
        };
        let mut text = match serde_json::to_string(&line) {
            Ok(text) => text,
            Err(error) => {
                eprintln!("wharf: cannot encode log line: {error}");
                return;
            }
        };
        text.push('\n');
        let mut sink = self.sink.lock();
        if let Err(error) = sink.write_all(text.as_bytes()).and_then(|()| sink.flush()) {
            eprintln!("wharf: cannot write log line: {error}");
        }
    }
}

/// The current time as RFC 3339 with millisecond precision, UTC.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    now.format(&format)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_the_aws_schema_field_names() {
        let buffer = Buffer::default();
        let log = AuditLog::to_writer(Box::new(buffer.clone()));
        let session = SessionFields {
            session_id: "abc".into(),
            resource_arn: "arn:wharf:transfer:::server/s-1".into(),
            protocol: "SFTP",
            source_ip: "127.0.0.1".into(),
            user: Some("alice".into()),
            ..SessionFields::default()
        };
        log.record(
            Activity::Close,
            &session,
            &Event {
                path: Some("/a.txt"),
                bytes_in: Some(5),
                duration_ms: Some(3),
                ..Event::default()
            },
        );
        let text = String::from_utf8(buffer.0.lock().clone()).unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_default();
        assert_eq!(value["activity-type"], "CLOSE");
        assert_eq!(value["session-id"], "abc");
        assert_eq!(value["bytes-in"], 5);
        assert_eq!(value["duration-ms"], 3);
        assert_eq!(value["user"], "alice");
        assert_eq!(value["path"], "/a.txt");
        assert!(value.get("bytes-out").is_none());
        assert!(value["timestamp"].as_str().unwrap_or("").ends_with('Z'));
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
    }
}
