//! Go's text conventions that etcdctl's output is made of: `%q` quoting, `\x`-prefixed hex,
//! and `encoding/json` of etcd's protobuf structs (snake_case names, `omitempty`, 64-bit
//! integers as numbers, bytes as standard base64).

use std::fmt::Write as _;

use base64::Engine as _;

/// Go's `%q` of a byte string (`strconv.Quote`): double-quoted, printable Unicode kept,
/// `\a \b \f \n \r \t \v \\ \"` escaped, other control characters as `\x..`/`\u....`/
/// `\U........`, and bytes that are not UTF-8 as `\x..`.
pub fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    let mut rest = bytes;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(text) => (text, 0),
            Err(e) => {
                let valid = std::str::from_utf8(&rest[..e.valid_up_to()]).unwrap_or_default();
                (
                    valid,
                    e.error_len().unwrap_or(rest.len() - e.valid_up_to()).min(1),
                )
            }
        };
        for c in valid.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\u{7}' => out.push_str("\\a"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{b}' => out.push_str("\\v"),
                c if is_go_printable(c) => out.push(c),
                c if (c as u32) < 0x80 => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if (c as u32) < 0x10000 => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
        }
        let consumed = valid.len();
        for byte in &rest[consumed..consumed + bad] {
            let _ = write!(out, "\\x{byte:02x}");
        }
        rest = &rest[consumed + bad..];
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint` good for etcd keys: ASCII graphics and space,
/// and non-ASCII characters other than controls, separators and private/unassigned areas.
fn is_go_printable(c: char) -> bool {
    match c as u32 {
        0x20..=0x7e => true,
        0..=0x1f | 0x7f..=0x9f => false,
        0xad => false,
        0x2028 | 0x2029 => false,
        0xe000..=0xf8ff | 0xfff9..=0xfffb | 0xfeff => false,
        _ => !c.is_control() && !c.is_whitespace(),
    }
}

/// etcdctl's `--hex` rendering of bytes: every byte as `\x` and two lower-case hex digits.
pub fn hex_prefixed(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4);
    for byte in bytes {
        let _ = write!(out, "\\x{byte:02x}");
    }
    out
}

/// Writes raw bytes and a newline to stdout, as Go's `fmt.Println(string(b))` does.
pub fn println_bytes(bytes: &[u8]) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.write_all(b"\n");
}

/// Go `encoding/json` of a string: quoted with `"`, `\\`, control characters escaped, and
/// `<`, `>`, `&`, U+2028, U+2029 as `\u....` (Go's HTML-safe default).
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON object written field by field with Go's `omitempty` rules: zero numbers, false,
/// empty strings, empty byte strings, absent messages and empty lists are left out.
#[derive(Default)]
pub struct JsonObject {
    body: String,
}

impl JsonObject {
    /// An empty object.
    pub fn new() -> JsonObject {
        JsonObject::default()
    }

    fn key(&mut self, name: &str) {
        if !self.body.is_empty() {
            self.body.push(',');
        }
        self.body.push_str(&json_string(name));
        self.body.push(':');
    }

    /// An unsigned number, left out when zero.
    pub fn u64(mut self, name: &str, value: u64) -> JsonObject {
        if value != 0 {
            self.key(name);
            let _ = write!(self.body, "{value}");
        }
        self
    }

    /// A signed number, left out when zero.
    pub fn i64(mut self, name: &str, value: i64) -> JsonObject {
        if value != 0 {
            self.key(name);
            let _ = write!(self.body, "{value}");
        }
        self
    }

    /// A number written even when zero (a field without `omitempty`).
    pub fn i64_always(mut self, name: &str, value: i64) -> JsonObject {
        self.key(name);
        let _ = write!(self.body, "{value}");
        self
    }

    /// A boolean, left out when false.
    pub fn bool(mut self, name: &str, value: bool) -> JsonObject {
        if value {
            self.key(name);
            self.body.push_str("true");
        }
        self
    }

    /// A boolean written even when false (a field without `omitempty`).
    pub fn bool_always(mut self, name: &str, value: bool) -> JsonObject {
        self.key(name);
        self.body.push_str(if value { "true" } else { "false" });
        self
    }

    /// A string, left out when empty.
    pub fn str(mut self, name: &str, value: &str) -> JsonObject {
        if !value.is_empty() {
            self.key(name);
            self.body.push_str(&json_string(value));
        }
        self
    }

    /// A string written even when empty.
    pub fn str_always(mut self, name: &str, value: &str) -> JsonObject {
        self.key(name);
        self.body.push_str(&json_string(value));
        self
    }

    /// A byte string as standard base64, left out when empty.
    pub fn bytes(mut self, name: &str, value: &[u8]) -> JsonObject {
        if !value.is_empty() {
            self.key(name);
            self.body.push('"');
            self.body
                .push_str(&base64::engine::general_purpose::STANDARD.encode(value));
            self.body.push('"');
        }
        self
    }

    /// A nested value already in JSON, left out when `None` (a nil pointer).
    pub fn raw(mut self, name: &str, json: Option<String>) -> JsonObject {
        if let Some(json) = json {
            self.key(name);
            self.body.push_str(&json);
        }
        self
    }

    /// A list of values already in JSON, left out when empty.
    pub fn list(mut self, name: &str, items: Vec<String>) -> JsonObject {
        if !items.is_empty() {
            self.key(name);
            self.body.push('[');
            self.body.push_str(&items.join(","));
            self.body.push(']');
        }
        self
    }

    /// A list written even when empty (`null` when empty, as Go writes a nil slice).
    pub fn list_always(mut self, name: &str, items: Vec<String>) -> JsonObject {
        self.key(name);
        if items.is_empty() {
            self.body.push_str("null");
        } else {
            self.body.push('[');
            self.body.push_str(&items.join(","));
            self.body.push(']');
        }
        self
    }

    /// The object's JSON text.
    pub fn finish(self) -> String {
        format!("{{{}}}", self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_matches_go() {
        assert_eq!(quote(b"foo"), r#""foo""#);
        assert_eq!(quote(b"a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(quote(b"\x00\x7f"), r#""\x00\x7f""#);
        assert_eq!(quote(b"\xff\xfeok"), r#""\xff\xfeok""#);
        assert_eq!(quote("é日本".as_bytes()), "\"é日本\"");
        assert_eq!(quote("\u{85}".as_bytes()), r#""\u0085""#);
    }

    #[test]
    fn json_omits_empty_fields_as_go_does() {
        let json = JsonObject::new()
            .u64("cluster_id", 7)
            .i64("revision", 0)
            .bytes("key", b"foo")
            .bool("more", false)
            .raw("header", None)
            .list("kvs", vec![])
            .i64_always("count", 0)
            .finish();
        assert_eq!(json, r#"{"cluster_id":7,"key":"Zm9v","count":0}"#);
        assert_eq!(json_string("<a&b>"), r#""\u003ca\u0026b\u003e""#);
        assert_eq!(hex_prefixed(b"ab"), r"\x61\x62");
    }
}
