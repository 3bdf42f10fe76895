use proptest::prelude::*;
use serde_json::Value;

use super::*;
use crate::model::{decode, encode};

fn round_trip<T: serde::de::DeserializeOwned + Serialize>(go: &str) -> String {
    let v: T = decode(go.as_bytes()).expect("decode");
    String::from_utf8(encode(&v).expect("encode")).expect("utf8")
}

fn to_string(v: &impl Serialize) -> String {
    String::from_utf8(encode(v).expect("encode")).expect("utf8")
}

/// Facts §2.5's example: table 45 replicating, 47 being added and acked as processed.
const FACTS_STATUS: &str = r#"{"tables":{"45":{"start-ts":425908866286305281,"mark-table-id":0},"47":{"start-ts":425908869000000000,"mark-table-id":0}},"operation":{"47":{"done":false,"delete":false,"boundary_ts":425908869000000000,"status":1}},"admin-job-type":0}"#;

#[test]
fn task_status_facts_example_round_trips_byte_for_byte() {
    let out = round_trip::<TaskStatus>(FACTS_STATUS);
    assert_eq!(out, FACTS_STATUS);
    let a: Value = serde_json::from_str(&out).expect("json");
    let b: Value = serde_json::from_str(FACTS_STATUS).expect("json");
    assert_eq!(a, b);

    // The integer-keyed maps decode even though `extra` makes serde buffer the object first:
    // the buffered keys are strings, and TableId accepts decimal strings.
    let s: TaskStatus = decode(FACTS_STATUS.as_bytes()).expect("decode");
    let tables = s.tables.as_ref().expect("tables");
    assert_eq!(
        tables.keys().copied().collect::<Vec<_>>(),
        vec![TableId(45), TableId(47)]
    );
    assert_eq!(tables[&TableId(45)].start_ts, Ts(425_908_866_286_305_281));
    let op = &s.operation.as_ref().expect("ops")[&TableId(47)];
    assert_eq!(op.status, OperationStatus::Processed);
    assert!(op.is_processed() && !op.is_applied());
}

#[test]
fn an_empty_status_is_exactly_what_the_go_owner_writes() {
    let go = r#"{"tables":null,"operation":null,"admin-job-type":0}"#;
    let empty = TaskStatus::default();
    assert_eq!(to_string(&empty), go);
    assert!(empty.is_empty());
    let back: TaskStatus = decode(go.as_bytes()).expect("decode");
    assert_eq!(back, empty);
    assert_eq!(decode::<TaskStatus>(b"{}").expect("missing = nil"), empty);
}

