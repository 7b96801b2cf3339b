//! Go's text scanning as etcdctl reads its scripts (txn and interactive watch): the way a
//! line is split into arguments (etcdctl's `argify`), Go's quoted strings
//! (`strconv.Unquote`, `fmt`'s `%q` verb) and `strconv.ParseInt`'s errors.

/// The characters Go's regexp `\s` matches (RE2's ASCII white space).
fn is_re2_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{c}' | '\r' | ' ')
}

/// Splits a line into arguments as etcdctl's `argify` does: a double-quoted string (with
/// backslash escapes, unquoted as Go unquotes it), a single-quoted string (taken literally,
/// without its quotes), or a run of non-space characters that does not begin with a quote.
/// A quote that opens no complete string is skipped. The error is Go's for a double-quoted
/// string that does not unquote (`invalid syntax`).
pub fn argify(line: &str) -> Result<Vec<String>, String> {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut args = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (start, c) = chars[i];
        match c {
            '"' => {
                // "(?:[^"\\]|\\.)*": an escaped character may be anything but a newline.
                let mut j = i + 1;
                let mut end = None;
                while j < chars.len() {
                    match chars[j].1 {
                        '\\' if j + 1 < chars.len() && chars[j + 1].1 != '\n' => j += 2,
                        '\\' => break,
                        '"' => {
                            end = Some(j);
                            break;
                        }
                        _ => j += 1,
                    }
                }
                match end {
                    Some(j) => {
                        let token = &line[start..chars[j].0 + 1];
                        let bytes = unquote(token).ok_or_else(|| "invalid syntax".to_string())?;
                        args.push(String::from_utf8(bytes).map_err(|_| {
                            "keelctl takes arguments that are UTF-8 only".to_string()
                        })?);
                        i = j + 1;
                    }
                    None => i += 1,
                }
            }
            '\'' => match chars[i + 1..].iter().position(|&(_, c)| c == '\'') {
                Some(offset) => {
                    let j = i + 1 + offset;
                    args.push(line[chars[i].0 + 1..chars[j].0].to_string());
                    i = j + 1;
                }
                None => i += 1,
            },
            c if is_re2_space(c) => i += 1,
            _ => {
                let mut j = i;
                while j < chars.len() && !is_re2_space(chars[j].1) {
                    j += 1;
                }
                let end = chars.get(j).map_or(line.len(), |&(at, _)| at);
                args.push(line[start..end].to_string());
                i = j;
            }
        }
    }
    Ok(args)
}

/// Go's `strconv.Unquote` of a double-quoted string (quotes included), as bytes: `\x` and
/// octal escapes may make bytes that are not UTF-8. `None` for invalid syntax.
pub fn unquote(token: &str) -> Option<Vec<u8>> {
    let inner = token.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = Vec::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\n' => return None,
            '\\' => {
                let escape = chars.next()?;
                let simple = match escape {
                    'a' => Some(0x07),
                    'b' => Some(0x08),
                    'f' => Some(0x0c),
                    'n' => Some(b'\n'),
                    'r' => Some(b'\r'),
                    't' => Some(b'\t'),
                    'v' => Some(0x0b),
                    '\\' => Some(b'\\'),
                    '"' => Some(b'"'),
                    _ => None,
                };
                if let Some(byte) = simple {
                    out.push(byte);
                    continue;
                }
                match escape {
                    'x' | 'u' | 'U' => {
                        let digits = match escape {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut value = 0u32;
                        for _ in 0..digits {
                            value = value * 16 + chars.next()?.to_digit(16)?;
                        }
                        if escape == 'x' {
                            out.push(value as u8);
                        } else {
                            let c = char::from_u32(value)?;
                            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                        }
                    }
                    '0'..='7' => {
                        let mut value = escape.to_digit(8)?;
                        for _ in 0..2 {
                            value = value * 8 + chars.next()?.to_digit(8)?;
                        }
                        out.push(u8::try_from(value).ok()?);
                    }
                    _ => return None,
                }
            }
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    Some(out)
}

/// Go's `unicode.IsSpace`, which `fmt`'s scanner skips.
fn is_go_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    ) || (c as u32 > 0xff && c.is_whitespace())
}

/// A cursor over a string with `fmt.Sscanf`'s operations, each failing as a scan does.
pub struct Scanner<'a> {
    rest: &'a str,
}

impl<'a> Scanner<'a> {
    /// Scans `text`.
    pub fn new(text: &'a str) -> Scanner<'a> {
        Scanner { rest: text }
    }

    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start_matches(is_go_space);
    }

