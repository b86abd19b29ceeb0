//! The `--report` page: one self-contained HTML file (inline CSS and SVG, no scripts, nothing
//! fetched), comparing the policies on each scenario: the table, each policy's share of agent
//! time over the run per group, and each group's wait distribution.

use std::fmt::Write;

use super::{duration, percent};
use crate::lab::{LabReport, RunReport, ScenarioReport};

/// Group colours, repeating past eight groups.
const COLOURS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const WIDTH: f64 = 520.0;
const HEIGHT: f64 = 220.0;
const MARGIN: f64 = 44.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The whole page.
pub fn render(report: &LabReport) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Switchyard policy lab</title><style>\
         body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
         table{border-collapse:collapse;margin:1em 0;font-size:14px}\
         th,td{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}\
         th:nth-child(-n+2),td:nth-child(-n+2){text-align:left}\
         .charts{display:flex;flex-wrap:wrap;gap:1em}\
         figure{margin:0}figcaption{font-size:13px;color:#555}\
         .summary{font-size:13px;color:#333}\
         </style></head><body>\n<h1>Switchyard policy lab</h1>\n",
    );
    let _ = writeln!(out, "<p>Seed {}.</p>", report.seed);
    for s in &report.scenarios {
        scenario(&mut out, s);
    }
    out.push_str("</body></html>\n");
    out
}

fn scenario(out: &mut String, s: &ScenarioReport) {
    let _ = writeln!(
        out,
        "<h2>{}</h2>\n<p>{} ({} simulated, {} agents, {} tasks)</p>",
        escape(&s.scenario.name),
        escape(&s.scenario.description),
        s.scenario.duration,
        s.agents,
        s.tasks
    );
    out.push_str(
        "<table><tr><th>policy</th><th>group</th><th>weight</th><th>tasks</th><th>assigned</th>\
         <th>share</th><th>agent time</th><th>fair</th><th>served/fair</th><th>wait p50</th>\
         <th>wait p99</th><th>wait max</th></tr>\n",
    );
    for run in &s.runs {
        for g in &run.groups {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
                escape(&run.policy.label),
                escape(&g.name),
                g.weight,
                g.submitted,
                g.assigned,
                percent(g.share_of_assignments),
                percent(g.share_of_agent_time),
                percent(g.fair_share),
                g.served_over_fair.map_or("-".into(), |r| format!("{r:.2}")),
                g.wait_ms.p50.map_or("-".into(), duration),
                g.wait_ms.p99.map_or("-".into(), duration),
                duration(g.wait_ms.max),
                if g.unserved > 0 { "+" } else { "" }
            );
        }
    }
    out.push_str("</table>\n");
    for run in &s.runs {
        let _ = writeln!(
            out,
            "<p class=\"summary\">{}</p>",
            escape(&super::table::summary(run)).replace('\n', "<br>")
        );
    }
    out.push_str("<div class=\"charts\">\n");
    for run in &s.runs {
        share_chart(out, s, run);
        wait_chart(out, run);
    }
    out.push_str("</div>\n");
}

/// Axes, a title and a legend; `plot` draws inside the frame.
fn frame(out: &mut String, caption: &str, x_label: &str, y_label: &str, names: &[&str]) {
    let _ = write!(
        out,
        "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" role=\"img\"><title>{t}</title>\
         <rect x=\"{m}\" y=\"10\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#999\"/>\
         <text x=\"{cx}\" y=\"{xl}\" font-size=\"11\" text-anchor=\"middle\">{x}</text>\
         <text x=\"12\" y=\"{cy}\" font-size=\"11\" text-anchor=\"middle\" \
         transform=\"rotate(-90 12 {cy})\">{y}</text>",
        w = WIDTH + 130.0,
        h = HEIGHT + 40.0,
        t = escape(caption),
        m = MARGIN,
        pw = WIDTH - MARGIN,
        ph = HEIGHT - 10.0,
        cx = (WIDTH + MARGIN) / 2.0,
        xl = HEIGHT + 32.0,
        x = escape(x_label),
        cy = HEIGHT / 2.0,
        y = escape(y_label),
    );
    for (i, name) in names.iter().enumerate() {
        let y = 20.0 + 16.0 * i as f64;
        let _ = write!(
            out,
            "<rect x=\"{x}\" y=\"{r}\" width=\"10\" height=\"10\" fill=\"{c}\"/>\
             <text x=\"{tx}\" y=\"{ty}\" font-size=\"11\">{n}</text>",
            x = WIDTH + 8.0,
            r = y - 9.0,
            c = COLOURS[i % COLOURS.len()],
            tx = WIDTH + 22.0,
            ty = y,
            n = escape(name)
        );
    }
}

