//! etcdctl's `-w table` output: the layout of the Go tablewriter (olekukonko/tablewriter
//! v0.0.5) with the settings etcdctl uses, and the few Go value renderings the cluster
//! commands print (durations, `%16x`, `%v` of string lists, protobuf's compact text).
//!
//! The table: `+---+` borders, a header line of upper-cased titles centered in their columns,
//! a rule, one line per row with every cell right-aligned, a closing rule. Cells wider than
//! 30 columns are word-wrapped onto several lines (minimum raggedness, as tablewriter's
//! `WrapString` does); a word longer than that widens the column instead.

use std::time::Duration;

use keel_proto::etcdserverpb::ResponseHeader;

use crate::gofmt::JsonObject;

/// The widest a cell is before tablewriter wraps it (its `MAX_ROW_WIDTH`).
const CELL_WIDTH_MAX: usize = 30;

/// The display width of `text`. tablewriter measures East Asian wide characters as two
/// columns; etcd's cells (URLs, ids, numbers, error texts) are ASCII, where a character is
/// one column, so characters are counted.
fn width(text: &str) -> usize {
    text.chars().count()
}

/// tablewriter's `WrapString`: the words of `text` (split at single spaces) in lines of at
/// most `limit` columns, or of the longest word when that is wider; the line breaks minimize
/// the sum of the squared slack of every line but the last.
fn wrap(text: &str, limit: usize) -> Vec<String> {
    let words: Vec<&str> = text.split(' ').collect();
    let limit = words.iter().map(|w| width(w)).fold(limit, usize::max);
    let count = words.len();
    // length[i][j]: the width of words i..=j joined with single spaces.
    let mut length = vec![vec![0usize; count]; count];
    for i in 0..count {
        length[i][i] = width(words[i]);
        for j in i + 1..count {
            length[i][j] = length[i][j - 1] + 1 + width(words[j]);
        }
    }
    const PENALTY: i64 = 100_000;
    let mut cost = vec![i64::from(i32::MAX); count];
    let mut next_break = vec![0usize; count];
    for i in (0..count).rev() {
        if length[i][count - 1] <= limit {
            cost[i] = 0;
            next_break[i] = count;
            continue;
        }
        for j in i + 1..count {
            let slack = limit as i64 - length[i][j - 1] as i64;
            let mut candidate = slack * slack + cost[j];
            if length[i][j - 1] > limit {
                candidate += PENALTY;
            }
            if candidate < cost[i] {
                cost[i] = candidate;
                next_break[i] = j;
            }
        }
    }
    let mut lines = Vec::new();
    let mut i = 0;
    while i < count {
        let end = next_break[i].max(i + 1);
        lines.push(words[i..end].join(" "));
        i = end;
    }
    lines
}

/// One cell as tablewriter lays it out: its lines (newlines become spaces, then the text is
/// wrapped) and its width.
fn cell_lines(text: &str) -> (Vec<String>, usize) {
    let widest = text.split('\n').map(width).max().unwrap_or(0);
    let limit = widest.min(CELL_WIDTH_MAX);
    let lines = wrap(&text.replace('\n', " "), limit);
    let widest = lines.iter().map(|l| width(l)).fold(limit, usize::max);
    (lines, widest)
}

/// tablewriter's `Title`: underscores (and dots between letters) become spaces, the text is
/// trimmed and upper-cased.
fn title(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let number_or_space = |c: char| c.is_ascii_digit() || c == ' ';
    let replaced: String = chars
        .iter()
        .enumerate()
        .map(|(i, &c)| match c {
            '_' => ' ',
            '.' if (i != 0 && !number_or_space(chars[i - 1]))
                || (i + 1 != chars.len() && !number_or_space(chars[i + 1])) =>
            {
                ' '
            }
            c => c,
        })
        .collect();
    let trimmed = replaced.trim();
    if trimmed.is_empty() && !name.is_empty() {
        return " ".to_string();
    }
    trimmed.to_uppercase()
}

fn pad_center(text: &str, to: usize) -> String {
    let gap = to.saturating_sub(width(text));
    let left = gap / 2;
    format!("{}{text}{}", " ".repeat(left), " ".repeat(gap - left))
}

fn pad_left(text: &str, to: usize) -> String {
    format!("{}{text}", " ".repeat(to.saturating_sub(width(text))))
}

/// The table etcdctl prints for `header` and `rows` (each row as wide as the header), with
/// its final newline.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let columns = header.len();
    let mut widths = vec![0usize; columns];
    let header_cells: Vec<(Vec<String>, usize)> = header.iter().map(|h| cell_lines(h)).collect();
    for (i, (_, w)) in header_cells.iter().enumerate() {
        widths[i] = widths[i].max(*w);
    }
    let row_cells: Vec<Vec<(Vec<String>, usize)>> = rows
        .iter()
        .map(|row| row.iter().map(|c| cell_lines(c)).collect())
        .collect();
    for row in &row_cells {
        for (i, (_, w)) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(*w);
        }
    }
    let rule = {
        let mut line = String::from("+");
        for w in &widths {
            line.push_str(&"-".repeat(w + 2));
            line.push('+');
        }
        line.push('\n');
        line
    };
    let mut out = rule.clone();
    let header_height = header_cells.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    for line in 0..header_height {
        out.push('|');
        for (i, (lines, _)) in header_cells.iter().enumerate() {
            let text = title(lines.get(line).map(String::as_str).unwrap_or(""));
            out.push(' ');
            out.push_str(&pad_center(&text, widths[i]));
            out.push_str(" |");
        }
        out.push('\n');
    }
    out.push_str(&rule);
    for row in &row_cells {
        let height = row.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        for line in 0..height {
            for (i, (lines, _)) in row.iter().enumerate().take(columns) {
                // Cells with fewer lines than the row are filled with two spaces, as
                // tablewriter fills them.
                let text = lines.get(line).map(String::as_str).unwrap_or("  ");
                out.push_str("| ");
                out.push_str(&pad_left(text, widths[i]));
                out.push(' ');
            }
            out.push_str("|\n");
        }
    }
    out.push_str(&rule);
    out
}

