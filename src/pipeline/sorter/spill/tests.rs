use std::fs;

use rcdc_state::TableId;

use super::*;

fn entry(seq: u64, commit: u64, text_len: usize) -> Entry {
    Entry {
        seq,
        row: RowChange {
            table: TableId(-7),
            schema: "db/ü".into(),
            table_name: "t".into(),
            commit_ts: Ts(commit),
            start_ts: Ts(commit.saturating_sub(3)),
            op: [RowOp::Insert, RowOp::Update, RowOp::Delete][(seq % 3) as usize],
            key: seq as i64 - 5,
            columns: vec![
                ("id".into(), Value::Int(i64::MIN + seq as i64)),
                ("v".into(), Value::Text("é".repeat(text_len))),
                ("n".into(), Value::Null),
            ],
            pre_columns: seq
                .is_multiple_of(2)
                .then(|| vec![("id".into(), Value::Int(seq as i64))]),
        },
    }
}

fn read_all(mut run: RunReader) -> Result<Vec<Entry>, SpillError> {
    let mut out = Vec::new();
    while run.head()?.is_some() {
        out.extend(run.pop());
    }
    assert!(run.is_exhausted());
    Ok(out)
}

fn written(dir: &Path, n: u64, text_len: usize) -> (PathBuf, Vec<Entry>) {
    let entries: Vec<Entry> = (0..n).map(|i| entry(i, 100 + i, text_len)).collect();
    let path = dir.join("r.run");
    let run = write_run(path.clone(), &entries).expect("write");
    // Keep the file for tampering: copy it before the reader's drop removes it.
    let copy = dir.join("copy.run");
    fs::copy(&path, &copy).expect("copy");
    drop(run);
    assert!(!path.exists(), "a dropped run removes its file");
    (copy, entries)
}

/// A reader over an existing file (the copy), as `write_run` would return it.
fn reader(path: &Path) -> RunReader {
    let file = OpenOptions::new().read(true).open(path).expect("open");
    let bytes = file.metadata().expect("meta").len();
    let mut run = RunReader {
        run: RunFile {
            path: path.to_path_buf(),
            file,
        },
        offset: MAGIC.len() as u64,
        bytes,
        block: VecDeque::new(),
        done: false,
    };
    run.run
        .file
        .seek(SeekFrom::Start(MAGIC.len() as u64))
        .expect("seek");
    run
}

#[test]
fn a_run_reads_back_exactly_across_blocks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let entries: Vec<Entry> = (0..5_000).map(|i| entry(i, 100 + i / 3, 40)).collect();
    let run = write_run(tmp.path().join("r.run"), &entries).expect("write");
    assert!(
        run.bytes() > 3 * BLOCK_BYTES as u64,
        "several blocks: {}",
        run.bytes()
    );
    assert_eq!(read_all(run).expect("read"), entries);
    assert!(
        !tmp.path().join("r.run").exists(),
        "removed once read and dropped"
    );
}

#[test]
fn an_empty_run_is_exhausted_at_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = write_run(tmp.path().join("e.run"), &[]).expect("write");
    assert_eq!(run.bytes(), MAGIC.len() as u64);
    assert!(read_all(run).expect("read").is_empty());
}

#[test]
fn a_flipped_byte_is_a_checksum_error_naming_file_and_offset() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (path, _) = written(tmp.path(), 50, 10);
    let mut bytes = fs::read(&path).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    fs::write(&path, &bytes).expect("write");
    let err = read_all(reader(&path)).expect_err("corrupt");
    let text = err.to_string();
    assert!(
        text.contains("copy.run") && text.contains("checksum mismatch"),
        "{text}"
    );
    assert!(
        text.contains("at byte 8"),
        "the first block starts after the magic: {text}"
    );
}

#[test]
fn a_truncated_or_garbage_block_is_detected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (path, _) = written(tmp.path(), 50, 10);
    let bytes = fs::read(&path).expect("read");

    fs::write(&path, &bytes[..bytes.len() - 5]).expect("truncate");
    let err = read_all(reader(&path)).expect_err("truncated");
    assert!(err.to_string().contains("runs past the end"), "{err}");

    fs::write(&path, &bytes[..MAGIC.len() + 5]).expect("truncate header");
    let err = read_all(reader(&path)).expect_err("truncated header");
    assert!(err.to_string().contains("truncated block"), "{err}");

    let mut wrong_count = bytes.clone();
    wrong_count[MAGIC.len() + 4] ^= 1; // the block's row count
    fs::write(&path, &wrong_count).expect("write");
    let err = read_all(reader(&path)).expect_err("row count");
    assert!(matches!(err, SpillError::Corrupt { .. }), "{err}");
}

#[test]
fn a_full_disk_names_the_sort_dir() {
    let path = Path::new("/var/sorter/rcdc-1-0/cf-7.run");
    let err = SpillError::io("write", path, io::Error::from(ErrorKind::StorageFull));
    assert_eq!(
        err.to_string(),
        "no space left for the sorter in /var/sorter/rcdc-1-0: the table stops and restarts \
         from its checkpoint once space is freed"
    );
    let err = SpillError::io("write", path, io::Error::from_raw_os_error(28)); // ENOSPC
    assert!(matches!(err, SpillError::DiskFull { .. }), "{err}");
    let err = SpillError::io("write", path, io::Error::from(ErrorKind::PermissionDenied));
    assert!(
        err.to_string()
            .starts_with("cannot write spill file /var/sorter"),
        "{err}"
    );
}

#[test]
fn a_failed_create_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = write_run(
        tmp.path().join("missing-dir").join("r.run"),
        &[entry(1, 1, 1)],
    )
    .expect_err("no such directory");
    assert!(
        err.to_string().contains("cannot create spill file"),
        "{err}"
    );
}
