//! Charts drawn on the server as SVG: horizontal bars (funnels, rankings) and lines (trends).
//! Each chart has a title and a description for screen readers, a `<title>` on every mark (the
//! value on hover), and scales to its container; the page shows the same figures in a table.

use std::fmt::Write;

/// Escapes text for SVG/XML content and attributes.
fn esc(s: &str) -> String {
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

pub struct BarItem {
    pub label: String,
    pub value: f64,
    /// The value as shown (e.g. "42 · 58 %").
    pub shown: String,
}

fn open(out: &mut String, id: &str, width: u32, height: u32, title: &str, desc: &str) {
    let _ = write!(
        out,
        r#"<svg class="chart" id="{id}" viewBox="0 0 {width} {height}" width="100%" role="img" aria-labelledby="{id}-t {id}-d" preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg"><title id="{id}-t">{}</title><desc id="{id}-d">{}</desc>"#,
        esc(title),
        esc(desc)
    );
}

/// Horizontal bars, one per item, longest = full width; `centered` draws a funnel.
pub fn bars(id: &str, title: &str, desc: &str, items: &[BarItem], centered: bool) -> String {
    let (width, label_w, row, gap) = (720.0, 200.0, 26.0, 8.0);
    let height = (items.len().max(1) as f64) * (row + gap) + gap;
    let max = items.iter().map(|i| i.value).fold(0.0_f64, f64::max);
    let mut out = String::new();
    open(&mut out, id, width as u32, height as u32, title, desc);
    let span = width - label_w - 120.0;
    for (n, item) in items.iter().enumerate() {
        let y = gap + (n as f64) * (row + gap);
        let w = if max > 0.0 {
            (item.value / max * span).max(1.0)
        } else {
            1.0
        };
        let x = if centered {
            label_w + (span - w) / 2.0
        } else {
            label_w
        };
        let _ = write!(
            out,
            r#"<g class="bar"><title>{label}: {shown}</title><text x="{lx}" y="{ty}" text-anchor="end" class="label">{label}</text><rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{row}" rx="3"></rect><text x="{vx:.1}" y="{ty}" class="value">{shown}</text></g>"#,
            label = esc(&item.label),
            shown = esc(&item.shown),
            lx = label_w - 8.0,
            ty = y + row * 0.68,
            vx = label_w + span + 8.0,
        );
    }
    out.push_str("</svg>");
    out
}

pub struct Series {
    pub name: String,
    /// `a` or `b`: the colour class.
    pub class: &'static str,
    pub values: Vec<f64>,
}

/// Lines over labelled points (buckets), with a legend; each point shows its value on hover.
pub fn lines(id: &str, title: &str, desc: &str, labels: &[String], series: &[Series]) -> String {
    let (width, height, left, bottom, top) = (720.0, 260.0, 50.0, 40.0, 30.0);
    let plot_w = width - left - 20.0;
    let plot_h = height - bottom - top;
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let n = labels.len().max(1);
    let x_of = |i: usize| {
        if n == 1 {
            left + plot_w / 2.0
        } else {
            left + plot_w * (i as f64) / ((n - 1) as f64)
        }
    };
    let y_of = |v: f64| top + plot_h - v / max * plot_h;
    let mut out = String::new();
    open(&mut out, id, width as u32, height as u32, title, desc);
    // Axes and the top value.
    let _ = write!(
        out,
        r#"<g class="axis"><line x1="{left}" y1="{top}" x2="{left}" y2="{b}"></line><line x1="{left}" y1="{b}" x2="{r}" y2="{b}"></line><text x="{tx}" y="{ty}" text-anchor="end">{max}</text><text x="{tx}" y="{b}" text-anchor="end">0</text></g>"#,
        b = top + plot_h,
        r = left + plot_w,
        tx = left - 6.0,
        ty = top + 4.0,
        max = max.round(),
    );
    // At most ~12 x labels.
    let step = n.div_ceil(12).max(1);
    for (i, l) in labels.iter().enumerate().filter(|(i, _)| i % step == 0) {
        let _ = write!(
            out,
            r#"<text class="tick" x="{x:.1}" y="{y}" text-anchor="middle">{}</text>"#,
            esc(l),
            x = x_of(i),
            y = top + plot_h + 18.0,
        );
    }
    for (k, s) in series.iter().enumerate() {
        let points: Vec<String> = s
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x_of(i), y_of(*v)))
            .collect();
        let _ = write!(
            out,
            r#"<g class="series {}"><polyline fill="none" points="{}"></polyline>"#,
            s.class,
            points.join(" ")
        );
        for (i, v) in s.values.iter().enumerate() {
            let _ = write!(
                out,
                r#"<circle cx="{:.1}" cy="{:.1}" r="4"><title>{} · {}: {}</title></circle>"#,
                x_of(i),
                y_of(*v),
                esc(&s.name),
                esc(labels.get(i).map(String::as_str).unwrap_or("")),
                v
            );
        }
        let _ = write!(
            out,
            r#"<rect x="{lx}" y="6" width="12" height="12"></rect><text x="{tx}" y="16">{}</text></g>"#,
            esc(&s.name),
            lx = left + (k as f64) * 160.0,
            tx = left + (k as f64) * 160.0 + 18.0,
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_escape_labels_and_give_every_mark_a_title() {
        let svg = bars(
            "f",
            "Funnel <Q1>",
            "Deals per stage",
            &[
                BarItem {
                    label: "Offer & \"terms\"".into(),
                    value: 10.0,
                    shown: "10".into(),
                },
                BarItem {
                    label: "Won".into(),
                    value: 0.0,
                    shown: "0".into(),
                },
            ],
            true,
        );
        assert!(svg.contains("Funnel &lt;Q1&gt;"));
        assert!(svg.contains("Offer &amp; &quot;terms&quot;: 10"));
        assert!(!svg.contains("<Q1>"));
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains(r#"role="img""#));
        let l = lines(
            "t",
            "Trend",
            "Created and won",
            &["2026-01".into(), "2026-02".into()],
            &[Series {
                name: "Created".into(),
                class: "a",
                values: vec![3.0, 5.0],
            }],
        );
        assert_eq!(l.matches("<circle").count(), 2);
        assert!(l.contains("Created · 2026-02: 5"));
    }
}
