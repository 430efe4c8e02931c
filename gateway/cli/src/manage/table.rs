//! Plain-text tables for people; `--json` prints the API's own response instead.

use std::io::{self, Write};

use serde_json::Value;

/// Columns as (header, JSON field) pairs; a field may be a dotted path (`scope.kind`).
pub struct Table<'a> {
    columns: &'a [(&'a str, &'a str)],
}

impl<'a> Table<'a> {
    pub fn new(columns: &'a [(&'a str, &'a str)]) -> Self {
        Table { columns }
    }

    pub fn print(&self, out: &mut dyn Write, rows: &[Value]) -> io::Result<()> {
        let cells: Vec<Vec<String>> =
            rows.iter().map(|row| self.columns.iter().map(|(_, field)| cell(lookup(row, field))).collect()).collect();
        let mut widths: Vec<usize> = self.columns.iter().map(|(header, _)| header.chars().count()).collect();
        for row in &cells {
            for (width, text) in widths.iter_mut().zip(row) {
                *width = (*width).max(text.chars().count());
            }
        }
        let headers: Vec<String> = self.columns.iter().map(|(h, _)| h.to_string()).collect();
        write_row(out, &widths, &headers)?;
        for row in &cells {
            write_row(out, &widths, row)?;
        }
        Ok(())
    }
}

fn write_row(out: &mut dyn Write, widths: &[usize], cells: &[String]) -> io::Result<()> {
    let mut line = String::new();
    for (i, (text, width)) in cells.iter().zip(widths).enumerate() {
        if i + 1 == cells.len() {
            line.push_str(text);
        } else {
            line.push_str(&format!("{text:<width$}  "));
        }
    }
    writeln!(out, "{}", line.trim_end())
}

fn lookup<'v>(value: &'v Value, path: &str) -> &'v Value {
    path.split('.').fold(value, |v, key| &v[key])
}

/// How one JSON value reads in a cell: strings bare, null as `-`, lists comma-separated.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// `key: value` lines for one object.
pub fn print_fields(out: &mut dyn Write, value: &Value, fields: &[(&str, &str)]) -> io::Result<()> {
    let width = fields.iter().map(|(label, _)| label.chars().count()).max().unwrap_or(0);
    for (label, field) in fields {
        writeln!(out, "{:<width$}  {}", format!("{label}:"), cell(lookup(value, field)), width = width + 1)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let rows = vec![
            serde_json::json!({"name": "acme", "status": "active", "n": 1, "m": ["a", "b"]}),
            serde_json::json!({"name": "b", "status": null, "n": 22, "m": []}),
        ];
        let mut out = Vec::new();
        Table::new(&[("NAME", "name"), ("STATUS", "status"), ("N", "n"), ("MODELS", "m")])
            .print(&mut out, &rows)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "NAME  STATUS  N   MODELS\nacme  active  1   a,b\nb     -       22  -\n");
    }
}
