//! How a [`LabReport`] is shown: a table on the terminal ([`table`]), and a self-contained
//! HTML page with SVG charts ([`html`]). The JSON is the report itself, serialised.

pub mod html;
pub mod table;

/// `0.253` as `25.3%`.
pub(crate) fn percent(fraction: f64) -> String {
    format!("{:.1}%", fraction * 100.0)
}

/// Milliseconds as a short duration: `850ms`, `12.4s`, `3.2m`, `1.5h`.
pub(crate) fn duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1e3),
        60_000..=3_599_999 => format!("{:.1}m", ms as f64 / 60e3),
        _ => format!("{:.1}h", ms as f64 / 3_600e3),
    }
}
