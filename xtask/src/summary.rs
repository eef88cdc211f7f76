//! Markdown summary of bench-peers `summary.tsv` files (a Rust port of the kit's
//! `summarize.py`, plus the gateway-to-peer ratio table).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// (ours, peer) pairs compared in the ratio table.
const PAIRS: [(&str, &str); 19] = [
    ("sticky-new", "haproxy-cookie-new"),
    ("sticky-new", "nginx-hash-new"),
    ("sticky-sticky", "haproxy-cookie-sticky"),
    ("sticky-sticky", "nginx-hash-sticky"),
    ("sticky-sticky-long", "haproxy-cookie-sticky-long"),
    ("sticky-sticky-long", "nginx-hash-sticky-long"),
    ("sticky-tls-sticky", "haproxy-tls-sticky"),
    ("sticky-tls-resume", "haproxy-tls-resume"),
    ("sticky-tls-handshake", "haproxy-tls-handshake"),
    ("pingora-new", "haproxy-cookie-new"),
    ("pingora-new", "sticky-new"),
    ("pingora-sticky", "haproxy-cookie-sticky"),
    ("pingora-sticky", "sticky-sticky"),
    ("pingora-sticky-long", "haproxy-cookie-sticky-long"),
    ("pingora-sticky-long", "sticky-sticky-long"),
    // What the pingora-sticky helpers add to pingora itself (pingora-rr: the same
    // example with --plain), and pingora itself against HAProxy's round robin.
    ("pingora-new", "pingora-rr"),
    ("pingora-sticky", "pingora-rr"),
    ("pingora-rr", "haproxy-rr"),
    ("sticky-sticky", "haproxy-rr"),
];

/// One measured row: a scenario in one round of one file.
#[derive(Clone)]
struct Row {
    /// Column name -> raw value.
    cols: BTreeMap<String, String>,
}

impl Row {
    /// A numeric column (`NA` and missing give `None`).
    fn num(&self, k: &str) -> Option<f64> {
        self.cols
            .get(k)
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite())
    }
}

/// Entry point of `cargo xtask bench-summary`.
pub(crate) fn run_cli(args: &[String]) -> Result<(), String> {
    if args.is_empty() {
        return Err("usage: cargo xtask bench-summary <summary.tsv>...".into());
    }
    let paths: Vec<PathBuf> = args.iter().map(PathBuf::from).collect();
    print!("{}", render(&paths)?);
    Ok(())
}

/// Median (mean of the two middle values for an even count); `None` when empty.
fn median(mut xs: Vec<f64>) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let n = xs.len();
    Some(if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    })
}

/// Formats an integer with thousands separators.
fn thousands(v: f64) -> String {
    let s = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Formats an optional number with `prec` decimals, or `NA`.
fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or("NA".into(), |v| format!("{v:.prec$}"))
}

