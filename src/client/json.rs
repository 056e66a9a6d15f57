//! json: the small JSON tree `midge_sub -F %j/%J` prints, byte-compatible
//! with the cJSON library mosquitto_sub uses.
//!
//! Owns: a JSON value type that keeps object member order and duplicate
//! keys, a parser with cJSON's leniency and limits (for `%J`, which embeds
//! the payload as JSON), and printers that reproduce cJSON's unformatted
//! and `--pretty` output exactly: its string escapes (`\u00xx` in lower
//! case, other bytes raw), its number formatting (`%1.15g`, or `%1.17g`
//! when that does not read back) and its tab layout.
//!
//! Must not: do I/O, or panic on any input (nesting is bounded).

use std::fmt::Write as _;

/// cJSON refuses input nested deeper than this.
const NESTING_LIMIT: usize = 1000;

#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Number(f64),
    /// Raw bytes: cJSON strings are byte strings, not checked for UTF-8.
    String(Vec<u8>),
    Array(Vec<Json>),
    Object(Vec<(Vec<u8>, Json)>),
}

impl Json {
    pub fn str(s: &str) -> Json {
        Json::String(s.as_bytes().to_vec())
    }

    pub fn int(v: i64) -> Json {
        Json::Number(v as f64)
    }

    /// `cJSON_GetObjectItem`: the first member whose key matches `key`
    /// ignoring ASCII case; None for anything but an object.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(members) => members
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key.as_bytes()))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Print like `cJSON_PrintUnformatted` (`pretty` false) or
    /// `cJSON_Print` (`pretty` true).
    pub fn print(&self, pretty: bool) -> Vec<u8> {
        let mut out = Vec::new();
        print_value(self, pretty, 0, &mut out);
        out
    }
}

fn print_value(v: &Json, pretty: bool, depth: usize, out: &mut Vec<u8>) {
    match v {
        Json::Null => out.extend_from_slice(b"null"),
        Json::Bool(true) => out.extend_from_slice(b"true"),
        Json::Bool(false) => out.extend_from_slice(b"false"),
        Json::Number(d) => out.extend_from_slice(format_number(*d).as_bytes()),
        Json::String(s) => print_string(s, out),
        Json::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                    if pretty {
                        out.push(b' ');
                    }
                }
                print_value(item, pretty, depth + 1, out);
            }
            out.push(b']');
        }
        Json::Object(members) => {
            out.push(b'{');
            if pretty {
                out.push(b'\n');
            }
            for (i, (k, val)) in members.iter().enumerate() {
                if pretty {
                    out.extend(std::iter::repeat_n(b'\t', depth + 1));
                }
                print_string(k, out);
                out.push(b':');
                if pretty {
                    out.push(b'\t');
                }
                print_value(val, pretty, depth + 1, out);
                if i + 1 < members.len() {
                    out.push(b',');
                }
                if pretty {
                    out.push(b'\n');
                }
            }
            if pretty {
                out.extend(std::iter::repeat_n(b'\t', depth));
            }
            out.push(b'}');
        }
    }
}

/// cJSON's string escaping: the two-character escapes for `" \ \b \f \n
/// \r \t`, `\u00xx` (lower-case hex) for other bytes below 0x20, every
/// other byte as is. cJSON strings are C strings: a NUL byte ends them.
pub fn print_string(s: &[u8], out: &mut Vec<u8>) {
    let s = s.split(|&c| c == 0).next().unwrap_or_default();
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0C => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            c if c < 0x20 => {
                let mut s = String::new();
                let _ = write!(s, "\\u{:04x}", c);
                out.extend_from_slice(s.as_bytes());
            }
            c => out.push(c),
        }
    }
    out.push(b'"');
}

