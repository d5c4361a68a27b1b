//! The SVG charts: throughput and CPU per GB against file size, per number
//! of connections and client read mode, and latency percentiles per
//! scenario; every title names the client mode.
//!
//! Drawn in memory with plotters' SVG backend ([`SVGBackend::with_string`]).
//! Without plotters' `ttf` feature text is laid out with a crude built-in
//! estimate and written as SVG `<text>` elements, so no font files are
//! needed to draw, only to view. Logarithmic axes are plotters' own
//! ([`IntoLogRange::log_scale`]); the file-size axis has its ticks exactly
//! at the sizes measured ([`BindKeyPoints::with_key_points`]).

use std::error::Error;

use plotters::coord::Shift;
use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::numbers::fmt_trim;
use crate::model::{ClientRead, Scenario, Spread, Summary};
use crate::units::human_size;

/// What one chart shows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum ChartKind {
    Throughput {
        conns: usize,
        client: ClientRead,
    },
    Cpu {
        conns: usize,
        client: ClientRead,
    },
    Latency {
        size: u64,
        conns: usize,
        client: ClientRead,
    },
}

/// A chart [`super::write_all`] writes, and its file name.
pub(super) struct Chart {
    pub file: String,
    pub kind: ChartKind,
}

impl Chart {
    /// The SVG of this chart.
    pub fn draw(&self, summaries: &[Summary]) -> String {
        match self.kind {
            ChartKind::Throughput { conns, client } => svg_throughput(summaries, conns, client),
            ChartKind::Cpu { conns, client } => svg_cpu(summaries, conns, client),
            ChartKind::Latency {
                size,
                conns,
                client,
            } => svg_latency(summaries, size, conns, client),
        }
    }
}

/// The charts `write_all` draws for these summaries.
pub(super) fn charts(summaries: &[Summary]) -> Vec<Chart> {
    let mut scenarios: Vec<Scenario> = summaries.iter().map(|s| s.scenario).collect();
    scenarios.sort();
    scenarios.dedup();
    let mut pairs: Vec<(usize, ClientRead)> =
        scenarios.iter().map(|s| (s.conns, s.client_read)).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let mut out = Vec::new();
    for &(c, client) in &pairs {
        out.push(Chart {
            file: format!("throughput-c{c}-{client}.svg"),
            kind: ChartKind::Throughput { conns: c, client },
        });
        if summaries.iter().any(|s| {
            s.scenario.conns == c && s.scenario.client_read == client && s.cpu_s_per_gb.is_some()
        }) {
            out.push(Chart {
                file: format!("cpu-c{c}-{client}.svg"),
                kind: ChartKind::Cpu { conns: c, client },
            });
        }
    }
    for sc in &scenarios {
        out.push(Chart {
            file: format!(
                "latency-{}-c{}-{}.svg",
                human_size(sc.size).replace(' ', ""),
                sc.conns,
                sc.client_read
            ),
            kind: ChartKind::Latency {
                size: sc.size,
                conns: sc.conns,
                client: sc.client_read,
            },
        });
    }
    out
}

/// Tableau 10: distinct, readable on white.
pub(super) const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

pub(super) const FONT: &str = "sans-serif";

pub(super) type DrawResult = Result<(), Box<dyn Error>>;

/// The drawing area every chart is drawn on.
pub(super) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Draws with `f` into an in-memory SVG of `size` pixels; if drawing fails,
/// an SVG saying so.
pub(super) fn render(size: (u32, u32), f: impl FnOnce(&Area<'_>) -> DrawResult) -> String {
    let mut buf = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        let r = root
            .fill(&WHITE)
            .map_err(Box::<dyn Error>::from)
            .and_then(|()| f(&root));
        r.and_then(|()| root.present().map_err(Box::<dyn Error>::from))
    };
    match result {
        Ok(()) => buf,
        Err(e) => {
            let msg = e
                .to_string()
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            format!(
                "<svg width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" \
                 xmlns=\"http://www.w3.org/2000/svg\"><text x=\"10\" y=\"20\">\
                 cannot draw this chart: {msg}</text></svg>\n",
                size.0, size.1
            )
        }
    }
}

/// How a value axis is scaled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Scale {
    /// From zero to `hi`.
    Linear { hi: f64 },
    /// plotters' logarithmic axis from `lo` to `hi`.
    Log { lo: f64, hi: f64 },
}