/// Go's `time.Duration.String()`: "1.5s", "2.365372ms", "850ns", "1m30s", "0s".
pub fn go_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    // A fraction with its trailing zeros (and a bare point) dropped.
    let fraction = |whole: u128, part: u128, digits: usize| {
        let mut text = format!("{whole}");
        if part != 0 {
            let part = format!("{part:0digits$}");
            text.push('.');
            text.push_str(part.trim_end_matches('0'));
        }
        text
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", fraction(nanos / 1_000, nanos % 1_000, 3));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", fraction(nanos / 1_000_000, nanos % 1_000_000, 6));
    }
    let seconds_total = nanos / 1_000_000_000;
    let seconds = fraction(seconds_total % 60, nanos % 1_000_000_000, 9);
    let minutes_total = seconds_total / 60;
    if minutes_total == 0 {
        return format!("{seconds}s");
    }
    let hours = minutes_total / 60;
    if hours == 0 {
        return format!("{}m{seconds}s", minutes_total % 60);
    }
    format!("{hours}h{}m{seconds}s", minutes_total % 60)
}

/// Go's `%v` of a `[]string`: `[a b c]`.
pub fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

/// Go's `%016x` of a signed lease ID (a minus sign, then the magnitude, for negative IDs).
pub fn lease_hex(id: i64) -> String {
    if id < 0 {
        format!("-{:015x}", id.unsigned_abs())
    } else {
        format!("{id:016x}")
    }
}

/// A response header in gogo protobuf's compact text (`cluster_id:1 member_id:2 revision:3
/// raft_term:4 `, zero fields left out, each followed by a space), or Go's `<nil>` when absent:
/// how Go's `%v` shows the header inside a response struct.
pub fn header_text(header: &Option<ResponseHeader>) -> String {
    let Some(h) = header else {
        return "<nil>".to_string();
    };
    let mut text = String::new();
    for (name, value) in [
        ("cluster_id", h.cluster_id),
        ("member_id", h.member_id),
        ("revision", h.revision as u64),
        ("raft_term", h.raft_term),
    ] {
        if value != 0 {
            if name == "revision" {
                text.push_str(&format!("{name}:{} ", value as i64));
            } else {
                text.push_str(&format!("{name}:{value} "));
            }
        }
    }
    text
}

/// The JSON of a client response struct that embeds the header (etcd's Go client wraps lease
/// responses so): the header's fields at the top level, each left out when zero.
pub fn flat_header_json(header: &Option<ResponseHeader>) -> JsonObject {
    let h = header.unwrap_or_default();
    JsonObject::new()
        .u64("cluster_id", h.cluster_id)
        .u64("member_id", h.member_id)
        .i64("revision", h.revision)
        .u64("raft_term", h.raft_term)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_look_like_etcdctls() {
        // `etcdctl -w table endpoint hashkv` (3.4.23).
        let table = render(
            &["endpoint", "hash"],
            &[vec![
                "127.0.0.1:23901".to_string(),
                "1084519789".to_string(),
            ]],
        );
        assert_eq!(
            table,
            "+-----------------+------------+\n\
             |    ENDPOINT     |    HASH    |\n\
             +-----------------+------------+\n\
             | 127.0.0.1:23901 | 1084519789 |\n\
             +-----------------+------------+\n"
        );
        // An empty cell, a header wider than its cells, a right-aligned short cell.
        let table = render(
            &["ID", "Status", "Name", "errors"],
            &[vec![
                "9b75113f3950dbce".to_string(),
                "started".to_string(),
                "s1".to_string(),
                String::new(),
            ]],
        );
        assert_eq!(
            table,
            "+------------------+---------+------+--------+\n\
             |        ID        | STATUS  | NAME | ERRORS |\n\
             +------------------+---------+------+--------+\n\
             | 9b75113f3950dbce | started |   s1 |        |\n\
             +------------------+---------+------+--------+\n"
        );
    }

    #[test]
    fn long_cells_wrap_at_thirty_columns() {
        let lines = wrap(
            "rpc error: code = Unavailable desc = connection refused",
            30,
        );
        assert!(lines.iter().all(|l| l.len() <= 30), "{lines:?}");
        assert_eq!(
            lines.join(" "),
            "rpc error: code = Unavailable desc = connection refused"
        );
        // A word longer than the limit stays whole.
        let long = "http://127.0.0.1:2380,http://127.0.0.1:2381";
        assert_eq!(wrap(long, 30), vec![long.to_string()]);
        assert_eq!(cell_lines(long).1, long.len());
    }

    #[test]
    fn durations_print_as_go_prints_them() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_nanos(850)), "850ns");
        assert_eq!(go_duration(Duration::from_nanos(1_500)), "1.5µs");
        assert_eq!(go_duration(Duration::from_nanos(2_365_372)), "2.365372ms");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(3600)), "1h0m0s");
    }

    #[test]
    fn titles_and_ids() {
        assert_eq!(title("raft applied index"), "RAFT APPLIED INDEX");
        assert_eq!(title("db_size"), "DB SIZE");
        assert_eq!(lease_hex(0x1234), "0000000000001234");
        assert_eq!(go_list(&["a".to_string(), "b".to_string()]), "[a b]");
    }
}
