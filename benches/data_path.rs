//! Rows per second through the data path of one table on one core, without tokio: demo
//! upstream → sorter → sink, flushed once per 1-second slice, as the table pipeline does.
//! Two sinks: blackhole and file (canal-json, fsync on every flush).
//!
//! `cargo bench --bench data_path`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rcdc::pipeline::sorter::Sorter;
use rcdc::sink::{open_table_sink, parse_sink_uri, TableIdent, TableSink};
use rcdc::upstream::{DemoUpstream, Upstream};
use rcdc_state::{ChangefeedId, TableId, Ts};

const EPOCH_MS: u64 = 1_700_000_000_000;
const ROWS_PER_SECOND: u64 = 100_000;

/// One 1-second slice of table 1: fetch, sort, write, flush. Returns rows moved.
fn slice(up: &DemoUpstream, sink: &mut dyn TableSink, second: u64) -> usize {
    let after = Ts::from_parts(EPOCH_MS + second * 1_000, 0);
    let upto = Ts::from_parts(EPOCH_MS + (second + 1) * 1_000, 0);
    let mut sorter = Sorter::new(256 << 20, after);
    let events = up.table_events(TableId(1), after, upto).unwrap_or_default();
    for ev in events {
        let _ = sorter.push(ev);
    }
    let rows = sorter.take_ready();
    let n = rows.len();
    let _ = sink.write(&rows);
    let _ = sink.flush(upto);
    n
}

fn bench(c: &mut Criterion) {
    let uri = format!("demo://?tables=1&rows-per-second={ROWS_PER_SECOND}&key-space=100000&start={EPOCH_MS}&retention=none");
    let up = DemoUpstream::from_uri(&uri).unwrap_or_else(|e| panic!("{e}"));
    let rows_per_slice = slice(&up, &mut *open("blackhole://"), 0) as u64;
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
    g.bench_function("demo_to_blackhole", |b| {
        b.iter(|| {
            second += 1;
            slice(&up, &mut *blackhole, second)
        })
    });
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file_uri = format!("file://{}?protocol=canal-json", dir.path().display());
    let spec = parse_sink_uri(&file_uri).unwrap_or_else(|e| panic!("{e}"));
    let mut file = open_table_sink(&spec, &ChangefeedId::from("bench"), &ident, &schema())
        .unwrap_or_else(|e| panic!("{e}"));
    g.bench_function("demo_to_file_canal_json", |b| {
        b.iter(|| {
            second += 1;
            slice(&up, &mut *file, second)
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
