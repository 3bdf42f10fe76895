//! Process logging (tracing): level, text or JSON, stderr or a file, and the level changeable
//! at runtime through the API.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter};

use crate::api::LogLevelSetter;

/// The levels `--log-level` and the API accept.
pub const LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A level name TiCDC accepts, mapped to ours (`fatal`/`panic` log as `error`).
pub fn parse_level(level: &str) -> Result<&'static str, String> {
    let l = level.trim().to_ascii_lowercase();
    match l.as_str() {
        "fatal" | "panic" | "critical" => Ok("error"),
        "warning" => Ok("warn"),
        _ => LEVELS.iter().find(|x| **x == l).copied().ok_or_else(|| {
            format!(
                "invalid log level {level:?}: use one of {}",
                LEVELS.join(", ")
            )
        }),
    }
}

fn filter(level: &str) -> Result<EnvFilter, String> {
    let level = parse_level(level)?;
    // Our crates at the level; chatty dependencies one step quieter unless tracing.
    let deps = if level == "trace" { "trace" } else { "warn" };
    EnvFilter::try_new(format!(
        "{deps},rcdc={level},rcdc_reactor={level},cdc={level}"
    ))
    .map_err(|e| e.to_string())
}

/// Installs the global subscriber; returns the runtime level setter.
pub fn init(level: &str, file: Option<&Path>, format: LogFormat) -> Result<LogLevelSetter, String> {
    let (layer, handle) = reload::Layer::new(filter(level)?);
    let writer: Box<dyn Fn() -> Box<dyn std::io::Write> + Send + Sync> = match file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
            let f = Arc::new(parking_lot::Mutex::new(f));
            Box::new(move || Box::new(SharedFile(f.clone())))
        }
        None => Box::new(|| Box::new(std::io::stderr())),
    };
    let registry = tracing_subscriber::registry().with(layer);
    let result = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    // Colour only for a person at a terminal, never in a file or a pipe.
                    .with_ansi(file.is_none() && std::io::stderr().is_terminal())
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(tracing_subscriber::fmt::layer().json().with_writer(writer))
            .try_init(),
    };
    result.map_err(|e| format!("installing the logger: {e}"))?;
    Ok(Arc::new(move |level: &str| {
        let f = filter(level)?;
        handle.reload(f).map_err(|e| e.to_string())?;
        tracing::info!(level, "log level changed");
        Ok(())
    }))
}

/// Appends to a file shared by every writer the subscriber makes.
struct SharedFile(Arc<parking_lot::Mutex<std::fs::File>>);

impl std::io::Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_checked_and_mapped() {
        assert_eq!(parse_level("INFO"), Ok("info"));
        assert_eq!(parse_level("fatal"), Ok("error"));
        assert_eq!(parse_level("warning"), Ok("warn"));
        assert_eq!(
            parse_level("loud"),
            Err("invalid log level \"loud\": use one of trace, debug, info, warn, error".into())
        );
        assert!(filter("debug").is_ok());
    }
}
