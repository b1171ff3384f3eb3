//! Charts as plain SVG, drawn on the server: no JavaScript, no CDN, nothing fetched. Each point
//! or bar carries a `<title>` with its label and value, which browsers show on hover (and a
//! long press on a phone); the chart is sized by its `viewBox`, so it scales to the page's width.
//!
//! Every piece of text is escaped here (labels can be channel names an outsider chose).
//!
//! May depend on: std only.

use std::fmt::Write;

/// The drawing's own coordinates; the page scales them.
pub const WIDTH: f64 = 640.0;
pub const HEIGHT: f64 = 240.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 14.0;
const BOTTOM: f64 = 30.0;

/// How values are shown in ticks and titles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    /// Values are fen; shown as yuan (`¥12.34`).
    Fen,
}

/// Lines through the points, or bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Line,
    Bar,
}

/// One named series; every series of a chart has the same labels, in the same order.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

#[derive(Debug, Clone)]
pub struct Chart {
    /// Read by screen readers (`aria-label`).
    pub title: String,
    pub kind: Kind,
    pub unit: Unit,
    /// One per point (e.g. the day `2026-12-01`, or a channel).
    pub labels: Vec<String>,
    pub series: Vec<Series>,
}

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn show(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Count => {
            if v.fract() == 0.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        }
        Unit::Fen => format!("¥{:.2}", v / 100.0),
    }
}

/// An axis label: money in whole yuan when it is whole (`¥1500`), to fit the margin.
fn tick(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Fen if (v / 100.0).fract() == 0.0 => format!("¥{:.0}", v / 100.0),
        _ => show(v, unit),
    }
}

/// A round step (1, 2 or 5 times a power of ten) that splits `span` into at most 4 parts, and
/// is at least `min` (a whole follower, a whole yuan).
fn nice_step(span: f64, min: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return min;
    }
    let raw = span / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    // Counts are whole: no tick at 0.5 followers (nor at ¥0.01).
    step.max(min)
}

/// The value range the axis shows: always includes 0, ends on round ticks.
fn bounds(series: &[Series], unit: Unit) -> (f64, f64, f64) {
    let vals = series.iter().flat_map(|s| s.values.iter().copied());
    let (lo, hi) = vals
        .filter(|v| v.is_finite())
        .fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let min = match unit {
        Unit::Count => 1.0,
        Unit::Fen => 100.0,
    };
    let step = nice_step(hi - lo, min);
    let lo = (lo / step).floor() * step;
    let mut hi = (hi / step).ceil() * step;
    if hi <= lo {
        hi = lo + step;
    }
    (lo, hi, step)
}

/// Maps values and indexes to the drawing's coordinates.
struct Frame {
    lo: f64,
    hi: f64,
    n: usize,
    kind: Kind,
}

impl Frame {
    fn plot_w() -> f64 {
        WIDTH - LEFT - RIGHT
    }
    fn plot_h() -> f64 {
        HEIGHT - TOP - BOTTOM
    }
    fn y(&self, v: f64) -> f64 {
        TOP + Self::plot_h() * (self.hi - v) / (self.hi - self.lo)
    }
    /// The centre of point `i`.
    fn x(&self, i: usize) -> f64 {
        match self.kind {
            Kind::Bar => LEFT + Self::plot_w() * (i as f64 + 0.5) / self.n as f64,
            Kind::Line if self.n <= 1 => LEFT + Self::plot_w() / 2.0,
            Kind::Line => LEFT + Self::plot_w() * i as f64 / (self.n - 1) as f64,
        }
    }
}

