//! The binary's subcommands (argument types and their edges; the work is in the library).

/// `println!` that returns the write error instead of panicking, so a reader that went away
/// (`cdc cli changefeed list -a | head -3`) ends the program quietly (see `main`).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

pub mod cli;
mod cli_capture;
mod cli_pd;
mod cli_stats;
mod cli_unsafe;
pub mod replay;
pub mod ticdc_only;
pub mod verify;

pub(crate) use super::endpoints;
