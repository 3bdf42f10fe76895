//! TiCDC v5's own test vectors (pingcap/tiflow 43c40f9d, extracted from its Go tests; see
//! `data/README.md`) run against rcdc-state's API.
//!
//! Every case is dispatched on its `kind`; an unknown kind, or a field a kind does not read,
//! fails the test, so a new case can never be skipped silently. All cases run, and the test
//! fails at the end naming every failing case id. Decoded values are compared as the file's
//! "views" (Go's struct fields under their JSON names, see `view_format`), built by [`view`];
//! an expectation lists the parts it asserts, and each listed part is compared whole.

use std::collections::{BTreeMap, BTreeSet};

use rcdc_state::ids::is_valid_changefeed_id;
use rcdc_state::model::{
    decode, encode, AdminJobType, ChangeFeedInfo, ChangeFeedStatus, OperationStatus,
    TableOperation, TableReplicaInfo, TaskStatus,
};
use rcdc_state::snapshot::ApplyOutcome;
use rcdc_state::{CdcKey, ChangefeedId, GlobalState, KeyLayout, TableId, Ts};
use serde::Serialize;
use serde_json::{json, Value};

const VECTORS: &str = include_str!("data/ticdc-v5-test-vectors.json");

/// A place where rcdc differs from TiCDC on purpose: before the case runs, the test puts
/// `rcdc` at the JSON pointer `at` into the case (into what it expects). It fails if the
/// pointer is missing or already held that value, so an entry goes stale loudly once rcdc
/// matches TiCDC there.
struct Difference {
    case: &'static str,
    at: &'static str,
    rcdc: &'static str,
}

/// Go's zero state "" is read as "normal" (see `FeedState`): TiCDC's owner runs such a feed
/// and its first tick writes "normal", so rcdc skips the in-between value.
const NORMAL: &str = r#""normal""#;

const DIFFERENCES: &[Difference] = &[
    Difference {
        case: "changefeed.TestFillV1.fields",
        at: "/expect_view/state",
        rcdc: NORMAL,
    },
    // A missing sub-config decodes as its TiCDC default, because rcdc folds `VerifyAndFix`'s
    // nil filling into decoding (see `ReplicaConfig`) and so has no nil sub-config to hold.
    // TiCDC's reactor path fills it too; only its CLI read path shows the nil.
    Difference {
        case: "changefeed.TestFillV1.fields",
        at: "/expect_view/config/scheduler",
        rcdc: r#"{"type":"table-number","polling-time":-1}"#,
    },
    Difference {
        case: "reactor_state.TestPatchInfo",
        at: "/steps/0/expect/changefeeds/test1/info/state",
        rcdc: NORMAL,
    },
    Difference {
        case: "reactor_state.TestPatchInfo",
        at: "/steps/1/expect/changefeeds/test1/info/state",
        rcdc: NORMAL,
    },
];

/// The `skip` cases: TiCDC API with no rcdc-state counterpart, each with its reason in the
/// file. Listed so that a new skip case is a visible change here too.
const SKIPPED: [&str; 6] = [
    "owner.TestTaskStatusApplyState",
    "owner.TestProcSnapshot",
    "changefeed.TestCheckErrorHistory",
    "changefeed.TestChangefeedInfoStringer",
    "reactor_state.TestCheckCaptureAlive.patch",
    "reactor_state.TestCheckChangefeedNormal",
];

/// Fields every case may carry: identity, provenance, and `go_remarshal` (what Go would write
/// back), which no Go test asserts and which rcdc differs from on purpose (unknown fields and
/// `create-time` are kept verbatim).
const COMMON: [&str; 7] = [
    "id",
    "source",
    "kind",
    "asserts",
    "derived_json",
    "derived_expect",
    "go_remarshal",
];

type Outcome = Result<(), String>;