impl Scale {
    /// A scale for `values`: logarithmic when they are all positive and
    /// span more than `log_from` times; linear ones start at zero.
    pub fn fit(values: &[f64], log_from: f64) -> Scale {
        let vals: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let min = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let max = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if vals.is_empty() {
            return Scale::Linear { hi: 1.0 };
        }
        if min > 0.0 && max / min > log_from {
            Scale::Log {
                lo: min / 1.3,
                hi: max * 1.3,
            }
        } else {
            let hi = max.max(0.0) * 1.08;
            Scale::Linear {
                hi: if hi > 0.0 { hi } else { 1.0 },
            }
        }
    }

    /// The lowest value on the axis, where bars start.
    pub fn bottom(&self) -> f64 {
        match *self {
            Scale::Linear { .. } => 0.0,
            Scale::Log { lo, .. } => lo,
        }
    }

    /// `what`, saying "log scale" when it is.
    pub fn describe(&self, what: &str) -> String {
        match self {
            Scale::Linear { .. } => what.to_string(),
            Scale::Log { .. } => match what.strip_suffix(')') {
                Some(open) => format!("{open}, log scale)"),
                None => format!("{what} (log scale)"),
            },
        }
    }
}

/// Calls `$draw` with the plotters coordinate of `$scale` (linear or log):
/// the two are different types, so the drawing code is generic over it.
macro_rules! with_scale {
    ($scale:expr, |$y:ident| $draw:expr) => {
        match $scale {
            Scale::Linear { hi } => {
                let $y = RangedCoordf64::from(0.0..hi);
                $draw
            }
            Scale::Log { lo, hi } => {
                let $y = LogCoord::from((lo..hi).log_scale());
                $draw
            }
        }
    };
}

/// What a value axis must be to draw on: f64 values plotters can label
/// (the labels are written by our own formatters).
pub(super) trait ValueAxis: Ranged<ValueType = f64> + ValueFormatter<f64> {}
impl<T: Ranged<ValueType = f64> + ValueFormatter<f64>> ValueAxis for T {}

/// The x axis of file sizes: logarithmic, ticks at the sizes measured
/// (every other one, or fewer, when there are many).
fn size_axis(sizes: &[u64]) -> (WithKeyPoints<LogCoord<f64>>, Vec<f64>) {
    let mut sizes: Vec<u64> = sizes.iter().copied().filter(|s| *s > 0).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let (min, max) = match (sizes.first(), sizes.last()) {
        (Some(a), Some(b)) => (*a as f64, *b as f64),
        _ => (1024.0, 1024.0 * 1024.0),
    };
    let pad = if max / min < 4.0 { 2.0 } else { 1.6 };
    let every = sizes.len().div_ceil(9).max(1);
    let ticks: Vec<f64> = sizes.iter().step_by(every).map(|s| *s as f64).collect();
    (
        ((min / pad)..(max * pad))
            .log_scale()
            .with_key_points(ticks.clone()),
        ticks,
    )
}

/// One point of a line: size, median, min, max, valid.
struct Point {
    size: u64,
    y: f64,
    lo: f64,
    hi: f64,
    valid: bool,
}

struct Line {
    name: String,
    points: Vec<Point>,
}

/// The targets in first-seen order.
fn targets_of(summaries: &[Summary]) -> Vec<&str> {
    let mut t: Vec<&str> = Vec::new();
    for s in summaries {
        if !t.contains(&s.target.as_str()) {
            t.push(&s.target);
        }
    }
    t
}

/// One line per target over the summaries with `conns` connections and
/// the `client` read mode, with `pick` choosing the figure (targets where it
/// is always `None` are left out).
fn lines(
    summaries: &[Summary],
    conns: usize,
    client: ClientRead,
    pick: impl Fn(&Summary) -> Option<Spread>,
) -> Vec<Line> {
    targets_of(summaries)
        .into_iter()
        .filter_map(|t| {
            let mut points: Vec<Point> = summaries
                .iter()
                .filter(|s| {
                    s.target == t && s.scenario.conns == conns && s.scenario.client_read == client
                })
                .filter_map(|s| {
                    pick(s).map(|v| Point {
                        size: s.scenario.size,
                        y: v.median,
                        lo: v.min,
                        hi: v.max,
                        valid: s.valid,
                    })
                })
                .collect();
            points.sort_by_key(|p| p.size);
            (!points.is_empty()).then(|| Line {
                name: t.to_string(),
                points,
            })
        })
        .collect()
}

