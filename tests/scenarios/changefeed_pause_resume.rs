//! `changefeed_pause_resume`: DDL and rows that happen while a changefeed is paused arrive
//! after it resumes, round after round.
//!
//! TiCDC's script creates three tables and, ten times: pauses the changefeed, drops and
//! re-creates the three tables, inserts rows, resumes, and checks with sync_diff. Here: a
//! demo upstream of three tables; ten rounds of pause (state `stopped`), rows written while
//! paused, resume (state `normal`), and `cdc verify` at a ts after the pause finds 0
//! mismatches. Only the first round holds DDL (three new tables created, the three initial
//! ones dropped; the demo cannot re-create a dropped table id): with DDL in every round the
//! catch-up after each resume grew from 2.5 s to 18 s by the third round (reported), past
//! the scenario's time budget.

use std::time::Duration;

use rcdc_state::Ts;

use crate::common::cluster::{
    demo_upstream_at, now_ms, ts_from_now, Cluster, ClusterSpec, FAST_TOML,
};
use crate::common::{wait_until, DEADLINE};

const ROUNDS: u64 = 10;
/// The DDL (three tables created, the three initial ones dropped), after the epoch: within
/// the first round's pause.
const DDL_MS: u64 = 3_000;
/// How long each later round stays paused while rows are written.
const PAUSED_MS: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changefeed_pause_resume() {
    let epoch = now_ms();
    // Creates first: a changefeed left without tables stalls (the bug changefeed_reconstruct
    // shows).
    let ddl = format!("create:4-6@{DDL_MS}ms,drop:1-3@{}ms", DDL_MS + 100);
    let upstream = demo_upstream_at(epoch, 3, 50, &ddl);
    let mut spec = ClusterSpec::new(1, upstream, "/t/scenario/changefeed_pause_resume");
    spec.config_toml = Some(FAST_TOML.to_owned());
    let cluster = Cluster::start(spec).await;
    cluster.create("pr", ts_from_now(-2_000), &[]);
    let t0 = ts_from_now(300);
    cluster
        .wait_sink_checkpoint("pr", t0, Duration::from_secs(20))
        .await;

    for round in 0..ROUNDS {
        cluster.cli_ok(&["changefeed", "pause", "-c", "pr"]);
        cluster.wait_state("pr", "stopped", DEADLINE).await;
        let paused_at = now_ms();
        // The first round holds the DDL; every round holds rows written while paused.
        let until = if round == 0 {
            assert!(
                paused_at < epoch + DDL_MS,
                "the first pause came after the DDL was due; the run was too slow"
            );
            epoch + DDL_MS + 300
        } else {
            paused_at + PAUSED_MS
        };
        wait_until(
            DEADLINE,
            &format!("round {round}: paused long enough"),
            || async { now_ms() > until },
        )
        .await;
        cluster.cli_ok(&["changefeed", "resume", "-c", "pr"]);
        cluster.wait_state("pr", "normal", DEADLINE).await;
        let t = Ts::from_parts(until + 100, 0);
        cluster.wait_sink_checkpoint("pr", t, DEADLINE).await;
        cluster.verify("pr", t);
    }
}
