//! Minimal SVG charts: lines (a throughput time series, a latency percentile spectrum) and
//! labelled dots (a tuning sweep), with axes, ticks and a legend, and no dependency.

use std::fmt::Write as _;

/// One line of a chart.
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Points (x, y) in data units.
    pub points: Vec<(f64, f64)>,
}

/// How the x axis maps data to the page.
#[derive(Clone, Copy)]
pub enum XAxis {
    /// Linear.
    Linear,
    /// Percentiles on a log(1 / (1 - p)) scale: 0, 90, 99, 99.9, ... evenly spaced.
    Percentile,
}

const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];
const W: f64 = 800.0;
const H: f64 = 420.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 60.0;

fn x_of(x: f64, axis: XAxis) -> f64 {
    match axis {
        XAxis::Linear => x,
        XAxis::Percentile => -(1.0 - (x / 100.0).min(0.999_999)).log10(),
    }
}

/// A shaded stretch of the x axis with a label (the warm-up before a measured window).
pub struct Band {
    /// Where it starts and ends, in data units.
    pub from: f64,
    /// See `from`.
    pub to: f64,
    /// Written inside it.
    pub label: String,
}

/// Renders a chart.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    axis: XAxis,
    series: &[Series],
) -> String {
    line_chart_with_band(title, x_label, y_label, axis, series, None)
}

/// Renders a chart with an optional shaded band on the x axis.
pub fn line_chart_with_band(
    title: &str,
    x_label: &str,
    y_label: &str,
    axis: XAxis,
    series: &[Series],
    band: Option<&Band>,
) -> String {
    let mut points: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .collect();
    if let Some(b) = band {
        points.extend([(b.from, 0.0), (b.to, 0.0)]);
    }
    let frame = Frame::fit(axis, &points);
    let mut svg = frame.axes(title, x_label, y_label);
    if let Some(b) = band {
        let (x0, x1) = (frame.px(b.from), frame.px(b.to));
        let _ = writeln!(
            svg,
            "<rect x=\"{x0:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{}\" fill=\"#eee\"/>",
            (x1 - x0).max(0.0),
            H - TOP - BOTTOM
        );
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" fill=\"#666\">{}</text>",
            (x0 + x1) / 2.0,
            H - BOTTOM - 8.0,
            escape(&b.label)
        );
    }
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", frame.px(x), frame.py(y)))
            .collect();
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        legend(&mut svg, i, color, &s.label);
    }
    svg.push_str("</svg>\n");
    svg
}

/// One labelled point of a scatter chart.
pub struct Dot {
    /// Label written beside the dot.
    pub label: String,
    /// Position in data units.
    pub x: f64,
    /// Position in data units.
    pub y: f64,
    /// Drawn larger and in the second colour (e.g. the best point).
    pub highlight: bool,
}

