//! The bank test (after TiCDC's `etcd_worker_bank_test`): several EtcdWorkers on one store
//! concurrently move amounts between accounts. Each transfer is one patch group: two semantic
//! balance edits plus a transfer record created only if absent, so a transfer that is
//! re-applied after a conflict can land at most once, and one whose outcome is unknown is
//! decided again from the re-read state.
//!
//! Checked at the end: the total is unchanged, no balance is negative, and every balance
//! equals its initial amount plus the recorded transfers in and out — so no transfer was lost
//! (a balance change without a record) or applied twice (a record applied with two changes).

mod common;

use std::collections::BTreeMap;

use common::*;
use rand::{Rng, SeedableRng};
use rcdc_reactor::store::MetaStore;
use rcdc_reactor::{TickOutput, WorkerStats};

const ACCOUNTS: usize = 8;
const INITIAL: i64 = 1_000;
const WORKERS: usize = 4;
const TRANSFERS: usize = 2_000;

fn account(p: &str, i: usize) -> String {
    format!("{p}account/{i}")
}

async fn bank<S: MetaStore + Clone>(store: S, _f: &dyn Faults) {
    let p = "/t/bank/";
    for i in 0..ACCOUNTS {
        put(&store, &account(p, i), &INITIAL.to_string()).await;
    }
    let mut workers = Vec::new();
    for w in 0..WORKERS {
        let mut rng = rand::rngs::StdRng::seed_from_u64(w as u64);
        let mut seq = 0u64;
        let reactor = FnReactor::new(move |_, s: &KvState, _| {
            let records =
                s.kv.keys()
                    .filter(|k| k.starts_with(&format!("{p}transfer/")))
                    .count();
            if records >= TRANSFERS {
                return TickOutput {
                    groups: vec![],
                    finished: true,
                };
            }
            let from = rng.gen_range(0..ACCOUNTS);
            let to = (from + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
            let balance = s.int(&account(p, from)).unwrap_or(0);
            if balance <= 0 {
                return TickOutput::default();
            }
            let amount = rng.gen_range(1..=balance.min(100));
            seq += 1;
            let id = format!("{p}transfer/w{w}-{seq:06}");
            out(vec![group(
                &id.clone(),
                vec![
                    TestPatch::Add {
                        key: account(p, from),
                        delta: -amount,
                        min: 0,
                    },
                    TestPatch::Add {
                        key: account(p, to),
                        delta: amount,
                        min: 0,
                    },
                    TestPatch::Create(id, format!("{from},{to},{amount}")),
                ],
            )])
        });
        let mut cfg = config(p);
        cfg.role = format!("bank-{w}");
        cfg.tick_interval = std::time::Duration::from_millis(1);
        workers.push(spawn(store.clone(), reactor, KvState::default(), cfg));
    }
    let mut conflicts = 0;
    for w in workers {
        let stats = w.stats.clone();
        let exit = tokio::time::timeout(std::time::Duration::from_secs(240), w.join())
            .await
            .expect("bank run finishes in time");
        assert_eq!(exit, Ok(rcdc_reactor::WorkerExit::Finished));
        conflicts += WorkerStats::get(&stats.conflicts);
    }

    let keys = list(&store, p).await;
    let mut expected: BTreeMap<usize, i64> = (0..ACCOUNTS).map(|i| (i, INITIAL)).collect();
    let mut records = 0;
    for (k, v) in &keys {
        if k.starts_with(&format!("{p}transfer/")) {
            records += 1;
            let text = String::from_utf8(v.clone()).expect("utf8");
            let parts: Vec<i64> = text.split(',').map(|x| x.parse().expect("int")).collect();
            *expected.get_mut(&(parts[0] as usize)).expect("from") -= parts[2];
            *expected.get_mut(&(parts[1] as usize)).expect("to") += parts[2];
        }
    }
    assert!(records >= TRANSFERS, "only {records} transfers landed");
    let mut total = 0;
    for i in 0..ACCOUNTS {
        let balance: i64 = String::from_utf8(keys[&account(p, i)].clone())
            .expect("utf8")
            .parse()
            .expect("int");
        assert!(balance >= 0, "account {i} went negative: {balance}");
        assert_eq!(
            balance, expected[&i],
            "account {i}: balance disagrees with its transfer records"
        );
        total += balance;
    }
    assert_eq!(
        total,
        INITIAL * ACCOUNTS as i64,
        "money was created or destroyed"
    );
    assert!(
        conflicts > 0,
        "four workers on eight accounts must have contended at least once"
    );
}
on_both_backends!(bank);
