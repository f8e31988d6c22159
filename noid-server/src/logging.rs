//! Server log lines. Text for people: `2026-11-30T07:05:01.123Z [INFO] VM created: web (...)`;
//! under systemd (stderr going to the journal) the timestamp gives way to the journal's own
//! and each line starts with its syslog priority (`<6>`), so `journalctl -p warning` works.
//! Or, with `--log-format json`, one JSON object per line with the event's fields at the top
//! level (`vm`, `owner`, `operation`, `duration_ms`, `result`, ...) and the API call's `span`.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Fields that JSON logs carry for machines; text lines say the same in their message.
const STRUCTURED: &[&str] = &["vm", "owner", "operation", "peer", "result", "duration_ms"];

struct Text {
    /// Prefix the journal's priority instead of a timestamp.
    journal: bool,
}

/// The syslog priority of a level, as `sd-daemon(3)` prefixes read it.
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// The message, then the fields that are not in `STRUCTURED`, as `key=value`.
#[derive(Default)]
struct Line {
    message: String,
    rest: String,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else if !STRUCTURED.contains(&field.name()) {
            self.rest.push_str(&format!(" {}={value:?}", field.name()));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_string();
        } else if !STRUCTURED.contains(&field.name()) {
            self.rest.push_str(&format!(" {}={value}", field.name()));
        }
    }
}

impl<S, N> FormatEvent<S, N> for Text
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = event.metadata().level();
        if self.journal {
            write!(writer, "<{}>", priority(level))?;
        } else {
            let now = humantime::format_rfc3339_millis(std::time::SystemTime::now());
            write!(writer, "{now} ")?;
        }
        let mut line = Line::default();
        event.record(&mut line);
        writeln!(writer, "[{level}] {}{}", line.message, line.rest)
    }
}

/// Installs the global subscriber; `RUST_LOG` overrides the default filter.
pub fn init(json: bool) {
    // netlink-packet-route warns about every attribute newer than itself.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,netlink_packet_route=error".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        // systemd sets JOURNAL_STREAM when stderr is the journal.
        let journal = std::env::var_os("JOURNAL_STREAM").is_some();
        builder.event_format(Text { journal }).init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(priority(&Level::ERROR), 3);
        assert_eq!(priority(&Level::WARN), 4);
        assert_eq!(priority(&Level::INFO), 6);
        assert_eq!(priority(&Level::DEBUG), 7);
    }
}
