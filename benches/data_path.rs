//! Rows per second through the data path of one table on one core, without tokio: demo
//! upstream → sorter → sink, flushed once per 1-second slice, as the table pipeline does.
//! Two sinks: blackhole and file (canal-json, fsync on every flush); and the sorter in memory
//! (a 256 MiB quota holds a slice) or spilling (a 16 MiB quota: each slice spills runs to a
//! temp dir and merges them back).
//!
//! `cargo bench --bench data_path`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::ops::ControlFlow;
use std::sync::Arc;

use rcdc::pipeline::sorter::dir::SortDir;
use rcdc::pipeline::sorter::{Sorter, SorterConfig, DRAIN_BATCH};
use rcdc::sink::{open_table_sink, parse_sink_uri, TableIdent, TableSink};
use rcdc::upstream::{DemoUpstream, Upstream};
use rcdc_state::{ChangefeedId, TableId, Ts};

const EPOCH_MS: u64 = 1_700_000_000_000;
const ROWS_PER_SECOND: u64 = 100_000;

/// One 1-second slice of table 1: fetch, sort, write, flush. Returns rows moved and runs
/// spilled.
fn slice(
    up: &DemoUpstream,
    sink: &mut dyn TableSink,
    second: u64,
    sorter: &SorterConfig,
) -> (u64, u64) {
    let after = Ts::from_parts(EPOCH_MS + second * 1_000, 0);
    let upto = Ts::from_parts(EPOCH_MS + (second + 1) * 1_000, 0);
    let mut sorter = Sorter::new(sorter.clone(), after, "bench-1".into());
    let visited = up.visit_table_events(TableId(1), after, upto, &mut |ev| match sorter.push(ev) {
        Ok(()) => ControlFlow::Continue(()),
        Err(e) => panic!("{e}"),
    });
    visited.unwrap_or_else(|e| panic!("{e}"));
    let rows = sorter
        .drain_ready(DRAIN_BATCH, |rows| sink.write(rows))
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = sink.flush(upto);
    (rows, sorter.spilled_runs())
}

fn bench(c: &mut Criterion) {
    let uri = format!("demo://?tables=1&rows-per-second={ROWS_PER_SECOND}&key-space=100000&start={EPOCH_MS}&retention=none");
    let up = DemoUpstream::from_uri(&uri).unwrap_or_else(|e| panic!("{e}"));
    let in_memory = SorterConfig {
        table_quota: 256 << 20,
        ..SorterConfig::default()
    };
    let spill_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (sort_dir, _) = SortDir::open(spill_dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let spilling = SorterConfig {
        table_quota: 16 << 20,
        spill: Some(Arc::new(sort_dir)),
        ..SorterConfig::default()
    };
    let (rows_per_slice, _) = slice(&up, &mut *open("blackhole://"), 0, &in_memory);
    let (_, runs) = slice(&up, &mut *open("blackhole://"), 0, &spilling);
    eprintln!("{rows_per_slice} rows per slice; a 16 MiB quota spills {runs} runs per slice");
    let mut g = c.benchmark_group("data_path_one_table_one_core");
    g.throughput(Throughput::Elements(rows_per_slice));
    g.sample_size(20);
    let ident = TableIdent {
        schema: "demo".into(),
        table: "t1".into(),
        table_id: TableId(1),
    };
    let mut second = 1;
    let mut blackhole = open("blackhole://");
    for (name, sorter) in [
        ("demo_to_blackhole", &in_memory),
        ("demo_to_blackhole_spilling_16mib", &spilling),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                second += 1;
                slice(&up, &mut *blackhole, second, sorter)
            })
        });
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file_uri = format!("file://{}?protocol=canal-json", dir.path().display());
    let spec = parse_sink_uri(&file_uri).unwrap_or_else(|e| panic!("{e}"));
    let mut file = open_table_sink(&spec, &ChangefeedId::from("bench"), &ident, &schema())
        .unwrap_or_else(|e| panic!("{e}"));
    g.bench_function("demo_to_file_canal_json", |b| {
        b.iter(|| {
            second += 1;
            slice(&up, &mut *file, second, &in_memory)
        })
    });
    g.finish();
}

fn open(uri: &str) -> Box<dyn TableSink> {
    let spec = parse_sink_uri(uri).unwrap_or_else(|e| panic!("{e}"));
    let ident = TableIdent {
        schema: "demo".into(),
        table: "t1".into(),
        table_id: TableId(1),
    };
    open_table_sink(&spec, &ChangefeedId::from("bench"), &ident, &schema())
        .unwrap_or_else(|e| panic!("{e}"))
}

fn schema() -> rcdc::event::TableSchema {
    rcdc::upstream::demo::demo_table_schema(Ts(1), String::new())
}

criterion_group!(benches, bench);
criterion_main!(benches);