/// MB/s against file size (log x axis) at `conns` connections with the
/// `client` read mode: one line with points per target, min–max whiskers,
/// a legend.
pub fn svg_throughput(summaries: &[Summary], conns: usize, client: ClientRead) -> String {
    let lines = lines(summaries, conns, client, |s| Some(s.mb_per_s));
    size_chart(
        &format!(
            "Throughput vs file size, {conns} connection{}, client: {}",
            plural(conns),
            client.describe()
        ),
        "MB/s (median, whiskers min–max)",
        &lines,
        SeriesLabelPosition::UpperLeft,
    )
}

/// Server CPU seconds per GB against file size (log x axis) at `conns`
/// connections with the `client` read mode, one line per target; targets
/// without CPU data are left out.
pub fn svg_cpu(summaries: &[Summary], conns: usize, client: ClientRead) -> String {
    let lines = lines(summaries, conns, client, |s| s.cpu_s_per_gb);
    size_chart(
        &format!(
            "Server CPU per GB sent, {conns} connection{}, client: {} (lower is better)",
            plural(conns),
            client.describe()
        ),
        "CPU s/GB (median, whiskers min–max)",
        &lines,
        SeriesLabelPosition::UpperRight,
    )
}

/// `"s"` unless `n` is 1.
pub(super) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn size_chart(title: &str, y_desc: &str, lines: &[Line], legend: SeriesLabelPosition) -> String {
    let ys: Vec<f64> = lines
        .iter()
        .flat_map(|l| l.points.iter().flat_map(|p| [p.y, p.lo, p.hi]))
        .collect();
    let scale = Scale::fit(&ys, 20.0);
    let y_desc = scale.describe(y_desc);
    render((900, 560), |root| {
        with_scale!(scale, |y| draw_size_chart(
            root, title, &y_desc, lines, legend, y
        ))
    })
}

fn draw_size_chart<Y: ValueAxis>(
    root: &Area<'_>,
    title: &str,
    y_desc: &str,
    lines: &[Line],
    legend: SeriesLabelPosition,
    y: Y,
) -> DrawResult {
    let sizes: Vec<u64> = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.size))
        .collect();
    let (x, _) = size_axis(&sizes);
    let any_invalid = lines.iter().any(|l| l.points.iter().any(|p| !p.valid));
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x, y)?;
    let x_fmt = |v: &f64| human_size(v.round() as u64);
    let y_fmt = |v: &f64| fmt_trim(*v);
    chart
        .configure_mesh()
        .x_desc("file size (log scale)")
        .y_desc(y_desc)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(TRANSPARENT)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()?;
    if lines.is_empty() {
        root.draw(&Text::new(
            "no data",
            (420, 280),
            (FONT, 18).into_font().color(&BLACK),
        ))?;
        return Ok(());
    }
    for (i, line) in lines.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let pts: Vec<(f64, f64)> = line.points.iter().map(|p| (p.size as f64, p.y)).collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))?
            .label(line.name.as_str())
            .legend(move |(lx, ly)| {
                EmptyElement::at((lx, ly))
                    + PathElement::new(vec![(0, 0), (22, 0)], color.stroke_width(2))
                    + Circle::new((11, 0), 4, color.filled())
            });
        chart.draw_series(line.points.iter().filter(|p| p.hi > p.lo).map(|p| {
            let px = p.size as f64;
            PathElement::new(vec![(px, p.lo), (px, p.hi)], color.stroke_width(1))
        }))?;
        chart.draw_series(
            line.points
                .iter()
                .filter(|p| p.valid)
                .map(|p| Circle::new((p.size as f64, p.y), 4, color.filled())),
        )?;
        chart.draw_series(
            line.points
                .iter()
                .filter(|p| !p.valid)
                .map(|p| Cross::new((p.size as f64, p.y), 6, color.stroke_width(3))),
        )?;
    }
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 14))
        .margin(12)
        .legend_area_size(30)
        .draw()?;
    if any_invalid {
        root.draw(&Text::new(
            "× = invalid run (errors)",
            (700, 540),
            (FONT, 13).into_font().color(&RED),
        ))?;
    }
    Ok(())
}

