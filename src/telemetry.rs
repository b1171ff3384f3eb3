//! The tracing subscriber: human-readable or JSON lines on stderr.
//!
//! The level comes from `RUST_LOG` (default `info`). Logging policy: one line per push at info
//! (type, outcome, latency, a redacted subscriber label); message content, signatures, tokens
//! and keys never appear at info level.

use tracing_subscriber::{fmt, EnvFilter};

use crate::settings::LogFormat;

/// Installs the global subscriber once; later calls (tests) are no-ops.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn,sled=warn"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.with_target(false).try_init(),
    };
}
