//! One-line flat JSON: the writer for scenario results and a reader for the
//! same shape (objects of string / number / bool / null values) used by the
//! `report` subcommand.
//!
//! Owns: key order, string escaping, float formatting (non-finite becomes
//! `null`). It must not grow into a general JSON library: nested values are
//! rejected by the reader, and the writer never emits them.

use std::fmt::Write as _;

/// Builds one JSON object, keys in insertion order.
pub struct JsonLine {
    buf: String,
}

impl JsonLine {
    pub fn new() -> JsonLine {
        JsonLine {
            buf: String::from("{"),
        }
    }

    fn key(&mut self, k: &str) {
        if self.buf.len() > 1 {
            self.buf.push(',');
        }
        escape_into(&mut self.buf, k);
        self.buf.push(':');
    }

    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        escape_into(&mut self.buf, v);
        self
    }

    pub fn int(&mut self, k: &str, v: u64) -> &mut Self {
        self.key(k);
        let _ = write!(self.buf, "{v}");
        self
    }

    pub fn num(&mut self, k: &str, v: f64) -> &mut Self {
        self.key(k);
        if !v.is_finite() {
            self.buf.push_str("null");
        } else if v == v.trunc() && v.abs() < 1e15 {
            let _ = write!(self.buf, "{v:.0}");
        } else if v.abs() >= 100.0 {
            let _ = write!(self.buf, "{v:.1}");
        } else {
            let _ = write!(self.buf, "{v:.4}");
        }
        self
    }

    pub fn opt_num(&mut self, k: &str, v: Option<f64>) -> &mut Self {
        match v {
            Some(v) => self.num(k, v),
            None => {
                self.key(k);
                self.buf.push_str("null");
                self
            }
        }
    }

    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k);
        self.buf.push_str(if v { "true" } else { "false" });
        self
    }

    pub fn finish(&self) -> String {
        let mut s = self.buf.clone();
        s.push('}');
        s
    }
}

fn escape_into(out: &mut String, s: &str) {
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

impl Value {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Num(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A parsed flat object.
pub type Object = Vec<(String, Value)>;

pub fn get<'a>(obj: &'a Object, key: &str) -> Option<&'a Value> {
    obj.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

struct Reader<'a> {
    s: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn ws(&mut self) {
        while self.s.get(self.at).is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn eat(&mut self, b: u8) -> Result<(), String> {
        self.ws();
        if self.peek() == Some(b) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", b as char, self.at))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat(b'"')?;
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err("unterminated string".into());
            };
            self.at += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err("unterminated escape".into());
                    };
                    self.at += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self
                                .s
                                .get(self.at..self.at + 4)
                                .and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .ok_or("bad \\u escape")?;
                            self.at += 4;
                            let ch = char::from_u32(hex).unwrap_or('\u{FFFD}');
                            let mut tmp = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
        String::from_utf8(out).map_err(|_| "string is not UTF-8".to_string())
    }

    fn value(&mut self) -> Result<Value, String> {
        self.ws();
        match self.peek() {
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b't') if self.s.get(self.at..self.at + 4) == Some(b"true") => {
                self.at += 4;
                Ok(Value::Bool(true))
            }
            Some(b'f') if self.s.get(self.at..self.at + 5) == Some(b"false") => {
                self.at += 5;
                Ok(Value::Bool(false))
            }
            Some(b'n') if self.s.get(self.at..self.at + 4) == Some(b"null") => {
                self.at += 4;
                Ok(Value::Null)
            }
            Some(_) => {
                let start = self.at;
                while self
                    .peek()
                    .is_some_and(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
                {
                    self.at += 1;
                }
                self.s
                    .get(start..self.at)
                    .and_then(|t| std::str::from_utf8(t).ok())
                    .and_then(|t| t.parse::<f64>().ok())
                    .map(Value::Num)
                    .ok_or_else(|| format!("bad value at byte {start}"))
            }
            None => Err("unexpected end".into()),
        }
    }
}

/// Parses one flat JSON object.
pub fn parse_object(line: &str) -> Result<Object, String> {
    let mut r = Reader {
        s: line.as_bytes(),
        at: 0,
    };
    r.eat(b'{')?;
    let mut obj = Vec::new();
    r.ws();
    if r.peek() == Some(b'}') {
        return Ok(obj);
    }
    loop {
        r.ws();
        let k = r.string()?;
        r.eat(b':')?;
        let v = r.value()?;
        obj.push((k, v));
        r.ws();
        match r.peek() {
            Some(b',') => r.at += 1,
            Some(b'}') => break,
            _ => return Err(format!("expected ',' or '}}' at byte {}", r.at)),
        }
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let line = JsonLine::new()
            .str("scenario", "fan\"in\n")
            .int("msgs", 123)
            .num("secs", 1.5)
            .num("big", 123456.789)
            .num("nan", f64::NAN)
            .bool("ok", true)
            .opt_num("none", None)
            .finish();
        let obj = parse_object(&line).unwrap_or_default();
        assert_eq!(
            get(&obj, "scenario").and_then(Value::as_str),
            Some("fan\"in\n")
        );
        assert_eq!(get(&obj, "msgs").and_then(Value::as_f64), Some(123.0));
        assert_eq!(get(&obj, "secs").and_then(Value::as_f64), Some(1.5));
        assert_eq!(get(&obj, "big").and_then(Value::as_f64), Some(123456.8));
        assert_eq!(get(&obj, "nan"), Some(&Value::Null));
        assert_eq!(get(&obj, "ok"), Some(&Value::Bool(true)));
        assert_eq!(get(&obj, "none"), Some(&Value::Null));
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in [
            "",
            "{",
            "{\"a\"",
            "{\"a\":}",
            "{\"a\":1,",
            "[1]",
            "{\"a\":\"\\u12\"}",
        ] {
            assert!(parse_object(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_object("{ }"), Ok(Vec::new()));
    }
}
