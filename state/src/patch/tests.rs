use super::*;
use crate::model::TaskStatus;

const KEY: &str = "/tidb/cdc/task/status/c1/cf";

fn status(json: &str) -> TaskStatus {
    serde_json::from_str(json).expect("test json")
}

fn put_value(outcome: PatchOutcome) -> serde_json::Value {
    match outcome {
        PatchOutcome::Put(v) => serde_json::from_slice(&v).expect("json"),
        other => panic!("expected a put, got {other:?}"),
    }
}

#[test]
fn add_table_creates_status_and_dispatched_op() {
    let p = Patch::new(
        KEY,
        Edit::TaskStatus(TaskStatusEdit::AddTable {
            table: TableId(45),
            start_ts: Ts(100),
            boundary_ts: Ts(100),
        }),
    );
    let v = put_value(p.apply(None).expect("apply"));
    assert_eq!(v["tables"]["45"]["start-ts"], 100);
    assert_eq!(v["operation"]["45"]["boundary_ts"], 100);
    assert_eq!(v["operation"]["45"]["delete"], false);
    assert!(
        v["operation"]["45"].get("status").is_none(),
        "status 0 is omitted like Go"
    );
}

#[test]
fn add_table_twice_is_unchanged() {
    let p = Patch::new(
        KEY,
        Edit::TaskStatus(TaskStatusEdit::AddTable {
            table: TableId(45),
            start_ts: Ts(100),
            boundary_ts: Ts(100),
        }),
    );
    let PatchOutcome::Put(once) = p.apply(None).expect("apply") else {
        panic!()
    };
    assert_eq!(
        p.apply(Some(&once)).expect("apply"),
        PatchOutcome::Unchanged
    );
}

#[test]
fn set_op_status_advances_the_op_and_keeps_unknown_fields() {
    let old = r#"{"tables":{"47":{"start-ts":5,"mark-table-id":0}},"operation":{"47":{"done":false,"delete":false,"boundary_ts":5,"future":1}},"admin-job-type":0,"from-the-future":"kept"}"#;
    let p = Patch::new(
        KEY,
        Edit::TaskStatus(TaskStatusEdit::SetOpStatus {
            table: TableId(47),
            status: OperationStatus::Finished,
            boundary_ts: Some(Ts(9)),
        }),
    );
    let v = put_value(p.apply(Some(old.as_bytes())).expect("apply"));
    assert_eq!(v["operation"]["47"]["status"], 2);
    assert_eq!(v["operation"]["47"]["done"], true);
    assert_eq!(v["operation"]["47"]["boundary_ts"], 9);
    assert_eq!(v["operation"]["47"]["future"], 1);
    assert_eq!(v["from-the-future"], "kept");
}

#[test]
fn set_op_status_on_a_vanished_op_or_status_is_a_precondition_failure() {
    let p = Patch::new(
        KEY,
        Edit::TaskStatus(TaskStatusEdit::SetOpStatus {
            table: TableId(47),
            status: OperationStatus::Processed,
            boundary_ts: None,
        }),
    );
    assert!(matches!(
        p.apply(None),
        Err(PatchError::Precondition { .. })
    ));
    let empty = br#"{"tables":null,"operation":null,"admin-job-type":0}"#;
    let err = p.apply(Some(empty)).expect_err("op is gone");
    assert!(
        err.to_string().contains(KEY) && err.to_string().contains("47"),
        "{err}"
    );
}

#[test]
fn remove_table_and_delete_finished_ops() {
    let old = r#"{"tables":{"45":{"start-ts":1,"mark-table-id":0}},"operation":{"46":{"done":true,"delete":true,"boundary_ts":3,"status":2}},"admin-job-type":0}"#;
    let p = Patch::new(
        KEY,
        Edit::TaskStatus(TaskStatusEdit::RemoveTable {
            table: TableId(45),
            boundary_ts: Ts(8),
            is_move: true,
        }),
    );
    let v = put_value(p.apply(Some(old.as_bytes())).expect("apply"));
    assert!(v["tables"].get("45").is_none());
    assert_eq!(v["operation"]["45"]["delete"], true);
    assert_eq!(v["operation"]["45"]["flag"], 1);

    let clean = Patch::new(KEY, Edit::TaskStatus(TaskStatusEdit::DeleteFinishedOps));
    let v = put_value(clean.apply(Some(old.as_bytes())).expect("apply"));
    assert!(v["operation"].get("46").is_none());
    let s = status(&serde_json::to_string(&v).expect("json"));
    assert!(s
        .tables
        .as_ref()
        .is_some_and(|t| t.contains_key(&TableId(45))));
}

