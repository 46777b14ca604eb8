//! Counters derived from the activity log, rendered in the Prometheus text
//! format (SPEC section 6).
//!
//! Every activity line already says what happened (a login, a transfer and
//! its bytes, a denial, an error), so the counters are kept where lines are
//! written: nothing can be logged without being counted, and front-ends
//! count nothing themselves. What is not an activity (the identity
//! provider's latency, gauges of other crates) is added by its owner.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::{Activity, Event, SessionFields};

/// Upper bounds of the identity provider latency histogram, in seconds.
const LATENCY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

#[derive(Debug, Default)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct State {
    /// (metric, labels) -> value. Labels are written `key="value",...`.
    counters: BTreeMap<(&'static str, String), u64>,
    /// Sessions open by protocol.
    sessions: BTreeMap<&'static str, i64>,
    provider: Histogram,
    provider_last_ok: Option<Instant>,
    provider_last_error: Option<Instant>,
}

/// The process's counters. Shared by every clone of an `AuditLog`.
#[derive(Debug, Default)]
pub struct Metrics {
    state: Mutex<State>,
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn activity_name(activity: Activity) -> &'static str {
    match activity {
        Activity::Connected => "CONNECTED",
        Activity::AuthFailure => "AUTH_FAILURE",
        Activity::Open => "OPEN",
        Activity::Close => "CLOSE",
        Activity::PartialClose => "PARTIAL_CLOSE",
        Activity::Mkdir => "MKDIR",
        Activity::Rmdir => "RMDIR",
        Activity::Delete => "DELETE",
        Activity::Rename => "RENAME",
        Activity::Setstat => "SETSTAT",
        Activity::Error => "ERROR",
        Activity::Disconnected => "DISCONNECTED",
        Activity::AccessDenied => "ACCESS_DENIED",
    }
}

impl Metrics {
    fn add(state: &mut State, metric: &'static str, labels: String, by: u64) {
        *state.counters.entry((metric, labels)).or_insert(0) += by;
    }

    /// Counts one activity line.
    pub(crate) fn count(&self, activity: Activity, session: &SessionFields, event: &Event<'_>) {
        let protocol = escape(session.protocol);
        let mut state = self.state.lock();
        let state = &mut *state;
        match activity {
            Activity::Connected => {
                *state.sessions.entry(session.protocol).or_insert(0) += 1;
                let labels = format!("protocol=\"{protocol}\",result=\"ok\"");
                Metrics::add(state, "wharf_logins_total", labels, 1);
            }
            Activity::Disconnected => {
                *state.sessions.entry(session.protocol).or_insert(0) -= 1;
            }
            Activity::AuthFailure => {
                let message = event.message.unwrap_or_default();
                if message == "address banned" {
                    Metrics::add(state, "wharf_bans_total", String::new(), 1);
                } else {
                    let result = if message.starts_with("connection refused at accept") {
                        "refused"
                    } else {
                        "failed"
                    };
                    let labels = format!("protocol=\"{protocol}\",result=\"{result}\"");
                    Metrics::add(state, "wharf_logins_total", labels, 1);
                }
            }
            other => {
                let (operation, result) = match other {
                    Activity::AccessDenied => (event.operation.unwrap_or("OTHER"), "denied"),
                    Activity::Error => (
                        event.operation.unwrap_or(match event.message {
                            Some("protocol violation") => "PROTOCOL",
                            _ => "OTHER",
                        }),
                        "error",
                    ),
                    Activity::PartialClose => ("CLOSE", "partial"),
                    done => (activity_name(done), "ok"),
                };
                let labels = format!(
                    "protocol=\"{protocol}\",operation=\"{}\",result=\"{result}\"",
                    escape(operation)
                );
                Metrics::add(state, "wharf_operations_total", labels, 1);
                if matches!(other, Activity::Close | Activity::PartialClose) {
                    for (direction, bytes) in [("in", event.bytes_in), ("out", event.bytes_out)] {
                        if let Some(bytes) = bytes {
                            let labels =
                                format!("protocol=\"{protocol}\",direction=\"{direction}\"");
                            Metrics::add(state, "wharf_bytes_total", labels, bytes);
                        }
                    }
                }
                if other == Activity::Error && event.operation.is_some() {
                    Metrics::add(state, "wharf_store_errors_total", String::new(), 1);
                }
            }
        }
    }

    /// One identity provider call: how long it took, and whether the
    /// provider answered (a denial is an answer; a timeout or a 5xx is not).
    pub fn observe_provider(&self, took: Duration, answered: bool) {
        let seconds = took.as_secs_f64();
        let mut state = self.state.lock();
        let histogram = &mut state.provider;
        for (bucket, bound) in histogram.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
        let now = Instant::now();
        if answered {
            state.provider_last_ok = Some(now);
        } else {
            state.provider_last_error = Some(now);
        }
    }

