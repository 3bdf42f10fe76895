//! The binary's subcommands (argument types and their edges; the work is in the library).

pub mod cli;
mod cli_pd;
pub mod replay;
pub mod verify;

pub(crate) use super::endpoints;
