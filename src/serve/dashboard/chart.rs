//! Line charts as SVG, drawn on the server: a title and a description for screen readers, axes
//! with a few ticks, one line a series (at most `MAX_POINTS` drawn, evenly taken), an optional
//! horizontal rule (a threshold) and markers (anomalies).

use super::escape;

const W: f64 = 640.0;
const H: f64 = 220.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 40.0;
const MAX_POINTS: usize = 400;

/// One line.
pub struct Series<'a> {
    pub label: &'a str,
    /// A colour with at least 4.5:1 contrast on white.
    pub color: &'a str,
    pub points: Vec<(f64, f64)>,
}

/// What the chart shows.
pub struct Chart<'a> {
    /// Unique on the page (the SVG's title and description are referred to by it).
    pub id: &'a str,
    pub title: &'a str,
    /// The chart in words, for a screen reader.
    pub description: String,
    pub x_label: &'a str,
    pub series: Vec<Series<'a>>,
    /// A horizontal line at a value, and its label.
    pub rule: Option<(f64, &'a str)>,
    /// Points to mark, with their labels.
    pub marks: Vec<(f64, f64, String)>,
    /// How a tick of the x axis reads.
    pub x_tick: &'a dyn Fn(f64) -> String,
}

fn tick(v: f64) -> String {
    if v.abs() >= 10_000.0 {
        format!("{:.0}k", v / 1_000.0)
    } else if v.fract().abs() < 1e-9 || v.abs() >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Every `n`-th point so that at most `MAX_POINTS` remain, the last one always kept.
fn thin(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= MAX_POINTS {
        return points.to_vec();
    }
    let step = points.len().div_ceil(MAX_POINTS);
    let mut out: Vec<_> = points.iter().step_by(step).copied().collect();
    if let Some(last) = points.last()
        && out.last() != Some(last)
    {
        out.push(*last);
    }
    out
}

/// The chart as an `<svg>` element (a `<figure>` with its caption and legend).
pub fn render(c: &Chart) -> String {
    let mut xs = (f64::INFINITY, f64::NEG_INFINITY);
    let mut ys = (f64::INFINITY, f64::NEG_INFINITY);
    let marks = c.marks.iter().map(|(x, y, _)| (*x, *y));
    for (x, y) in c.series.iter().flat_map(|s| s.points.iter().copied()).chain(marks) {
        if x.is_finite() && y.is_finite() {
            xs = (xs.0.min(x), xs.1.max(x));
            ys = (ys.0.min(y), ys.1.max(y));
        }
    }
    if let Some((r, _)) = c.rule {
        ys = (ys.0.min(r), ys.1.max(r));
    }
    let id = escape(c.id);
    let caption = format!("<figcaption id=\"{id}-title\">{}</figcaption>", escape(c.title));
    if !xs.0.is_finite() {
        return format!("<figure>{caption}<p>No data yet.</p></figure>");
    }
    if xs.1 - xs.0 < 1e-9 {
        xs = (xs.0 - 1.0, xs.1 + 1.0);
    }
    if ys.1 - ys.0 < 1e-9 {
        ys = (ys.0 - 1.0, ys.1 + 1.0);
    }
    let pad = (ys.1 - ys.0) * 0.05;
    ys = (ys.0 - pad, ys.1 + pad);
    let px = |x: f64| LEFT + (x - xs.0) / (xs.1 - xs.0) * (W - LEFT - RIGHT);
    let py = |y: f64| TOP + (ys.1 - y) / (ys.1 - ys.0) * (H - TOP - BOTTOM);
    let mut svg = format!(
        "<svg viewBox=\"0 0 {W} {H}\" width=\"100%\" role=\"img\" aria-labelledby=\"{id}-title {id}-desc\" \
         style=\"max-width:{W}px;height:auto\" xmlns=\"http://www.w3.org/2000/svg\"><desc id=\"{id}-desc\">{}</desc>",
        escape(&c.description)
    );
    // Axes and ticks.
    svg.push_str(&format!(
        "<g stroke=\"#555\" stroke-width=\"1\"><line x1=\"{LEFT}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/><line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{}\"/></g>",
        H - BOTTOM,
        W - RIGHT,
        H - BOTTOM,
        H - BOTTOM
    ));
    svg.push_str("<g font-size=\"11\" fill=\"#333\">");
    for i in 0..=4 {
        let y = ys.0 + (ys.1 - ys.0) * f64::from(i) / 4.0;
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text><line x1=\"{LEFT}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#e4e4e4\"/>",
            LEFT - 6.0,
            py(y) + 4.0,
            tick(y),
            W - RIGHT,
            py(y),
            py(y)
        ));
        let x = xs.0 + (xs.1 - xs.0) * f64::from(i) / 4.0;
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            px(x),
            H - BOTTOM + 16.0,
            escape(&(c.x_tick)(x))
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text></g>",
        LEFT + (W - LEFT - RIGHT) / 2.0,
        H - 4.0,
        escape(c.x_label)
    ));
    if let Some((r, label)) = c.rule {
        svg.push_str(&format!(
            "<line x1=\"{LEFT}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#a11\" stroke-dasharray=\"6 4\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\" fill=\"#a11\">{}</text>",
            W - RIGHT,
            py(r),
            py(r),
            W - RIGHT - 4.0,
            py(r) - 4.0,
            escape(label)
        ));
    }
    for s in &c.series {
        let pts: Vec<String> = thin(&s.points)
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
            escape(s.color),
            pts.join(" ")
        ));
    }
    for (x, y, label) in &c.marks {
        svg.push_str(&format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"5\" fill=\"none\" stroke=\"#a11\" stroke-width=\"2\"><title>{}</title></circle>",
            px(*x),
            py(*y),
            escape(label)
        ));
    }
    svg.push_str("</svg>");
    let legend: Vec<String> = c
        .series
        .iter()
        .map(|s| {
            format!(
                "<li><span style=\"color:{}\" aria-hidden=\"true\">━</span> {}</li>",
                escape(s.color),
                escape(s.label)
            )
        })
        .collect();
    format!("<figure>{caption}{svg}<ul class=\"legend\">{}</ul></figure>", legend.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_draws_every_series_within_its_frame_with_its_rule_and_words() {
        let c = Chart {
            id: "x",
            title: "Likelihood ratio",
            description: "rises to 25".into(),
            x_label: "views",
            series: vec![Series {
                label: "LR <",
                color: "#1f4e9c",
                points: (0..1_000).map(|i| (f64::from(i), f64::from(i) / 40.0)).collect(),
            }],
            rule: Some((20.0, "stop")),
            marks: vec![(500.0, 12.5, "spike".into())],
            x_tick: &|x| format!("{x:.0}"),
        };
        let svg = render(&c);
        assert!(
            svg.contains("aria-labelledby=\"x-title x-desc\"")
                && svg.contains("<desc id=\"x-desc\">rises to 25</desc>")
        );
        assert!(svg.contains("LR &lt;"), "labels are escaped");
        let points = svg.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        let pts: Vec<(f64, f64)> = points
            .split(' ')
            .map(|p| {
                let (x, y) = p.split_once(',').unwrap();
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect();
        assert!(pts.len() <= MAX_POINTS + 1 && pts.len() > 100);
        assert!(pts.iter().all(|(x, y)| (LEFT..=W - RIGHT).contains(x) && (TOP..=H - BOTTOM).contains(y)));
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 > w[1].1), "left to right, rising");
        assert_eq!(pts.last().unwrap().0, W - RIGHT, "the last point is drawn");
        assert!(svg.contains("stroke-dasharray") && svg.contains("<title>spike</title>"));
        let empty = render(&Chart { series: vec![], marks: vec![], rule: None, ..c });
        assert!(empty.contains("No data yet") && !empty.contains("<svg"));
    }
}