/// The SVG of `chart`, ready to be placed in a page as is.
pub fn render(chart: &Chart) -> String {
    let mut s = String::with_capacity(4096);
    let _ = write!(
        s,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">",
        escape(&chart.title)
    );
    let n = chart.labels.len();
    let has_values = n > 0 && chart.series.iter().any(|se| !se.values.is_empty());
    if !has_values {
        let _ = write!(
            s,
            "<text class=\"empty\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">no data yet</text></svg>",
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
        return s;
    }
    let (lo, hi, step) = bounds(&chart.series, chart.unit);
    let f = Frame {
        lo,
        hi,
        n,
        kind: chart.kind,
    };
    // The value axis: a few labelled ticks with grid lines.
    let mut t = lo;
    while t <= hi + step / 2.0 {
        let y = f.y(t);
        let _ = write!(
            s,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\"/><text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            escape(&tick(t, chart.unit))
        );
        t += step;
    }
    // The label axis: the first, middle and last labels (all when few).
    let shown: Vec<usize> = if n <= 7 {
        (0..n).collect()
    } else {
        vec![0, n / 2, n - 1]
    };
    for i in shown {
        let anchor = if chart.kind == Kind::Line && n > 7 && i == 0 {
            "start"
        } else if chart.kind == Kind::Line && n > 7 && i == n - 1 {
            "end"
        } else {
            "middle"
        };
        let _ = write!(
            s,
            "<text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{}</text>",
            f.x(i),
            HEIGHT - 10.0,
            escape(&chart.labels[i])
        );
    }
    let _ = write!(
        s,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\"/>",
        f.y(0.0),
        WIDTH - RIGHT
    );
    let groups = chart.series.len().max(1) as f64;
    for (k, se) in chart.series.iter().enumerate() {
        let _ = write!(s, "<g class=\"series s{k}\">");
        let name = if chart.series.len() > 1 {
            format!("{} ", se.name)
        } else {
            String::new()
        };
        match chart.kind {
            Kind::Line => {
                let pts: Vec<String> = se
                    .values
                    .iter()
                    .enumerate()
                    .take(n)
                    .map(|(i, v)| format!("{:.1},{:.1}", f.x(i), f.y(*v)))
                    .collect();
                let _ = write!(s, "<polyline points=\"{}\"/>", pts.join(" "));
                for (i, v) in se.values.iter().enumerate().take(n) {
                    let _ = write!(
                        s,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\"><title>{}</title></circle>",
                        f.x(i),
                        f.y(*v),
                        escape(&format!(
                            "{}: {name}{}",
                            chart.labels[i],
                            show(*v, chart.unit)
                        ))
                    );
                }
            }
            Kind::Bar => {
                let band = Frame::plot_w() / n as f64;
                let w = band * 0.8 / groups;
                for (i, v) in se.values.iter().enumerate().take(n) {
                    let x = f.x(i) - band * 0.4 + w * k as f64;
                    let (y0, y1) = (f.y(0.0), f.y(*v));
                    let _ = write!(
                        s,
                        "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"{:.1}\"><title>{}</title></rect>",
                        y0.min(y1),
                        (y0 - y1).abs(),
                        escape(&format!("{}: {name}{}", chart.labels[i], show(*v, chart.unit)))
                    );
                }
            }
        }
        s.push_str("</g>");
    }
    if chart.series.len() > 1 {
        for (k, se) in chart.series.iter().enumerate() {
            let x = LEFT + 8.0 + 120.0 * k as f64;
            let _ = write!(
                s,
                "<g class=\"legend s{k}\"><rect x=\"{x:.1}\" y=\"2\" width=\"10\" height=\"10\"/><text x=\"{:.1}\" y=\"11\">{}</text></g>",
                x + 14.0,
                escape(&se.name)
            );
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(kind: Kind, labels: &[&str], values: &[f64]) -> Chart {
        Chart {
            title: "follows".into(),
            kind,
            unit: Unit::Count,
            labels: labels.iter().map(|l| (*l).to_string()).collect(),
            series: vec![Series {
                name: "follows".into(),
                values: values.to_vec(),
            }],
        }
    }

    /// The numbers in `attr="…"` of every element named `tag`, in order.
    fn attrs(svg: &str, tag: &str, attr: &str) -> Vec<f64> {
        svg.split(&format!("<{tag} "))
            .skip(1)
            .filter_map(|el| {
                let el = format!(" {el}");
                let start = el
                    .find(&format!(" {attr}=\""))
                    .map(|i| i + attr.len() + 3)?;
                let el = &el[start..];
                el[..el.find('"')?].parse().ok()
            })
            .collect()
    }

    #[test]
    fn points_land_where_their_values_say() {
        let svg = render(&chart(Kind::Line, &["d1", "d2", "d3"], &[0.0, 2.0, 4.0]));
        let cx = attrs(&svg, "circle", "cx");
        let cy = attrs(&svg, "circle", "cy");
        // Evenly across the plot, first at the left edge, last at the right.
        assert_eq!(
            cx,
            vec![LEFT, LEFT + (WIDTH - LEFT - RIGHT) / 2.0, WIDTH - RIGHT]
        );
        // 0 at the bottom of the plot, 4 (the top tick) at its top, 2 half way.
        let bottom = HEIGHT - BOTTOM;
        assert_eq!(cy, vec![bottom, (bottom + TOP) / 2.0, TOP]);
        assert!(svg.contains("<title>d2: 2</title>"), "{svg}");
    }

    #[test]
    fn bars_rise_from_zero_and_negative_ones_hang_below_it() {
        let svg = render(&chart(Kind::Bar, &["a", "b"], &[4.0, -4.0]));
        let y = attrs(&svg, "rect", "y");
        let h = attrs(&svg, "rect", "height");
        let zero = TOP + (HEIGHT - TOP - BOTTOM) / 2.0;
        assert_eq!(y, vec![TOP, zero]);
        assert_eq!(h[0], h[1]);
        assert!((h[0] - (zero - TOP)).abs() < 0.11, "{h:?}");
        assert!(svg.contains("<title>b: -4</title>"), "{svg}");
    }

    #[test]
    fn money_is_shown_in_yuan() {
        let mut c = chart(Kind::Bar, &["2026-12-01"], &[1234.0]);
        c.unit = Unit::Fen;
        let svg = render(&c);
        assert!(svg.contains("<title>2026-12-01: ¥12.34</title>"), "{svg}");
        assert!(svg.contains(">¥10</text>"), "whole yuan on the axis: {svg}");
    }

    #[test]
    fn every_text_is_escaped() {
        let mut c = chart(
            Kind::Bar,
            &["<script>alert(1)</script>", "a&b\"'"],
            &[1.0, 2.0],
        );
        c.title = "x\" onload=\"alert(1)".into();
        c.series.push(Series {
            name: "<b>".into(),
            values: vec![1.0, 1.0],
        });
        let svg = render(&c);
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(!svg.contains("<b>"), "{svg}");
        assert!(!svg.contains("\" onload"), "{svg}");
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(svg.contains("a&amp;b&quot;&#39;"));
    }

    #[test]
    fn an_empty_series_says_so_and_draws_nothing() {
        for c in [
            chart(Kind::Line, &[], &[]),
            Chart {
                series: vec![],
                ..chart(Kind::Bar, &["a"], &[])
            },
        ] {
            let svg = render(&c);
            assert!(svg.contains("no data yet"), "{svg}");
            assert!(!svg.contains("<circle") && !svg.contains("<rect"), "{svg}");
            assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        }
    }

    #[test]
    fn all_zero_values_still_have_an_axis() {
        let svg = render(&chart(Kind::Line, &["a", "b"], &[0.0, 0.0]));
        let cy = attrs(&svg, "circle", "cy");
        assert_eq!(cy, vec![HEIGHT - BOTTOM; 2]);
        assert!(svg.contains(">1</text>"), "a tick above zero: {svg}");
    }

    #[test]
    fn ticks_are_round_and_few() {
        assert_eq!(nice_step(100.0, 1.0), 50.0);
        assert_eq!(nice_step(7.0, 1.0), 2.0);
        assert_eq!(nice_step(3.0, 1.0), 1.0);
        assert_eq!(nice_step(12_345.0, 1.0), 5000.0);
        let (lo, hi, step) = bounds(
            &[Series {
                name: String::new(),
                values: vec![3.0, 97.0],
            }],
            Unit::Count,
        );
        assert_eq!((lo, hi, step), (0.0, 100.0, 50.0));
        let no_revenue = [Series {
            name: String::new(),
            values: vec![0.0, 0.0],
        }];
        assert_eq!(
            bounds(&no_revenue, Unit::Fen),
            (0.0, 100.0, 100.0),
            "¥1, not ¥0.01"
        );
    }
}