fn end_frame(out: &mut String, caption: &str) {
    let _ = writeln!(
        out,
        "</svg><figcaption>{}</figcaption></figure>",
        escape(caption)
    );
}

/// Maps (0..=1, 0..=1) into the plot area.
fn at(x: f64, y: f64) -> (f64, f64) {
    (MARGIN + x * (WIDTH - MARGIN), HEIGHT - y * (HEIGHT - 10.0))
}

fn polyline(out: &mut String, colour: &str, points: impl Iterator<Item = (f64, f64)>) {
    let points: Vec<String> = points
        .map(|(x, y)| {
            let (x, y) = at(x, y);
            format!("{x:.1},{y:.1}")
        })
        .collect();
    let _ = write!(
        out,
        "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.8\" points=\"{}\"/>",
        points.join(" ")
    );
}

fn tick(out: &mut String, x: f64, y: f64, text: &str, anchor: &str) {
    let (px, py) = at(x, y);
    let (px, py) = if anchor == "end" {
        (px - 4.0, py + 4.0)
    } else {
        (px, py + 14.0)
    };
    let _ = write!(
        out,
        "<text x=\"{px:.1}\" y=\"{py:.1}\" font-size=\"10\" text-anchor=\"{anchor}\">{}</text>",
        escape(text)
    );
}

fn share_chart(out: &mut String, s: &ScenarioReport, run: &RunReport) {
    let caption = format!(
        "{}: each group's share of the agent time used, over the run",
        run.policy.label
    );
    let names: Vec<&str> = run.groups.iter().map(|g| g.name.as_str()).collect();
    frame(
        out,
        &caption,
        "simulated time",
        "share of agent time",
        &names,
    );
    let series = &run.share_over_time;
    for (i, shares) in series.shares.iter().enumerate() {
        let n = shares.len().max(1) as f64;
        polyline(
            out,
            COLOURS[i % COLOURS.len()],
            shares
                .iter()
                .enumerate()
                .map(|(b, &share)| ((b as f64 + 0.5) / n, share)),
        );
    }
    for y in [0.0, 0.5, 1.0] {
        tick(out, 0.0, y, &percent(y), "end");
    }
    tick(out, 0.0, 0.0, "0", "middle");
    tick(out, 1.0, 0.0, &s.scenario.duration.to_string(), "middle");
    end_frame(out, &caption);
}

fn wait_chart(out: &mut String, run: &RunReport) {
    let caption = format!(
        "{}: wait from queued to assigned, distribution per group (assigned tasks)",
        run.policy.label
    );
    let names: Vec<&str> = run.groups.iter().map(|g| g.name.as_str()).collect();
    frame(out, &caption, "wait", "fraction of tasks", &names);
    let longest = run
        .groups
        .iter()
        .flat_map(|g| g.wait_cdf.iter().map(|&(_, w)| w))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    for (i, g) in run.groups.iter().enumerate() {
        if g.wait_cdf.is_empty() {
            continue;
        }
        // A step from zero to the first quantile, then the quantiles.
        let points = std::iter::once((0.0, 0.0)).chain(
            g.wait_cdf
                .iter()
                .map(|&(q, wait)| (wait as f64 / longest, q)),
        );
        polyline(out, COLOURS[i % COLOURS.len()], points);
    }
    for y in [0.0, 0.5, 1.0] {
        tick(out, 0.0, y, &percent(y), "end");
    }
    tick(out, 0.0, 0.0, "0", "middle");
    tick(out, 1.0, 0.0, &duration(longest as u64), "middle");
    end_frame(out, &caption);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }
}
