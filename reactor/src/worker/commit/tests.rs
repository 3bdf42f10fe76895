use std::collections::VecDeque;

use rcdc_state::{Edit, Patch, PatchGroup};

use super::{plan as plan_txn, *};
use crate::store::{KeyValue, WatchEvent};

const COUNTER: &str = "/p/counter";

fn raw_with(keys: &[(&str, &str, i64)]) -> RawCache {
    let mut raw = RawCache::new(COUNTER.into());
    for (k, v, rev) in keys {
        raw.apply_event(WatchEvent::Put(KeyValue {
            key: (*k).into(),
            value: (*v).into(),
            create_revision: Revision(*rev),
            mod_revision: Revision(*rev),
            lease: 0,
        }));
    }
    raw
}

fn group(label: &str, patches: Vec<(&str, Edit)>) -> Group<Patch> {
    let mut g = PatchGroup::new(label);
    for (k, e) in patches {
        g.push(k, e);
    }
    g.into()
}

fn put(v: &str) -> Edit {
    Edit::Put { value: v.into() }
}

#[test]
fn compares_use_exact_mod_revisions_and_absent_is_zero() {
    let raw = raw_with(&[("/p/a", "1", 7)]);
    let pending = VecDeque::from([group("g", vec![("/p/a", put("2")), ("/p/new", put("x"))])]);
    let plan = plan_txn(&raw, &pending, &TxnLimits::default(), None);
    let txn = plan.txn.expect("a txn").txn;
    assert_eq!(plan.consumed, 1);
    assert!(txn.compares.contains(&Compare {
        key: "/p/a".into(),
        target: CompareTarget::ModRevision(Revision(7))
    }));
    assert!(txn.compares.contains(&Compare {
        key: "/p/new".into(),
        target: CompareTarget::ModRevision(Revision(0))
    }));
    // No counter seen yet: the counter must still not exist (mod revision 0).
    assert!(txn.compares.contains(&Compare {
        key: COUNTER.into(),
        target: CompareTarget::ModRevision(Revision(0))
    }));
    // Every compared key is read back on failure.
    assert_eq!(txn.failure.len(), txn.compares.len());
}

#[test]
fn a_delete_bumps_the_counter_and_every_txn_compares_it() {
    let mut raw = raw_with(&[("/p/a", "1", 7)]);
    raw.apply_event(WatchEvent::Put(KeyValue {
        key: COUNTER.into(),
        value: b"41".to_vec(),
        create_revision: Revision(2),
        mod_revision: Revision(6),
        lease: 0,
    }));
    let pending = VecDeque::from([group("g", vec![("/p/a", Edit::Delete)])]);
    let txn = plan_txn(&raw, &pending, &TxnLimits::default(), None)
        .txn
        .expect("txn")
        .txn;
    assert!(txn.compares.contains(&Compare {
        key: COUNTER.into(),
        target: CompareTarget::ModRevision(Revision(6))
    }));
    assert!(txn.success.contains(&TxnOp::Delete { key: "/p/a".into() }));
    assert!(txn.success.contains(&TxnOp::Put {
        key: COUNTER.into(),
        value: b"42".to_vec(),
        lease: 0
    }));

    let pending = VecDeque::from([group("g", vec![("/p/a", put("2"))])]);
    let txn = plan_txn(&raw, &pending, &TxnLimits::default(), None)
        .txn
        .expect("txn")
        .txn;
    assert!(
        txn.compares.iter().any(|c| c.key == COUNTER),
        "a txn without deletes still compares the counter"
    );
    assert!(!txn
        .success
        .iter()
        .any(|op| matches!(op, TxnOp::Put { key, .. } if key == COUNTER)));
}

#[test]
fn no_txn_when_nothing_changes() {
    let raw = raw_with(&[("/p/a", "1", 7)]);
    let pending = VecDeque::from([group(
        "g",
        vec![("/p/a", put("1")), ("/p/none", Edit::Delete)],
    )]);
    let plan = plan_txn(&raw, &pending, &TxnLimits::default(), None);
    assert!(plan.txn.is_none());
    assert_eq!(plan.consumed, 1);
}

#[test]
fn groups_are_batched_within_the_op_limit() {
    let raw = raw_with(&[]);
    let pending: VecDeque<_> = (0..300)
        .map(|i| group(&format!("g{i}"), vec![(&*format!("/p/k{i:03}"), put("v"))]))
        .collect();
    let first = plan_txn(&raw, &pending, &TxnLimits::default(), None);
    let txn = first.txn.expect("txn").txn;
    // 127 keys + the counter compare = 128 compares, the limit.
    assert_eq!(first.consumed, 127);
    assert_eq!(txn.compares.len(), 128);
    assert!(txn.success.len() <= 128 && txn.failure.len() <= 128);
}