/// cJSON's number printing (1.7.15, the version mosquitto_sub 2.0.11 is
/// built with on Debian): `null` for NaN and infinities, else `%1.15g`,
/// or `%1.17g` when that does not read back within `DBL_EPSILON`.
pub fn format_number(d: f64) -> String {
    if d.is_nan() || d.is_infinite() {
        return "null".to_string();
    }
    let s = format_g(d, 15);
    match s.parse::<f64>() {
        Ok(back) if (back - d).abs() <= back.abs().max(d.abs()) * f64::EPSILON => s,
        _ => format_g(d, 17),
    }
}

/// C's `%1.<precision>g`.
pub fn format_g(d: f64, precision: usize) -> String {
    if d == 0.0 {
        return if d.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    let p = precision.max(1);
    // Exponent after rounding to p significant digits.
    let e_form = format!("{:.*e}", p - 1, d);
    let (mantissa, exp) = match e_form.split_once('e') {
        Some((m, e)) => (m.to_string(), e.parse::<i32>().unwrap_or(0)),
        None => (e_form.clone(), 0),
    };
    if exp < -4 || exp >= p as i32 {
        let m = strip_zeros(&mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{m}e{sign}{:02}", exp.unsigned_abs())
    } else {
        let decimals = (p as i32 - 1 - exp).max(0) as usize;
        strip_zeros(&format!("{:.*}", decimals, d))
    }
}

fn strip_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// Parse like `cJSON_ParseWithOpts(s, &end, true)` with the payload NUL
/// terminated, and require the parse to end exactly at the end of the
/// input (what mosquitto_sub checks). A NUL byte inside the input ends the
/// C string early, so such input is never valid.
pub fn parse(input: &[u8]) -> Option<Json> {
    let mut p = Parser { s: input, i: 0 };
    p.skip_ws();
    let v = p.value(0)?;
    p.skip_ws();
    if p.i == input.len() {
        Some(v)
    } else {
        None
    }
}

/// Parse like `cJSON_ParseWithLength`: one value at the start of `input`;
/// whatever follows it is ignored (mosquitto_ctrl reads responses so).
pub fn parse_prefix(input: &[u8]) -> Option<Json> {
    let mut p = Parser { s: input, i: 0 };
    p.skip_ws();
    p.value(0)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied().filter(|&c| c != 0)
    }

    fn skip_ws(&mut self) {
        // cJSON skips every byte up to and including space (but NUL ends
        // the string).
        while let Some(c) = self.peek() {
            if c > 32 {
                break;
            }
            self.i += 1;
        }
    }

    fn starts_with(&self, lit: &[u8]) -> bool {
        self.s.get(self.i..).is_some_and(|r| r.starts_with(lit))
    }

    fn value(&mut self, depth: usize) -> Option<Json> {
        if depth >= NESTING_LIMIT {
            return None;
        }
        if self.starts_with(b"null") {
            self.i += 4;
            return Some(Json::Null);
        }
        if self.starts_with(b"false") {
            self.i += 5;
            return Some(Json::Bool(false));
        }
        if self.starts_with(b"true") {
            self.i += 4;
            return Some(Json::Bool(true));
        }
        match self.peek()? {
            b'"' => self.string().map(Json::String),
            b'-' | b'0'..=b'9' => self.number(),
            b'[' => self.array(depth + 1),
            b'{' => self.object(depth + 1),
            _ => None,
        }
    }

    fn number(&mut self) -> Option<Json> {
        // cJSON copies the run of number characters and lets strtod
        // decide how much of it is a number.
        let start = self.i;
        let mut end = start;
        while let Some(&c) = self.s.get(end) {
            if matches!(c, b'0'..=b'9' | b'+' | b'-' | b'e' | b'E' | b'.') {
                end += 1;
            } else {
                break;
            }
        }
        let run = self.s.get(start..end)?;
        let n = strtod_prefix(run);
        if n == 0 {
            return None;
        }
        let text = std::str::from_utf8(run.get(..n)?).ok()?;
        let v: f64 = text.parse().ok()?;
        self.i = start + n;
        Some(Json::Number(v))
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let h = self.s.get(at..at + 4)?;
        let mut v = 0u32;
        for &c in h {
            v = v * 16 + char::from(c).to_digit(16)?;
        }
        Some(v)
    }

    fn string(&mut self) -> Option<Vec<u8>> {
        // At the opening quote.
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let c = self.peek()?;
            match c {
                b'"' => {
                    self.i += 1;
                    return Some(out);
                }
                b'\\' => {
                    let e = self.s.get(self.i + 1).copied().filter(|&c| c != 0)?;
                    match e {
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0C),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'u' => {
                            let first = self.hex4(self.i + 2)?;
                            let mut consumed = 6;
                            let cp = if (0xDC00..=0xDFFF).contains(&first) {
                                return None;
                            } else if (0xD800..=0xDBFF).contains(&first) {
                                if self.s.get(self.i + 6) != Some(&b'\\')
                                    || self.s.get(self.i + 7) != Some(&b'u')
                                {
                                    return None;
                                }
                                let second = self.hex4(self.i + 8)?;
                                if !(0xDC00..=0xDFFF).contains(&second) {
                                    return None;
                                }
                                consumed = 12;
                                0x10000 + (((first & 0x3FF) << 10) | (second & 0x3FF))
                            } else {
                                first
                            };
                            // cJSON stores even U+0000 this way; the NUL
                            // then ends the C string when printed.
                            let ch = char::from_u32(cp)?;
                            let mut b = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut b).as_bytes());
                            self.i += consumed;
                            continue;
                        }
                        _ => return None,
                    }
                    self.i += 2;
                }
                c => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<Json> {
        self.i += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Some(Json::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(Json::Array(items));
                }
                _ => return None,
            }
        }
    }

    fn object(&mut self, depth: usize) -> Option<Json> {
        self.i += 1;
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Some(Json::Object(members));
        }
        loop {
            self.skip_ws();
            if self.peek()? != b'"' {
                return None;
            }
            let k = self.string()?;
            self.skip_ws();
            if self.peek()? != b':' {
                return None;
            }
            self.i += 1;
            self.skip_ws();
            let v = self.value(depth)?;
            members.push((k, v));
            self.skip_ws();
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(Json::Object(members));
                }
                _ => return None,
            }
        }
    }
}