#[test]
fn remove_table_of_an_absent_status_changes_nothing() {
    let p = Patch::new(
        KEY,
        Edit::TaskStatus(TaskStatusEdit::RemoveTable {
            table: TableId(45),
            boundary_ts: Ts(8),
            is_move: false,
        }),
    );
    assert_eq!(p.apply(None).expect("apply"), PatchOutcome::Unchanged);
}

#[test]
fn a_corrupt_old_value_is_a_decode_error_naming_the_key() {
    let p = Patch::new(KEY, Edit::TaskStatus(TaskStatusEdit::DeleteFinishedOps));
    let err = p.apply(Some(b"{oops")).expect_err("corrupt");
    assert!(
        matches!(&err, PatchError::Decode { key, .. } if key == KEY),
        "{err}"
    );
}

#[test]
fn status_checkpoint_never_goes_backwards() {
    let key = "/tidb/cdc/job/cf";
    let old = br#"{"resolved-ts":20,"checkpoint-ts":15,"admin-job-type":0}"#;
    let p = Patch::new(
        key,
        Edit::ChangefeedStatus(StatusEdit::Advance {
            resolved_ts: Ts(18),
            checkpoint_ts: Ts(10),
        }),
    );
    let v = put_value(p.apply(Some(old)).expect("apply"));
    assert_eq!(v["checkpoint-ts"], 15);
    assert_eq!(v["resolved-ts"], 18);
}

#[test]
fn position_edits() {
    let key = "/tidb/cdc/task/position/c1/cf";
    let set = Patch::new(
        key,
        Edit::TaskPosition(TaskPositionEdit::SetTs {
            checkpoint_ts: Ts(3),
            resolved_ts: Ts(4),
            count: Some(9),
        }),
    );
    let v = put_value(set.apply(None).expect("apply"));
    assert_eq!(v["checkpoint-ts"], 3);
    assert_eq!(v["count"], 9);
    assert_eq!(v["error"], serde_json::Value::Null);
    let clear = Patch::new(
        key,
        Edit::TaskPosition(TaskPositionEdit::SetError { error: None }),
    );
    assert_eq!(clear.apply(None).expect("apply"), PatchOutcome::Unchanged);
}

#[test]
fn raw_put_create_delete() {
    let put = Patch::new("/k", Edit::Put { value: "v".into() });
    assert_eq!(
        put.apply(Some(b"v")).expect("apply"),
        PatchOutcome::Unchanged
    );
    assert_eq!(
        put.apply(None).expect("apply"),
        PatchOutcome::Put(b"v".to_vec())
    );
    let create = Patch::new("/k", Edit::Create { value: "v".into() });
    assert!(matches!(
        create.apply(Some(b"w")),
        Err(PatchError::Precondition { .. })
    ));
    assert_eq!(
        create.apply(Some(b"v")).expect("apply"),
        PatchOutcome::Unchanged
    );
    let del = Patch::new("/k", Edit::Delete);
    assert_eq!(del.apply(None).expect("apply"), PatchOutcome::Unchanged);
    assert_eq!(del.apply(Some(b"x")).expect("apply"), PatchOutcome::Delete);
}

#[test]
fn patches_serialize_as_readable_data() {
    let p = Patch::new(
        KEY,
        Edit::TaskStatus(TaskStatusEdit::SetOpStatus {
            table: TableId(45),
            status: OperationStatus::Finished,
            boundary_ts: None,
        }),
    );
    let json = serde_json::to_string(&p).expect("json");
    let back: Patch = serde_json::from_str(&json).expect("back");
    assert_eq!(back, p);
    assert!(json.contains("set-op-status"), "{json}");
}

