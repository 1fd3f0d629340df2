//! Reading a node's `/metrics`: an HTTP GET over loopback, a strict parser of Prometheus' text
//! exposition format (it refuses what Prometheus would refuse, so that a test of the node's
//! output can fail), and the node's view of a measured window: the difference of two scrapes'
//! histograms, turned into percentiles the way Prometheus' `histogram_quantile` does.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest `/metrics` answer read (a node's is a few kilobytes).
pub const RESPONSE_BYTES_MAX: u64 = 4 << 20;

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Metric name (for histograms, with its `_bucket`, `_sum` or `_count` suffix).
    pub name: String,
    /// Labels in the order written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed exposition.
#[derive(Clone, Debug, Default)]
pub struct Exposition {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// Each family's declared type (`counter`, `gauge`, `histogram`, ...).
    pub types: BTreeMap<String, String>,
}

/// GETs `http://addr/metrics` and returns the body.
pub fn fetch(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let fail = |e: std::io::Error| format!("scrape of http://{addr}/metrics: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(fail)?;
    stream.set_read_timeout(Some(timeout)).map_err(fail)?;
    stream.set_write_timeout(Some(timeout)).map_err(fail)?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: ringraft\r\nConnection: close\r\n\r\n")
        .map_err(fail)?;
    let mut raw = Vec::new();
    stream
        .take(RESPONSE_BYTES_MAX)
        .read_to_end(&mut raw)
        .map_err(fail)?;
    let text = String::from_utf8(raw)
        .map_err(|_| format!("scrape of http://{addr}/metrics: the answer is not UTF-8"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("scrape of http://{addr}/metrics: no HTTP header in the answer"))?;
    let status = head.lines().next().unwrap_or("");
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!(
            "scrape of http://{addr}/metrics: answered `{status}`"
        ));
    }
    Ok(body.to_string())
}

/// Parses text exposition format 0.0.4, checking what Prometheus checks and a little more:
/// names and labels well formed, one `# TYPE` per family and before its samples, every sample
/// in a declared family, and each histogram's buckets cumulative with a `+Inf` bucket equal to
/// its `_count`.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut exposition = Exposition::default();
    for (i, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", i + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            parse_comment(comment, &mut exposition).map_err(at)?;
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        let family = family_of(&sample.name, &exposition.types)
            .ok_or_else(|| at("sample of a family without # TYPE".into()))?;
        let kind = &exposition.types[family];
        if kind == "counter" && sample.value < 0.0 {
            return Err(at("negative counter".into()));
        }
        exposition.samples.push(sample);
    }
    check_histograms(&exposition)?;
    Ok(exposition)
}

fn parse_comment(comment: &str, exposition: &mut Exposition) -> Result<(), String> {
    let mut words = comment.trim_start().splitn(3, ' ');
    match (words.next(), words.next(), words.next()) {
        (Some("TYPE"), Some(name), Some(kind)) => {
            check_name(name)?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(format!("unknown type {kind}"));
            }
            if exposition
                .samples
                .iter()
                .any(|s| family_of(&s.name, &exposition.types) == Some(name))
            {
                return Err("# TYPE after the family's samples".into());
            }
            if exposition.types.insert(name.into(), kind.into()).is_some() {
                return Err(format!("second # TYPE for {name}"));
            }
            Ok(())
        }
        (Some("TYPE"), ..) => Err("# TYPE needs a name and a type".into()),
        (Some("HELP"), Some(name), _) => check_name(name),
        (Some("HELP"), ..) => Err("# HELP needs a name".into()),
        _ => Ok(()),
    }
}

/// The declared family a sample name belongs to.
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> Option<&'a str> {
    if types.contains_key(name) {
        return Some(name);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types
                .get(base)
                .is_some_and(|k| k == "histogram" || k == "summary")
            {
                return Some(base);
            }
        }
    }
    None
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("bad metric name {name:?}"))
    }
}

fn check_label_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(format!("bad label name {name:?}"))
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    check_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let mut fields = rest.split(' ').filter(|f| !f.is_empty());
    let value = parse_value(fields.next().ok_or("no value")?)?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("bad timestamp {timestamp:?}"))?;
    }
    if fields.next().is_some() {
        return Err("text after the timestamp".into());
    }
    Ok(Sample {
        name: name.into(),
        labels,
        value,
    })
}

/// A series' labels, name and value, in the order written.
type Labels = Vec<(String, String)>;

