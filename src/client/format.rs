//! format: how `midge_sub` and `midge_rr` print a received message, byte
//! for byte like mosquitto_sub 2.0: the plain and `-v` forms, `-N`, and
//! `-F` with every `%` specifier (including field widths, precision, the
//! v5 property ones and `%j`/`%J` JSON), `@` time conversions and `\`
//! escapes.
//!
//! Owns: validating a `-F` format string (`check_format`, with Mosquitto's
//! error text) and rendering a message into stdout/stderr bytes.
//!
//! Must not: write to the terminal itself or read the clock directly (the
//! caller hands in a way to get the local time), so every output is
//! testable. Mosquitto's quirks are kept on purpose where scripts could
//! depend on them (e.g. `%5p` truncating the payload to five bytes, `%-p`
//! padding with as many spaces as the payload is long).

use super::json::{self, Json};
use super::localtime::{strftime, strftime_one, Tm};
use super::session::Message;
use crate::protocol::Property;

/// What to print, from the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputOptions {
    /// `-F`: raw bytes of the format string.
    pub format: Option<Vec<u8>>,
    /// `-v`
    pub verbose: bool,
    /// false with `-N`.
    pub eol: bool,
    /// `--pretty`
    pub pretty: bool,
}

/// Validate a `-F` format string. The error is Mosquitto's message,
/// without the trailing newline.
pub fn check_format(fmt: &[u8]) -> Result<(), String> {
    const INCOMPLETE: &str = "Error: Incomplete format specifier.";
    let len = fmt.len();
    let at = |i: usize| fmt.get(i).copied().unwrap_or(0);
    let mut i = 0;
    while i < len {
        match at(i) {
            b'%' => {
                if i == len - 1 {
                    return Err(INCOMPLETE.into());
                }
                if at(i + 1) == b'0' || at(i + 1) == b'-' {
                    i += 1;
                    if i == len - 1 {
                        return Err(INCOMPLETE.into());
                    }
                }
                while at(i + 1).is_ascii_digit() {
                    i += 1;
                    if i == len - 1 {
                        return Err(INCOMPLETE.into());
                    }
                }
                if at(i + 1) == b'.' {
                    i += 1;
                    if i == len - 1 {
                        return Err(INCOMPLETE.into());
                    }
                    while at(i + 1).is_ascii_digit() {
                        i += 1;
                        if i == len - 1 {
                            return Err(INCOMPLETE.into());
                        }
                    }
                }
                let c = at(i + 1);
                if !b"%ACDEFIlmPpqRSrtjJUxX".contains(&c) {
                    return Err(format!(
                        "Error: Invalid format specifier '{}'.",
                        String::from_utf8_lossy(&[c])
                    ));
                }
                i += 1;
            }
            b'@' => {
                if i == len - 1 {
                    return Err(INCOMPLETE.into());
                }
                i += 1;
            }
            b'\\' => {
                if i == len - 1 {
                    return Err("Error: Incomplete escape specifier.".into());
                }
                let c = at(i + 1);
                if !b"\\0aenrtv".contains(&c) {
                    return Err(format!(
                        "Error: Invalid escape specifier '{}'.",
                        String::from_utf8_lossy(&[c])
                    ));
                }
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Bytes for stdout and stderr.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Render one message. `now` is called for each time stamp needed.
pub fn render(opts: &OutputOptions, m: &Message, now: &mut dyn FnMut() -> Tm) -> Rendered {
    let mut r = Rendered::default();
    if let Some(fmt) = &opts.format {
        formatted(opts, fmt, m, now, &mut r);
        return r;
    }
    let out = &mut r.stdout;
    if opts.verbose {
        if m.payload.is_empty() {
            if opts.eol {
                out.extend_from_slice(m.topic.as_bytes());
                out.extend_from_slice(b" (null)\n");
            }
        } else {
            out.extend_from_slice(m.topic.as_bytes());
            out.push(b' ');
            out.extend_from_slice(&m.payload);
            if opts.eol {
                out.push(b'\n');
            }
        }
    } else if !m.payload.is_empty() {
        out.extend_from_slice(&m.payload);
        if opts.eol {
            out.push(b'\n');
        }
    }
    r
}

/// The largest field width or precision honoured; larger ones are taken as
/// this. mosquitto_sub hands the number to printf, so `%99999999999p`
/// would pad with gigabytes of spaces (or overflow its `int`); one line of
/// a terminal never needs more than this, and a bad `-F` must not exhaust
/// memory.
pub const MAX_FIELD_WIDTH: usize = 65_536;

#[derive(Clone, Copy)]
struct Spec {
    left: bool,
    pad: u8,
    width: usize,
    /// None: no precision given.
    precision: Option<usize>,
}

fn formatted(
    opts: &OutputOptions,
    fmt: &[u8],
    m: &Message,
    now: &mut dyn FnMut() -> Tm,
    r: &mut Rendered,
) {
    let len = fmt.len();
    let at = |i: usize| fmt.get(i).copied().unwrap_or(0);
    // '@' conversions share one time stamp per message, like mosquitto_sub.
    let mut at_time: Option<Tm> = None;
    let mut i = 0;
    while i < len {
        match at(i) {
            b'%' => {
                let mut spec = Spec {
                    left: false,
                    pad: b' ',
                    width: 0,
                    precision: None,
                };
                if i < len - 1 {
                    i += 1;
                    if at(i) == b'-' {
                        spec.left = true;
                        if i < len - 1 {
                            i += 1;
                        }
                    }
                    if at(i) == b'0' {
                        spec.pad = b'0';
                        if i < len - 1 {
                            i += 1;
                        }
                    }
                    while i < len - 1 && at(i).is_ascii_digit() {
                        spec.width = spec
                            .width
                            .saturating_mul(10)
                            .saturating_add(usize::from(at(i) - b'0'))
                            .min(MAX_FIELD_WIDTH);
                        i += 1;
                    }
                    if at(i) == b'.' && i < len - 1 {
                        i += 1;
                        let mut p = 0usize;
                        while i < len - 1 && at(i).is_ascii_digit() {
                            p = p
                                .saturating_mul(10)
                                .saturating_add(usize::from(at(i) - b'0'))
                                .min(MAX_FIELD_WIDTH);
                            i += 1;
                        }
                        spec.precision = Some(p);
                    }
                    if i < len {
                        percent(opts, at(i), spec, m, now, r);
                    }
                }
            }
            b'@' => {
                if i < len - 1 {
                    i += 1;
                    let c = at(i);
                    if c == b'@' {
                        r.stdout.push(b'@');
                    } else {
                        let t = at_time.get_or_insert_with(&mut *now);
                        if c == b'N' {
                            r.stdout
                                .extend_from_slice(format!("{:09}", t.nanos).as_bytes());
                        } else {
                            let mut s = String::new();
                            strftime_one(char::from(c), t, &mut s);
                            r.stdout.extend_from_slice(s.as_bytes());
                        }
                    }
                }
            }
            b'\\' => {
                if i < len - 1 {
                    i += 1;
                    let esc = match at(i) {
                        b'\\' => Some(b'\\'),
                        b'0' => Some(0),
                        b'a' => Some(0x07),
                        b'e' => Some(0x1B),
                        b'n' => Some(b'\n'),
                        b'r' => Some(b'\r'),
                        b't' => Some(b'\t'),
                        b'v' => Some(0x0B),
                        _ => None,
                    };
                    if let Some(b) = esc {
                        r.stdout.push(b);
                    }
                }
            }
            c => r.stdout.push(c),
        }
        i += 1;
    }
    if opts.eol {
        r.stdout.push(b'\n');
    }
}

/// C's `%d` with `-`, `0` and a width. Padded by hand: `format!`'s own
/// width stops at 65 535 and panics above it.
fn int(out: &mut Vec<u8>, value: i64, spec: Spec) {
    let digits = value.to_string();
    let padlen = spec.width.saturating_sub(digits.len());
    if spec.left {
        out.extend_from_slice(digits.as_bytes());
        out.extend(std::iter::repeat_n(b' ', padlen));
    } else if spec.pad == b'0' {
        // The sign goes before the zeros: -0005.
        let (sign, abs) = match digits.strip_prefix('-') {
            Some(abs) => ("-", abs),
            None => ("", digits.as_str()),
        };
        out.extend_from_slice(sign.as_bytes());
        out.extend(std::iter::repeat_n(b'0', padlen));
        out.extend_from_slice(abs.as_bytes());
    } else {
        out.extend(std::iter::repeat_n(b' ', padlen));
        out.extend_from_slice(digits.as_bytes());
    }
}

/// C's `%s` with `-`, a width and a precision (all in bytes).
fn string(out: &mut Vec<u8>, value: &[u8], spec: Spec) {
    let v = match spec.precision {
        Some(p) => value.get(..p.min(value.len())).unwrap_or(value),
        None => value,
    };
    let padlen = spec.width.saturating_sub(v.len());
    if !spec.left {
        out.extend(std::iter::repeat_n(b' ', padlen));
    }
    out.extend_from_slice(v);
    if spec.left {
        out.extend(std::iter::repeat_n(b' ', padlen));
    }
}

fn blank(out: &mut Vec<u8>, pad: u8, width: usize) {
    out.extend(std::iter::repeat_n(pad, width));
}

/// mosquitto_sub's `write_payload`, quirks included: a width also caps
/// the bytes printed; for hex it counts hex digits.
fn payload(out: &mut Vec<u8>, data: &[u8], hex: u8, spec: Spec) {
    let mut n = data.len();
    let padlen: i64 = if spec.width > 0 {
        n = n.min(spec.width);
        if hex > 0 {
            n /= 2;
            spec.width as i64 - (n as i64) * 2
        } else {
            spec.width as i64 - n as i64
        }
    } else {
        -(n as i64)
    };
    if !spec.left && padlen > 0 {
        out.extend(std::iter::repeat_n(spec.pad, padlen as usize));
    }
    let shown = data.get(..n).unwrap_or(data);
    match hex {
        0 => out.extend_from_slice(shown),
        1 => {
            for b in shown {
                out.extend_from_slice(format!("{b:02x}").as_bytes());
            }
        }
        _ => {
            for b in shown {
                out.extend_from_slice(format!("{b:02X}").as_bytes());
            }
        }
    }
    if spec.left {
        // printf("%*s", padlen, ""): a negative width left-justifies, so
        // it prints |padlen| spaces either way.
        out.extend(std::iter::repeat_n(b' ', padlen.unsigned_abs() as usize));
    }
}

fn percent(
    opts: &OutputOptions,
    c: u8,
    spec: Spec,
    m: &Message,
    now: &mut dyn FnMut() -> Tm,
    r: &mut Rendered,
) {
    let props = m.props();
    let out = &mut r.stdout;
    match c {
        b'%' => out.push(b'%'),
        b'A' => match props.topic_alias() {
            Some(v) => int(out, i64::from(v), spec),
            None => blank(out, spec.pad, spec.width),
        },
        b'C' => match props.content_type() {
            Some(v) => string(out, v.as_bytes(), spec),
            None => blank(out, b' ', spec.width),
        },
        b'D' => {
            if let Some(v) = props.correlation_data() {
                out.extend_from_slice(v);
            }
        }
        b'E' => match props.message_expiry_interval() {
            // mosquitto_sub casts to int.
            Some(v) => int(out, i64::from(v as i32), spec),
            None => blank(out, spec.pad, spec.width),
        },
        b'F' => match props.payload_format_indicator() {
            Some(v) => int(out, i64::from(v), spec),
            None => blank(out, spec.pad, spec.width),
        },
        b'I' => {
            let t = now();
            string(out, strftime("%FT%T%z", &t).as_bytes(), spec);
        }
        b'j' | b'J' => {
            let t = now();
            match json_message(m, &t, c == b'j') {
                Some(v) => out.extend_from_slice(&v.print(opts.pretty)),
                None => r.stderr.extend_from_slice(
                    format!(
                        "Error: Message payload is not valid JSON on topic {}.\n",
                        m.topic
                    )
                    .as_bytes(),
                ),
            }
        }
        b'l' => int(out, m.payload.len() as i64, spec),
        b'm' => int(out, i64::from(m.mid), spec),
        b'P' => {
            for (n, (k, v)) in props.user_properties().enumerate() {
                if n > 0 {
                    out.push(b' ');
                }
                out.extend_from_slice(k.as_bytes());
                out.push(b':');
                out.extend_from_slice(v.as_bytes());
            }
        }
        b'p' => payload(out, &m.payload, 0, spec),
        b'q' => out.push(b'0' + m.qos as u8),
        b'R' => {
            if let Some(v) = props.response_topic() {
                string(out, v.as_bytes(), spec);
            }
        }
        b'r' => out.push(if m.retain { b'1' } else { b'0' }),
        b'S' => match props.subscription_identifiers().next() {
            Some(v) => int(out, i64::from(v as i32), spec),
            None => blank(out, spec.pad, spec.width),
        },
        b't' => string(out, m.topic.as_bytes(), spec),
        b'U' => {
            let t = now();
            out.extend_from_slice(format!("{}.{:09}", t.unix, t.nanos).as_bytes());
        }
        b'x' => payload(out, &m.payload, 1, spec),
        b'X' => payload(out, &m.payload, 2, spec),
        _ => {}
    }
}

/// The "tst" field: local time with microseconds, a literal 'Z' and then
/// the UTC offset (mosquitto_sub's format, odd as it is).
pub fn json_timestamp(t: &Tm) -> String {
    format!(
        "{}.{:06}Z{}",
        strftime("%Y-%m-%dT%H:%M:%S", t),
        t.nanos / 1000,
        strftime("%z", t)
    )
}

/// The object `%j` (escaped payload) or `%J` (payload parsed as JSON)
/// prints. None when `%J` and the payload is not valid JSON.
pub fn json_message(m: &Message, t: &Tm, escaped: bool) -> Option<Json> {
    let mut obj: Vec<(Vec<u8>, Json)> = vec![
        (b"tst".to_vec(), Json::str(&json_timestamp(t))),
        (b"topic".to_vec(), Json::str(&m.topic)),
        (b"qos".to_vec(), Json::int(m.qos as i64)),
        (b"retain".to_vec(), Json::int(i64::from(m.retain))),
        (b"payloadlen".to_vec(), Json::int(m.payload.len() as i64)),
    ];
    if m.qos as u8 > 0 {
        obj.push((b"mid".to_vec(), Json::int(i64::from(m.mid))));
    }
    if !m.properties.is_empty() {
        obj.push((b"properties".to_vec(), json_properties(m)));
    }
    let payload = if m.payload.is_empty() {
        Json::Null
    } else if escaped {
        Json::String(m.payload.clone())
    } else {
        json::parse(&m.payload)?
    };
    obj.push((b"payload".to_vec(), payload));
    Some(Json::Object(obj))
}

fn json_properties(m: &Message) -> Json {
    let mut members: Vec<(Vec<u8>, Json)> = Vec::new();
    let mut user: Option<usize> = None;
    // mosquitto_sub reads the topic alias into a variable the correlation
    // data length also lands in; printing that keeps output identical.
    let mut last_u16: i64 = 0;
    for p in m.props().iter() {
        let (name, value): (&str, Json) = match p {
            Property::PayloadFormatIndicator(v) => {
                ("payload-format-indicator", Json::int(i64::from(v)))
            }
            Property::MessageExpiryInterval(v) => {
                ("message-expiry-interval", Json::int(i64::from(v)))
            }
            Property::ContentType(v) => ("content-type", Json::str(v)),
            Property::ResponseTopic(v) => ("response-topic", Json::str(v)),
            Property::CorrelationData(v) => {
                last_u16 = v.len() as i64;
                ("correlation-data", Json::String(v.to_vec()))
            }
            Property::SubscriptionIdentifier(v) => {
                ("subscription-identifier", Json::int(i64::from(v)))
            }
            Property::TopicAlias(_) => ("topic-alias", Json::int(last_u16)),
            Property::UserProperty(k, v) => {
                let idx = match user {
                    Some(i) => i,
                    None => {
                        members.push((b"user-properties".to_vec(), Json::Object(Vec::new())));
                        let i = members.len() - 1;
                        user = Some(i);
                        i
                    }
                };
                if let Some((_, Json::Object(o))) = members.get_mut(idx) {
                    o.push((k.as_bytes().to_vec(), Json::str(v)));
                }
                continue;
            }
            _ => continue,
        };
        members.push((name.as_bytes().to_vec(), value));
    }
    Json::Object(members)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::localtime::tm_at;
    use crate::protocol::{PropertyWriter, QoS};

    fn msg(topic: &str, payload: &[u8], props: &[Property<'_>]) -> Message {
        let mut w = PropertyWriter::new();
        for p in props {
            w.push(*p);
        }
        Message {
            topic: topic.into(),
            payload: payload.to_vec(),
            qos: QoS::AtMostOnce,
            retain: false,
            dup: false,
            mid: 0,
            properties: w.as_bytes().to_vec(),
        }
    }

    fn fmt(f: &str, m: &Message) -> Rendered {
        let opts = OutputOptions {
            format: Some(f.as_bytes().to_vec()),
            verbose: false,
            eol: true,
            pretty: false,
        };
        // 2026-11-22T00:35:46.913008Z in UTC.
        let mut now = || tm_at(1_795_307_746, 913_008_123, 0, "UTC");
        render(&opts, m, &mut now)
    }

    /// Expected outputs captured from mosquitto_sub 2.0.11 for the same
    /// messages (see tests/clients.rs for the live comparison).
    #[test]
    fn specifiers_match_mosquitto_sub() {
        let m = msg(
            "f/1",
            b"he\"l\\lo",
            &[
                Property::ContentType("text/plain"),
                Property::CorrelationData(b"cd1"),
                Property::PayloadFormatIndicator(1),
                Property::UserProperty("k1", "v1"),
                Property::UserProperty("k2", "v2"),
                Property::ResponseTopic("resp/x"),
                Property::MessageExpiryInterval(100),
            ],
        );
        let f = "%t|%p|%q|%r|%m|%l|%x|%X|%C|%D|%E|%F|%P|%R|%S|%A|%%|%10t|%-10t|%.2t|%05l|%-5l.|%5p|%-5p|%3x|\\t\\\\@@";
        assert_eq!(
            String::from_utf8(fmt(f, &m).stdout).unwrap(),
            "f/1|he\"l\\lo|0|0|0|7|6865226c5c6c6f|6865226C5C6C6F|text/plain|cd1|100|1|k1:v1 k2:v2|resp/x|||%|       f/1|f/1       |f/|00007|7    .|he\"l\\|he\"l\\| 68|\t\\@\n"
        );
        let j = fmt("%j", &m);
        assert_eq!(
            String::from_utf8(j.stdout).unwrap(),
            "{\"tst\":\"2026-11-22T00:35:46.913008Z+0000\",\"topic\":\"f/1\",\"qos\":0,\"retain\":0,\"payloadlen\":7,\"properties\":{\"content-type\":\"text/plain\",\"correlation-data\":\"cd1\",\"payload-format-indicator\":1,\"user-properties\":{\"k1\":\"v1\",\"k2\":\"v2\"},\"response-topic\":\"resp/x\",\"message-expiry-interval\":100},\"payload\":\"he\\\"l\\\\lo\"}\n"
        );
        let bad = fmt("%J", &m);
        assert_eq!(bad.stdout, b"\n");
        assert_eq!(
            String::from_utf8(bad.stderr).unwrap(),
            "Error: Message payload is not valid JSON on topic f/1.\n"
        );
        let good = fmt("%J", &msg("f/2", br#"{"a":1, "b":[1,2]}"#, &[]));
        assert_eq!(
            String::from_utf8(good.stdout).unwrap(),
            "{\"tst\":\"2026-11-22T00:35:46.913008Z+0000\",\"topic\":\"f/2\",\"qos\":0,\"retain\":0,\"payloadlen\":18,\"payload\":{\"a\":1,\"b\":[1,2]}}\n"
        );
        let t = fmt("%I %U @Y-@m-@d @H:@M:@S.@N @s", &m);
        assert_eq!(
            String::from_utf8(t.stdout).unwrap(),
            "2026-11-22T00:35:46+0000 1795307746.913008123 2026-11-22 00:35:46.913008123 1795307746\n"
        );
    }

    #[test]
    fn binary_payload_in_json_and_pretty() {
        let m = msg("f/3", b"bin\x01\x02\xff", &[]);
        assert_eq!(
            fmt("%j", &m).stdout,
            b"{\"tst\":\"2026-11-22T00:35:46.913008Z+0000\",\"topic\":\"f/3\",\"qos\":0,\"retain\":0,\"payloadlen\":6,\"payload\":\"bin\\u0001\\u0002\xff\"}\n"
        );
        let opts = OutputOptions {
            format: Some(b"%j".to_vec()),
            eol: true,
            pretty: true,
            verbose: false,
        };
        let mut now = || tm_at(1_795_307_746, 927_580_000, 0, "UTC");
        let r = render(&opts, &msg("f/2", b"x", &[]), &mut now);
        assert_eq!(
            String::from_utf8(r.stdout).unwrap(),
            "{\n\t\"tst\":\t\"2026-11-22T00:35:46.927580Z+0000\",\n\t\"topic\":\t\"f/2\",\n\t\"qos\":\t0,\n\t\"retain\":\t0,\n\t\"payloadlen\":\t1,\n\t\"payload\":\t\"x\"\n}\n"
        );
        // Empty payload: null; a NUL ends the escaped string.
        let e = fmt("%j", &msg("e", b"", &[]));
        assert!(String::from_utf8(e.stdout)
            .unwrap()
            .ends_with("\"payload\":null}\n"));
        let z = fmt("%j", &msg("z", b"ab\0cd", &[]));
        assert!(String::from_utf8(z.stdout)
            .unwrap()
            .ends_with("\"payloadlen\":5,\"payload\":\"ab\"}\n"));
    }

    #[test]
    fn plain_and_verbose() {
        let m = msg("a/b", b"hello", &[]);
        let e = msg("a/c", b"", &[]);
        let mut now = || tm_at(0, 0, 0, "UTC");
        let mut o = OutputOptions {
            eol: true,
            ..OutputOptions::default()
        };
        assert_eq!(render(&o, &m, &mut now).stdout, b"hello\n");
        assert_eq!(render(&o, &e, &mut now).stdout, b"");
        o.verbose = true;
        assert_eq!(render(&o, &m, &mut now).stdout, b"a/b hello\n");
        assert_eq!(render(&o, &e, &mut now).stdout, b"a/c (null)\n");
        o.eol = false;
        assert_eq!(render(&o, &m, &mut now).stdout, b"a/b hello");
        assert_eq!(render(&o, &e, &mut now).stdout, b"");
    }

    #[test]
    fn width_quirks() {
        let m = msg("t", b"abc", &[]);
        assert_eq!(fmt("[%-p]", &m).stdout, b"[abc   ]\n");
        assert_eq!(fmt("[%-x]", &m).stdout, b"[616263   ]\n");
        assert_eq!(fmt("[%08p]", &m).stdout, b"[00000abc]\n");
        // The width caps the bytes shown before hex doubles them.
        assert_eq!(fmt("[%6x]", &m).stdout, b"[    61]\n");
        assert_eq!(fmt("[%7X]", &m).stdout, b"[     61]\n");
        assert_eq!(fmt("[%-4E|%04S|%3C]", &m).stdout, b"[    |0000|   ]\n");
        // An unknown specifier (refused by check_format) prints nothing.
        assert_eq!(fmt("[%\\0]", &m).stdout, b"[0]\n");
    }

    /// Regression (fuzzing, issue 16): `%99999999999p` asked for ~100 GB of
    /// padding and aborted the tool; widths are capped at MAX_FIELD_WIDTH.
    #[test]
    fn huge_field_width_is_capped() {
        let m = msg("t", b"abc", &[]);
        for f in [
            "%99999999999p",
            "%-99999999999999999999999x",
            "%099999999999l",
            "%99999999999.99999999999t",
            "%99999999999E",
            "%99999999999C",
        ] {
            let out = fmt(f, &m).stdout;
            assert_eq!(out.len(), MAX_FIELD_WIDTH + 1, "{f}");
        }
        // Widths below the cap are unchanged; above format!'s own limit
        // (65 535) an integer is padded without a panic.
        assert_eq!(fmt("%5l|%-3l|%03l", &m).stdout, b"    3|3  |003\n");
        assert_eq!(fmt("%70000l", &m).stdout.len(), MAX_FIELD_WIDTH + 1);
        // mosquitto_sub casts the expiry to int: C puts the sign before the zeros.
        let neg = msg("t", b"", &[Property::MessageExpiryInterval(u32::MAX - 4)]);
        assert_eq!(fmt("%05E|%-5E|%5E", &neg).stdout, b"-0005|-5   |   -5\n");
        assert_eq!(fmt("%65536t", &m).stdout.len(), MAX_FIELD_WIDTH + 1);
    }

    #[test]
    fn format_checks_match_mosquitto() {
        for ok in [
            "%t %p",
            "%-10t",
            "%05l",
            "%.3t",
            "%10.3t",
            "@Y@@",
            "\\n\\e\\0",
            "%%",
            "",
        ] {
            assert_eq!(check_format(ok.as_bytes()), Ok(()), "{ok}");
        }
        for (bad, err) in [
            ("%", "Error: Incomplete format specifier."),
            ("%-", "Error: Incomplete format specifier."),
            ("%10", "Error: Incomplete format specifier."),
            ("%.", "Error: Incomplete format specifier."),
            ("@", "Error: Incomplete format specifier."),
            ("%Z", "Error: Invalid format specifier 'Z'."),
            ("%0-p", "Error: Invalid format specifier '-'."),
            ("\\", "Error: Incomplete escape specifier."),
            ("\\q", "Error: Invalid escape specifier 'q'."),
        ] {
            assert_eq!(check_format(bad.as_bytes()), Err(err.to_string()), "{bad}");
        }
    }

    #[test]
    fn random_formats_never_panic() {
        let m = msg("a/b", b"payload", &[Property::UserProperty("k", "v")]);
        let alphabet = b"%-0123456789.@\\tpxXjJIUlmqrRSACDEFPn@a";
        let mut x: u64 = 12345;
        for _ in 0..3000 {
            let len = (x % 12) as usize;
            let mut f = Vec::new();
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                f.push(alphabet[(x % alphabet.len() as u64) as usize]);
            }
            let _ = check_format(&f);
            let opts = OutputOptions {
                format: Some(f),
                eol: true,
                ..OutputOptions::default()
            };
            let mut now = || tm_at(0, 0, 0, "UTC");
            let _ = render(&opts, &m, &mut now);
        }
    }
}