const INFO_KEY: &str = "/tidb/cdc/changefeed/info/cf";
const INFO: &str = r#"{"sink-uri":"blackhole://","start-ts":5,"state":"normal","admin-job-type":0,"history":null,"error":null,"x-future":1}"#;

#[test]
fn info_set_state_writes_the_matching_admin_job_type_and_keeps_unknown_fields() {
    let p = Patch::new(
        INFO_KEY,
        Edit::ChangefeedInfo(InfoEdit::SetState {
            state: FeedState::Stopped,
        }),
    );
    let v = put_value(p.apply(Some(INFO.as_bytes())).expect("apply"));
    assert_eq!(v["state"], "stopped");
    assert_eq!(v["admin-job-type"], 1);
    assert_eq!(v["x-future"], 1);
    assert!(
        matches!(p.apply(None), Err(PatchError::Precondition { .. })),
        "never resurrects a removed changefeed"
    );
}

#[test]
fn info_record_errors_trims_history_to_the_window() {
    let e = |m: &str| RunningError {
        code: "CDC:ErrProcessorUnknown".into(),
        message: m.into(),
        ..Default::default()
    };
    let p1 = Patch::new(
        INFO_KEY,
        Edit::ChangefeedInfo(InfoEdit::RecordErrors {
            errors: vec![e("a")],
            now_ms: 1_000,
            window_ms: 120_000,
        }),
    );
    let PatchOutcome::Put(after1) = p1.apply(Some(INFO.as_bytes())).expect("apply") else {
        panic!()
    };
    let p2 = Patch::new(
        INFO_KEY,
        Edit::ChangefeedInfo(InfoEdit::RecordErrors {
            errors: vec![e("b"), e("c")],
            now_ms: 200_000,
            window_ms: 120_000,
        }),
    );
    let v = put_value(p2.apply(Some(&after1)).expect("apply"));
    assert_eq!(
        v["history"],
        serde_json::json!([200_000, 200_000]),
        "the entry at 1,000 fell out of the 2 min window"
    );
    assert_eq!(v["error"]["message"], "c");
    let clear = Patch::new(INFO_KEY, Edit::ChangefeedInfo(InfoEdit::ClearErrors));
    let v = put_value(
        clear
            .apply(Some(&serde_json::to_vec(&v).expect("json")))
            .expect("apply"),
    );
    assert_eq!(v["history"], serde_json::Value::Null);
    assert_eq!(v["error"], serde_json::Value::Null);
}

#[test]
fn status_admin_job_type_is_mirrored_only_onto_an_existing_status() {
    let key = "/tidb/cdc/job/cf";
    let p = Patch::new(
        key,
        Edit::ChangefeedStatus(StatusEdit::SetAdminJobType {
            admin_job_type: AdminJobType::Stop,
        }),
    );
    assert_eq!(p.apply(None).expect("apply"), PatchOutcome::Unchanged);
    let v = put_value(
        p.apply(Some(
            br#"{"resolved-ts":2,"checkpoint-ts":1,"admin-job-type":0}"#,
        ))
        .expect("apply"),
    );
    assert_eq!(v["admin-job-type"], 1);
}

#[test]
fn move_table_out_records_the_target_in_the_op() {
    let old = r#"{"tables":{"45":{"start-ts":1,"mark-table-id":0},"46":{"start-ts":1,"mark-table-id":0}},"operation":null,"admin-job-type":0}"#;
    let p = Patch::new(
        KEY,
        Edit::TaskStatus(TaskStatusEdit::MoveTableOut {
            table: TableId(45),
            boundary_ts: Ts(8),
            target: "c2".into(),
        }),
    );
    let v = put_value(p.apply(Some(old.as_bytes())).expect("apply"));
    assert!(v["tables"].get("45").is_none());
    assert!(v["tables"].get("46").is_some());
    let op = &v["operation"]["45"];
    assert_eq!(op["delete"], true);
    assert_eq!(op["flag"], 1);
    assert_eq!(op["boundary_ts"], 8);
    assert_eq!(op["rcdc-move-target"], "c2");
    assert!(op.get("status").is_none());

    // The target survives a decode (an owner restart) and a TiCDC-style read-modify-write.
    let s = status(&serde_json::to_string(&v).expect("json"));
    let ops = s.operation.as_ref().expect("ops");
    assert_eq!(ops[&TableId(45)].move_target(), Some("c2".into()));
    let acked = Patch::new(
        KEY,
        Edit::TaskStatus(TaskStatusEdit::SetOpStatus {
            table: TableId(45),
            status: OperationStatus::Finished,
            boundary_ts: Some(Ts(9)),
        }),
    );
    let bytes = serde_json::to_vec(&v).expect("json");
    let v = put_value(acked.apply(Some(&bytes)).expect("apply"));
    assert_eq!(v["operation"]["45"]["rcdc-move-target"], "c2");
    assert_eq!(v["operation"]["45"]["status"], 2);
}