/// Parses `k="v",...}`; returns the labels and what follows the closing brace.
fn parse_labels(mut s: &str) -> Result<(Labels, &str), String> {
    let mut labels: Vec<(String, String)> = Vec::new();
    loop {
        if let Some(after) = s.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = s.find('=').ok_or("label without =")?;
        let key = &s[..eq];
        check_label_name(key)?;
        if labels.iter().any(|(k, _)| k == key) {
            return Err(format!("label {key} twice"));
        }
        s = s[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    _ => return Err("bad escape in label value".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("unterminated label value".into()),
            }
        };
        labels.push((key.into(), value));
        s = &s[end + 1..];
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return Err("labels not separated by commas".into());
        }
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|_| format!("bad value {s:?}")),
    }
}

/// Each histogram series: buckets in increasing `le`, counts not decreasing, `+Inf` present and
/// equal to `_count`.
fn check_histograms(exposition: &Exposition) -> Result<(), String> {
    for (family, kind) in &exposition.types {
        if kind != "histogram" {
            continue;
        }
        for (series, buckets) in histogram_series(exposition, family) {
            let mut last = (f64::NEG_INFINITY, 0.0);
            for &(le, count) in &buckets {
                if le <= last.0 || count < last.1 {
                    return Err(format!(
                        "{family}{{{series}}}: buckets not cumulative in increasing le"
                    ));
                }
                last = (le, count);
            }
            if last.0 != f64::INFINITY {
                return Err(format!("{family}{{{series}}}: no le=\"+Inf\" bucket"));
            }
            let count = exposition
                .samples
                .iter()
                .find(|s| s.name == format!("{family}_count") && series_key(s) == series)
                .ok_or_else(|| format!("{family}{{{series}}}: no _count"))?;
            if count.value != last.1 {
                return Err(format!(
                    "{family}{{{series}}}: _count {} differs from the +Inf bucket {}",
                    count.value, last.1
                ));
            }
        }
    }
    Ok(())
}

/// The labels of a sample other than `le`, as one string (identifies a histogram series).
fn series_key(sample: &Sample) -> String {
    sample
        .labels
        .iter()
        .filter(|(k, _)| k != "le")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Each series of histogram `family`: its (le, cumulative count) pairs in written order.
pub fn histogram_series(
    exposition: &Exposition,
    family: &str,
) -> BTreeMap<String, Vec<(f64, f64)>> {
    let bucket = format!("{family}_bucket");
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for s in exposition.samples.iter().filter(|s| s.name == bucket) {
        let le = s
            .label("le")
            .and_then(|v| parse_value(v).ok())
            .unwrap_or(f64::NAN);
        series.entry(series_key(s)).or_default().push((le, s.value));
    }
    series
}

/// The sum of every sample with this name, whatever its labels.
pub fn sum_of(exposition: &Exposition, name: &str) -> f64 {
    exposition
        .samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| s.value)
        .sum()
}

/// The value of a sample with this name whose labels include all of `labels`.
pub fn value(exposition: &Exposition, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition
        .samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
}

/// Cumulative buckets of one histogram, summed over every series (every node) of a scrape.
fn buckets_summed(exposition: &Exposition, family: &str) -> Vec<(f64, f64)> {
    let mut summed: Vec<(f64, f64)> = Vec::new();
    for buckets in histogram_series(exposition, family).values() {
        if summed.is_empty() {
            summed = buckets.clone();
        } else {
            for (acc, b) in summed.iter_mut().zip(buckets) {
                acc.1 += b.1;
            }
        }
    }
    summed
}

/// The q-quantile (0..1) of the observations between two cumulative bucket lists, linearly
/// interpolated inside the bucket it falls in, as Prometheus' `histogram_quantile` does. `None`
/// without observations.
pub fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .enumerate()
        .map(|(i, &(le, count))| (le, count - before.get(i).map_or(0.0, |b| b.1)))
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in &delta {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0); // Beyond the last finite bound: say the bound.
            }
            let width = count - lower.1;
            let inside = if width > 0.0 {
                (rank - lower.1) / width
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * inside);
        }
        lower = (le, count);
    }
    None
}

