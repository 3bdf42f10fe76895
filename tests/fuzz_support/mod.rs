//! Shared by `tests/fuzz.rs` and `state/tests/fuzz.rs` (included with `#[path]`): the
//! corpus, the input generators and the runner.
//!
//! cargo-fuzz needs a nightly toolchain, which the build machines do not have, so the targets
//! are proptests: arbitrary bytes and strings, plus structure-aware mutations of the checked-in
//! corpus (`tests/fuzz-corpus/<target>/`): byte flips, inserts, deletes and dictionary tokens
//! on any seed, and for JSON seeds field deletes, inserts, renames and replaced values. Every
//! run replays the corpus first, then the generated cases: a bounded number by default, more
//! with `PROPTEST_CASES`. A failing case is saved by proptest in `<test>.proptest-regressions`
//! next to the test file and replayed first on later runs.

#![allow(dead_code)] // each including crate uses a different part

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use serde_json::{Map, Value};

/// The corpus root, `tests/fuzz-corpus` at the workspace root.
pub fn corpus_root() -> PathBuf {
    // Both crates' tests include this file; the workspace root is found from this file's own
    // path, which is stable, rather than from each crate's manifest dir.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|p| p.join("tests/fuzz-corpus").is_dir())
        .map(|p| p.join("tests/fuzz-corpus"))
        .expect("tests/fuzz-corpus under an ancestor of the crate")
}

/// Every seed of `target`, sorted by file name so runs are reproducible.
pub fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_root().join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files
        .iter()
        .map(|p| std::fs::read(p).expect("corpus file"))
        .collect()
}

/// Cases per target: `PROPTEST_CASES` if set, else `default` (chosen so each test binary
/// stays well under 20 s in a debug build on 2 cores).
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Replays `target`'s corpus through `check`, then `cases(default)` generated inputs (arbitrary
/// bytes, arbitrary strings, and mutations of the corpus with `dict` tokens). `source` is the
/// calling file (`file!()`), where proptest keeps its regression seeds.
pub fn fuzz(
    source: &'static str,
    target: &str,
    default: u32,
    dict: &[&str],
    check: impl Fn(&[u8]) -> Result<(), TestCaseError>,
) {
    let seeds = corpus(target);
    for (i, seed) in seeds.iter().enumerate() {
        if let Err(e) = check(seed) {
            panic!("corpus {target} seed #{i}: {e}");
        }
    }
    let strategy = inputs(seeds, dict);
    let mut runner = TestRunner::new(Config {
        cases: cases(default),
        source_file: Some(source),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    });
    if let Err(e) = runner.run(&strategy, |input| check(&input)) {
        panic!("fuzz target {target}: {e}");
    }
}

/// Arbitrary bytes, arbitrary strings, byte-level and (for JSON seeds) structure-level
/// mutations of the seeds.
pub fn inputs(seeds: Vec<Vec<u8>>, dict: &[&str]) -> BoxedStrategy<Vec<u8>> {
    let mut tokens: Vec<Vec<u8>> = dict.iter().map(|t| t.as_bytes().to_vec()).collect();
    tokens.extend(
        [
            "null",
            "\"",
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "-1",
            "0",
            "1e999",
            "-0",
            "18446744073709551616",
            "9223372036854775808",
            "\\u0000",
            "\\ud800",
            "\n",
            "=",
            "/",
            "%",
            "?",
            "&",
            "#",
            "\u{feff}",
            "é",
        ]
        .iter()
        .map(|t| t.as_bytes().to_vec()),
    );
    let json_seeds: Vec<Value> = seeds
        .iter()
        .filter_map(|s| serde_json::from_slice::<Value>(s).ok())
        .collect();
    let bytes = prop::collection::vec(any::<u8>(), 0..256).boxed();
    let text = "\\PC{0,200}".prop_map(String::into_bytes).boxed();
    let mutated = byte_mutations(seeds, tokens);
    if json_seeds.is_empty() {
        prop_oneof![1 => bytes, 1 => text, 4 => mutated].boxed()
    } else {
        let json = json_mutations(json_seeds)
            .prop_map(|v| serde_json::to_vec(&v).unwrap_or_default())
            .boxed();
        prop_oneof![1 => bytes, 1 => text, 3 => mutated, 4 => json].boxed()
    }
}

