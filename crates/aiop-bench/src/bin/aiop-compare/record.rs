//! The lines each system prints, parsed into records.
//!
//! Three formats arrive:
//!
//! * aiop-bench's JSON lines: `{"name":"queue/pingpong","unit":"us","value":0.33,"p99":0.41}`;
//!   the record's id is `name`, its fields `value` and `p99`.
//! * The Rust peers' and floors' `RESULT key=value ...` lines; the id is the
//!   `case`, with `@<msg_bytes>` appended for a throughput (`kind=tput`), and
//!   the fields are every numeric value (`median_us`, `p99_us`,
//!   `msgs_per_s`, `MiB_per_s`, ...).
//! * The Python anchors' JSON lines: the id is `workload|variant`, with
//!   `|<payload_bytes>` appended where the line has one and
//!   `|<start_method>` for `process_spawn` and `pool_start` (whose variants
//!   differ only by it); the fields are every numeric member.

use std::collections::BTreeMap;

/// One measurement line of one system.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    pub(crate) id: String,
    pub(crate) fields: BTreeMap<String, f64>,
}

/// How a system's output is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Aiop,
    Peer,
    Python,
}

/// Parses one line of output; `None` for lines that carry no measurement
/// (progress, comments, the Python anchors' `_meta` and error lines).
pub(crate) fn parse(format: Format, line: &str) -> Option<Record> {
    let line = line.trim();
    match format {
        Format::Aiop => parse_aiop(line),
        Format::Peer => parse_peer(line),
        Format::Python => parse_python(line),
    }
}

fn parse_aiop(line: &str) -> Option<Record> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let name = v.get("name")?.as_str()?;
    let mut fields = BTreeMap::new();
    for key in ["value", "p99"] {
        if let Some(x) = v.get(key).and_then(serde_json::Value::as_f64) {
            fields.insert(key.to_owned(), x);
        }
    }
    fields.contains_key("value").then(|| Record {
        id: name.to_owned(),
        fields,
    })
}

fn parse_peer(line: &str) -> Option<Record> {
    let rest = line.strip_prefix("RESULT ")?;
    let mut text = BTreeMap::new();
    for pair in rest.split_whitespace() {
        let (k, v) = pair.split_once('=')?;
        text.insert(k, v);
    }
    let case = *text.get("case")?;
    let id = match (text.get("kind"), text.get("msg_bytes")) {
        (Some(&"tput"), Some(bytes)) => format!("{case}@{bytes}"),
        _ => case.to_owned(),
    };
    let fields: BTreeMap<String, f64> = text
        .iter()
        .filter_map(|(k, v)| Some(((*k).to_owned(), v.parse::<f64>().ok()?)))
        .collect();
    Some(Record { id, fields })
}

fn parse_python(line: &str) -> Option<Record> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    let obj = v.as_object()?;
    let workload = obj.get("workload")?.as_str()?;
    if workload.starts_with('_') || obj.contains_key("error") {
        return None;
    }
    let mut id = workload.to_owned();
    if let Some(variant) = obj.get("variant").and_then(serde_json::Value::as_str) {
        id.push('|');
        id.push_str(variant);
    }
    if let Some(bytes) = obj.get("payload_bytes").and_then(serde_json::Value::as_u64) {
        id.push_str(&format!("|{bytes}"));
    }
    if matches!(workload, "process_spawn" | "pool_start") {
        if let Some(method) = obj.get("start_method").and_then(serde_json::Value::as_str) {
            id.push('|');
            id.push_str(method);
        }
    }
    let fields: BTreeMap<String, f64> = obj
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
        .collect();
    Some(Record { id, fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aiop_lines_give_name_value_and_p99() {
        let r = parse(
            Format::Aiop,
            r#"{"name":"queue/pingpong","unit":"us","value":0.33,"p99":0.41,"n":20000}"#,
        )
        .expect("a record");
        assert_eq!(r.id, "queue/pingpong");
        assert_eq!(r.fields["value"], 0.33);
        assert_eq!(r.fields["p99"], 0.41);
        assert_eq!(r.fields.len(), 2);
        // A ratio line has no p99, and is still a record.
        let r = parse(
            Format::Aiop,
            r#"{"name":"ratio/a:b","unit":"x","value":1.5}"#,
        )
        .expect("a record");
        assert_eq!(r.fields.len(), 1);
        assert_eq!(parse(Format::Aiop, "not json"), None);
        assert_eq!(parse(Format::Aiop, r#"{"name":"x"}"#), None);
    }

    #[test]
    fn peer_lines_key_throughputs_by_size() {
        let r = parse(
            Format::Peer,
            "RESULT peer=floor case=futex_pingpong_spin0 kind=rtt n=20000 min_us=9.50 \
             median_us=13.70 p90_us=15.00 p99_us=27.73 p999_us=40.00 mean_us=14.00",
        )
        .expect("a record");
        assert_eq!(r.id, "futex_pingpong_spin0");
        assert_eq!(r.fields["median_us"], 13.70);
        assert_eq!(r.fields["p99_us"], 27.73);
        let r = parse(
            Format::Peer,
            "RESULT peer=floor case=shm_spsc_ring_futex_spin0 kind=tput msg_bytes=64 \
             msgs=7000000 secs=1.000 msgs_per_s=7413125 MiB_per_s=452.5",
        )
        .expect("a record");
        assert_eq!(r.id, "shm_spsc_ring_futex_spin0@64");
        assert_eq!(r.fields["msgs_per_s"], 7_413_125.0);
        assert_eq!(parse(Format::Peer, "BUILD FAILED: floor"), None);
        assert_eq!(parse(Format::Peer, "RESULT peer=x kind=rtt"), None);
    }

    #[test]
    fn python_lines_key_by_workload_variant_size_and_method() {
        let r = parse(
            Format::Python,
            r#"{"workload": "queue_throughput", "loop": "asyncio", "variant": "AioQueue.coro_get", "payload_bytes": 64, "msgs_per_s": 10323, "MB_per_s": 0.66}"#,
        )
        .expect("a record");
        assert_eq!(r.id, "queue_throughput|AioQueue.coro_get|64");
        assert_eq!(r.fields["msgs_per_s"], 10323.0);
        let r = parse(
            Format::Python,
            r#"{"workload": "process_spawn", "variant": "aioprocessing.AioProcess start+coro_join", "start_method": "spawn", "median_ms": 83.4}"#,
        )
        .expect("a record");
        assert_eq!(
            r.id,
            "process_spawn|aioprocessing.AioProcess start+coro_join|spawn"
        );
        // The start method names only a process_spawn variant.
        let r = parse(
            Format::Python,
            r#"{"workload": "event_pingpong", "variant": "baseline_sync_mp.Event", "start_method": "fork", "median_us": 157.8}"#,
        )
        .expect("a record");
        assert_eq!(r.id, "event_pingpong|baseline_sync_mp.Event");
        assert_eq!(
            parse(
                Format::Python,
                r#"{"workload": "_meta", "python": "3.11.7", "nproc": 2}"#
            ),
            None
        );
        assert_eq!(
            parse(
                Format::Python,
                r#"{"workload": "pool_map", "loop": "asyncio", "error": "rc=1"}"#
            ),
            None
        );
    }
}
