//! TiCDC commands and flags rcdc does not have. An operator who types one gets a line saying
//! so and naming it, instead of clap's generic "unrecognized subcommand". Consulted only when
//! clap refuses the command line, so a valid one (a changefeed named `cyclic`) is never
//! mistaken for them.

/// TiCDC command paths (the words after `cdc`) and what they are.
const COMMANDS: &[(&[&str], &str)] = &[
    (&["cli", "changefeed", "cyclic"], "cyclic replication"),
    (
        &["cli", "unsafe", "resolve-lock"],
        "resolving upstream locks",
    ),
    (&["redo"], "applying a redo log"),
    (&["debug"], "TiCDC's debug tools"),
];

/// TiCDC flags and what they are for.
const FLAGS: &[(&str, &str)] = &[
    ("--cyclic-replica-id", "cyclic replication"),
    ("--cyclic-filter-replica-ids", "cyclic replication"),
    ("--cyclic-sync-ddl", "cyclic replication"),
    ("--schema-registry", "the Avro protocol's schema registry"),
    (
        "--overwrite-checkpoint-ts",
        "resuming at another checkpoint",
    ),
    ("--disable-gc-check", "skipping the GC check"),
];

/// The "not supported by rcdc" message for `args` (without the program name), if they name
/// something of TiCDC's that rcdc lacks.
pub fn not_supported(args: &[String]) -> Option<String> {
    let words: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for (path, what) in COMMANDS {
        let mut rest = words.iter();
        if path.iter().all(|w| rest.any(|x| x == w)) {
            return Some(format!(
                "`cdc {}` ({what}) is not supported by rcdc",
                path.join(" ")
            ));
        }
    }
    let flag = args.iter().find_map(|a| {
        let name = a.split('=').next().unwrap_or_default();
        FLAGS.iter().find(|(f, _)| *f == name)
    })?;
    Some(format!("{} ({}) is not supported by rcdc", flag.0, flag.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn ticdc_commands_and_flags_are_named() {
        assert_eq!(
            not_supported(&args(
                "cli --pd http://x changefeed cyclic create-marktables"
            )),
            Some(
                "`cdc cli changefeed cyclic` (cyclic replication) is not supported by rcdc".into()
            )
        );
        assert_eq!(
            not_supported(&args("redo apply --storage s3://x")),
            Some("`cdc redo` (applying a redo log) is not supported by rcdc".into())
        );
        assert_eq!(
            not_supported(&args(
                "cli changefeed create --sink-uri x --cyclic-replica-id=1"
            )),
            Some("--cyclic-replica-id (cyclic replication) is not supported by rcdc".into())
        );
        assert_eq!(not_supported(&args("cli changefeed frobnicate")), None);
    }
}
