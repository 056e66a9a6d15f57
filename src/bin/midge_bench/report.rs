//! Turns the raw JSON lines of several rounds into a Markdown table of
//! medians and A/B ratios, plus a list of anomalies (loss, crashes, refused
//! connections) seen in individual runs.
//!
//! Owns: which metrics matter per scenario and whether higher is better.
//! It must not run anything or talk to brokers; it only reads result lines.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::json::{self, Object, Value};

struct Metric {
    key: &'static str,
    label: &'static str,
    higher_better: bool,
    /// Drawn in the ratio chart (loss percentages are not ratios worth drawing).
    chart: bool,
}

const fn m(key: &'static str, label: &'static str, higher_better: bool, chart: bool) -> Metric {
    Metric {
        key,
        label,
        higher_better,
        chart,
    }
}

fn metrics_for(scenario: &str) -> &'static [Metric] {
    const NEVER_READING: &[Metric] = &[
        m("rss_growth_mb", "broker RSS growth, MB", false, true),
        m("dropped", "dropped ($SYS)", false, false),
        m("idle_p50_us", "probe p50 idle µs", false, true),
        m("idle_p99_us", "probe p99 idle µs", false, true),
        m("load_p50_us", "probe p50 under load µs", false, true),
        m("load_p99_us", "probe p99 under load µs", false, true),
    ];
    const FLOOD: &[Metric] = &[
        m("rss_growth_mb", "broker RSS growth, MB", false, true),
        m("published", "publishes sent", true, false),
        m("dropped", "dropped ($SYS)", false, false),
        m(
            "publishers_open_at_end",
            "publishers still connected",
            true,
            false,
        ),
        m(
            "hogs_still_open",
            "non-reading subscribers still connected",
            false,
            false,
        ),
        m("idle_p99_us", "probe p99 idle µs", false, true),
        m("load_p99_us", "probe p99 under load µs", false, true),
    ];
    const SILENT: &[Metric] = &[
        m("bytes_per_conn", "RSS bytes/conn", false, true),
        m("closed_by_broker", "closed by the broker", true, false),
        m("last_close_secs", "last closed after, s", false, false),
    ];
    const FANIN: &[Metric] = &[
        m("msgs_per_sec", "delivered msgs/s", true, true),
        m("broker_cpu_us_per_msg", "broker CPU µs/msg", false, true),
        m("loss_pct", "loss %", false, false),
    ];
    const FANOUT: &[Metric] = &[
        m("msgs_per_sec", "deliveries/s", true, true),
        m(
            "broker_cpu_us_per_msg",
            "broker CPU µs/delivery",
            false,
            true,
        ),
        m("loss_pct", "loss %", false, false),
    ];
    const QOS1: &[Metric] = &[
        m("msgs_per_sec", "msgs/s", true, true),
        m("broker_cpu_us_per_msg", "broker CPU µs/msg", false, true),
        m("loss_pct", "loss %", false, false),
    ];
    const LATENCY: &[Metric] = &[
        m("p50_us", "p50 µs", false, true),
        m("p99_us", "p99 µs", false, true),
        m("p999_us", "p99.9 µs", false, true),
        m("loss_pct", "loss %", false, false),
    ];
    const CONNS: &[Metric] = &[
        m("bytes_per_conn", "RSS bytes/conn", false, true),
        m("conns_per_sec", "connects/s", true, true),
        m("connected", "connected", true, false),
    ];
    const RETAINED: &[Metric] = &[
        m("bytes_per_msg", "RSS bytes/retained msg", false, true),
        m("store_msgs_per_sec", "store msgs/s", true, true),
        m("msgs_per_sec", "delivery msgs/s", true, true),
        m("loss_pct", "loss %", false, false),
    ];
    const WILDCARD: &[Metric] = &[
        m("msgs_per_sec", "publishes routed/s", true, true),
        m(
            "broker_cpu_us_per_msg",
            "broker CPU µs/publish",
            false,
            true,
        ),
        m("loss_pct", "loss %", false, false),
    ];
    const CALLGRIND: &[Metric] = &[m("ir_per_msg", "instructions/msg", false, true)];
    const STRACE: &[Metric] = &[m("syscalls_per_msg", "syscalls/msg", false, true)];
    const BRIDGE: &[Metric] = &[
        m(
            "reconnect_secs",
            "remote up to first delivery, s",
            false,
            false,
        ),
        m("drain_secs", "remote up to whole backlog, s", false, true),
        m("drain_msgs_per_sec", "backlog drain msgs/s", true, true),
        m(
            "drain_broker_cpu_us_per_msg",
            "broker CPU µs/backlog msg",
            false,
            true,
        ),
        m("backlog_loss", "backlog lost", false, false),
        m("msgs_per_sec", "forwarded msgs/s", true, true),
        m("broker_cpu_us_per_msg", "broker CPU µs/msg", false, true),
        m("loss_pct", "loss %", false, false),
    ];
    const OTHER: &[Metric] = &[m("msgs_per_sec", "msgs/s", true, true)];
    // `fanin-tls`, `fanout-wss`...: the scenario run over another transport.
    // Scenario names with a dash of their own are matched whole.
    let base = match scenario {
        "never-reading" | "half-open" | "partial-connect" | "flood-memlimit" => scenario,
        _ => scenario.split_once('-').map_or(scenario, |(s, _)| s),
    };
    match base {
        "never-reading" => NEVER_READING,
        "flood" | "flood-memlimit" => FLOOD,
        "half-open" | "partial-connect" => SILENT,
        "fanin" => FANIN,
        "fanout" => FANOUT,
        "qos1" => QOS1,
        "latency" => LATENCY,
        "conns" => CONNS,
        "retained" => RETAINED,
        "wildcard" => WILDCARD,
        "bridge" => BRIDGE,
        "callgrind" => CALLGRIND,
        "strace" => STRACE,
        _ => OTHER,
    }
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let hi = *v.get(n / 2)?;
    if n % 2 == 1 {
        Some(hi)
    } else {
        Some((*v.get(n / 2 - 1)? + hi) / 2.0)
    }
}

fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn fmt_ratio(r: f64) -> String {
    if r >= 0.1 {
        format!("{r:.2}")
    } else {
        // Keep two significant digits for tiny ratios (syscalls per message).
        format!("{r:.2e}")
    }
}

fn str_of<'a>(o: &'a Object, k: &str) -> &'a str {
    json::get(o, k).and_then(Value::as_str).unwrap_or("?")
}

fn num_of(o: &Object, k: &str) -> Option<f64> {
    json::get(o, k).and_then(Value::as_f64)
}

/// Things worth a human's attention in one run.
fn anomalies(o: &Object) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(e) = json::get(o, "error").and_then(Value::as_str) {
        out.push(format!("error: {e}"));
    }
    if json::get(o, "broker_alive") == Some(&Value::Bool(false)) {
        out.push("broker was not alive at the end".into());
    }
    for (key, what) in [
        ("loss", "lost"),
        ("missing", "missing deliveries"),
        ("extra", "unexpected deliveries"),
        ("failed", "failed connections"),
        ("conn_closed", "connections closed by broker"),
        ("conn_refused", "refused by broker"),
        ("malformed", "malformed packets from broker"),
        ("disconnects", "DISCONNECTs from broker"),
        ("stalls", "stalls (full window, no delivery for 250 ms)"),
        ("dup_or_reordered", "duplicate/reordered"),
        ("dup_flag", "redeliveries (DUP)"),
        ("duplicates", "duplicates"),
        ("foreign", "unrecognised messages"),
        ("wrong_qos", "wrong QoS"),
        ("stale_retained", "stale retained messages ignored"),
    ] {
        if let Some(v) = num_of(o, key).filter(|v| *v > 0.0) {
            out.push(format!("{v:.0} {what}"));
        }
    }
    if let Some(n) = json::get(o, "note").and_then(Value::as_str) {
        out.push(n.to_string());
    }
    if !out.is_empty() {
        if let Some(e) = json::get(o, "first_error").and_then(Value::as_str) {
            out.push(format!("first error: {e}"));
        }
    }
    out
}