#[test]
fn nil_and_empty_maps_each_round_trip_as_written() {
    let go = r#"{"tables":{},"operation":null,"admin-job-type":0}"#;
    let s: TaskStatus = decode(go.as_bytes()).expect("decode");
    assert_eq!(s.tables, Some(BTreeMap::new()));
    assert_eq!(s.operation, None);
    assert!(s.is_empty());
    assert_eq!(to_string(&s), go);
    assert_eq!(
        round_trip::<TaskStatus>(r#"{"tables":null,"operation":{},"admin-job-type":0}"#),
        r#"{"tables":null,"operation":{},"admin-job-type":0}"#
    );
}

#[test]
fn table_maps_are_written_in_go_key_order() {
    // Go sorts map keys as strings: "100" < "45" < "9".
    let mut s = TaskStatus::default();
    for id in [9, 45, 100] {
        s.add_table(TableId(id), Ts(1), Ts(1));
    }
    assert_eq!(
        to_string(&s),
        r#"{"tables":{"100":{"start-ts":1,"mark-table-id":0},"45":{"start-ts":1,"mark-table-id":0},"9":{"start-ts":1,"mark-table-id":0}},"operation":{"100":{"done":false,"delete":false,"boundary_ts":1},"45":{"done":false,"delete":false,"boundary_ts":1},"9":{"done":false,"delete":false,"boundary_ts":1}},"admin-job-type":0}"#
    );
    let w: TaskWorkload = decode(br#"{"9":{"workload":1},"10":{"workload":1}}"#).expect("decode");
    assert_eq!(to_string(&w), r#"{"10":{"workload":1},"9":{"workload":1}}"#);
}

#[test]
fn flag_and_status_are_omitted_when_zero() {
    let op = TableOperation {
        boundary_ts: Ts(5),
        ..Default::default()
    };
    assert_eq!(
        to_string(&op),
        r#"{"done":false,"delete":false,"boundary_ts":5}"#
    );
    let op = TableOperation {
        delete: true,
        flag: OPER_FLAG_MOVE_TABLE,
        boundary_ts: Ts(5),
        status: OperationStatus::Finished,
        done: true,
        ..Default::default()
    };
    assert_eq!(
        to_string(&op),
        r#"{"done":true,"delete":true,"flag":1,"boundary_ts":5,"status":2}"#
    );
    assert!(op.is_applied() && op.is_move());
    // An explicit 0 reads as absent and is then omitted, as in Go.
    assert_eq!(
        round_trip::<TableOperation>(
            r#"{"done":false,"delete":false,"flag":0,"boundary_ts":5,"status":0}"#
        ),
        r#"{"done":false,"delete":false,"boundary_ts":5}"#
    );
}

#[test]
fn operation_predicates_match_ticdc() {
    use OperationStatus::*;
    for (status, done, processed, applied) in [
        (Dispatched, false, false, false),
        (Processed, false, true, false),
        (Finished, false, true, true),
        (Dispatched, true, true, true),
        (Processed, true, true, true),
    ] {
        let op = TableOperation {
            status,
            done,
            ..Default::default()
        };
        assert_eq!(op.is_processed(), processed, "{status:?} done={done}");
        assert_eq!(op.is_applied(), applied, "{status:?} done={done}");
    }
    for (code, status) in [(0, Dispatched), (1, Processed), (2, Finished)] {
        assert_eq!(status.code(), code);
        assert_eq!(OperationStatus::from_code(code), Some(status));
    }
    assert_eq!(OperationStatus::from_code(3), None);
}

#[test]
fn unknown_fields_survive_at_every_level() {
    let go = r#"{"tables":{"45":{"start-ts":1,"mark-table-id":0,"some-future-field":{"x":1}}},"operation":{"45":{"done":false,"delete":false,"boundary_ts":1,"some-future-field":{"x":1}}},"admin-job-type":0,"some-future-field":{"x":1}}"#;
    assert_eq!(round_trip::<TaskStatus>(go), go);
    let go = r#"{"checkpoint-ts":1,"resolved-ts":2,"count":0,"error":{"addr":"a","code":"c","message":"m","some-future-field":{"x":1}},"some-future-field":{"x":1}}"#;
    assert_eq!(round_trip::<TaskPosition>(go), go);
    let go = r#"{"45":{"workload":1,"some-future-field":{"x":1}}}"#;
    assert_eq!(round_trip::<TaskWorkload>(go), go);
}

#[test]
fn position_and_workload_facts_examples() {
    let go = r#"{"checkpoint-ts":425908869000000000,"resolved-ts":425908870000000000,"count":0,"error":null}"#;
    assert_eq!(round_trip::<TaskPosition>(go), go);
    let p: TaskPosition = decode(go.as_bytes()).expect("decode");
    assert_eq!(p.error, None);
    let with_error = r#"{"checkpoint-ts":1,"resolved-ts":2,"count":0,"error":{"addr":"127.0.0.1:8300","code":"CDC:ErrProcessorUnknown","message":"boom"}}"#;
    let p: TaskPosition = decode(with_error.as_bytes()).expect("decode");
    assert_eq!(
        p.error.as_ref().map(|e| e.code.as_str()),
        Some("CDC:ErrProcessorUnknown")
    );
    assert_eq!(to_string(&p), with_error);

    let go = r#"{"45":{"workload":1},"47":{"workload":1}}"#;
    assert_eq!(round_trip::<TaskWorkload>(go), go);
    let w: TaskWorkload = decode(go.as_bytes()).expect("decode");
    assert_eq!(w.total(), 2);
    assert_eq!(round_trip::<TaskWorkload>("{}"), "{}");
}

#[test]
fn large_and_negative_values_survive_flatten_buffering() {
    let go = r#"{"tables":{"-3":{"start-ts":18446744073709551615,"mark-table-id":-7}},"operation":{"-3":{"done":false,"delete":true,"flag":18446744073709551615,"boundary_ts":18446744073709551614,"status":2}},"admin-job-type":3}"#;
    let s: TaskStatus = decode(go.as_bytes()).expect("decode");
    assert_eq!(
        s.tables.as_ref().expect("tables")[&TableId(-3)].start_ts,
        Ts::MAX
    );
    assert_eq!(s.admin_job_type, AdminJobType::Remove);
    assert_eq!(to_string(&s), go);
}

#[test]
fn bad_values_are_decode_errors_with_a_reason() {
    let err = decode::<TableOperation>(br#"{"status":7}"#).expect_err("7");
    assert!(
        err.to_string().contains("table operation status 7"),
        "{err}"
    );
    let err = decode::<TaskStatus>(br#"{"operation":{"1":{"status":3}}}"#).expect_err("nested");
    assert!(
        err.to_string().contains("table operation status 3"),
        "{err}"
    );
    let err = decode::<TaskStatus>(br#"{"tables":{"abc":{}}}"#).expect_err("abc");
    assert!(err.to_string().contains("abc"), "{err}");
    let err = decode::<TaskStatus>(br#"{"admin-job-type":5}"#).expect_err("5");
    assert!(err.to_string().contains("admin job type 5"), "{err}");
    assert!(decode::<TaskWorkload>(br#"{"x":{"workload":1}}"#).is_err());
    assert!(decode::<TaskStatus>(b"[]").is_err());
}

#[test]
fn add_table_follows_ticdc() {
    let mut s = TaskStatus::default();
    s.add_table(TableId(1), Ts(10), Ts(11));
    let tables = s.tables.as_ref().expect("tables created");
    assert_eq!(tables[&TableId(1)].start_ts, Ts(10));
    assert_eq!(tables[&TableId(1)].mark_table_id, 0);
    let op = &s.operation.as_ref().expect("ops created")[&TableId(1)];
    assert_eq!(
        (op.delete, op.boundary_ts, op.status, op.flag),
        (false, Ts(11), OperationStatus::Dispatched, 0)
    );
    assert!(!s.is_empty());

    // Present already: nothing changes, not even the op (which may have advanced).
    let mut advanced = s.clone();
    if let Some(op) = advanced
        .operation
        .as_mut()
        .and_then(|o| o.get_mut(&TableId(1)))
    {
        op.status = OperationStatus::Finished;
    }
    let before = advanced.clone();
    advanced.add_table(TableId(1), Ts(99), Ts(99));
    assert_eq!(advanced, before);
}

#[test]
fn remove_table_follows_ticdc() {
    let mut s = TaskStatus::default();
    // Absent (and nil maps): a no-op that creates nothing.
    assert_eq!(s.remove_table(TableId(2), Ts(20), false), None);
    assert_eq!(s, TaskStatus::default());

    s.add_table(TableId(1), Ts(10), Ts(10));
    assert_eq!(s.remove_table(TableId(2), Ts(20), false), None);
    assert_eq!(
        s.operation.as_ref().expect("ops").len(),
        1,
        "absent table: no-op"
    );

    let removed = s.remove_table(TableId(1), Ts(20), false);
    assert_eq!(
        removed.map(|r| r.start_ts),
        Some(Ts(10)),
        "the removed table is returned"
    );
    let op = &s.operation.as_ref().expect("ops")[&TableId(1)];
    assert!(op.delete && !op.is_move() && op.flag == 0 && op.boundary_ts == Ts(20));
    assert_eq!(
        op.status,
        OperationStatus::Dispatched,
        "the add op is replaced"
    );
    assert_eq!(
        s.tables,
        Some(BTreeMap::new()),
        "Go keeps the emptied map: {{}} not null"
    );
    assert!(!s.is_empty(), "the delete op is still in flight");
    assert_eq!(
        to_string(&s),
        r#"{"tables":{},"operation":{"1":{"done":false,"delete":true,"boundary_ts":20}},"admin-job-type":0}"#
    );

    let mut s = TaskStatus::default();
    s.add_table(TableId(3), Ts(1), Ts(1));
    s.remove_table(TableId(3), Ts(5), true);
    let op = &s.operation.as_ref().expect("ops")[&TableId(3)];
    assert!(op.is_move() && op.flag == OPER_FLAG_MOVE_TABLE);
    s.operation.as_mut().expect("ops").clear();
    assert!(s.is_empty());
}

fn arb_extra() -> impl Strategy<Value = Extra> {
    proptest::collection::btree_map("[a-z]{1,3}-x", any::<u64>(), 0..2)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
}

fn arb_op() -> impl Strategy<Value = TableOperation> {
    (
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(0u64), Just(1u64), any::<u64>()],
        any::<u64>(),
        0u64..3,
        arb_extra(),
    )
        .prop_map(|(done, delete, flag, b, st, extra)| TableOperation {
            done,
            delete,
            flag,
            boundary_ts: Ts(b),
            status: OperationStatus::from_code(st).unwrap_or_default(),
            extra,
        })
}

fn arb_info() -> impl Strategy<Value = TableReplicaInfo> {
    (any::<u64>(), any::<i64>(), arb_extra()).prop_map(|(ts, mark, extra)| TableReplicaInfo {
        start_ts: Ts(ts),
        mark_table_id: mark,
        extra,
    })
}

proptest! {
    #[test]
    fn any_task_status_round_trips(
        tables in proptest::option::of(proptest::collection::btree_map(any::<i64>(), arb_info(), 0..8)),
        ops in proptest::option::of(proptest::collection::btree_map(any::<i64>(), arb_op(), 0..8)),
        job in 0u64..5,
        extra in arb_extra(),
    ) {
        let s = TaskStatus {
            tables: tables.map(|t| t.into_iter().map(|(id, i)| (TableId(id), i)).collect()),
            operation: ops.map(|o| o.into_iter().map(|(id, op)| (TableId(id), op)).collect()),
            admin_job_type: AdminJobType::from_code(job).unwrap_or_default(),
            extra,
        };
        let bytes = encode(&s).expect("encode");
        let back: TaskStatus = decode(&bytes).expect("decode");
        prop_assert_eq!(&back, &s);
        // Stable bytes: encoding the decoded value gives the same output.
        prop_assert_eq!(encode(&back).expect("encode"), bytes);
    }
}
