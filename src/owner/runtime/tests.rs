//! The IO side's promises to the API: an answer only once a request took effect, and a
//! clear error after a deadline, never a hang (issue #11 item 8).

use std::collections::BTreeSet;
use std::time::Duration;

use rcdc_state::{ChangefeedId, TableId, Ts};

use super::*;
use crate::owner::feed_state::AdminJob;
use crate::owner::tick::OwnerConfig;

struct NoUpstream;

impl OwnerUpstream for NoUpstream {
    fn list_tables(
        &self,
        _: &ChangefeedId,
        _: &ChangeFeedInfo,
        _: Ts,
    ) -> Result<BTreeSet<TableId>, String> {
        Ok(BTreeSet::new())
    }
    fn next_ddl(
        &self,
        _: &ChangefeedId,
        _: &ChangeFeedInfo,
        _: Ts,
    ) -> Result<(Option<Ts>, Ts), String> {
        Ok((None, Ts(0)))
    }
    fn update_gc_safe_point(&self, _: &UpdateSafePoint) -> Result<Ts, String> {
        Ok(Ts(0))
    }
    fn write_sink_checkpoint(
        &self,
        _: &ChangefeedId,
        _: &ChangeFeedInfo,
        _: Ts,
    ) -> Result<(), String> {
        Ok(())
    }
}

fn pause() -> OwnerRequest {
    OwnerRequest::Admin(ChangefeedId::new("cf"), AdminJob::Pause)
}

/// An owner that never gets to confirm (its worker cannot commit while etcd is down) makes
/// the caller wait only until the deadline, with an error saying the outcome is unknown.
#[tokio::test]
async fn a_request_the_owner_cannot_confirm_fails_at_its_deadline() {
    let (_reactor, handle) =
        OwnerReactor::spawn(Owner::new(OwnerConfig::default()), Arc::new(NoUpstream));
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        handle.request_within(pause(), Duration::from_millis(100)),
    )
    .await
    .expect("answered by its deadline, not hanging");
    match answer {
        Err(RequestError::Unconfirmed { request, .. }) => assert!(request.contains("Pause")),
        other => panic!("{other:?}"),
    }
}

/// A request is answered after the tick that sees its group committed, not the tick that
/// decided it.
#[tokio::test]
async fn a_request_is_answered_after_its_commit_is_reported() {
    let (mut reactor, handle) = OwnerReactor::spawn(
        Owner::new(OwnerConfig {
            flush_interval_ms: 0,
            ..Default::default()
        }),
        Arc::new(NoUpstream),
    );
    let mut state = GlobalState::default();
    state.apply(
        "/tidb/cdc/changefeed/info/cf",
        Some(br#"{"sink-uri":"blackhole://","start-ts":10,"state":"normal","config":{}}"#),
    );
    state.apply(
        "/tidb/cdc/job/cf",
        Some(br#"{"resolved-ts":10,"checkpoint-ts":10,"admin-job-type":0}"#),
    );
    let waiter = tokio::spawn({
        let handle = handle.clone();
        async move { handle.request(pause()).await }
    });
    // Let the request reach the reactor's queue.
    tokio::time::timeout(Duration::from_secs(5), async {
        while reactor.commands.is_empty() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the request is queued");
    let out = reactor.tick(&state, &TickContext::default());
    assert!(
        out.groups.iter().any(|g| g.label.ends_with("/state")),
        "{:?}",
        out.groups.iter().map(|g| &g.label).collect::<Vec<_>>()
    );
    tokio::task::yield_now().await;
    assert!(
        !waiter.is_finished(),
        "answered before the commit was known"
    );
    let committed = TickContext {
        previous: vec![rcdc_reactor::GroupOutcome::Committed; out.groups.len()],
        ..Default::default()
    };
    reactor.tick(&state, &committed);
    let answer = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("answered")
        .expect("task");
    assert_eq!(answer, Ok(()));
}
