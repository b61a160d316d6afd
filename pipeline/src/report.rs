//! The text tables of the tools' reports: every report type implements `Display` with
//! [`Rows`] (and `Serialize` for `--json`), so a command prints its report and nothing else.

use std::fmt;

/// `  label   value` lines, every label padded to one width.
pub struct Rows<'a, 'b> {
    f: &'a mut fmt::Formatter<'b>,
    width: usize,
}

impl<'a, 'b> Rows<'a, 'b> {
    /// Rows written to `f`, labels padded to `width` characters.
    pub fn new(f: &'a mut fmt::Formatter<'b>, width: usize) -> Self {
        Self { f, width }
    }

    /// One row: two spaces, the label padded, a space, the value.
    pub fn row(&mut self, label: &str, value: impl fmt::Display) -> fmt::Result {
        writeln!(self.f, "  {label:<width$} {value}", width = self.width)
    }

    /// A line of its own (a heading), after two spaces.
    pub fn line(&mut self, text: impl fmt::Display) -> fmt::Result {
        writeln!(self.f, "  {text}")
    }
}

/// Bytes as megabytes (10^6), one decimal: `12.3`.
pub fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Example;

    impl fmt::Display for Example {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let mut rows = Rows::new(f, 10);
            rows.line("heading:")?;
            rows.row("documents", 368)?;
            rows.row("peak RSS MB", mb(12_345_678))
        }
    }

    #[test]
    fn rows_pad_their_labels_to_one_width() {
        assert_eq!(
            Example.to_string(),
            "  heading:\n  documents  368\n  peak RSS MB 12.3\n"
        );
    }
}
