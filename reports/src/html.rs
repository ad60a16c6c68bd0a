//! The self-contained HTML report: one file with the header line, every table and every chart
//! inlined as SVG (no scripts, no external resources), readable offline and in a CI artifact.

use crate::aggregate::Summary;
use crate::load::Run;
use crate::table::{Table, header_line, tables};

/// Escape text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

fn table_html(table: &Table) -> String {
    let mut out = format!(
        "<h2>{}</h2>\n<div class=\"scroll\"><table>\n<thead><tr>",
        escape(&table.title)
    );
    for c in &table.columns {
        out.push_str(&format!("<th>{}</th>", escape(c)));
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &table.rows {
        out.push_str("<tr>");
        for cell in row {
            let class = if cell.starts_with("NO") {
                " class=\"bad\""
            } else {
                ""
            };
            out.push_str(&format!("<td{class}>{}</td>", escape(cell)));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table></div>\n");
    out
}

const STYLE: &str = "body{font-family:'DejaVu Sans',sans-serif;margin:24px;color:#222}\
table{border-collapse:collapse;margin:8px 0 24px;font-size:13px}\
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}\
th{background:#f0f0f0}td.bad{background:#fdd;font-weight:bold}\
.header{background:#f7f7f7;padding:8px 12px;border-left:4px solid #888;font-family:monospace}\
.scroll{overflow-x:auto}figure{margin:12px 0 28px}figcaption{font-weight:bold;margin-bottom:4px}.note{color:#666}";

/// Render the report page. `charts` are `(title, svg text)` pairs; `notes` are shown as such.
pub fn render_html(
    run: &Run,
    summary: &Summary,
    charts: &[(String, String)],
    notes: &[String],
) -> String {
    let (cols, tables) = tables(summary);
    let m = &run.manifest;
    let mut out =
        String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str(&format!(
        "<title>specsweep report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&summary.sweep)
    ));
    out.push_str(&format!(
        "<h1>specsweep report: {}</h1>\n",
        escape(&summary.sweep)
    ));
    out.push_str(&format!(
        "<p>{} requests, {} failure records · {} ({} cores) · specsweep {} · git {} · started {}</p>\n",
        run.requests.len(),
        run.failures.len(),
        escape(&m.cpu_model),
        m.cpu_cores,
        escape(&m.specsweep_version),
        escape(m.git_sha.as_deref().unwrap_or("unknown")),
        escape(&m.started_at),
    ));
    if !cols.constant.is_empty() {
        out.push_str(&format!(
            "<p class=\"header\">{}</p>\n",
            escape(&header_line(&cols))
        ));
    }
    for table in &tables {
        out.push_str(&table_html(table));
    }
    out.push_str(
        "<p class=\"note\">Medians with bootstrap 95 % CIs; acceptance with Wilson 95 % \
         intervals; speedup = ratio of median decode tok/s over the paired baseline (paired \
         bootstrap CI); e2e speedup = ratio of the baseline's median request time (prompt + \
         decoding) over the cell's; τ = mean acceptance length.</p>\n",
    );
    for (title, svg) in charts {
        out.push_str(&format!(
            "<figure>\n<figcaption>{}</figcaption>\n{svg}\n</figure>\n",
            escape(title)
        ));
    }
    for note in notes {
        out.push_str(&format!("<p class=\"note\">{}</p>\n", escape(note)));
    }
    out.push_str("</body>\n</html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn bad_cells_are_highlighted() {
        let t = Table {
            title: "T".into(),
            columns: vec!["identical".into()],
            rows: vec![vec!["NO (1/3)".into()], vec!["yes (3)".into()]],
        };
        let html = table_html(&t);
        assert!(html.contains("<td class=\"bad\">NO (1/3)</td>"), "{html}");
        assert!(html.contains("<td>yes (3)</td>"), "{html}");
    }
}
