use std::path::Path;

use rcdc_reactor::SystemClock;

use super::*;
use crate::sink::{changefeed_dir, read_checkpoint, read_start_ts};

fn info(root: &Path, start: Ts) -> ChangeFeedInfo {
    ChangeFeedInfo {
        sink_uri: format!("file://{}?protocol=canal-json", root.display()),
        start_ts: start,
        ..Default::default()
    }
}

fn plane() -> DataPlane {
    DataPlane::new("demo://", Arc::new(SystemClock))
}

#[test]
fn a_repeated_sink_checkpoint_does_no_io_and_a_new_one_is_durable() {
    let root = tempfile::tempdir().expect("tempdir");
    let (plane, cf) = (plane(), ChangefeedId::from("cf"));
    let (start, t1, t2) = (Ts(100), Ts(200), Ts(300));
    let info = info(root.path(), start);
    plane.write_sink_checkpoint(&cf, &info, t1).expect("first");
    assert_eq!(read_checkpoint(root.path(), &cf).expect("read"), Some(t1));

    // With the changefeed's directory gone, any IO would show: a re-opened writer creates it
    // again, a rewrite puts a metadata file in it.
    let dir = changefeed_dir(root.path(), &cf);
    std::fs::remove_dir_all(&dir).expect("remove");
    for _ in 0..3 {
        plane.write_sink_checkpoint(&cf, &info, t1).expect("repeat");
    }
    assert!(!dir.exists(), "an unchanged checkpoint touched the sink");

    // A new value is written through (the kept writer fails on the missing directory, a
    // fresh one recreates it), durably: temp file, fsync, rename.
    plane
        .write_sink_checkpoint(&cf, &info, t2)
        .expect("new value");
    assert_eq!(read_checkpoint(root.path(), &cf).expect("read"), Some(t2));
    assert_eq!(read_start_ts(root.path(), &cf).expect("read"), Some(start));
    assert!(!dir.join("metadata.tmp").exists());
}

#[test]
fn a_changed_sink_uri_gets_a_new_writer() {
    let (a, b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let (plane, cf) = (plane(), ChangefeedId::from("cf"));
    plane
        .write_sink_checkpoint(&cf, &info(a.path(), Ts(100)), Ts(200))
        .expect("to a");
    // The same value to the changefeed's new sink is not "unchanged".
    plane
        .write_sink_checkpoint(&cf, &info(b.path(), Ts(100)), Ts(200))
        .expect("to b");
    assert_eq!(read_checkpoint(b.path(), &cf).expect("read"), Some(Ts(200)));
    plane
        .write_sink_checkpoint(&cf, &info(b.path(), Ts(100)), Ts(250))
        .expect("to b");
    assert_eq!(read_checkpoint(a.path(), &cf).expect("read"), Some(Ts(200)));
    assert_eq!(read_checkpoint(b.path(), &cf).expect("read"), Some(Ts(250)));
}

#[test]
fn a_sink_that_cannot_be_written_is_an_error_every_time() {
    let root = tempfile::tempdir().expect("tempdir");
    let file = root.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let (plane, cf) = (plane(), ChangefeedId::from("cf"));
    for _ in 0..2 {
        let err = plane
            .write_sink_checkpoint(&cf, &info(&file, Ts(100)), Ts(200))
            .expect_err("a file is not a directory");
        assert!(err.contains("not-a-dir"), "{err}");
    }
}