/// A counter somebody wrote in another form (`007`, garbage) must not fail every compare:
/// the compare is on its mod revision, not on a re-rendering of the parsed number.
#[test]
fn a_non_canonical_counter_is_compared_by_mod_revision() {
    for value in ["007", "garbage", " 3 "] {
        let mut raw = raw_with(&[("/p/a", "1", 7)]);
        raw.apply_event(WatchEvent::Put(KeyValue {
            key: COUNTER.into(),
            value: value.as_bytes().to_vec(),
            create_revision: Revision(2),
            mod_revision: Revision(5),
            lease: 0,
        }));
        let pending = VecDeque::from([group("g", vec![("/p/a", Edit::Delete)])]);
        let txn = plan_txn(&raw, &pending, &TxnLimits::default(), None)
            .txn
            .expect("txn")
            .txn;
        let counter: Vec<_> = txn.compares.iter().filter(|c| c.key == COUNTER).collect();
        assert_eq!(
            counter,
            vec![&Compare {
                key: COUNTER.into(),
                target: CompareTarget::ModRevision(Revision(5))
            }],
            "{value:?}"
        );
    }
}

#[test]
fn a_later_group_reads_an_earlier_groups_write_in_the_same_batch() {
    let raw = raw_with(&[]);
    let pending = VecDeque::from([
        group("a", vec![("/p/x", Edit::Create { value: "1".into() })]),
        group("b", vec![("/p/x", Edit::Create { value: "1".into() })]),
    ]);
    let plan = plan_txn(&raw, &pending, &TxnLimits::default(), None);
    assert!(
        plan.dropped.is_empty(),
        "b sees a's create and is a no-op: {:?}",
        plan.dropped
    );
    assert_eq!(plan.txn.expect("txn").txn.success.len(), 1);
}

#[test]
fn an_oversize_group_is_dropped_with_an_error_naming_it() {
    let raw = raw_with(&[]);
    let big: Vec<(String, Edit)> = (0..200).map(|i| (format!("/p/k{i}"), put("v"))).collect();
    let pending = VecDeque::from([
        group(
            "huge-cleanup/cf-7",
            big.iter().map(|(k, e)| (k.as_str(), e.clone())).collect(),
        ),
        group("small", vec![("/p/s", put("v"))]),
    ]);
    let plan = plan_txn(&raw, &pending, &TxnLimits::default(), None);
    assert_eq!(plan.dropped.len(), 1);
    let (index, d) = &plan.dropped[0];
    assert_eq!(*index, 0);
    let DropReason::TooLarge(msg) = d else {
        panic!("{d:?}")
    };
    assert!(
        msg.contains("huge-cleanup/cf-7") && msg.contains("128"),
        "{msg}"
    );
    assert_eq!(plan.consumed, 2, "the small group still goes in this txn");
    assert!(plan.txn.is_some());

    let bytes = "x".repeat(MAX_TXN_BYTES + 1);
    let pending = VecDeque::from([group("fat", vec![("/p/f", put(&bytes))])]);
    let plan = plan_txn(&raw, &pending, &TxnLimits::default(), None);
    assert!(matches!(plan.dropped[0].1, DropReason::TooLarge(_)));
    assert!(plan.txn.is_none());
}

#[test]
fn a_precondition_failure_drops_only_its_group() {
    let raw = raw_with(&[("/p/a", "1", 3)]);
    let pending = VecDeque::from([
        group(
            "bad",
            vec![
                ("/p/b", put("ok")),
                ("/p/a", Edit::Create { value: "2".into() }),
            ],
        ),
        group("good", vec![("/p/c", put("v"))]),
    ]);
    let plan = plan_txn(&raw, &pending, &TxnLimits::default(), None);
    assert_eq!(plan.dropped.len(), 1);
    assert!(matches!(plan.dropped[0].1, DropReason::Precondition(_)));
    let txn = plan.txn.expect("txn").txn;
    assert_eq!(
        txn.success,
        vec![TxnOp::Put {
            key: "/p/c".into(),
            value: b"v".to_vec(),
            lease: 0
        }],
        "nothing of the bad group leaks"
    );
}

#[test]
fn a_fence_is_compared_and_read_back_last() {
    let raw = raw_with(&[]);
    let fence = Fence {
        key: "/p/owner/abc".into(),
        create_revision: Revision(11),
    };
    let pending = VecDeque::from([group("g", vec![("/p/a", put("1"))])]);
    let planned = plan_txn(&raw, &pending, &TxnLimits::default(), Some(&fence))
        .txn
        .expect("txn");
    assert!(planned.has_fence);
    assert!(planned.txn.compares.contains(&Compare {
        key: fence.key.clone(),
        target: CompareTarget::CreateRevision(Revision(11))
    }));
    assert_eq!(
        planned.txn.failure.last(),
        Some(&TxnOp::Get {
            key: fence.key.clone()
        })
    );
}