/// Latency percentiles (p50, p99, p99.9 in ms, median over rounds) of each
/// target for one scenario, as grouped bars on a logarithmic axis when they
/// span more than 10×.
pub fn svg_latency(summaries: &[Summary], size: u64, conns: usize, client: ClientRead) -> String {
    let rows: Vec<&Summary> = summaries
        .iter()
        .filter(|s| {
            s.scenario.size == size && s.scenario.conns == conns && s.scenario.client_read == client
        })
        .collect();
    let ys: Vec<f64> = rows.iter().flat_map(|s| latency_ms(s)).collect();
    let scale = Scale::fit(&ys, 10.0);
    let width = (140 * rows.len().max(1) as u32 + 160).max(720);
    let title = format!(
        "Latency, {} × {conns} connection{}, client: {}",
        human_size(size),
        plural(conns),
        client.describe()
    );
    render((width, 520), |root| {
        with_scale!(scale, |y| draw_latency(
            root, &title, &rows, scale, width, y
        ))
    })
}

/// One target's width on the latency chart's x axis.
const UNIT: i32 = 1000;

/// p50, p99 and p99.9 in ms.
fn latency_ms(s: &Summary) -> [f64; 3] {
    [s.p50_us / 1e3, s.p99_us / 1e3, s.p999_us / 1e3]
}

fn draw_latency<Y: ValueAxis>(
    root: &Area<'_>,
    title: &str,
    rows: &[&Summary],
    scale: Scale,
    width: u32,
    y: Y,
) -> DrawResult {
    let names: Vec<String> = rows
        .iter()
        .map(|s| {
            if s.valid {
                s.target.clone()
            } else {
                format!("{} (invalid)", s.target)
            }
        })
        .collect();
    // The x axis counts thousandths of a target: target i is centred at
    // i * 1000, with a tick (its name) there and its bars around it.
    let n = rows.len().max(1) as i32;
    let ticks: Vec<i32> = (0..n).map(|i| i * UNIT).collect();
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d((-UNIT / 2..n * UNIT - UNIT / 2).with_key_points(ticks), y)?;
    let x_fmt = |v: &i32| {
        usize::try_from(v / UNIT)
            .ok()
            .filter(|_| v % UNIT == 0)
            .and_then(|i| names.get(i))
            .cloned()
            .unwrap_or_default()
    };
    let y_fmt = |v: &f64| fmt_trim(*v);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("target")
        .y_desc(scale.describe("latency, ms (median of rounds)"))
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .bold_line_style(BLACK.mix(0.12))
        .light_line_style(TRANSPARENT)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .draw()?;
    if rows.is_empty() {
        root.draw(&Text::new(
            "no data",
            (width as i32 / 2 - 30, 260),
            (FONT, 18).into_font().color(&BLACK),
        ))?;
        return Ok(());
    }
    let labels = ["p50", "p99", "p99.9"];
    let colors = [PALETTE[0], PALETTE[1], PALETTE[3]];
    let bar = UNIT * 26 / 100;
    let bottom = scale.bottom();
    for (j, (label, color)) in labels.iter().zip(colors).enumerate() {
        chart
            .draw_series(rows.iter().enumerate().map(|(i, s)| {
                let x0 = i as i32 * UNIT - 3 * bar / 2 + j as i32 * bar;
                let top = latency_ms(s)[j].max(bottom);
                Rectangle::new([(x0, bottom), (x0 + bar * 92 / 100, top)], color.filled())
            }))?
            .label(*label)
            .legend(move |(lx, ly)| {
                Rectangle::new([(lx, ly - 6), (lx + 14, ly + 6)], color.filled())
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FONT, 14))
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_are_chosen_by_span() {
        assert!(
            matches!(Scale::fit(&[10.0, 50.0, 90.0], 20.0), Scale::Linear { hi } if hi >= 90.0)
        );
        let log = Scale::fit(&[0.05, 3.0, 40.0], 20.0);
        assert!(
            matches!(log, Scale::Log { lo, hi } if lo < 0.05 && hi > 40.0),
            "{log:?}"
        );
        assert_eq!(log.describe("MB/s (median)"), "MB/s (median, log scale)");
        assert!(
            matches!(Scale::fit(&[0.0, 5.0], 20.0), Scale::Linear { .. }),
            "zero cannot go on a log axis"
        );
        assert_eq!(Scale::fit(&[], 20.0), Scale::Linear { hi: 1.0 });
    }

    #[test]
    fn the_size_axis_ticks_at_the_sizes_measured() {
        let (_, ticks) = size_axis(&[65536, 4096, 1 << 20, 4096]);
        assert_eq!(ticks, vec![4096.0, 65536.0, 1048576.0]);
        let many: Vec<u64> = (0..20).map(|i| 1024u64 << i).collect();
        let (_, ticks) = size_axis(&many);
        assert!(ticks.len() <= 10, "{ticks:?}");
    }
}
