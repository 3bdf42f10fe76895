//! The TSO stream against the fake PD: batching, order, and never going back.

mod fake;

use std::collections::BTreeSet;
use std::time::Duration;

use fake::{FakePd, START_PHYSICAL};
use rcdc_pd::{physical_ms, PdClient, PdError, PdOptions};

fn options() -> PdOptions {
    PdOptions {
        request_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(1),
        member_interval: Duration::from_secs(3600),
        connect_retries: 0,
        ..PdOptions::default()
    }
}

async fn connect(pd: &FakePd, options: PdOptions) -> PdClient {
    PdClient::connect(&pd.urls, options)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

#[tokio::test]
async fn sequential_timestamps_increase_and_come_from_pd() {
    let pd = FakePd::start(1).await;
    let client = connect(&pd, options()).await;
    let mut last = 0;
    for _ in 0..20 {
        let ts = client.get_ts().await.expect("ts");
        assert!(ts > last, "{ts} after {last}");
        last = ts;
    }
    // The fake started at START_PHYSICAL and counts logical from 0: the 20th ts is
    // START_PHYSICAL << 18 | 20.
    assert_eq!(physical_ms(last), START_PHYSICAL as u64);
    assert_eq!(last & ((1 << 18) - 1), 20);
    assert_eq!(
        pd.tso_counts(),
        vec![1; 20],
        "one request each: nobody else was waiting"
    );
}

#[tokio::test]
async fn concurrent_callers_share_requests_and_get_distinct_increasing_timestamps() {
    let pd = FakePd::start(1).await;
    // Each answer takes 50 ms, so callers pile up behind the one in flight.
    pd.state.lock().tso_delay = Duration::from_millis(50);
    let client = connect(&pd, options()).await;
    let callers = 300;
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get_ts().await })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.push(task.await.expect("task").expect("ts"));
    }
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        callers,
        "every caller got its own timestamp"
    );

    let counts = pd.tso_counts();
    let total: u32 = counts.iter().sum();
    assert_eq!(
        total as usize, callers,
        "PD handed out exactly one per caller: {counts:?}"
    );
    assert!(
        counts.len() <= callers / 10,
        "{} requests for {callers} callers: not batched ({counts:?})",
        counts.len()
    );
    assert!(
        counts.iter().any(|c| *c > 1),
        "some request carried a batch: {counts:?}"
    );

    // The batch's timestamps are the consecutive run PD handed out, ending at its answer.
    let max = distinct.iter().next_back().copied().unwrap_or(0);
    let min = distinct.iter().next().copied().unwrap_or(0);
    assert_eq!(max - min + 1, callers as u64, "no gaps and no overlaps");
    let after = client.get_ts().await.expect("ts after the burst");
    assert!(after > max);
}

#[tokio::test]
async fn batches_are_capped_at_max_tso_batch() {
    let pd = FakePd::start(1).await;
    pd.state.lock().tso_delay = Duration::from_millis(50);
    let options = PdOptions {
        max_tso_batch: 7,
        ..options()
    };
    let client = connect(&pd, options).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.get_ts().await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("ts");
    }
    let counts = pd.tso_counts();
    assert!(counts.iter().all(|c| *c <= 7), "{counts:?}");
    assert_eq!(counts.iter().sum::<u32>(), 50);
}

#[tokio::test]
async fn a_timestamp_never_goes_back_across_a_reconnect() {
    let pd = FakePd::start(1).await;
    let options = PdOptions {
        request_timeout: Duration::from_secs(1),
        ..options()
    };
    let client = connect(&pd, options).await;
    let before = client.get_ts().await.expect("ts");

    // PD comes back with a TSO 10 s behind (as a restarted PD with a stale clock might), and
    // the stream breaks.
    {
        let mut s = pd.state.lock();
        s.tso_physical -= 10_000;
        s.stream_epoch += 1;
    }
    let served_before = pd.tso_counts().len();
    let err = client.get_ts().await.expect_err("PD went back in time");
    match err {
        PdError::TsoWentBackwards {
            endpoint,
            got,
            last,
        } => {
            assert_eq!(endpoint, pd.urls[0]);
            assert_eq!(last, before);
            assert!(got <= before);
        }
        other => panic!("expected TsoWentBackwards, got {other:?}"),
    }
    assert!(
        pd.tso_counts().len() >= served_before + 2,
        "the client reconnected and retried before giving up"
    );

    // Once PD is ahead again, timestamps continue above the old ones.
    pd.state.lock().tso_physical = physical_ms(before) as i64 + 5;
    let after = client.get_ts().await.expect("ts after PD caught up");
    assert!(after > before, "{after} <= {before}");
}

#[tokio::test]
async fn a_broken_stream_is_reopened_without_error() {
    let pd = FakePd::start(1).await;
    let client = connect(&pd, options()).await;
    let first = client.get_ts().await.expect("ts");
    pd.state.lock().stream_epoch += 1;
    let second = client.get_ts().await.expect("ts on a new stream");
    assert!(second > first);
    assert!(
        pd.state.lock().calls_to(0, "Tso") >= 3,
        "the broken request, then a new stream"
    );
}
