//! `cdc-standin`: the PD stand-in as a process (see the `rcdc-standin` crate for what it
//! serves and its control routes).

fn main() -> std::process::ExitCode {
    rcdc_standin::main_with_args(std::env::args_os())
}
