//! Plain-text tables for the command line: columns as wide as their widest cell, shrunk to fit
//! the terminal (a cut cell ends in `…`), and a bold header only when colours are on.

use std::io::IsTerminal;

/// How output is laid out: where to cut lines and whether to use colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// The width to fit lines into; `None` (not a terminal): never cut.
    pub width: Option<usize>,
    /// ANSI colours: only on a terminal, and never when `NO_COLOR` is set (no-color.org).
    pub color: bool,
}

impl Style {
    /// The style for standard output as it is now.
    pub fn detect() -> Style {
        let terminal = std::io::stdout().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style {
            width: terminal.then(terminal_width).flatten(),
            color: Style::colors(terminal, no_color),
        }
    }

    /// Colours are used on a terminal unless `NO_COLOR` asks otherwise.
    fn colors(terminal: bool, no_color: bool) -> bool {
        terminal && !no_color
    }

    /// Plain text without cutting: what a pipe sees.
    #[cfg(test)]
    pub const PLAIN: Style = Style {
        width: None,
        color: false,
    };

    /// `text` in bold, when colours are on.
    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    /// `text` dimmed, when colours are on.
    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

/// The terminal's width: `COLUMNS` when set, else what the terminal says.
fn terminal_width() -> Option<usize> {
    if let Some(columns) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
    {
        return Some(columns).filter(|&c| c > 0);
    }
    // SAFETY: TIOCGWINSZ fills a `winsize` we own; on failure it is left zeroed.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

/// The gap between columns.
const GAP: &str = "  ";

/// The narrowest a column is cut to.
const MIN_COLUMN: usize = 4;

/// A table of text cells under a header.
#[derive(Debug, Clone, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        Table {
            header: header.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells are blank, extra cells are dropped.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        let mut cells: Vec<String> = cells.into_iter().map(|c| one_line(&c.into())).collect();
        cells.resize(self.header.len(), String::new());
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines, each ending in a newline; no trailing spaces.
    pub fn render(&self, style: Style) -> String {
        let widths = self.widths(style.width);
        let mut out = String::new();
        let header = line(&self.header, &widths);
        out.push_str(&style.bold(&header));
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row, &widths));
            out.push('\n');
        }
        out
    }

    /// Each column's width: its widest cell, then the widest columns cut in turn until the
    /// line fits `limit` (or every column is at `MIN_COLUMN`).
    fn widths(&self, limit: Option<usize>) -> Vec<usize> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| chars(h)).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(chars(cell));
            }
        }
        let Some(limit) = limit else {
            return widths;
        };
        let gaps = GAP.len() * widths.len().saturating_sub(1);
        while widths.iter().sum::<usize>() + gaps > limit {
            let (widest, &width) = widths
                .iter()
                .enumerate()
                .max_by_key(|&(i, w)| (*w, std::cmp::Reverse(i)))
                .expect("a table has columns");
            if width <= MIN_COLUMN {
                break;
            }
            widths[widest] = width - 1;
        }
        widths
    }
}

/// One line of cells padded to `widths`, the last cell unpadded.
fn line(cells: &[String], widths: &[usize]) -> String {
    let mut out = String::new();
    for (i, (cell, &width)) in cells.iter().zip(widths).enumerate() {
        if i > 0 {
            out.push_str(GAP);
        }
        let cell = cut(cell, width);
        out.push_str(&cell);
        if i + 1 < cells.len() {
            out.extend(std::iter::repeat_n(' ', width - chars(&cell)));
        }
    }
    out.trim_end().to_owned()
}

/// `text` cut to `width` characters, ending in `…` when cut.
pub fn cut(text: &str, width: usize) -> String {
    if chars(text) <= width {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Line breaks and tabs as spaces, so that one cell stays on one line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC to the second (`2026-12-01T12:19:34Z`).
pub fn rfc3339(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's days-to-civil
/// arithmetic: eras of 400 years, years starting in March).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut table = Table::new(["ID", "STATUS", "DESCRIPTION"]);
        table.row(["task-1", "queued", "resize the images in the bucket"]);
        table.row(["task-22", "assigned", "short"]);
        table
    }

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let text = sample().render(Style::PLAIN);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ID       STATUS    DESCRIPTION");
        assert_eq!(
            lines[1],
            "task-1   queued    resize the images in the bucket"
        );
        assert_eq!(lines[2], "task-22  assigned  short");
    }

    #[test]
    fn a_narrow_terminal_cuts_the_widest_column_with_an_ellipsis() {
        let style = Style {
            width: Some(30),
            color: false,
        };
        let text = sample().render(style);
        for line in text.lines() {
            assert!(chars(line) <= 30, "{line:?} is wider than 30");
        }
        assert!(text.contains("  resize the…\n"), "{text}");
        assert!(text.contains("task-22  assigned"), "{text}");
    }

    #[test]
    fn no_column_is_cut_below_the_minimum() {
        let style = Style {
            width: Some(5),
            color: false,
        };
        let text = sample().render(style);
        assert!(text.contains("tas…  que…  res…"), "{text}");
        assert_eq!(text.lines().next(), Some("ID    STA…  DES…"), "{text}");
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(Style::colors(true, false));
        assert!(!Style::colors(true, true), "NO_COLOR turns colours off");
        assert!(!Style::colors(false, false), "no colours in a pipe");
        let plain = sample().render(Style::PLAIN);
        assert!(!plain.contains('\x1b'));
        let coloured = sample().render(Style {
            width: None,
            color: true,
        });
        assert!(coloured.starts_with("\x1b[1mID"), "{coloured:?}");
    }

    #[test]
    fn cells_stay_on_one_line() {
        let mut table = Table::new(["A"]);
        table.row(["two\nlines\ttab"]);
        assert_eq!(table.render(Style::PLAIN), "A\ntwo lines tab\n");
    }

    #[test]
    fn wide_characters_count_as_one() {
        assert_eq!(cut("héllo wörld", 5), "héll…");
        assert_eq!(cut("abc", 3), "abc");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_127_574_999), "2026-12-01T12:19:34Z");
    }
}
