//! The interim main job (`./scripts/demo`): a local etcd and three EtcdWorkers that move
//! amounts between accounts stored as etcd keys, printing commits, conflicts and the money
//! invariant every second until Ctrl-C. Replaced by a real `cdc server` cluster in issue #5.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rcdc_reactor::store::{MetaStore, Txn, TxnOp};
use rcdc_reactor::testing::EtcdHarness;
use rcdc_reactor::{
    EtcdWorker, Group, KeyPatch, Reactor, ReactorState, TickContext, TickOutput, WorkerConfig,
};
use rcdc_state::{PatchError, PatchOutcome};

const PREFIX: &str = "/rcdc-demo/";
const ACCOUNTS: usize = 10;

#[derive(Default)]
struct Balances(BTreeMap<String, i64>);

impl ReactorState for Balances {
    fn update(&mut self, key: &str, value: Option<&[u8]>) {
        match value.and_then(|v| std::str::from_utf8(v).ok()?.parse().ok()) {
            Some(v) => self.0.insert(key.to_owned(), v),
            None => self.0.remove(key),
        };
    }
}

/// Add `delta` to an account, refusing to go negative.
#[derive(Debug)]
struct Add(String, i64);

impl KeyPatch for Add {
    fn key(&self) -> &str {
        &self.0
    }
    fn apply(&self, old: Option<&[u8]>) -> Result<PatchOutcome, PatchError> {
        let cur: i64 = old
            .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
            .unwrap_or(0);
        if cur + self.1 < 0 {
            return Err(PatchError::Precondition {
                key: self.0.clone(),
                reason: "insufficient funds".into(),
            });
        }
        Ok(PatchOutcome::Put((cur + self.1).to_string().into_bytes()))
    }
}

struct Teller(rand::rngs::StdRng);

impl Reactor for Teller {
    type State = Balances;
    type Patch = Add;
    fn tick(&mut self, s: &Balances, _: &TickContext) -> TickOutput<Add> {
        let from = self.0.gen_range(0..ACCOUNTS);
        let to = (from + self.0.gen_range(1..ACCOUNTS)) % ACCOUNTS;
        let have = s.0.get(&format!("{PREFIX}{from}")).copied().unwrap_or(0);
        if have == 0 {
            return TickOutput::default();
        }
        let amount = self.0.gen_range(1..=have.min(50));
        let patches = vec![
            Add(format!("{PREFIX}{from}"), -amount),
            Add(format!("{PREFIX}{to}"), amount),
        ];
        TickOutput {
            groups: vec![Group {
                label: format!("transfer {from}->{to}"),
                patches,
            }],
            finished: false,
        }
    }
}

#[tokio::main]
async fn main() {
    let etcd = EtcdHarness::start().await;
    println!("etcd at {}", etcd.endpoints().join(","));
    let store = etcd.store().await;
    for i in 0..ACCOUNTS {
        let txn = Txn {
            success: vec![TxnOp::Put {
                key: format!("{PREFIX}{i}"),
                value: b"1000".to_vec(),
                lease: 0,
            }],
            ..Txn::default()
        };
        if let Err(e) = store.txn(txn).await {
            eprintln!("cannot seed accounts: {e}");
            return;
        }
    }
    let mut stats = Vec::new();
    for w in 0..3 {
        let mut cfg = WorkerConfig::new(
            &format!("teller-{w}"),
            PREFIX,
            &format!("{PREFIX}meta/counter"),
        );
        cfg.tick_interval = Duration::from_millis(2);
        let worker = EtcdWorker::new(
            store.clone(),
            Teller(rand::rngs::StdRng::seed_from_u64(w)),
            Balances::default(),
            cfg,
        );
        stats.push(worker.stats());
        tokio::spawn(worker.run(std::future::pending()));
    }
    let mut every = tokio::time::interval(Duration::from_secs(1));
    // SIGTERM too, so that etcd (a child process) is always stopped by the harness's Drop.
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot handle SIGTERM: {e}");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = every.tick() => {
                let total: i64 = match store.get_prefix(PREFIX).await {
                    Ok((kvs, _)) => kvs.iter().filter(|kv| !kv.key.contains("meta")).filter_map(|kv| std::str::from_utf8(&kv.value).ok()?.parse::<i64>().ok()).sum(),
                    Err(e) => { eprintln!("etcd: {e}"); continue; }
                };
                let commits: u64 = stats.iter().map(|s| s.txns_committed.load(Ordering::Relaxed)).sum();
                let conflicts: u64 = stats.iter().map(|s| s.conflicts.load(Ordering::Relaxed)).sum();
                println!("txns committed {commits:>7}  conflicts {conflicts:>5}  total balance {total} (must stay {})", 1000 * ACCOUNTS);
            }
        }
    }
    println!("stopping; etcd and its data directory are removed");
}
