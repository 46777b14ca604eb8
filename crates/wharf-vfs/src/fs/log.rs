//! The activity lines the operations of [`UserFs`] write on their own
//! account: a store path as AWS Transfer Family shows it, ERROR lines, and
//! the line of an operation that either succeeded or failed.

use std::time::Instant;

use wharf_audit::{Activity, Event};
use wharf_storage::Key;

use super::UserFs;
use crate::error::{Error, Result};
use crate::namespace::Mount;

/// `/STORE/key`, the path AWS Transfer Family writes in its log lines.
pub(super) fn store_path(mount: &Mount, key: &Key) -> String {
    if key.is_root() {
        format!("/{}", mount.store.name)
    } else {
        format!("/{}/{}", mount.store.name, key.as_str())
    }
}

pub(super) fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl UserFs {
    /// OPEN of the object at `path` (as the log names it) in `mode`.
    pub(super) fn log_open(&self, path: &str, mode: &str) {
        self.inner.audit.record(
            Activity::Open,
            &Event {
                path: Some(path),
                mode: Some(mode),
                ..Event::default()
            },
        );
    }

    pub(super) fn log_error(&self, operation: &str, path: &str, error: &Error) {
        self.inner.audit.record(
            Activity::Error,
            &Event {
                path: Some(path),
                operation: Some(operation),
                message: Some(&error.message),
                ..Event::default()
            },
        );
    }

    pub(super) fn logged(
        &self,
        operation: &str,
        activity: Activity,
        log_path: &str,
        result: wharf_storage::Result<()>,
    ) -> Result<()> {
        match result {
            Ok(()) => {
                self.inner.audit.record(
                    activity,
                    &Event {
                        path: Some(log_path),
                        ..Event::default()
                    },
                );
                Ok(())
            }
            Err(error) => {
                let error = Error::from(error);
                self.log_error(operation, log_path, &error);
                Err(error)
            }
        }
    }
}