#[test]
fn every_ticdc_v5_vector_holds() {
    let doc: Value = serde_json::from_str(VECTORS).expect("the vector file is JSON");
    let cases = doc["cases"].as_array().expect("`cases` is an array");
    let mut passed: BTreeMap<&str, usize> = BTreeMap::new();
    let mut skipped = Vec::new();
    let mut failures = Vec::new();
    for case in cases {
        let id = case["id"].as_str().unwrap_or("(no id)");
        let kind = case["kind"].as_str().unwrap_or("(no kind)");
        let case = &match with_differences(case) {
            Ok(case) => case,
            Err(e) => {
                failures.push(format!("{id} [{kind}]: {e}"));
                continue;
            }
        };
        let outcome = match kind {
            "key_parse" => key_parse(case),
            "prefix_normalize" => prefix_normalize(case),
            "changefeed_id_valid" => changefeed_id_valid(case),
            "admin_job_type" => admin_job_type(case),
            "op_predicates" => op_predicates(case),
            "task_status_ops" => task_status_ops(case),
            "encode" => encode_case(case),
            "decode" => decode_case(case),
            "info_ts" => info_ts(case),
            "state_seq" => state_seq(case),
            "skip" => skip(case).map(|()| skipped.push(id)),
            other => Err(format!("unknown kind {other:?}")),
        };
        match outcome {
            Ok(()) => *passed.entry(kind).or_default() += 1,
            Err(e) => failures.push(format!("{id} [{kind}]: {e}")),
        }
    }
    for d in DIFFERENCES {
        if !cases.iter().any(|c| c["id"] == d.case) {
            failures.push(format!("DIFFERENCES names a case that is gone: {}", d.case));
        }
    }
    if skipped != SKIPPED {
        failures.push(format!("skip cases {skipped:?}, listed {SKIPPED:?}"));
    }
    println!(
        "{} TiCDC vectors: passed per kind {passed:?} ({} skip cases, {} expected differences)",
        cases.len(),
        skipped.len(),
        DIFFERENCES.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} TiCDC vectors fail:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// One function per kind.

fn key_parse(case: &Value) -> Outcome {
    only(case, &["key", "expect", "roundtrip"])?;
    let key = text(case, "key")?;
    let layout = KeyLayout::default();
    let parsed = layout.parse(key);
    let want = field(case, "expect")?;
    if let Some(error) = want.get("error") {
        // rcdc's parse has no error: a key TiCDC rejects is not ours (None) or Unknown.
        let rejected = matches!(parsed, None | Some(CdcKey::Unknown));
        return same("rejected", &json!(rejected), error);
    }
    same("key", &view::key(parsed.as_ref()), want)?;
    if field(case, "roundtrip")? == &json!(true) {
        let rendered = parsed.map(|k| layout.encode(&k));
        same("rendered", &json!(rendered), &json!(key))?;
    }
    Ok(())
}

fn prefix_normalize(case: &Value) -> Outcome {
    only(case, &["input", "expect"])?;
    let layout = KeyLayout::new(text(case, "input")?);
    same("prefix", &json!(layout.prefix()), field(case, "expect")?)
}

fn changefeed_id_valid(case: &Value) -> Outcome {
    only(case, &["changefeed_id", "valid"])?;
    let valid = is_valid_changefeed_id(text(case, "changefeed_id")?);
    same("valid", &json!(valid), field(case, "valid")?)
}

fn admin_job_type(case: &Value) -> Outcome {
    only(case, &["code", "name", "is_stop"])?;
    let code = number(case, "code")?;
    // Go's `String()` says "unknown" for a code TiCDC does not define and keeps the value;
    // rcdc has no such value (`from_code` is None; decoding one is an error naming it).
    let job = AdminJobType::from_code(code);
    if let Some(j) = job {
        same("code", &json!(j.code()), &json!(code))?;
    }
    let got = json!({
        "name": job.map_or_else(|| "unknown".to_owned(), |j| j.to_string()),
        "is_stop": job.map(AdminJobType::is_stop_state),
    });
    let want = json!({"name": field(case, "name")?, "is_stop": field(case, "is_stop")?});
    same("job", &got, &want)
}

fn op_predicates(case: &Value) -> Outcome {
    only(case, &["status", "done", "processed", "applied"])?;
    let code = number(case, "status")?;
    let op = TableOperation {
        status: OperationStatus::from_code(code).ok_or(format!("status {code} undefined"))?,
        done: field(case, "done")? == &json!(true),
        ..Default::default()
    };
    let got = json!({"processed": op.is_processed(), "applied": op.is_applied()});
    let want = json!({"processed": field(case, "processed")?, "applied": field(case, "applied")?});
    same("predicates", &got, &want)
}

fn task_status_ops(case: &Value) -> Outcome {
    only(case, &["initial", "ops", "expect", "returns", "then_ops"])?;
    let mut status: TaskStatus = serde_json::from_value(field(case, "initial")?.clone())
        .map_err(|e| format!("initial: {e}"))?;
    let returned = run_ops(&mut status, field(case, "ops")?)?;
    let want = field(case, "expect")?;
    if !want.is_null() {
        same("status", &view::task_status(&status), want)?;
    }
    if let Some(want) = case.get("returns") {
        let got = match returned {
            Some(info) => json!({"found": true, "replica_info": view::replica(&info)}),
            None => json!({"found": false}),
        };
        same("returned", &got, want)?;
    }
    if let Some(ops) = case.get("then_ops") {
        run_ops(&mut status, ops)?;
        same("status after then_ops", &view::task_status(&status), want)?;
    }
    Ok(())
}

/// Runs `add_table`/`remove_table` ops; the last remove's result.
fn run_ops(status: &mut TaskStatus, ops: &Value) -> Result<Option<TableReplicaInfo>, String> {
    let mut returned = None;
    for op in ops.as_array().ok_or("ops is not an array")? {
        let table = TableId(i64::try_from(number(op, "table")?).map_err(|e| e.to_string())?);
        match text(op, "op")? {
            "add_table" => status.add_table(
                table,
                Ts(number(op, "start_ts")?),
                Ts(number(op, "boundary_ts")?),
            ),
            "remove_table" => {
                let is_move = field(op, "is_move")? == &json!(true);
                returned = status.remove_table(table, Ts(number(op, "boundary_ts")?), is_move);
            }
            other => return Err(format!("unknown op {other:?}")),
        }
    }
    Ok(returned)
}

/// Decodes the expected bytes as `type` and checks both directions: their view is the built
/// value, and rcdc encodes that value to exactly these bytes (and the key, if given).
fn encode_case(case: &Value) -> Outcome {
    only(
        case,
        &["type", "build", "expect_encoded", "decode_back", "key"],
    )?;
    let bytes = text(case, "expect_encoded")?;
    let (got, encoded) = decode_as(text(case, "type")?, "", bytes.as_bytes())?;
    same("value", &got, field(case, "build")?)?;
    same("encoded", &json!(encoded), &json!(bytes))?;
    if let Some(key) = case.get("key") {
        let built = view::key_from(key)?;
        same(
            "key",
            &json!(KeyLayout::default().encode(&built)),
            field(key, "expect")?,
        )?;
    }
    Ok(())
}

fn decode_case(case: &Value) -> Outcome {
    let fields = [
        "type",
        "mode",
        "json",
        "expect_view",
        "expect_reject",
        "expect_config_encoded",
        "key",
    ];
    only(case, &fields)?;
    let (ty, mode, bytes) = (
        text(case, "type")?,
        text(case, "mode")?,
        text(case, "json")?,
    );
    let decoded = decode_as(ty, mode, bytes.as_bytes());
    if case.get("expect_reject") == Some(&json!(true)) {
        if decoded.is_ok() {
            return Err(format!("{bytes:?} decodes as {ty}; TiCDC rejects it"));
        }
        // The snapshot keeps such a value as corrupt instead of failing.
        let mut state = GlobalState::default();
        return match state.apply(text(case, "key")?, Some(bytes.as_bytes())) {
            ApplyOutcome::Corrupt(_) => Ok(()),
            other => Err(format!("the snapshot's apply gave {other:?}, not Corrupt")),
        };
    }
    let (got, _) = decoded?;
    parts(&got, field(case, "expect_view")?)?;
    if let Some(want) = case.get("expect_config_encoded") {
        let info = decode_info(mode, bytes.as_bytes())?;
        same("config encoded", &json!(to_text(&info.config)?), want)?;
    }
    Ok(())
}

fn info_ts(case: &Value) -> Outcome {
    only(case, &["json", "steps"])?;
    let mut info_json: Value =
        serde_json::from_str(text(case, "json")?).map_err(|e| e.to_string())?;
    let steps = field(case, "steps")?
        .as_array()
        .ok_or("steps is not an array")?;
    for (i, step) in steps.iter().enumerate() {
        let step_fields = [
            "set",
            "expect_start_ts",
            "expect_target_ts",
            "expect_checkpoint_ts_nil",
            "status_checkpoint_ts",
            "expect_checkpoint_ts_status",
        ];
        only_in(step, &step_fields, &[])?;
        let set = field(step, "set")?
            .as_object()
            .ok_or("set is not an object")?;
        for (k, v) in set {
            info_json[k] = v.clone();
        }
        let info: ChangeFeedInfo = serde_json::from_value(info_json.clone())
            .map_err(|e| format!("step {i}: does not decode: {e}"))?;
        let status = match step.get("status_checkpoint_ts") {
            Some(ts) => Some(ChangeFeedStatus {
                checkpoint_ts: Ts(ts.as_u64().ok_or("status_checkpoint_ts is not a u64")?),
                ..Default::default()
            }),
            None => None,
        };
        let got = json!({
            "expect_start_ts": info.start_ts(),
            "expect_target_ts": info.target_ts(),
            "expect_checkpoint_ts_nil": info.checkpoint_ts(None),
            "expect_checkpoint_ts_status": status.as_ref().map(|s| info.checkpoint_ts(Some(s))),
        });
        let want: serde_json::Map<String, Value> = step
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.starts_with("expect_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        parts(&got, &Value::Object(want)).map_err(|e| format!("step {i}: {e}"))?;
    }
    Ok(())
}

/// Applies each step's updates to a fresh snapshot and compares the scoped view after it.
/// Updates TiCDC applies without error must give `Applied`: all of them for a global state,
/// those of its own changefeed for a changefeed's state (which ignores every other key).
fn state_seq(case: &Value) -> Outcome {
    only(case, &["scope", "steps"])?;
    let scope = match field(case, "scope")? {
        s if s == "global" => None,
        s => Some(ChangefeedId::from(text(s, "changefeed")?)),
    };
    let mut state = GlobalState::default();
    let steps = field(case, "steps")?
        .as_array()
        .ok_or("steps is not an array")?;
    for (i, step) in steps.iter().enumerate() {
        only_in(step, &["updates", "expect", "expect_derived"], &[])?;
        for u in field(step, "updates")?
            .as_array()
            .ok_or("updates is not an array")?
        {
            let key = text(u, "key")?;
            let value = match field(u, "value")? {
                Value::Null => None,
                Value::String(s) => Some(s.as_bytes()),
                other => return Err(format!("step {i}: {key}: value {other}")),
            };
            let outcome = state.apply(key, value);
            let of = state.layout().parse(key);
            let ours = (scope.as_ref())
                .is_none_or(|cf| of.as_ref().and_then(CdcKey::changefeed) == Some(cf));
            if ours && outcome != ApplyOutcome::Applied {
                return Err(format!("step {i}: {key}: {outcome:?}"));
            }
        }
        let want = field(step, "expect")?;
        parts(&view::state(&state, scope.as_ref()), want).map_err(|e| format!("step {i}: {e}"))?;
    }
    Ok(())
}

fn skip(case: &Value) -> Outcome {
    only(case, &["reason"])?;
    match text(case, "reason")?.trim() {
        "" => Err("a skip case without a reason".into()),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding by type name.

/// Decodes `bytes` as the named TiCDC type (ChangeFeedInfo as `mode` says: TiCDC's
/// `Unmarshal` or the reactor's decode and `VerifyAndFix`); its view and rcdc's encoding.
fn decode_as(ty: &str, mode: &str, bytes: &[u8]) -> Result<(Value, String), String> {
    fn both<T: Serialize>(x: &T, view: fn(&T) -> Value) -> Result<(Value, String), String> {
        Ok((view(x), to_text(x)?))
    }
    fn typed<T: Serialize + serde::de::DeserializeOwned>(
        bytes: &[u8],
        view: fn(&T) -> Value,
    ) -> Result<(Value, String), String> {
        both(
            &decode::<T>(bytes).map_err(|e| format!("does not decode: {e}"))?,
            view,
        )
    }
    match ty {
        "ChangeFeedInfo" => both(&decode_info(mode, bytes)?, view::info),
        "ChangeFeedStatus" => typed(bytes, view::cf_status),
        "TaskStatus" => typed(bytes, view::task_status),
        "TaskPosition" => typed(bytes, view::position),
        "TaskWorkload" => typed(bytes, view::workload),
        "CaptureInfo" => typed(bytes, view::capture),
        "ReplicaConfig" => typed(bytes, view::config),
        other => Err(format!("unknown type {other:?}")),
    }
}

fn decode_info(mode: &str, bytes: &[u8]) -> Result<ChangeFeedInfo, String> {
    let info = match mode {
        "unmarshal" => ChangeFeedInfo::unmarshal(bytes),
        "reactor" => decode::<ChangeFeedInfo>(bytes).map(|mut info| {
            info.verify_and_fix();
            info
        }),
        other => return Err(format!("unknown mode {other:?}")),
    };
    info.map_err(|e| format!("does not decode: {e}"))
}

fn to_text<T: Serialize>(x: &T) -> Result<String, String> {
    let bytes = encode(x).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Reading cases and comparing.

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value, String> {
    v.get(name).ok_or_else(|| format!("no field {name:?}"))
}

fn text<'a>(v: &'a Value, name: &str) -> Result<&'a str, String> {
    field(v, name)?
        .as_str()
        .ok_or_else(|| format!("{name:?} is not a string"))
}

fn number(v: &Value, name: &str) -> Result<u64, String> {
    field(v, name)?
        .as_u64()
        .ok_or_else(|| format!("{name:?} is not a u64"))
}

/// Fails on a case field its kind does not read.
fn only(case: &Value, fields: &[&str]) -> Outcome {
    only_in(case, fields, &COMMON)
}

fn only_in(v: &Value, fields: &[&str], common: &[&str]) -> Outcome {
    let unread: Vec<&String> = v
        .as_object()
        .ok_or("not an object")?
        .keys()
        .filter(|k| !fields.contains(&k.as_str()) && !common.contains(&k.as_str()))
        .collect();
    match unread.as_slice() {
        [] => Ok(()),
        _ => Err(format!("fields this test does not read: {unread:?}")),
    }
}

/// The case with its [`DIFFERENCES`] put in.
fn with_differences(case: &Value) -> Result<Value, String> {
    let id = case["id"].clone();
    let mut case = case.clone();
    for d in DIFFERENCES.iter().filter(|d| id == d.case) {
        let rcdc: Value = serde_json::from_str(d.rcdc).map_err(|e| e.to_string())?;
        let slot = case
            .pointer_mut(d.at)
            .ok_or_else(|| format!("difference at {}: no such place", d.at))?;
        if *slot == rcdc {
            return Err(format!(
                "difference at {} is stale: TiCDC says {rcdc} too",
                d.at
            ));
        }
        *slot = rcdc;
    }
    Ok(case)
}

/// Compares the parts `want` lists (its top-level keys), each whole.
fn parts(got: &Value, want: &Value) -> Outcome {
    let want = want.as_object().ok_or("the expectation is not an object")?;
    for (k, w) in want {
        match got.get(k) {
            Some(g) => same(k, g, w)?,
            None => return Err(format!("{k}: rcdc's view has no such part")),
        }
    }
    Ok(())
}

/// Equal, or an error naming the first differing place.
fn same(what: &str, got: &Value, want: &Value) -> Outcome {
    diff(&format!("/{what}"), got, want).map_or(Ok(()), Err)
}

fn diff(path: &str, got: &Value, want: &Value) -> Option<String> {
    let show = |v: Option<&Value>| v.map_or_else(|| "nothing".to_owned(), Value::to_string);
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let keys: BTreeSet<&String> = g.keys().chain(w.keys()).collect();
            keys.into_iter().find_map(|k| match (g.get(k), w.get(k)) {
                (Some(a), Some(b)) => diff(&format!("{path}/{k}"), a, b),
                (a, b) => Some(format!("{path}/{k}: got {}, want {}", show(a), show(b))),
            })
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => (g.iter().zip(w))
            .enumerate()
            .find_map(|(i, (a, b))| diff(&format!("{path}/{i}"), a, b)),
        _ if got == want => None,
        _ => Some(format!("{path}: got {got}, want {want}")),
    }
}

/// Views: Go's struct fields under their JSON names (the file's `view_format`). Built field by
/// field, so unknown fields rcdc keeps in `extra` (and Go drops) stay out, and fields Go always
/// has appear even where the JSON omits them (a table operation's `flag` and `status`).
mod view {
    use std::collections::BTreeMap;

    use rcdc_state::model::{
        CaptureInfo, ChangeFeedInfo, ChangeFeedStatus, FilterConfig, FilterTable, ReplicaConfig,
        RunningError, TableReplicaInfo, TaskPosition, TaskStatus, TaskWorkload,
    };
    use rcdc_state::{CaptureId, CdcKey, ChangefeedId, ChangefeedState, GlobalState, TableId};
    use serde_json::{json, Value};

    pub fn key(k: Option<&CdcKey>) -> Value {
        match k {
            None => json!(null),
            Some(CdcKey::Owner { lease }) => json!({"kind": "owner", "lease": lease}),
            Some(CdcKey::Capture(c)) => json!({"kind": "capture", "capture": c}),
            Some(CdcKey::ChangefeedInfo(cf)) => {
                json!({"kind": "changefeed_info", "changefeed": cf})
            }
            Some(CdcKey::ChangefeedStatus(cf)) => {
                json!({"kind": "changefeed_status", "changefeed": cf})
            }
            Some(CdcKey::TaskStatus {
                capture,
                changefeed,
            }) => {
                json!({"kind": "task_status", "capture": capture, "changefeed": changefeed})
            }
            Some(CdcKey::TaskPosition {
                capture,
                changefeed,
            }) => {
                json!({"kind": "task_position", "capture": capture, "changefeed": changefeed})
            }
            Some(CdcKey::TaskWorkload {
                capture,
                changefeed,
            }) => {
                json!({"kind": "task_workload", "capture": capture, "changefeed": changefeed})
            }
            Some(CdcKey::DeleteCounter) => json!({"kind": "delete_counter"}),
            Some(CdcKey::Unknown) => json!({"kind": "unknown"}),
        }
    }

    /// The key a view names (the fields other than `kind` and `expect` are its parts).
    pub fn key_from(v: &Value) -> Result<CdcKey, String> {
        let part = |name: &str| super::text(v, name).map(str::to_owned);
        let task = || -> Result<(CaptureId, ChangefeedId), String> {
            Ok((part("capture")?.into(), part("changefeed")?.into()))
        };
        Ok(match super::text(v, "kind")? {
            "owner" => CdcKey::Owner {
                lease: part("lease")?,
            },
            "capture" => CdcKey::Capture(part("capture")?.into()),
            "changefeed_info" => CdcKey::ChangefeedInfo(part("changefeed")?.into()),
            "changefeed_status" => CdcKey::ChangefeedStatus(part("changefeed")?.into()),
            "task_status" => task().map(|(capture, changefeed)| CdcKey::TaskStatus {
                capture,
                changefeed,
            })?,
            "task_position" => task().map(|(capture, changefeed)| CdcKey::TaskPosition {
                capture,
                changefeed,
            })?,
            "task_workload" => task().map(|(capture, changefeed)| CdcKey::TaskWorkload {
                capture,
                changefeed,
            })?,
            other => return Err(format!("unknown key kind {other:?}")),
        })
    }

    /// The snapshot as TiCDC's global state, or as one changefeed's state (`scope`), which
    /// exists, empty, even when the changefeed has no key.
    pub fn state(s: &GlobalState, scope: Option<&ChangefeedId>) -> Value {
        if let Some(cf) = scope {
            return json!({"changefeeds": {cf.as_str(): changefeed(s.changefeed(cf))}});
        }
        json!({
            "owners": s.owner_candidates().keys().collect::<Vec<_>>(),
            "captures": per(s.captures(), capture),
            "changefeeds": per(s.changefeeds(), |c| changefeed(Some(c))),
        })
    }

    fn changefeed(c: Option<&ChangefeedState>) -> Value {
        let empty = ChangefeedState::default();
        let c = c.unwrap_or(&empty);
        let mut v = json!({
            "info": c.info.as_ref().map(info),
            "status": c.status.as_ref().map(cf_status),
            "task_statuses": per(&c.task_statuses, task_status),
            "task_positions": per(&c.task_positions, position),
            "workloads": per(&c.workloads, workload),
        });
        // Go has no corrupt keys; rcdc names them so that a comparison cannot miss them.
        if !c.corrupt.is_empty() {
            v["corrupt"] = json!(c.corrupt.keys().collect::<Vec<_>>());
        }
        v
    }

    fn per<K: ToString, V>(m: &BTreeMap<K, V>, f: impl Fn(&V) -> Value) -> Value {
        Value::Object(m.iter().map(|(k, v)| (k.to_string(), f(v))).collect())
    }

    fn tables<V>(m: Option<&BTreeMap<TableId, V>>, f: impl Fn(&V) -> Value) -> Value {
        m.map_or(Value::Null, |m| per(m, f))
    }

    pub fn capture(c: &CaptureInfo) -> Value {
        json!({"id": c.id, "address": c.address, "version": c.version})
    }

    pub fn cf_status(s: &ChangeFeedStatus) -> Value {
        json!({
            "resolved-ts": s.resolved_ts,
            "checkpoint-ts": s.checkpoint_ts,
            "admin-job-type": s.admin_job_type,
        })
    }

    fn error(e: Option<&RunningError>) -> Value {
        e.map_or(
            Value::Null,
            |e| json!({"addr": e.addr, "code": e.code, "message": e.message}),
        )
    }

    pub fn position(p: &TaskPosition) -> Value {
        json!({
            "checkpoint-ts": p.checkpoint_ts,
            "resolved-ts": p.resolved_ts,
            "count": p.count,
            "error": error(p.error.as_ref()),
        })
    }

    pub fn replica(r: &TableReplicaInfo) -> Value {
        json!({"start-ts": r.start_ts, "mark-table-id": r.mark_table_id})
    }

    pub fn task_status(t: &TaskStatus) -> Value {
        json!({
            "tables": tables(t.tables.as_ref(), replica),
            "operation": tables(t.operation.as_ref(), |o| json!({
                "done": o.done,
                "delete": o.delete,
                "flag": o.flag,
                "boundary_ts": o.boundary_ts,
                "status": o.status.code(),
            })),
            "admin-job-type": t.admin_job_type,
        })
    }

    pub fn workload(w: &TaskWorkload) -> Value {
        tables(Some(&w.0), |i| json!({"workload": i.workload}))
    }

    pub fn info(i: &ChangeFeedInfo) -> Value {
        json!({
            "sink-uri": i.sink_uri,
            "opts": i.opts,
            "create-time-unix": i.create_time_unix_secs(),
            "start-ts": i.start_ts,
            "target-ts": i.target_ts,
            "admin-job-type": i.admin_job_type,
            "sort-engine": i.sort_engine,
            "config": config(&i.config),
            "state": i.state,
            "history": i.history,
            "error": error(i.error.as_ref()),
            "sync-point-enabled": i.sync_point_enabled,
            "sync-point-interval": i.sync_point_interval,
            "creator-version": i.creator_version,
        })
    }

    pub fn config(c: &ReplicaConfig) -> Value {
        let rules = c.sink.dispatchers.as_ref().map(|d| {
            let rule = |r: &rcdc_state::model::DispatchRule| {
                json!({"matcher": r.matcher, "dispatcher": r.dispatcher})
            };
            d.iter().map(rule).collect::<Vec<_>>()
        });
        let y = &c.cyclic_replication;
        json!({
            "case-sensitive": c.case_sensitive,
            "enable-old-value": c.enable_old_value,
            "force-replicate": c.force_replicate,
            "check-gc-safe-point": c.check_gc_safe_point,
            "filter": filter(&c.filter),
            "mounter": {"worker-num": c.mounter.worker_num},
            "sink": {"dispatchers": rules, "protocol": c.sink.protocol},
            "cyclic-replication": {
                "enable": y.enable,
                "replica-id": y.replica_id,
                "filter-replica-ids": y.filter_replica_ids,
                "id-buckets": y.id_buckets,
                "sync-ddl": y.sync_ddl,
            },
            "scheduler": {"type": c.scheduler.kind, "polling-time": c.scheduler.polling_time},
        })
    }

    fn filter(f: &FilterConfig) -> Value {
        let names = |t: &Option<Vec<FilterTable>>| {
            let name = |t: &FilterTable| json!({"db-name": t.db_name, "tbl-name": t.tbl_name});
            t.as_ref().map(|t| t.iter().map(name).collect::<Vec<_>>())
        };
        let mysql = f.mysql_replication_rules.as_ref().map(|r| {
            json!({
                "do-tables": names(&r.do_tables),
                "do-dbs": r.do_dbs,
                "ignore-tables": names(&r.ignore_tables),
                "ignore-dbs": r.ignore_dbs,
            })
        });
        json!({
            "rules": f.rules,
            "mysql-replication-rules": mysql,
            "ignore-txn-start-ts": f.ignore_txn_start_ts,
            "ddl-allow-list": ddl_allow_list(f.extra.get("ddl-allow-list")),
        })
    }

    /// rcdc keeps `ddl-allow-list` opaque (Go's base64 of a byte slice); the view is the bytes.
    fn ddl_allow_list(v: Option<&Value>) -> Value {
        let Some(Value::String(b64)) = v else {
            return v.cloned().unwrap_or(Value::Null);
        };
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let sextets = b64.bytes().filter(|&c| c != b'=');
        let sextets = sextets.map(|c| ALPHABET.iter().position(|&a| a == c));
        let Some(sextets) = sextets.collect::<Option<Vec<usize>>>() else {
            return json!(format!("not base64: {b64}"));
        };
        let bytes: Vec<u8> = sextets
            .chunks(4)
            .flat_map(|c| {
                let n = c.iter().fold(0usize, |acc, s| acc << 6 | s) << (6 * (4 - c.len()));
                let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
                bytes.into_iter().take(c.len().saturating_sub(1))
            })
            .collect();
        json!(bytes)
    }
}
