//! How a report's problems are printed as text, one line each.

use std::io::{self, Write};

use crate::manifest::Report;

/// Writes the problems of a report as `FILE: Kind/[namespace/]name: field: message`.
pub fn write_text(out: &mut impl Write, report: &Report) -> io::Result<()> {
    for f in &report.problems {
        let p = &f.problem;
        let object = p.object.as_ref().map(ToString::to_string);
        let field = if p.field.is_empty() {
            "-"
        } else {
            p.field.as_str()
        };
        let severity = if p.is_error() { "" } else { "warning: " };
        writeln!(
            out,
            "{}: {}: {}: {severity}{} [{}]",
            f.source.file,
            object.as_deref().unwrap_or("-"),
            field,
            p.message,
            p.reason
        )?;
    }
    Ok(())
}