/// How many leading bytes of `run` glibc's strtod would take as a decimal
/// number (0: none). `run` holds only `0-9 + - e E .`.
fn strtod_prefix(run: &[u8]) -> usize {
    let mut i = 0;
    if matches!(run.first(), Some(b'+') | Some(b'-')) {
        i = 1;
    }
    let int_start = i;
    while run.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let mut digits = i - int_start;
    if run.get(i) == Some(&b'.') {
        let frac_start = i + 1;
        let mut j = frac_start;
        while run.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if digits > 0 || j > frac_start {
            digits += j - frac_start;
            i = j;
        }
    }
    if digits == 0 {
        return 0;
    }
    if matches!(run.get(i), Some(b'e') | Some(b'E')) {
        let mut j = i + 1;
        if matches!(run.get(j), Some(b'+') | Some(b'-')) {
            j += 1;
        }
        let exp_start = j;
        while run.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        if j > exp_start {
            i = j;
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(s: &str, pretty: bool) -> Option<String> {
        parse(s.as_bytes()).map(|v| String::from_utf8(v.print(pretty)).unwrap())
    }

    #[test]
    fn unformatted_output_matches_cjson() {
        assert_eq!(
            round(r#"{"a":1, "b":[1,2]}"#, false).as_deref(),
            Some(r#"{"a":1,"b":[1,2]}"#)
        );
        assert_eq!(round(" [ ] ", false).as_deref(), Some("[]"));
        assert_eq!(round("{}", false).as_deref(), Some("{}"));
        assert_eq!(
            round(r#""a\/b\u00e9\ud83d\ude00""#, false).as_deref(),
            Some("\"a/b\u{e9}\u{1F600}\"")
        );
        assert_eq!(
            round(r#"[true,false,null,"x\n\u0001"]"#, false).as_deref(),
            Some(r#"[true,false,null,"x\n\u0001"]"#)
        );
        // Duplicate keys are kept, in order.
        assert_eq!(
            round(r#"{"k":1,"k":2}"#, false).as_deref(),
            Some(r#"{"k":1,"k":2}"#)
        );
    }

    #[test]
    fn pretty_output_matches_cjson() {
        assert_eq!(
            round(r#"{"a":1,"b":[1,{"c":"d"}],"e":{}}"#, true).as_deref(),
            Some("{\n\t\"a\":\t1,\n\t\"b\":\t[1, {\n\t\t\t\"c\":\t\"d\"\n\t\t}],\n\t\"e\":\t{\n\t}\n}")
        );
    }

    #[test]
    fn numbers_like_cjson() {
        for (input, out) in [
            ("0", "0"),
            ("-0", "-0"),
            ("3.0", "3"),
            ("1.5", "1.5"),
            ("0.1", "0.1"),
            ("1e10", "10000000000"),
            ("2147483647", "2147483647"),
            ("2147483648", "2147483648"),
            ("-2147483649", "-2147483649"),
            ("1e300", "1e+300"),
            ("1.23e-7", "1.23e-07"),
            ("123456789012345678", "1.2345678901234568e+17"),
            // %1.15g round-trips within cJSON's loose tolerance.
            ("0.30000000000000004", "0.3"),
            ("0.1234567890123456789", "0.12345678901234568"),
            ("1e999", "null"),
            ("1E2", "100"),
            ("0.0001", "0.0001"),
            ("0.00001", "1e-05"),
        ] {
            assert_eq!(round(input, false).as_deref(), Some(out), "{input}");
        }
    }

    #[test]
    fn invalid_json_refused() {
        for bad in [
            "",
            "hello",
            "{",
            "[1,]",
            "{\"a\"}",
            "01x",
            "1.2.3",
            "\"abc",
            "[1 2]",
            "-",
            "\"\\x\"",
            "nul",
            "{\"a\":1,}",
            "\"\\ud800\"",
            "1\u{0}",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad:?}");
        }
        // cJSON is lenient about these.
        assert!(parse(b"+1").is_none()); // a value cannot start with '+'
        assert!(parse(b"[.5]").is_none());
        assert!(parse(b"  \t\n 5 \r\n").is_some());
        let deep = "[".repeat(2000);
        assert_eq!(parse(deep.as_bytes()), None);
    }

    #[test]
    fn strings_escape_like_cjson() {
        let mut out = Vec::new();
        print_string(b"he\"l\\lo\x01\x7f\xff\x08\x0c", &mut out);
        assert_eq!(out, b"\"he\\\"l\\\\lo\\u0001\x7f\xff\\b\\f\"");
    }

    #[test]
    fn percent_g() {
        assert_eq!(format_g(100.0, 15), "100");
        assert_eq!(format_g(1e15, 15), "1e+15");
        assert_eq!(format_g(123456.789, 15), "123456.789");
        assert_eq!(format_g(-0.000012345, 15), "-1.2345e-05");
        assert_eq!(format_g(0.1, 17), "0.10000000000000001");
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 88172645463325252;
        for _ in 0..3000 {
            let len = (x % 24) as usize;
            let mut b = Vec::new();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let alphabet = b"{}[]\",:0123456789.eE+-tfnrul\\ ";
                b.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            if let Some(v) = parse(&b) {
                // Whatever parses prints as JSON that parses and prints the same.
                let printed = v.print(false);
                let again = parse(&printed).map(|w| w.print(false));
                assert_eq!(again, Some(printed), "{:?}", String::from_utf8_lossy(&b));
                let _ = v.print(true);
            }
        }
    }
}