/// Reads JSON lines and renders the Markdown report. With `tsv`, also
/// returns "label<TAB>ratio<TAB>higher_better" rows for the chart.
pub fn render(text: &str, a: &str, b: &str) -> (String, String) {
    let mut order: Vec<String> = Vec::new();
    let mut runs: BTreeMap<(String, String), Vec<Object>> = BTreeMap::new();
    let mut bad_lines = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Ok(obj) = json::parse_object(line.trim()) else {
            bad_lines += 1;
            continue;
        };
        let scenario = str_of(&obj, "scenario").to_string();
        let broker = str_of(&obj, "broker").to_string();
        if !order.contains(&scenario) {
            order.push(scenario.clone());
        }
        runs.entry((scenario, broker)).or_default().push(obj);
    }
    let mut md = String::new();
    let mut tsv = String::new();
    let _ = writeln!(
        md,
        "| scenario | metric | {a} (median) | {b} (median) | {a}/{b} | better | runs |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---|---:|");
    let empty = Vec::new();
    for scenario in &order {
        let ra = runs
            .get(&(scenario.clone(), a.to_string()))
            .unwrap_or(&empty);
        let rb = runs
            .get(&(scenario.clone(), b.to_string()))
            .unwrap_or(&empty);
        for metric in metrics_for(scenario) {
            let med = |rs: &Vec<Object>| {
                let mut v: Vec<f64> = rs.iter().filter_map(|o| num_of(o, metric.key)).collect();
                median(&mut v)
            };
            let (ma, mb) = (med(ra), med(rb));
            if ma.is_none() && mb.is_none() {
                continue;
            }
            let ratio = match (ma, mb) {
                (Some(x), Some(y)) if y != 0.0 && x.is_finite() && y.is_finite() => Some(x / y),
                _ => None,
            };
            let better = match ratio {
                Some(r) if (r - 1.0).abs() <= 0.02 => "≈".to_string(),
                Some(r) if (r > 1.0) == metric.higher_better => a.to_string(),
                Some(_) => b.to_string(),
                None => "-".to_string(),
            };
            let show = |v: Option<f64>| v.map_or_else(|| "-".to_string(), fmt_num);
            let _ = writeln!(
                md,
                "| {scenario} | {} | {} | {} | {} | {better} | {}/{} |",
                metric.label,
                show(ma),
                show(mb),
                ratio.map_or_else(|| "-".to_string(), fmt_ratio),
                ra.len(),
                rb.len()
            );
            if let (Some(r), true) = (ratio, metric.chart) {
                let _ = writeln!(
                    tsv,
                    "{scenario}: {}\t{r:.4}\t{}",
                    metric.label,
                    u8::from(metric.higher_better)
                );
            }
        }
    }
    let mut notes = String::new();
    for ((scenario, broker), rs) in &runs {
        for (i, o) in rs.iter().enumerate() {
            let list = anomalies(o);
            if !list.is_empty() {
                let _ = writeln!(
                    notes,
                    "- {scenario} / {broker} run {}: {}",
                    i + 1,
                    list.join("; ")
                );
            }
        }
    }
    if bad_lines > 0 {
        let _ = writeln!(notes, "- {bad_lines} unreadable result line(s) skipped");
    }
    if !notes.is_empty() {
        let _ = writeln!(md, "\nAnomalies:\n\n{notes}");
    }
    (md, tsv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_even_and_odd() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn table_ratios_and_anomalies() {
        let raw = "\
{\"scenario\":\"fanin\",\"broker\":\"midge\",\"msgs_per_sec\":200,\"loss\":0}
{\"scenario\":\"fanin\",\"broker\":\"mosquitto\",\"msgs_per_sec\":100,\"loss\":0}
{\"scenario\":\"fanin\",\"broker\":\"midge\",\"msgs_per_sec\":400,\"loss\":3}
{\"scenario\":\"latency\",\"broker\":\"midge\",\"p50_us\":50}
{\"scenario\":\"latency\",\"broker\":\"mosquitto\",\"p50_us\":100}
not json
";
        let (md, tsv) = render(raw, "midge", "mosquitto");
        assert!(
            md.contains("| fanin | delivered msgs/s | 300 | 100 | 3.00 | midge | 2/1 |"),
            "{md}"
        );
        assert!(
            md.contains("| latency | p50 µs | 50.00 | 100 | 0.50 | midge |"),
            "{md}"
        );
        assert!(md.contains("fanin / midge run 2: 3 lost"), "{md}");
        assert!(md.contains("1 unreadable"), "{md}");
        assert_eq!(fmt_ratio(0.0021), "2.10e-3");
        assert_eq!(fmt_ratio(0.5), "0.50");
        assert!(tsv.contains("fanin: delivered msgs/s\t3.0000\t1"), "{tsv}");
        assert!(tsv.contains("latency: p50 µs\t0.5000\t0"), "{tsv}");
    }
}
