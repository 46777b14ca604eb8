//! libunftp logs through slog; this drain passes its records to `tracing`
//! (target `libunftp`), one level down: libunftp warns about ordinary client
//! behaviour (a client closing a download early) and reports every command
//! at info. The activity log is ours and does not depend on these lines.

use std::fmt::{self, Write};

use slog::{Drain, KV, Level, OwnedKVList, Record};

pub(crate) fn logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!())
}

struct TracingDrain;

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        let enabled = match record.level() {
            Level::Critical | Level::Error => {
                tracing::enabled!(target: "libunftp", tracing::Level::ERROR)
            }
            Level::Warning => tracing::enabled!(target: "libunftp", tracing::Level::INFO),
            Level::Info => tracing::enabled!(target: "libunftp", tracing::Level::DEBUG),
            Level::Debug | Level::Trace => {
                tracing::enabled!(target: "libunftp", tracing::Level::TRACE)
            }
        };
        if !enabled {
            return Ok(());
        }
        let mut text = Text(record.msg().to_string());
        let _ = record.kv().serialize(record, &mut text);
        let _ = values.serialize(record, &mut text);
        let text = text.0;
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "libunftp", "{text}"),
            Level::Warning => tracing::info!(target: "libunftp", "{text}"),
            Level::Info => tracing::debug!(target: "libunftp", "{text}"),
            Level::Debug | Level::Trace => tracing::trace!(target: "libunftp", "{text}"),
        }
        Ok(())
    }
}

struct Text(String);

impl slog::Serializer for Text {
    fn emit_arguments(&mut self, key: slog::Key, val: &fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}