#[test]
fn move_table_out_of_an_absent_table_or_status_changes_nothing() {
    let p = Patch::new(
        KEY,
        Edit::TaskStatus(TaskStatusEdit::MoveTableOut {
            table: TableId(45),
            boundary_ts: Ts(8),
            target: "c2".into(),
        }),
    );
    assert_eq!(p.apply(None).expect("apply"), PatchOutcome::Unchanged);
    // An op already in flight for the table is not overwritten with a move target.
    let old = r#"{"tables":{},"operation":{"45":{"done":false,"delete":true,"boundary_ts":3}},"admin-job-type":0}"#;
    assert_eq!(
        p.apply(Some(old.as_bytes())).expect("apply"),
        PatchOutcome::Unchanged
    );
}

#[test]
fn move_target_is_only_read_from_move_delete_ops() {
    let op = |json: &str| -> crate::model::TableOperation {
        serde_json::from_str(json).expect("test json")
    };
    let with = r#"{"done":false,"delete":true,"flag":1,"boundary_ts":3,"rcdc-move-target":"c2"}"#;
    assert_eq!(op(with).move_target(), Some("c2".into()));
    for none in [
        r#"{"done":false,"delete":true,"flag":1,"boundary_ts":3}"#,
        r#"{"done":false,"delete":true,"boundary_ts":3,"rcdc-move-target":"c2"}"#,
        r#"{"done":false,"delete":false,"flag":1,"boundary_ts":3,"rcdc-move-target":"c2"}"#,
        r#"{"done":false,"delete":true,"flag":1,"boundary_ts":3,"rcdc-move-target":""}"#,
        r#"{"done":false,"delete":true,"flag":1,"boundary_ts":3,"rcdc-move-target":7}"#,
    ] {
        assert_eq!(op(none).move_target(), None, "{none}");
    }
}

#[test]
fn workload_set_creates_replaces_and_keeps_unknown_fields() {
    const WKEY: &str = "/tidb/cdc/task/workload/c1/cf";
    let set = |tables: &[(i64, u64)]| {
        Patch::new(
            WKEY,
            Edit::TaskWorkload(WorkloadEdit::Set {
                tables: tables.iter().map(|(t, w)| (TableId(*t), *w)).collect(),
            }),
        )
    };
    let v = put_value(set(&[(45, 1), (47, 1)]).apply(None).expect("apply"));
    assert_eq!(
        v,
        serde_json::json!({"45":{"workload":1},"47":{"workload":1}})
    );

    let old = br#"{"45":{"workload":1,"x":7},"46":{"workload":1}}"#;
    let v = put_value(set(&[(45, 1), (47, 1)]).apply(Some(old)).expect("apply"));
    assert_eq!(
        v,
        serde_json::json!({"45":{"workload":1,"x":7},"47":{"workload":1}})
    );

    let same = br#"{"45":{"workload":1}}"#;
    assert_eq!(
        set(&[(45, 1)]).apply(Some(same)).expect("apply"),
        PatchOutcome::Unchanged
    );
    assert!(matches!(
        set(&[]).apply(Some(b"[1]")),
        Err(PatchError::Decode { .. })
    ));
}