/// Reads the files and renders the markdown: the per-scenario table and the ratios of
/// sticky-gateway to each peer.
pub(crate) fn render(paths: &[PathBuf]) -> Result<String, String> {
    // scenario (first-seen order) -> rows; (file, round) -> scenario -> row
    let mut order: Vec<String> = Vec::new();
    let mut by_scen: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    let mut by_round: BTreeMap<(usize, String), BTreeMap<String, Row>> = BTreeMap::new();
    let mut comments: Vec<String> = Vec::new();
    for (fi, p) in paths.iter().enumerate() {
        let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let mut header: Option<Vec<String>> = None;
        for line in text.lines() {
            if let Some(c) = line.strip_prefix('#') {
                if fi == 0 {
                    comments.push(c.trim().to_string());
                }
                continue;
            }
            if line.trim().is_empty() {
                continue;
            }
            let fields: Vec<String> = line.split('\t').map(String::from).collect();
            let Some(h) = &header else {
                header = Some(fields);
                continue;
            };
            let row = Row {
                cols: h.iter().cloned().zip(fields).collect(),
            };
            let scen = row.cols.get("scenario").cloned().unwrap_or_default();
            let round = row.cols.get("round").cloned().unwrap_or_default();
            if !order.contains(&scen) {
                order.push(scen.clone());
            }
            by_scen.entry(scen.clone()).or_default().push(row.clone());
            by_round.entry((fi, round)).or_default().insert(scen, row);
        }
    }
    if order.is_empty() {
        return Err("no measurements in the given summary.tsv file(s)".into());
    }

    // Per-round quantities relative to another scenario of the same round.
    let per_round = |a: &str, b: &str, f: &dyn Fn(&Row, &Row) -> Option<f64>| -> Vec<f64> {
        by_round
            .values()
            .filter_map(|sc| Some((sc.get(a)?, sc.get(b)?)))
            .filter_map(|(x, y)| f(x, y))
            .collect()
    };
    let ratio = |k: &'static str| {
        move |x: &Row, y: &Row| -> Option<f64> {
            let (x, y) = (x.num(k)?, y.num(k)?);
            (y > 0.0).then_some(x / y)
        }
    };
    let diff =
        |k: &'static str| move |x: &Row, y: &Row| -> Option<f64> { Some(x.num(k)? - y.num(k)?) };
    // Proxy CPU per request divided by the backend's CPU per request in the same
    // window. The backends do identical work in every scenario, so this cancels the
    // VM's speed drift (15-30 % within minutes), which raw microseconds do not.
    let per_backend = |r: &Row| -> Option<f64> {
        let backend_us = r.num("backend_cpu_pct")? / 100.0 / r.num("req_s")? * 1e6;
        (backend_us > 0.0).then(|| r.num("sut_us_per_req").map(|p| p / backend_us))?
    };

    let mut out = String::new();
    for c in &comments {
        let _ = writeln!(out, "<!-- {c} -->");
    }
    out.push_str(
        "| scenario | req/s median | req/s min–max | ÷ direct (same round) | p50 µs | p99 µs \
         | proxy CPU µs/req | proxy ÷ backend CPU | machine CPU µs/req | + vs direct µs/req | n |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for s in &order {
        let rows = &by_scen[s];
        let col = |k: &str| -> Vec<f64> { rows.iter().filter_map(|r| r.num(k)).collect() };
        let rps = col("req_s");
        let lo = rps.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rps.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let (rps_med, range) = match median(rps.clone()) {
            Some(m) => (thousands(m), format!("{}–{}", thousands(lo), thousands(hi))),
            None => ("NA".into(), "NA".into()),
        };
        let vs_direct = median(per_round(s, "direct", &ratio("req_s")));
        let plus = if s == "direct" {
            String::new()
        } else {
            median(per_round(s, "direct", &diff("machine_us_per_req")))
                .map_or(String::new(), |v| format!("{v:.1}"))
        };
        let _ = writeln!(
            out,
            "| {s} | {rps_med} | {range} | {} | {} | {} | {} | {} | {} | {plus} | {} |",
            vs_direct.map_or(String::new(), |v| format!("{v:.2}")),
            opt(median(col("p50_us")), 0),
            opt(median(col("p99_us")), 0),
            opt(median(col("sut_us_per_req")), 1),
            opt(median(rows.iter().filter_map(per_backend).collect()), 2),
            opt(median(col("machine_us_per_req")), 1),
            rows.len()
        );
    }

    // With PIN=1 the system under test should saturate its CPU; when it does not, the
    // load side was starved (typically other work on the machine) and the numbers are noise.
    let pinned = comments.iter().any(|c| c.contains("mode=pinned"));
    let starved: Vec<String> = order
        .iter()
        .filter_map(|s| {
            let pct = median(
                by_scen[s]
                    .iter()
                    .filter_map(|r| r.num("sut_cpu_pct"))
                    .collect(),
            )?;
            (pinned && pct < 85.0).then(|| format!("{s} {pct:.0}%"))
        })
        .collect();
    if !starved.is_empty() {
        let _ = writeln!(
            out,
            "\n**Warning:** pinned, yet the system under test used well under one full CPU \
             (median: {}). The load side was starved, usually by other work on the machine; \
             these numbers are not comparable with a quiet run.",
            starved.join(", ")
        );
    }
    let steal = median(
        by_scen
            .values()
            .flatten()
            .filter_map(|r| r.num("steal_pct"))
            .collect(),
    );
    if let Some(st) = steal.filter(|st| *st > 2.0) {
        let _ = writeln!(
            out,
            "\n**Warning:** median steal time {st:.1}%: the VM's host was busy."
        );
    }

    out.push_str("\n**sticky-gateway and pingora-sticky vs peers** (median of per-round ratios, same round; req/s > 1 and CPU < 1 favour the first column)\n\n");
    let present: Vec<&(&str, &str)> = PAIRS
        .iter()
        .filter(|(a, b)| by_scen.contains_key(*a) && by_scen.contains_key(*b))
        .collect();
    if present.is_empty() {
        out.push_str("_neither sticky-gateway nor pingora-sticky was measured against a peer in this run (no sticky-* or pingora-* scenario together with its peer)._\n");
        return Ok(out);
    }
    out.push_str(
        "| ours | peer | req/s ratio | proxy CPU µs/req ratio | proxy÷backend CPU ratio | p99 ratio | rounds |\n\
         |---|---|---:|---:|---:|---:|---:|\n",
    );
    for (ours, peer) in present {
        let r = per_round(ours, peer, &ratio("req_s"));
        let c = per_round(ours, peer, &ratio("sut_us_per_req"));
        let n = per_round(ours, peer, &|x: &Row, y: &Row| {
            Some(per_backend(x)? / per_backend(y)?)
        });
        let l = per_round(ours, peer, &ratio("p99_us"));
        let _ = writeln!(
            out,
            "| {ours} | {peer} | {} | {} | {} | {} | {} |",
            opt(median(r.clone()), 2),
            opt(median(c), 2),
            opt(median(n), 2),
            opt(median(l), 2),
            r.len()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_separators() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
        assert_eq!(thousands(1234567.4), "1,234,567");
        assert_eq!(thousands(999.0), "999");
    }

    #[test]
    fn renders_ratios_within_rounds() {
        let dir = std::env::temp_dir().join(format!("xtask-summary-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("summary.tsv");
        let tsv = "# mode=test\n\
            round\tscenario\treq_s\tp50_us\tp99_us\tsut_us_per_req\tmachine_us_per_req\tbackend_cpu_pct\n\
            1\tdirect\t100000\t100\t500\t5\t10\tNA\n\
            1\thaproxy-cookie-sticky\t50000\t800\t1600\t14\t26\t35\n\
            1\tsticky-sticky\t60000\t700\t1200\t7\t20\t42\n\
            2\tdirect\t200000\t100\t500\t5\t10\tNA\n\
            2\thaproxy-cookie-sticky\t100000\t800\t1600\t14\t26\t70\n\
            2\tsticky-sticky\t120000\tNA\t1200\t7\t20\t84\n";
        std::fs::write(&p, tsv).unwrap();
        let md = render(&[p]).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            md.contains("| direct | 150,000 | 100,000–200,000 | 1.00 |"),
            "{md}"
        );
        assert!(
            // Backend 7 us/request in every window: haproxy 14/7 = 2.0, ours 7/7 = 1.0.
            md.contains(
                "| sticky-sticky | haproxy-cookie-sticky | 1.20 | 0.50 | 0.50 | 0.75 | 2 |"
            ),
            "{md}"
        );
        assert!(md.contains("| sticky-sticky | 90,000 |"), "{md}");
    }
}