/// What the nodes themselves measured during a window: the difference between a scrape of
/// every node at its start and one at its end.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeView {
    /// Proposal to commit on the leader, p50 and p99 in ms.
    pub commit_p50_ms: Option<f64>,
    /// See `commit_p50_ms`.
    pub commit_p99_ms: Option<f64>,
    /// One group's log write until durable (write and flush), all nodes, p50 and p99 in ms.
    pub log_write_p50_ms: Option<f64>,
    /// See `log_write_p50_ms`.
    pub log_write_p99_ms: Option<f64>,
    /// Applying one batch of committed entries, all nodes, p99 in ms.
    pub apply_p99_ms: Option<f64>,
    /// Mean entries per durable group, all nodes.
    pub group_entries_mean: Option<f64>,
    /// Mean entries per AppendEntries sent.
    pub append_entries_entries_mean: Option<f64>,
    /// Nodes whose two scrapes both succeeded, of all nodes.
    pub nodes_scraped: usize,
    /// Nodes scraped or not.
    pub nodes: usize,
}

impl NodeView {
    /// The view from scrapes of each node at the window's start and end (`None` where a scrape
    /// failed).
    pub fn from_scrapes(start: &[Option<Exposition>], end: &[Option<Exposition>]) -> NodeView {
        let pairs: Vec<(&Exposition, &Exposition)> = start
            .iter()
            .zip(end)
            .filter_map(|(a, b)| Some((a.as_ref()?, b.as_ref()?)))
            .collect();
        let summed = |family: &str| {
            let mut before = Exposition::default();
            let mut after = Exposition::default();
            for (a, b) in &pairs {
                before.samples.extend(a.samples.iter().cloned());
                after.samples.extend(b.samples.iter().cloned());
            }
            (
                buckets_summed(&before, family),
                buckets_summed(&after, family),
            )
        };
        let ms = |family: &str, q: f64| {
            let (before, after) = summed(family);
            quantile(&before, &after, q).map(|s| s * 1000.0)
        };
        // Every series of the name: each node's, and each group's of a node with several.
        let total = |name: &str, end: bool| {
            pairs
                .iter()
                .map(|(a, b)| sum_of(if end { b } else { a }, name))
                .sum::<f64>()
        };
        let mean = |family: &str| {
            let (sum, count) = (format!("{family}_sum"), format!("{family}_count"));
            let observed = total(&count, true) - total(&count, false);
            let summed = total(&sum, true) - total(&sum, false);
            (observed > 0.0).then(|| summed / observed)
        };
        NodeView {
            commit_p50_ms: ms("ringraft_commit_latency_seconds", 0.5),
            commit_p99_ms: ms("ringraft_commit_latency_seconds", 0.99),
            log_write_p50_ms: ms("ringraft_log_write_latency_seconds", 0.5),
            log_write_p99_ms: ms("ringraft_log_write_latency_seconds", 0.99),
            apply_p99_ms: ms("ringraft_apply_latency_seconds", 0.99),
            group_entries_mean: mean("ringraft_log_group_entries"),
            append_entries_entries_mean: mean("ringraft_append_entries_entries"),
            nodes_scraped: pairs.len(),
            nodes: start.len(),
        }
    }

    /// One line for the console and the report.
    pub fn describe(&self) -> String {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
        format!(
            "in-node (from /metrics, bucket estimates): commit p50 {} / p99 {} ms; log write+flush p50 {} / p99 {} ms; apply p99 {} ms; {} entries per group, {} per AppendEntries ({} of {} nodes scraped)",
            f(self.commit_p50_ms),
            f(self.commit_p99_ms),
            f(self.log_write_p50_ms),
            f(self.log_write_p99_ms),
            f(self.apply_p99_ms),
            self.group_entries_mean.map_or("-".into(), |v| format!("{v:.0}")),
            self.append_entries_entries_mean.map_or("-".into(), |v| format!("{v:.0}")),
            self.nodes_scraped,
            self.nodes
        )
    }
}

/// Scrapes every node at `start` and at `end` on a thread of its own; the thread's result is
/// the nodes' view of the window between.
pub fn during(
    addrs: Vec<SocketAddr>,
    start: std::time::Instant,
    end: std::time::Instant,
) -> std::thread::JoinHandle<NodeView> {
    const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
    std::thread::spawn(move || {
        std::thread::sleep(start.saturating_duration_since(std::time::Instant::now()));
        let first = scrape_all(&addrs, SCRAPE_TIMEOUT);
        std::thread::sleep(end.saturating_duration_since(std::time::Instant::now()));
        let last = scrape_all(&addrs, SCRAPE_TIMEOUT);
        NodeView::from_scrapes(&first, &last)
    })
}

