//! Logging: human-readable lines, or one JSON object per line with `ts`
//! (Unix seconds, as klog's JSON format), `level`, `msg` and the event's
//! fields at the top level, for log pipelines that index fields.
//!
//! The verbosity follows kube-proxy's `-v`: 0 to 2 log at info, 3 and 4 add
//! kube-ipvs's debug lines (every kernel write), 5 and up trace. `RUST_LOG`,
//! when set, replaces it.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// The filter for kube-proxy verbosity `v`.
pub fn filter_for(v: u32) -> String {
    let ours = ["kube_ipvs", "kube_ipvs_netlink", "kube_ipvs_controller"];
    let level = match v {
        0..=2 => return "info".to_owned(),
        3 | 4 => "debug",
        _ => "trace",
    };
    let base = if v >= 5 { "debug" } else { "info" };
    std::iter::once(base.to_owned())
        .chain(ours.iter().map(|t| format!("{t}={level}")))
        .collect::<Vec<_>>()
        .join(",")
}

/// Installs the global subscriber, writing to stderr.
pub fn init(format: LogFormat, verbosity: u32) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter_for(verbosity)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder.with_ansi(false).event_format(JsonLines).init(),
    }
}

/// One JSON object per event: `ts`, `level`, `msg`, then the fields.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
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
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        writer.write_str(&json_line(ts, *event.metadata().level(), |v| {
            event.record(v)
        }))?;
        writer.write_char('\n')
    }
}

/// The JSON object of one event, from its fields as `record` visits them.
pub fn json_line(ts: f64, level: Level, record: impl FnOnce(&mut dyn Visit)) -> String {
    let mut fields = Fields::default();
    record(&mut fields);
    let level = match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    };
    let mut out = format!(
        "{{\"ts\":{ts:.6},\"level\":\"{level}\",\"msg\":{}",
        serde_json::Value::String(fields.message.unwrap_or_default())
    );
    for (key, value) in fields.rest {
        // A field named like one of the three keeps its value under a
        // prefixed key rather than a duplicate key.
        let key = if matches!(key, "ts" | "level" | "msg") {
            format!("field.{key}")
        } else {
            key.to_owned()
        };
        out.push(',');
        out.push_str(&serde_json::Value::String(key).to_string());
        out.push(':');
        out.push_str(&value.to_string());
    }
    out.push('}');
    out
}

#[derive(Default)]
struct Fields {
    message: Option<String>,
    rest: Vec<(&'static str, serde_json::Value)>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.rest.push((field.name(), value));
        }
    }
}

impl Visit for Fields {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, serde_json::json!(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_as_kube_proxy() {
        assert_eq!(filter_for(0), "info");
        assert_eq!(filter_for(2), "info");
        assert!(filter_for(3).contains("kube_ipvs=debug"));
        assert!(filter_for(6).contains("kube_ipvs=trace"));
    }

    #[test]
    fn json_lines_put_the_fields_at_the_top() {
        use std::sync::{Arc, Mutex};
        use tracing_subscriber::fmt::MakeWriter;

        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        impl<'a> MakeWriter<'a> for Buffer {
            type Writer = Buffer;
            fn make_writer(&'a self) -> Buffer {
                self.clone()
            }
        }
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .with_ansi(false)
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(sync = "full", writes = 3u64, ok = true, error = %"boom", "synced");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert!(line["ts"].as_f64().unwrap() > 1.6e9, "{line}");
        assert_eq!(line["level"], "warn");
        assert_eq!(line["msg"], "synced");
        assert_eq!(line["sync"], "full");
        assert_eq!(line["writes"], 3);
        assert_eq!(line["ok"], true);
        assert_eq!(line["error"], "boom");
        assert!(text.starts_with("{\"ts\":"), "{text}");
    }
}