#[test]
fn patched_values_are_encoded_like_go() {
    // Go escapes <, > and & in strings; a value rcdc rewrites must stay byte-identical.
    let old = br#"{"checkpoint-ts":1,"resolved-ts":2,"count":0,"error":null}"#;
    let e = RunningError {
        message: "a < b && c > d".into(),
        ..Default::default()
    };
    let p = Patch::new(
        "/tidb/cdc/task/position/c/cf",
        Edit::TaskPosition(TaskPositionEdit::SetError { error: Some(e) }),
    );
    let PatchOutcome::Put(v) = p.apply(Some(old)).expect("apply") else {
        panic!("expected a put")
    };
    let text = String::from_utf8(v).expect("utf8");
    assert!(
        text.contains(r#"a \u003c b \u0026\u0026 c \u003e d"#),
        "{text}"
    );
}

/// Applies patches one by one, passing bytes along: the definition `apply_all` must meet.
fn apply_one_by_one(patches: &[&Patch], old: Option<&[u8]>) -> Result<Option<Vec<u8>>, PatchError> {
    let mut cur = old.map(<[u8]>::to_vec);
    for p in patches {
        match p.apply(cur.as_deref())? {
            PatchOutcome::Unchanged => {}
            PatchOutcome::Put(v) => cur = Some(v),
            PatchOutcome::Delete => cur = None,
        }
    }
    Ok(cur)
}

fn arb_edit() -> impl proptest::strategy::Strategy<Value = Edit> {
    use proptest::prelude::*;
    let table = (1i64..6).prop_map(TableId);
    prop_oneof![
        (table.clone(), 1u64..50).prop_map(|(table, ts)| Edit::TaskStatus(
            TaskStatusEdit::AddTable {
                table,
                start_ts: Ts(ts),
                boundary_ts: Ts(ts)
            }
        )),
        (table.clone(), 1u64..50, any::<bool>()).prop_map(|(table, ts, is_move)| {
            Edit::TaskStatus(TaskStatusEdit::RemoveTable {
                table,
                boundary_ts: Ts(ts),
                is_move,
            })
        }),
        (table.clone(), 0u8..3).prop_map(|(table, s)| Edit::TaskStatus(
            TaskStatusEdit::SetOpStatus {
                table,
                status: match s {
                    0 => OperationStatus::Dispatched,
                    1 => OperationStatus::Processed,
                    _ => OperationStatus::Finished,
                },
                boundary_ts: None,
            }
        )),
        Just(Edit::TaskStatus(TaskStatusEdit::DeleteFinishedOps)),
        Just(Edit::Delete),
        Just(Edit::Put {
            value: r#"{"tables":{"9":{"start-ts":1}},"operation":null,"admin-job-type":0}"#.into()
        }),
    ]
}

proptest::proptest! {
    /// Folding a key's patches into one decode/encode per run gives what applying them one
    /// by one gives: the same value, or the same precondition failure.
    #[test]
    fn apply_all_equals_one_by_one(
        edits in proptest::collection::vec(arb_edit(), 0..12),
        start in proptest::option::of(proptest::collection::vec(arb_edit(), 0..4)),
    ) {
        let old = match start {
            None => None,
            Some(seed) => {
                let seed: Vec<Patch> = seed.into_iter().map(|e| Patch::new(KEY, e)).collect();
                let refs: Vec<&Patch> = seed.iter().collect();
                apply_one_by_one(&refs, None).ok().flatten()
            }
        };
        let patches: Vec<Patch> = edits.into_iter().map(|e| Patch::new(KEY, e)).collect();
        let refs: Vec<&Patch> = patches.iter().collect();
        let want = apply_one_by_one(&refs, old.as_deref());
        let got = Patch::apply_all(&refs, old.as_deref());
        match (want, got) {
            (Err(a), Err(b)) => proptest::prop_assert_eq!(a, b),
            (Ok(want), Ok(outcome)) => {
                let got = match outcome {
                    PatchOutcome::Unchanged => old.clone(),
                    PatchOutcome::Put(v) => Some(v),
                    PatchOutcome::Delete => None,
                };
                let decode = |v: Option<Vec<u8>>| v.map(|b| serde_json::from_slice::<serde_json::Value>(&b).expect("json"));
                proptest::prop_assert_eq!(decode(got), decode(want));
            }
            (a, b) => proptest::prop_assert!(false, "one by one {a:?}, folded {b:?}"),
        }
    }
}