/// A seed with 1–6 edits: bit flips, byte inserts, deletes of up to 8 bytes, token inserts.
pub fn byte_mutations(seeds: Vec<Vec<u8>>, tokens: Vec<Vec<u8>>) -> BoxedStrategy<Vec<u8>> {
    let edit = (
        0u8..5,
        any::<Index>(),
        any::<u8>(),
        prop::sample::select(tokens),
    );
    (
        prop::sample::select(seeds),
        prop::collection::vec(edit, 1..6),
    )
        .prop_map(|(mut s, edits)| {
            for (op, at, byte, token) in edits {
                let i = if s.is_empty() { 0 } else { at.index(s.len()) };
                match op {
                    0 if !s.is_empty() => s[i] ^= 1 << (byte % 8),
                    1 => s.insert(i, byte),
                    2 if !s.is_empty() => {
                        let end = (i + 1 + usize::from(byte % 8)).min(s.len());
                        s.drain(i..end);
                    }
                    3 => {
                        s.splice(i..i, token);
                    }
                    _ => s.truncate(i),
                }
            }
            s
        })
        .boxed()
}

/// A JSON value of any shape, small.
pub fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![
            "",
            "0",
            "-1",
            "blackhole://",
            "file:///tmp/x",
            "2020-02-02T00:00:00Z",
            "memory",
            "normal",
            "stopped",
            "<&>",
            "\u{2028}",
        ])
        .prop_map(Value::from),
        "\\PC{0,16}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z0-9-]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A key: a field name the seed may have, a number (table ids are map keys), or anything.
fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z-]{1,12}",
        any::<i64>().prop_map(|n| n.to_string()),
        Just("99999999999999999999".to_owned()),
        "\\PC{0,8}",
    ]
}

/// A JSON seed with 1–4 structural edits at random containers: remove a member, replace a
/// member's value, add a member, rename a key, or replace the container.
pub fn json_mutations(seeds: Vec<Value>) -> BoxedStrategy<Value> {
    let edit = (
        0u8..5,
        any::<Index>(),
        any::<Index>(),
        arb_key(),
        arb_json(),
    );
    (
        prop::sample::select(seeds),
        prop::collection::vec(edit, 1..4),
    )
        .prop_map(|(mut v, edits)| {
            for (op, container, member, key, value) in edits {
                let n = count_containers(&v);
                if n == 0 {
                    v = value;
                    continue;
                }
                let mut k = container.index(n);
                if let Some(c) = nth_container(&mut v, &mut k) {
                    edit_container(c, op, member, key, value);
                }
            }
            v
        })
        .boxed()
}

fn count_containers(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(count_containers).sum::<usize>(),
        Value::Object(o) => 1 + o.values().map(count_containers).sum::<usize>(),
        _ => 0,
    }
}

fn nth_container<'a>(v: &'a mut Value, k: &mut usize) -> Option<&'a mut Value> {
    if !matches!(v, Value::Array(_) | Value::Object(_)) {
        return None;
    }
    if *k == 0 {
        return Some(v);
    }
    *k -= 1;
    let children: Vec<&'a mut Value> = match v {
        Value::Array(a) => a.iter_mut().collect(),
        Value::Object(o) => o.values_mut().collect(),
        _ => Vec::new(),
    };
    for c in children {
        if let Some(found) = nth_container(c, k) {
            return Some(found);
        }
    }
    None
}

fn edit_container(c: &mut Value, op: u8, member: Index, key: String, value: Value) {
    match c {
        Value::Object(o) => {
            let keys: Vec<String> = o.keys().cloned().collect();
            let pick = (!keys.is_empty()).then(|| keys[member.index(keys.len())].clone());
            match (op, pick) {
                (0, Some(k)) => {
                    o.remove(&k);
                }
                (1, Some(k)) => {
                    o.insert(k, value);
                }
                (3, Some(k)) => {
                    if let Some(v) = o.remove(&k) {
                        o.insert(key, v);
                    }
                }
                (4, _) => *c = value,
                _ => {
                    o.insert(key, value);
                }
            }
        }
        Value::Array(a) => {
            let i = (!a.is_empty()).then(|| member.index(a.len()));
            match (op, i) {
                (0, Some(i)) => {
                    a.remove(i);
                }
                (1, Some(i)) => a[i] = value,
                (4, _) => *c = value,
                _ => a.push(value),
            }
        }
        _ => {}
    }
}

/// An object seed with one extra top-level field `fuzz-unknown-<key>` of any value.
pub fn with_unknown_field(seeds: Vec<Value>) -> BoxedStrategy<(Value, String, Value)> {
    let objects: Vec<Map<String, Value>> = seeds
        .into_iter()
        .filter_map(|v| match v {
            Value::Object(o) => Some(o),
            _ => None,
        })
        .collect();
    (prop::sample::select(objects), "[a-z]{1,6}", arb_json())
        .prop_map(|(mut o, k, v)| {
            let key = format!("fuzz-unknown-{k}");
            o.insert(key.clone(), v.clone());
            (Value::Object(o), key, v)
        })
        .boxed()
}