    /// Whether the identity provider is failing now: its last call, within
    /// `recent`, did not get an answer.
    pub fn provider_failing(&self, recent: Duration) -> bool {
        let state = self.state.lock();
        match (state.provider_last_error, state.provider_last_ok) {
            (Some(error), ok) => error.elapsed() < recent && ok.is_none_or(|ok| ok < error),
            (None, _) => false,
        }
    }

    /// Everything counted, in the Prometheus text format.
    pub fn render(&self) -> String {
        let state = self.state.lock();
        let mut out = String::new();
        let help = |out: &mut String, name: &str, kind: &str, text: &str| {
            let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
        };
        help(
            &mut out,
            "wharf_sessions_open",
            "gauge",
            "Sessions logged in now.",
        );
        for protocol in ["SFTP", "FTPS", "FTP"] {
            let open = state.sessions.get(protocol).copied().unwrap_or(0).max(0);
            let _ = writeln!(out, "wharf_sessions_open{{protocol=\"{protocol}\"}} {open}");
        }
        let described: [(&str, &str); 5] = [
            (
                "wharf_logins_total",
                "Logins by protocol and result (ok, failed, refused at accept).",
            ),
            (
                "wharf_bans_total",
                "Addresses banned by the brute-force defence.",
            ),
            (
                "wharf_operations_total",
                "File operations by protocol, operation and result.",
            ),
            ("wharf_bytes_total", "Bytes moved by file transfers."),
            (
                "wharf_store_errors_total",
                "Operations that failed in a store.",
            ),
        ];
        for (name, text) in described {
            help(&mut out, name, "counter", text);
            let mut any = false;
            for ((metric, labels), value) in &state.counters {
                if *metric == name {
                    any = true;
                    if labels.is_empty() {
                        let _ = writeln!(out, "{name} {value}");
                    } else {
                        let _ = writeln!(out, "{name}{{{labels}}} {value}");
                    }
                }
            }
            if !any
                && !matches!(
                    name,
                    "wharf_logins_total" | "wharf_operations_total" | "wharf_bytes_total"
                )
            {
                let _ = writeln!(out, "{name} 0");
            }
        }
        let name = "wharf_identity_provider_seconds";
        help(
            &mut out,
            name,
            "histogram",
            "Identity provider call latency.",
        );
        let histogram = &state.provider;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(histogram.buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", histogram.count);
        let _ = writeln!(out, "{name}_sum {}", histogram.sum);
        let _ = writeln!(out, "{name}_count {}", histogram.count);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activities_become_counters() {
        let metrics = Metrics::default();
        let sftp = SessionFields {
            protocol: "SFTP",
            ..SessionFields::default()
        };
        metrics.count(Activity::Connected, &sftp, &Event::default());
        metrics.count(
            Activity::Close,
            &sftp,
            &Event {
                bytes_in: Some(100),
                ..Event::default()
            },
        );
        metrics.count(
            Activity::AccessDenied,
            &sftp,
            &Event {
                operation: Some("OPEN"),
                ..Event::default()
            },
        );
        metrics.count(
            Activity::AuthFailure,
            &sftp,
            &Event {
                message: Some("connection refused at accept"),
                ..Event::default()
            },
        );
        metrics.count(
            Activity::AuthFailure,
            &sftp,
            &Event {
                message: Some("address banned"),
                ..Event::default()
            },
        );
        metrics.observe_provider(Duration::from_millis(20), true);
        let text = metrics.render();
        for expected in [
            "wharf_sessions_open{protocol=\"SFTP\"} 1",
            "wharf_logins_total{protocol=\"SFTP\",result=\"ok\"} 1",
            "wharf_logins_total{protocol=\"SFTP\",result=\"refused\"} 1",
            "wharf_bans_total 1",
            "wharf_operations_total{protocol=\"SFTP\",operation=\"CLOSE\",result=\"ok\"} 1",
            "wharf_operations_total{protocol=\"SFTP\",operation=\"OPEN\",result=\"denied\"} 1",
            "wharf_bytes_total{protocol=\"SFTP\",direction=\"in\"} 100",
            "wharf_identity_provider_seconds_bucket{le=\"0.025\"} 1",
            "wharf_identity_provider_seconds_bucket{le=\"0.01\"} 0",
            "wharf_identity_provider_seconds_count 1",
        ] {
            assert!(text.contains(expected), "{expected} not in\n{text}");
        }
        metrics.count(Activity::Disconnected, &sftp, &Event::default());
        assert!(
            metrics
                .render()
                .contains("wharf_sessions_open{protocol=\"SFTP\"} 0")
        );
        assert!(!metrics.provider_failing(Duration::from_secs(60)));
        metrics.observe_provider(Duration::from_secs(5), false);
        assert!(metrics.provider_failing(Duration::from_secs(60)));
        metrics.observe_provider(Duration::from_millis(5), true);
        assert!(!metrics.provider_failing(Duration::from_secs(60)));
    }
}
