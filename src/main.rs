//! The `cdc` binary.

fn main() -> anyhow::Result<()> {
    let arg = std::env::args().nth(1).unwrap_or_default();
    match arg.as_str() {
        "version" | "--version" | "-V" => {
            println!("rcdc {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        _ => anyhow::bail!(
            "usage: cdc version\n(`cdc server` and `cdc cli` are not built yet; see the open issues)"
        ),
    }
}