    /// `%q` into a string: spaces skipped, then a back-quoted raw string or a double-quoted
    /// string that Go unquotes.
    pub fn quoted(&mut self) -> Option<Vec<u8>> {
        self.skip_space();
        let mut chars = self.rest.char_indices();
        match chars.next()? {
            (_, '`') => {
                let end = self.rest[1..].find('`')? + 1;
                let text = self.rest.as_bytes()[1..end].to_vec();
                self.rest = &self.rest[end + 1..];
                Some(text)
            }
            (_, '"') => {
                let mut escaped = false;
                for (at, c) in chars {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        let value = unquote(&self.rest[..=at])?;
                        self.rest = &self.rest[at + 1..];
                        return Some(value);
                    }
                }
                None
            }
            _ => None,
        }
    }

    /// A literal character of the format.
    pub fn literal(&mut self, expected: char) -> Option<()> {
        self.rest = self.rest.strip_prefix(expected)?;
        Some(())
    }

    /// A space in the format: one or more spaces in the input, or its end.
    pub fn space(&mut self) -> Option<()> {
        if self.rest.is_empty() {
            return Some(());
        }
        let trimmed = self.rest.trim_start_matches(is_go_space);
        if trimmed.len() == self.rest.len() {
            return None;
        }
        self.rest = trimmed;
        Some(())
    }

    /// `%s` into a string: spaces skipped, then the characters up to the next space.
    pub fn word(&mut self) -> Option<String> {
        self.skip_space();
        if self.rest.is_empty() {
            return None;
        }
        let end = self.rest.find(is_go_space).unwrap_or(self.rest.len());
        let word = self.rest[..end].to_string();
        self.rest = &self.rest[end..];
        Some(word)
    }
}

/// Go's `strconv.ParseInt(text, base, 64)` for base 10 or 16, with its error text.
pub fn parse_int(text: &str, base: u32) -> Result<i64, String> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    let quoted = crate::gofmt::quote(text.as_bytes());
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(base)) {
        return Err(format!(
            "strconv.ParseInt: parsing {quoted}: invalid syntax"
        ));
    }
    i64::from_str_radix(text, base)
        .map_err(|_| format!("strconv.ParseInt: parsing {quoted}: value out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argify_splits_as_etcdctl() {
        let split = |line: &str| argify(line).unwrap();
        assert_eq!(split("put k v"), ["put", "k", "v"]);
        assert_eq!(split(r#"put "a b" 'c d'"#), ["put", "a b", "c d"]);
        assert_eq!(split(r#"put "a\"q" "\x41\u00e9""#), ["put", "a\"q", "Aé"]);
        // A quote that opens nothing is skipped; quotes inside a word stay.
        assert_eq!(
            split(r#"put "unterminated v"#),
            ["put", "unterminated", "v"]
        );
        assert_eq!(split("get a'b"), ["get", "a'b"]);
        assert_eq!(split("  get\tk  "), ["get", "k"]);
        assert_eq!(argify(r#"put "\z" v"#), Err("invalid syntax".to_string()));
    }

    #[test]
    fn unquote_follows_go() {
        assert_eq!(unquote(r#""a\tb""#), Some(b"a\tb".to_vec()));
        assert_eq!(unquote(r#""\xff\101""#), Some(vec![0xff, b'A']));
        assert_eq!(unquote(r#""\'""#), None);
        assert_eq!(unquote(r#""\400""#), None);
        assert_eq!(unquote(r#""\ud800""#), None);
    }

    #[test]
    fn scanner_matches_sscanf() {
        let mut s = Scanner::new(r#" "k1") = `v 1` rest"#);
        assert_eq!(s.quoted(), Some(b"k1".to_vec()));
        assert_eq!(s.literal(')'), Some(()));
        assert_eq!(s.space(), Some(()));
        assert_eq!(s.word().as_deref(), Some("="));
        assert_eq!(s.space(), Some(()));
        assert_eq!(s.quoted(), Some(b"v 1".to_vec()));
        let mut s = Scanner::new(r#""k")="v""#);
        assert_eq!(s.quoted(), Some(b"k".to_vec()));
        assert_eq!(s.literal(')'), Some(()));
        assert_eq!(s.space(), None);
    }

    #[test]
    fn parse_int_errors_as_go() {
        assert_eq!(parse_int("-12", 10), Ok(-12));
        assert_eq!(parse_int("ff", 16), Ok(255));
        assert_eq!(
            parse_int("1_0", 10),
            Err(r#"strconv.ParseInt: parsing "1_0": invalid syntax"#.to_string())
        );
        assert_eq!(
            parse_int("99999999999999999999", 10),
            Err(
                r#"strconv.ParseInt: parsing "99999999999999999999": value out of range"#
                    .to_string()
            )
        );
    }
}
