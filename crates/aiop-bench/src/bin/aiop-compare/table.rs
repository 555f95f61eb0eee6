//! Figures of several rounds, reduced to medians and printed as one table.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::catalog::{Better, Row, Source, Unit};
use crate::record::Record;

/// Every figure seen, by (system, record id, field), one entry per round.
#[derive(Debug, Default)]
pub(crate) struct Samples {
    seen: BTreeMap<(String, String, String), Vec<f64>>,
}

impl Samples {
    pub(crate) fn add(&mut self, system: &str, record: &Record) {
        for (field, value) in &record.fields {
            self.seen
                .entry((system.to_owned(), record.id.clone(), field.clone()))
                .or_default()
                .push(*value);
        }
    }

    fn rounds(&self, s: &Source) -> Option<&[f64]> {
        self.seen
            .get(&(s.system.to_owned(), s.id.to_owned(), s.field.to_owned()))
            .map(Vec::as_slice)
            .filter(|v| !v.is_empty())
    }

    /// The median over rounds of a source, in its row's unit.
    pub(crate) fn median(&self, s: &Source) -> Option<f64> {
        self.rounds(s).map(|v| median(v) * s.scale)
    }

    /// The smallest and largest round of a source, in its row's unit.
    fn range(&self, s: &Source) -> Option<(f64, f64)> {
        let v = self.rounds(s)?;
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some((lo * s.scale, hi * s.scale))
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The best of `sources` that have a figure, with it.
fn best<'a>(samples: &Samples, unit: Unit, sources: &'a [Source]) -> Option<(&'a Source, f64)> {
    sources
        .iter()
        .filter_map(|s| Some((s, samples.median(s)?)))
        .reduce(|a, b| {
            let b_wins = match unit.better() {
                Better::Lower => b.1 < a.1,
                Better::Higher => b.1 > a.1,
            };
            if b_wins { b } else { a }
        })
}

/// aiop's cost over the other's: time over time, or rate under rate, so
/// that below 1 always means aiop is faster.
pub(crate) fn cost_ratio(unit: Unit, aiop: f64, other: f64) -> f64 {
    match unit.better() {
        Better::Lower => aiop / other,
        Better::Higher => other / aiop,
    }
}

/// A figure in its unit, to about three significant digits.
pub(crate) fn figure(unit: Unit, v: f64) -> String {
    let sig = |v: f64| {
        if v >= 100.0 {
            format!("{v:.0}")
        } else if v >= 10.0 {
            format!("{v:.1}")
        } else if v >= 1.0 {
            format!("{v:.2}")
        } else {
            format!("{v:.3}")
        }
    };
    match unit {
        Unit::Us | Unit::Ns | Unit::GBps => sig(v),
        Unit::PerSec if v >= 1e6 => format!("{} M", sig(v / 1e6)),
        Unit::PerSec if v >= 1e3 => format!("{} k", sig(v / 1e3)),
        Unit::PerSec => sig(v),
        Unit::Threads => format!("{v:.0}"),
    }
}

/// A cost ratio: `1.25×`, or `1/480` when aiop takes a small fraction of
/// the other's time.
fn ratio_text(r: f64) -> String {
    if !r.is_finite() {
        "–".into()
    } else if r >= 10.0 {
        format!("{r:.0}×")
    } else if r >= 0.1 {
        format!("{r:.2}×")
    } else if r > 0.0 {
        format!("1/{:.0}", 1.0 / r)
    } else {
        "0".into()
    }
}

/// The table, in Markdown.
pub(crate) fn render(rows: &[Row], samples: &Samples, rounds: usize) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "| workload | unit | aiop | floor | aiop ÷ floor | best peer | aiop ÷ best peer | every peer and anchor |"
    );
    let _ = writeln!(t, "|---|---|---|---|---|---|---|---|");
    for row in rows {
        let unit = row.unit;
        let arrow = match unit.better() {
            Better::Lower => "↓",
            Better::Higher => "↑",
        };
        let aiop = samples.median(&row.aiop);
        let aiop_cell = match (aiop, samples.range(&row.aiop)) {
            (Some(v), Some((lo, hi))) if rounds > 1 => format!(
                "**{}** ({}–{})",
                figure(unit, v),
                figure(unit, lo),
                figure(unit, hi)
            ),
            (Some(v), _) => format!("**{}**", figure(unit, v)),
            (None, _) => "not measured".into(),
        };
        let floor = best(samples, unit, row.floors);
        let floor_cell = match floor {
            Some((s, v)) => format!("{} {}", figure(unit, v), s.label),
            None if row.floors.is_empty() => "–".into(),
            None => "not measured".into(),
        };
        let peer = best(samples, unit, row.peers);
        let peer_cell = match peer {
            Some((s, v)) => format!("{} {}", figure(unit, v), s.label),
            None => "not measured".into(),
        };
        let vs = |other: Option<(&Source, f64)>| match (aiop, other) {
            (Some(a), Some((_, o))) => ratio_text(cost_ratio(unit, a, o)),
            _ => "–".into(),
        };
        let every: Vec<String> = row
            .peers
            .iter()
            .map(|s| match samples.median(s) {
                Some(v) => format!("{} {}", s.label, figure(unit, v)),
                None => format!("{} –", s.label),
            })
            .collect();
        let _ = writeln!(
            t,
            "| {} | {} {arrow} | {aiop_cell} | {floor_cell} | {} | {peer_cell} | {} | {} |",
            row.workload,
            unit.name(),
            vs(floor),
            vs(peer),
            every.join(" · ")
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Format, parse};

    fn samples(lines: &[(&str, Format, &str)]) -> Samples {
        let mut s = Samples::default();
        for (system, format, line) in lines {
            s.add(system, &parse(*format, line).expect("a record"));
        }
        s
    }

    #[test]
    fn medians_over_rounds_and_cost_ratios_point_the_same_way() {
        let s = samples(&[
            ("aiop", Format::Aiop, r#"{"name":"q","value":1.0}"#),
            ("aiop", Format::Aiop, r#"{"name":"q","value":9.0}"#),
            ("aiop", Format::Aiop, r#"{"name":"q","value":2.0}"#),
        ]);
        let src = Source {
            system: "aiop",
            id: "q",
            field: "value",
            scale: 1e3,
            label: "aiop",
        };
        assert_eq!(s.median(&src), Some(2000.0));
        assert_eq!(s.range(&src), Some((1000.0, 9000.0)));
        // Half the time, or twice the rate: both are a cost of one half.
        assert_eq!(cost_ratio(Unit::Us, 1.0, 2.0), 0.5);
        assert_eq!(cost_ratio(Unit::PerSec, 2e6, 1e6), 0.5);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(ratio_text(1.254), "1.25×");
        assert_eq!(ratio_text(0.0025), "1/400");
        assert_eq!(ratio_text(0.0), "0");
        assert_eq!(ratio_text(f64::INFINITY), "–");
    }

    #[test]
    fn the_table_picks_the_best_floor_and_peer_and_marks_what_is_missing() {
        let rows = [Row {
            workload: "ping-pong",
            unit: Unit::Us,
            aiop: Source {
                system: "aiop",
                id: "p",
                field: "value",
                scale: 1.0,
                label: "aiop",
            },
            floors: &[
                Source {
                    system: "floor",
                    id: "slow",
                    field: "median_us",
                    scale: 1.0,
                    label: "slow floor",
                },
                Source {
                    system: "floor",
                    id: "fast",
                    field: "median_us",
                    scale: 1.0,
                    label: "fast floor",
                },
            ],
            peers: &[
                Source {
                    system: "peer",
                    id: "x",
                    field: "median_us",
                    scale: 1.0,
                    label: "peer x",
                },
                Source {
                    system: "python",
                    id: "absent",
                    field: "median_us",
                    scale: 1.0,
                    label: "not run",
                },
            ],
        }];
        let s = samples(&[
            ("aiop", Format::Aiop, r#"{"name":"p","value":0.5}"#),
            (
                "floor",
                Format::Peer,
                "RESULT case=slow kind=rtt median_us=14.0",
            ),
            (
                "floor",
                Format::Peer,
                "RESULT case=fast kind=rtt median_us=0.25",
            ),
            (
                "peer",
                Format::Peer,
                "RESULT case=x kind=rtt median_us=20.0",
            ),
        ]);
        let table = render(&rows, &s, 1);
        let line = table.lines().nth(2).expect("a row");
        assert_eq!(
            line,
            "| ping-pong | µs ↓ | **0.500** | 0.250 fast floor | 2.00× | 20.0 peer x | 1/40 \
             | peer x 20.0 · not run – |"
        );
    }
}