/// Renders labelled dots on linear axes, with an optional dashed vertical bound at `x_bound`.
pub fn scatter_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    dots: &[Dot],
    x_bound: Option<(f64, &str)>,
) -> String {
    let mut points: Vec<(f64, f64)> = dots.iter().map(|d| (d.x, d.y)).collect();
    points.push((0.0, 0.0));
    if let Some((b, _)) = x_bound {
        points.push((b, 0.0));
    }
    let frame = Frame::fit(XAxis::Linear, &points);
    let mut svg = frame.axes(title, x_label, y_label);
    if let Some((b, label)) = x_bound {
        let _ = writeln!(
            svg,
            "<line x1=\"{0:.1}\" y1=\"{TOP}\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"#d62728\" stroke-dasharray=\"6 4\"/>\n<text x=\"{2:.1}\" y=\"{3}\" fill=\"#d62728\">{4}</text>",
            frame.px(b),
            H - BOTTOM,
            frame.px(b) + 4.0,
            TOP + 12.0,
            escape(label)
        );
    }
    for d in dots {
        let (color, r) = if d.highlight {
            (COLORS[1], 7.0)
        } else {
            (COLORS[0], 4.0)
        };
        let _ = writeln!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{r}\" fill=\"{color}\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\">{}</text>",
            frame.px(d.x),
            frame.py(d.y),
            frame.px(d.x) + 8.0,
            frame.py(d.y) - 6.0,
            escape(&d.label)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The data-to-page mapping of one chart.
struct Frame {
    axis: XAxis,
    x_min: f64,
    x_max: f64,
    y_max: f64,
}

impl Frame {
    fn fit(axis: XAxis, points: &[(f64, f64)]) -> Frame {
        let (x_min, x_max) = points
            .iter()
            .map(|p| x_of(p.0, axis))
            .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
        let (x_min, x_max) = if x_min >= x_max {
            (0.0, 1.0)
        } else {
            (x_min, x_max)
        };
        let y_max = points.iter().map(|p| p.1).fold(0.0f64, f64::max) * 1.05;
        let y_max = if y_max <= 0.0 { 1.0 } else { y_max };
        // The top of the y axis is the first round tick at or above the data.
        let step = nice_step(y_max);
        let y_max = (y_max / step).ceil() * step;
        Frame {
            axis,
            x_min,
            x_max,
            y_max,
        }
    }

    fn px(&self, x: f64) -> f64 {
        LEFT + (x_of(x, self.axis) - self.x_min) / (self.x_max - self.x_min) * (W - LEFT - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        H - BOTTOM - y / self.y_max * (H - TOP - BOTTOM)
    }

    /// The page, title, axes, grid, ticks and axis labels.
    fn axes(&self, title: &str, x_label: &str, y_label: &str) -> String {
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
             <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
            W / 2.0,
            escape(title)
        );
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>",
            H - BOTTOM,
            W - RIGHT,
            H - BOTTOM
        );
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{}\" stroke=\"black\"/>",
            H - BOTTOM
        );
        let y_step = nice_step(self.y_max);
        let y_ticks = (self.y_max / y_step).round() as usize;
        for i in 0..=y_ticks {
            let y = y_step * i as f64;
            let _ = writeln!(
                svg,
                "<line x1=\"{LEFT}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#ddd\"/>",
                self.py(y),
                W - RIGHT
            );
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
                LEFT - 6.0,
                self.py(y) + 4.0,
                short(y)
            );
        }
        let x_ticks: Vec<f64> = match self.axis {
            XAxis::Linear => {
                let step = nice_step(self.x_max - self.x_min);
                let first = (self.x_min / step).ceil() as i64;
                let last = (self.x_max / step + 1e-9).floor() as i64;
                (first..=last).map(|i| i as f64 * step).collect()
            }
            XAxis::Percentile => [0.0, 90.0, 99.0, 99.9, 99.99, 99.999]
                .into_iter()
                .filter(|&p| x_of(p, self.axis) <= self.x_max + 1e-9)
                .collect(),
        };
        for x in x_ticks {
            let label = match self.axis {
                XAxis::Linear => short(x),
                XAxis::Percentile => format!("{x}%"),
            };
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
                self.px(x),
                H - BOTTOM + 18.0
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            W / 2.0,
            H - 15.0,
            escape(x_label)
        );
        let _ = writeln!(
            svg,
            "<text x=\"18\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {0})\">{1}</text>",
            H / 2.0,
            escape(y_label)
        );
        svg
    }
}

fn legend(svg: &mut String, i: usize, color: &str, label: &str) {
    let ly = TOP + 16.0 * i as f64;
    let _ = writeln!(
        svg,
        "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"3\" fill=\"{color}\"/>",
        LEFT + 10.0,
        ly
    );
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\">{}</text>",
        LEFT + 28.0,
        ly + 5.0,
        escape(label)
    );
}

/// A round step (1, 2 or 5 times a power of ten) that cuts `range` into about five parts.
fn nice_step(range: f64) -> f64 {
    if range <= 0.0 || !range.is_finite() {
        return 1.0;
    }
    let raw = range / 5.0;
    let power = 10f64.powf(raw.log10().floor());

    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * power)
}

/// A tick label: round values written without needless decimals (70k, 2.5k, 0.2).
fn short(v: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if v.abs() >= 1e6 {
        format!("{}M", trim(format!("{:.2}", v / 1e6)))
    } else if v.abs() >= 1e3 {
        format!("{}k", trim(format!("{:.2}", v / 1e3)))
    } else {
        trim(format!("{v:.3}"))
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_labels_are_round() {
        assert_eq!(nice_step(67_300.0), 20_000.0);
        assert_eq!(nice_step(2.8), 1.0);
        assert_eq!(nice_step(2.4), 0.5);
        assert_eq!(nice_step(10.0), 2.0);
        assert_eq!(short(70_000.0), "70k");
        assert_eq!(short(2_500.0), "2.5k");
        assert_eq!(short(0.5), "0.5");
        assert_eq!(short(12.0), "12");
        assert_eq!(short(1_200_000.0), "1.2M");
    }

    #[test]
    fn the_band_is_drawn_and_ticks_are_round() {
        let series = [Series {
            label: "a".into(),
            points: vec![(1.0, 67_300.0), (5.0, 60_000.0)],
        }];
        let band = Band {
            from: -2.0,
            to: 0.0,
            label: "warm-up".into(),
        };
        let svg = line_chart_with_band("t", "x", "y", XAxis::Linear, &series, Some(&band));
        assert!(svg.contains(">warm-up</text>"), "{svg}");
        assert!(
            svg.contains(">80k</text>") && !svg.contains("67.3k"),
            "{svg}"
        );
        assert!(
            svg.contains(">-2</text>") && svg.contains(">0</text>"),
            "{svg}"
        );
    }
}
