//! Human output: aligned tables and state colours (only on a terminal), systemctl style.

use std::io::IsTerminal;

/// Whether to colour: a terminal, no `--no-color`, no `NO_COLOR`.
pub fn use_color(no_color: bool) -> bool {
    !no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
}

/// `state` painted the way systemctl paints it: green active, red failed, yellow
/// transitional.
pub fn paint_state(state: &str, color: bool) -> String {
    paint_as(state, state, color)
}

/// `text` in the colour of `state`.
pub fn paint_as(text: &str, state: &str, color: bool) -> String {
    if !color {
        return text.to_owned();
    }
    let code = match state {
        "active" | "running" => "32",
        "failed" => "31",
        "activating" | "deactivating" | "paused" | "reloading" | "starting" | "stopping" => "33",
        _ => return text.to_owned(),
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

/// Renders rows as columns separated by two spaces; the last column is not padded.
/// `widths` are computed on the plain text so colour codes do not skew alignment.
pub fn table(header: &[&str], rows: &[Vec<(String, String)>]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, (plain, _)) in row.iter().enumerate() {
            widths[i] = widths[i].max(plain.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<(&str, &str)>, out: &mut String| {
        for (i, (plain, shown)) in cells.into_iter().enumerate() {
            out.push_str(shown);
            if i + 1 < columns {
                out.push_str(&" ".repeat(widths[i] - plain.chars().count() + 2));
            }
        }
        out.push('\n');
    };
    line(header.iter().map(|h| (*h, *h)).collect(), &mut out);
    for row in rows {
        line(
            row.iter().map(|(p, s)| (p.as_str(), s.as_str())).collect(),
            &mut out,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_on_plain_text() {
        let rows = vec![
            vec![
                ("web".to_string(), "web".to_string()),
                ("active".into(), paint_state("active", true)),
            ],
            vec![
                ("database".to_string(), "database".to_string()),
                ("failed".into(), "failed".into()),
            ],
        ];
        let text = table(&["NAME", "STATE"], &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "NAME      STATE");
        assert_eq!(lines[1], "web       \x1b[32mactive\x1b[0m");
        assert_eq!(lines[2], "database  failed");
    }
}