/// Scrapes every address once; a node that does not answer gives `None` (and a warning).
pub fn scrape_all(addrs: &[SocketAddr], timeout: Duration) -> Vec<Option<Exposition>> {
    addrs
        .iter()
        .map(|&addr| match fetch(addr, timeout).and_then(|t| parse(&t)) {
            Ok(e) => Some(e),
            Err(e) => {
                eprintln!("WARNING: {e}");
                None
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let good = "# HELP a_total x\n# TYPE a_total counter\na_total{node=\"1\"} 3\n\
                    # TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3\nh_count 2\n";
        let e = parse(good).unwrap();
        assert_eq!(e.samples.len(), 5);
        assert_eq!(value(&e, "a_total", &[("node", "1")]), Some(3.0));
        for bad in [
            "a_total 1\n",                            // no TYPE
            "# TYPE a counter\na{x=1} 1\n",           // unquoted label
            "# TYPE a counter\na -1\n",               // negative counter
            "# TYPE a gauge\n# TYPE a gauge\na 1\n",  // TYPE twice
            "# TYPE 1a gauge\n",                      // bad name
            "# TYPE a gauge\na{b=\"1\",b=\"2\"} 1\n", // label twice
            "# TYPE a gauge\na one\n",                // bad value
            "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n", // not cumulative
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_count 1\n", // no +Inf
            "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 1\n", // count differs
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn a_fresh_nodes_metrics_parse() {
        let counters = crate::runtime::Counters::default();
        counters.metrics.set_peers([2, 3]);
        counters.metrics.commit_latency.record(1_500_000);
        counters.metrics.contact(2, std::time::Instant::now());
        let text = crate::runtime::metrics::render(1, &counters, std::time::Instant::now());
        let e = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(
            value(
                &e,
                "ringraft_commit_latency_seconds_count",
                &[("node", "1")]
            ),
            Some(1.0)
        );
        let series = histogram_series(&e, "ringraft_commit_latency_seconds");
        let buckets = series.values().next().expect("one series");
        let p50 = quantile(&[], buckets, 0.5).expect("one observation");
        assert!((0.001..=0.0025).contains(&p50), "p50 {p50}");
        assert!(value(&e, "ringraft_peer_last_contact_seconds", &[("peer", "2")]).is_some());
        assert!(value(&e, "ringraft_peer_last_contact_seconds", &[("peer", "3")]).is_none());
    }

    #[test]
    fn quantile_interpolates_inside_the_bucket() {
        let before = [(1.0, 0.0), (2.0, 0.0), (f64::INFINITY, 0.0)];
        let after = [(1.0, 10.0), (2.0, 20.0), (f64::INFINITY, 20.0)];
        assert_eq!(quantile(&before, &after, 0.5), Some(1.0));
        assert_eq!(quantile(&before, &after, 0.75), Some(1.5));
        assert_eq!(quantile(&after, &after, 0.5), None);
    }

    #[test]
    fn the_node_view_counts_every_groups_series() {
        // One node with two groups: group 1 wrote twice as many groups of entries.
        let scrape = |g0: (f64, f64), g1: (f64, f64)| {
            parse(&format!(
                "# TYPE ringraft_log_group_entries histogram\n\
                 ringraft_log_group_entries_bucket{{node=\"1\",group=\"0\",le=\"+Inf\"}} {c0}\n\
                 ringraft_log_group_entries_sum{{node=\"1\",group=\"0\"}} {s0}\n\
                 ringraft_log_group_entries_count{{node=\"1\",group=\"0\"}} {c0}\n\
                 ringraft_log_group_entries_bucket{{node=\"1\",group=\"1\",le=\"+Inf\"}} {c1}\n\
                 ringraft_log_group_entries_sum{{node=\"1\",group=\"1\"}} {s1}\n\
                 ringraft_log_group_entries_count{{node=\"1\",group=\"1\"}} {c1}\n",
                s0 = g0.0,
                c0 = g0.1,
                s1 = g1.0,
                c1 = g1.1
            ))
            .expect("parses")
        };
        let start = scrape((0.0, 0.0), (0.0, 0.0));
        let end = scrape((100.0, 10.0), (400.0, 20.0));
        let view = NodeView::from_scrapes(&[Some(start)], &[Some(end)]);
        // 500 entries in 30 groups, not group 0's 100 in 10.
        let mean = view.group_entries_mean.expect("observed");
        assert!((mean - 500.0 / 30.0).abs() < 1e-9, "mean {mean}");
    }
}
