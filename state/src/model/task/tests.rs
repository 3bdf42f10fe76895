use proptest::prelude::*;

use super::*;

fn round_trip<T: serde::de::DeserializeOwned + Serialize>(go: &str) -> String {
    let v: T = serde_json::from_str(go).expect("decode");
    serde_json::to_string(&v).expect("encode")
}

#[test]
fn task_status_facts_example_round_trips_byte_for_byte() {
    let go = r#"{"tables":{"45":{"start-ts":425908866286305281,"mark-table-id":0},"47":{"start-ts":425908869000000000,"mark-table-id":0}},"operation":{"47":{"done":false,"delete":false,"boundary_ts":425908869000000000,"status":1}},"admin-job-type":0}"#;
    assert_eq!(round_trip::<TaskStatus>(go), go);
    let s: TaskStatus = serde_json::from_str(go).expect("decode");
    let op = &s.operation.as_ref().expect("ops")[&TableId(47)];
    assert_eq!(op.status, OperationStatus::Processed);
    assert!(op.is_processed() && !op.is_applied());
}

#[test]
fn an_empty_status_is_exactly_what_the_go_owner_writes() {
    let empty = TaskStatus::default();
    assert_eq!(
        serde_json::to_string(&empty).expect("encode"),
        r#"{"tables":null,"operation":null,"admin-job-type":0}"#
    );
    assert!(empty.is_empty());
}

#[test]
fn flag_and_status_are_omitted_when_zero() {
    let op = TableOperation {
        boundary_ts: Ts(5),
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_string(&op).expect("encode"),
        r#"{"done":false,"delete":false,"boundary_ts":5}"#
    );
    let op = TableOperation {
        delete: true,
        flag: 1,
        boundary_ts: Ts(5),
        status: OperationStatus::Finished,
        done: true,
        ..Default::default()
    };
    assert_eq!(
        serde_json::to_string(&op).expect("encode"),
        r#"{"done":true,"delete":true,"flag":1,"boundary_ts":5,"status":2}"#
    );
    assert!(op.is_applied() && op.is_move());
}

#[test]
fn unknown_fields_survive_at_every_level() {
    let go = r#"{"tables":{"45":{"start-ts":1,"mark-table-id":0,"t-extra":[1]}},"operation":{"45":{"done":false,"delete":false,"boundary_ts":1,"o-extra":{"x":1}}},"admin-job-type":0,"some-future-field":{"x":1}}"#;
    assert_eq!(round_trip::<TaskStatus>(go), go);
    let go = r#"{"checkpoint-ts":1,"resolved-ts":2,"count":0,"error":{"addr":"a","code":"c","message":"m","e-extra":true},"p-extra":"y"}"#;
    assert_eq!(round_trip::<TaskPosition>(go), go);
    let go = r#"{"45":{"workload":1,"w-extra":2}}"#;
    assert_eq!(round_trip::<TaskWorkload>(go), go);
}

#[test]
fn position_and_workload_facts_examples() {
    let go = r#"{"checkpoint-ts":425908869000000000,"resolved-ts":425908870000000000,"count":0,"error":null}"#;
    assert_eq!(round_trip::<TaskPosition>(go), go);
    let go = r#"{"45":{"workload":1},"47":{"workload":1}}"#;
    assert_eq!(round_trip::<TaskWorkload>(go), go);
}

#[test]
fn bad_values_are_decode_errors_with_a_reason() {
    let err = serde_json::from_str::<TableOperation>(r#"{"status":7}"#).expect_err("7");
    assert!(
        err.to_string().contains("table operation status 7"),
        "{err}"
    );
    let err = serde_json::from_str::<TaskStatus>(r#"{"tables":{"abc":{}}}"#).expect_err("abc");
    assert!(err.to_string().contains("abc"), "{err}");
}

#[test]
fn add_and_remove_follow_ticdc_semantics() {
    let mut s = TaskStatus::default();
    s.add_table(TableId(1), Ts(10), Ts(10));
    s.add_table(TableId(1), Ts(99), Ts(99));
    assert_eq!(
        s.tables.as_ref().expect("tables")[&TableId(1)].start_ts,
        Ts(10),
        "add is a no-op when present"
    );
    s.remove_table(TableId(2), Ts(20), false);
    assert_eq!(
        s.operation.as_ref().expect("ops").len(),
        1,
        "remove of an absent table is a no-op"
    );
    s.remove_table(TableId(1), Ts(20), true);
    let op = &s.operation.as_ref().expect("ops")[&TableId(1)];
    assert!(op.delete && op.is_move() && op.boundary_ts == Ts(20));
    assert_eq!(
        s.tables,
        Some(BTreeMap::new()),
        "Go keeps the emptied map: {{}} not null"
    );
    assert!(!s.is_empty());
}

fn arb_op() -> impl Strategy<Value = TableOperation> {
    (any::<bool>(), any::<bool>(), 0u64..2, any::<u64>(), 0u64..3).prop_map(
        |(done, delete, flag, b, st)| TableOperation {
            done,
            delete,
            flag,
            boundary_ts: Ts(b),
            status: match st {
                0 => OperationStatus::Dispatched,
                1 => OperationStatus::Processed,
                _ => OperationStatus::Finished,
            },
            extra: Extra::new(),
        },
    )
}

proptest! {
    #[test]
    fn any_task_status_round_trips(
        tables in proptest::option::of(proptest::collection::btree_map(any::<i64>(), (any::<u64>(), any::<i64>()), 0..8)),
        ops in proptest::option::of(proptest::collection::btree_map(any::<i64>(), arb_op(), 0..8)),
    ) {
        let s = TaskStatus {
            tables: tables.map(|t| t.into_iter().map(|(id, (ts, mark))| (TableId(id), TableReplicaInfo { start_ts: Ts(ts), mark_table_id: mark, extra: Extra::new() })).collect()),
            operation: ops.map(|o| o.into_iter().map(|(id, op)| (TableId(id), op)).collect()),
            admin_job_type: AdminJobType::None,
            extra: Extra::new(),
        };
        let json = serde_json::to_string(&s).expect("encode");
        let back: TaskStatus = serde_json::from_str(&json).expect("decode");
        prop_assert_eq!(back, s);
    }
}
