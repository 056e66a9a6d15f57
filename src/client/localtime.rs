//! localtime: wall-clock time in the local time zone and `strftime`, for
//! the time stamps `midge_sub -F` prints (`%I`, `%U`, `%j`'s "tst", `@Y`...).
//!
//! Owns: reading the time zone the way the C library does (`TZ` as a POSIX
//! rule such as `CET-1CEST,M3.5.0,M10.5.0/3`, as a zone name under
//! /usr/share/zoneinfo, or /etc/localtime when unset; TZif versions 1-4
//! including the footer rule used for dates past the last transition), the
//! civil calendar, and `strftime` conversions in the C locale.
//!
//! Must not: call into libc (no `unsafe` here) or panic on a damaged zone
//! file; anything unreadable falls back to UTC, as glibc does.

use std::time::{SystemTime, UNIX_EPOCH};

/// A broken-down local time (like `struct tm`) plus nanoseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tm {
    pub year: i64,
    /// 1..=12
    pub month: u32,
    /// 1..=31
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Sunday
    pub weekday: u32,
    /// 0..=365
    pub yearday: u32,
    /// Seconds east of UTC.
    pub utc_offset: i64,
    pub zone: String,
    /// Seconds since the epoch (UTC) and the nanoseconds within it.
    pub unix: i64,
    pub nanos: u32,
}

/// Days since 1970-01-01 for a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) for days since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Break `unix` seconds down with a fixed offset.
pub fn tm_at(unix: i64, nanos: u32, utc_offset: i64, zone: &str) -> Tm {
    let local = unix + utc_offset;
    let days = local.div_euclid(86_400);
    let secs = local.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let yearday = (days - days_from_civil(year, 1, 1)) as u32;
    Tm {
        year,
        month,
        day,
        hour: (secs / 3600) as u32,
        minute: (secs / 60 % 60) as u32,
        second: (secs % 60) as u32,
        weekday: (days + 4).rem_euclid(7) as u32,
        yearday,
        utc_offset,
        zone: zone.to_string(),
        unix,
        nanos,
    }
}

// ---------------------------------------------------------------------------
// Time zones.

/// A POSIX TZ rule: standard time, and optionally daylight time with the
/// dates it starts and ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PosixTz {
    std_name: String,
    /// Seconds east of UTC (POSIX writes the opposite sign).
    std_offset: i64,
    dst: Option<Dst>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Dst {
    name: String,
    offset: i64,
    start: Rule,
    /// Seconds after local midnight (may be negative or over 24 h).
    start_time: i64,
    end: Rule,
    end_time: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// `Jn`: day 1..=365, February 29 never counted.
    Julian1(u32),
    /// `n`: day 0..=365, leap days counted.
    Julian0(u32),
    /// `Mm.w.d`: month, week 1..=5 (5 = last), weekday 0 = Sunday.
    MonthWeekDay(u32, u32, u32),
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn name(&mut self) -> Option<String> {
        if self.peek() == Some(b'<') {
            self.i += 1;
            let start = self.i;
            while self.peek()? != b'>' {
                self.i += 1;
            }
            let n = self.s.get(start..self.i)?;
            self.i += 1;
            return Some(String::from_utf8_lossy(n).into_owned());
        }
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_alphabetic()) {
            self.i += 1;
        }
        if self.i - start < 3 {
            return None;
        }
        Some(String::from_utf8_lossy(self.s.get(start..self.i)?).into_owned())
    }

    fn number(&mut self) -> Option<i64> {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        std::str::from_utf8(self.s.get(start..self.i)?)
            .ok()?
            .parse()
            .ok()
    }

    /// `[+-]hh[:mm[:ss]]` in seconds, sign as written.
    fn hms(&mut self) -> Option<i64> {
        let sign = match self.peek() {
            Some(b'-') => {
                self.i += 1;
                -1
            }
            Some(b'+') => {
                self.i += 1;
                1
            }
            _ => 1,
        };
        let mut v = self.number()? * 3600;
        if self.peek() == Some(b':') {
            self.i += 1;
            v += self.number()? * 60;
            if self.peek() == Some(b':') {
                self.i += 1;
                v += self.number()?;
            }
        }
        Some(sign * v)
    }

    fn rule(&mut self) -> Option<(Rule, i64)> {
        let rule = match self.peek()? {
            b'J' => {
                self.i += 1;
                Rule::Julian1(u32::try_from(self.number()?).ok()?)
            }
            b'M' => {
                self.i += 1;
                let m = self.number()?;
                if self.peek()? != b'.' {
                    return None;
                }
                self.i += 1;
                let w = self.number()?;
                if self.peek()? != b'.' {
                    return None;
                }
                self.i += 1;
                let d = self.number()?;
                if !(1..=12).contains(&m) || !(1..=5).contains(&w) || !(0..=6).contains(&d) {
                    return None;
                }
                Rule::MonthWeekDay(m as u32, w as u32, d as u32)
            }
            _ => Rule::Julian0(u32::try_from(self.number()?).ok()?),
        };
        let time = if self.peek() == Some(b'/') {
            self.i += 1;
            self.hms()?
        } else {
            7200
        };
        Some((rule, time))
    }
}

impl PosixTz {
    pub fn parse(s: &str) -> Option<PosixTz> {
        let mut c = Cursor {
            s: s.as_bytes(),
            i: 0,
        };
        let std_name = c.name()?;
        let std_offset = -c.hms()?;
        if c.peek().is_none() {
            return Some(PosixTz {
                std_name,
                std_offset,
                dst: None,
            });
        }
        let dst_name = c.name()?;
        let dst_offset = match c.peek() {
            Some(b',') | None => std_offset + 3600,
            _ => -c.hms()?,
        };
        let (start, start_time, end, end_time) = if c.peek() == Some(b',') {
            c.i += 1;
            let (s, st) = c.rule()?;
            if c.peek()? != b',' {
                return None;
            }
            c.i += 1;
            let (e, et) = c.rule()?;
            (s, st, e, et)
        } else {
            // No rule: the US rules POSIX implementations default to.
            (
                Rule::MonthWeekDay(3, 2, 0),
                7200,
                Rule::MonthWeekDay(11, 1, 0),
                7200,
            )
        };
        if c.peek().is_some() {
            return None;
        }
        Some(PosixTz {
            std_name,
            std_offset,
            dst: Some(Dst {
                name: dst_name,
                offset: dst_offset,
                start,
                start_time,
                end,
                end_time,
            }),
        })
    }

    /// Offset and zone abbreviation in force at `unix`.
    pub fn at(&self, unix: i64) -> (i64, &str) {
        let Some(dst) = &self.dst else {
            return (self.std_offset, &self.std_name);
        };
        let (year, _, _) = civil_from_days((unix + self.std_offset).div_euclid(86_400));
        // Transitions in UTC: the start is written in standard time, the
        // end in daylight time.
        let start = rule_day(dst.start, year) * 86_400 + dst.start_time - self.std_offset;
        let end = rule_day(dst.end, year) * 86_400 + dst.end_time - dst.offset;
        let in_dst = if start < end {
            unix >= start && unix < end
        } else {
            // Southern hemisphere: daylight time spans the new year.
            !(unix >= end && unix < start)
        };
        if in_dst {
            (dst.offset, &dst.name)
        } else {
            (self.std_offset, &self.std_name)
        }
    }
}

/// Days since the epoch of the day `rule` names in `year`.
fn rule_day(rule: Rule, year: i64) -> i64 {
    let jan1 = days_from_civil(year, 1, 1);
    match rule {
        Rule::Julian1(n) => {
            let n = i64::from(n.clamp(1, 365));
            let leap_shift = i64::from(is_leap(year) && n >= 60);
            jan1 + n - 1 + leap_shift
        }
        Rule::Julian0(n) => jan1 + i64::from(n.min(365)),
        Rule::MonthWeekDay(m, w, d) => {
            let first = days_from_civil(year, m, 1);
            let first_wd = (first + 4).rem_euclid(7);
            let mut day = first + (i64::from(d) - first_wd).rem_euclid(7) + (i64::from(w) - 1) * 7;
            let next_month = if m == 12 {
                days_from_civil(year + 1, 1, 1)
            } else {
                days_from_civil(year, m + 1, 1)
            };
            while day >= next_month {
                day -= 7;
            }
            day
        }
    }
}

/// A compiled zone (TZif): transitions, local time types and the footer
/// rule for times after the last transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    transitions: Vec<(i64, usize)>,
    types: Vec<(i64, bool, String)>,
    footer: Option<PosixTz>,
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let x = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
}

fn be_i64(b: &[u8], at: usize) -> Option<i64> {
    let x = b.get(at..at + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(x);
    Some(i64::from_be_bytes(a))
}

impl Zone {
    /// Parse a TZif file (RFC 8536). None if it is not one.
    pub fn parse(data: &[u8]) -> Option<Zone> {
        if data.get(..4)? != b"TZif" {
            return None;
        }
        let version = *data.get(4)?;
        let counts = |at: usize| -> Option<[usize; 6]> {
            let mut c = [0usize; 6];
            for (i, v) in c.iter_mut().enumerate() {
                *v = be_u32(data, at + 20 + i * 4)? as usize;
            }
            Some(c)
        };
        let [isut, isstd, leap, timecnt, typecnt, charcnt] = counts(0)?;
        let v1_len = timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isut;
        let (base, wide) = if version >= b'2' {
            (44 + v1_len, true)
        } else {
            (0, false)
        };
        let [isut, isstd, leap, timecnt, typecnt, charcnt] = counts(base)?;
        let tsize = if wide { 8 } else { 4 };
        let mut p = base + 44;
        let mut transitions = Vec::with_capacity(timecnt.min(4096));
        let idx_at = p + timecnt * tsize;
        for i in 0..timecnt {
            let t = if wide {
                be_i64(data, p + i * 8)?
            } else {
                i64::from(be_u32(data, p + i * 4)? as i32)
            };
            let idx = usize::from(*data.get(idx_at + i)?);
            transitions.push((t, idx));
        }
        p = idx_at + timecnt;
        let chars_at = p + typecnt * 6;
        let chars = data.get(chars_at..chars_at + charcnt)?;
        let mut types = Vec::with_capacity(typecnt.min(256));
        for i in 0..typecnt {
            let at = p + i * 6;
            let off = i64::from(be_u32(data, at)? as i32);
            let isdst = *data.get(at + 4)? != 0;
            let di = usize::from(*data.get(at + 5)?);
            let name = chars
                .get(di..)
                .and_then(|r| r.split(|&c| c == 0).next())
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default();
            types.push((off, isdst, name));
        }
        if types.is_empty() || transitions.iter().any(|&(_, i)| i >= types.len()) {
            return None;
        }
        let mut footer = None;
        if wide {
            let end = chars_at + charcnt + leap * (tsize + 4) + isstd + isut;
            if let Some(rest) = data.get(end..) {
                let text = String::from_utf8_lossy(rest);
                let rule = text.trim_matches('\n');
                if !rule.is_empty() {
                    footer = PosixTz::parse(rule);
                }
            }
        }
        Some(Zone {
            transitions,
            types,
            footer,
        })
    }

    pub fn at(&self, unix: i64) -> (i64, String) {
        let pos = self.transitions.partition_point(|&(t, _)| t <= unix);
        if pos == self.transitions.len() {
            if let Some(f) = &self.footer {
                let (o, n) = f.at(unix);
                return (o, n.to_string());
            }
        }
        let ty = if pos == 0 {
            // Before the first transition: the first standard-time type.
            self.types
                .iter()
                .find(|t| !t.1)
                .or_else(|| self.types.first())
        } else {
            self.transitions
                .get(pos - 1)
                .and_then(|&(_, i)| self.types.get(i))
        };
        match ty {
            Some((o, _, n)) => (*o, n.clone()),
            None => (0, "UTC".to_string()),
        }
    }
}

/// The local time zone, looked up like glibc does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalZone {
    Utc,
    Rule(PosixTz),
    File(Zone),
}

impl LocalZone {
    pub fn from_env() -> LocalZone {
        match std::env::var("TZ") {
            Err(_) => Self::from_file("/etc/localtime"),
            Ok(tz) => Self::from_tz(&tz),
        }
    }

    pub fn from_tz(tz: &str) -> LocalZone {
        let name = tz.strip_prefix(':').unwrap_or(tz);
        if name.is_empty() {
            return LocalZone::Utc;
        }
        if name.starts_with('/') {
            return Self::from_file(name);
        }
        if !name.contains("..") {
            let z = Self::from_file(&format!("/usr/share/zoneinfo/{name}"));
            if z != LocalZone::Utc {
                return z;
            }
        }
        PosixTz::parse(name)
            .map(LocalZone::Rule)
            .unwrap_or(LocalZone::Utc)
    }

    fn from_file(path: &str) -> LocalZone {
        std::fs::read(path)
            .ok()
            .and_then(|d| Zone::parse(&d))
            .map(LocalZone::File)
            .unwrap_or(LocalZone::Utc)
    }

    pub fn tm(&self, unix: i64, nanos: u32) -> Tm {
        match self {
            LocalZone::Utc => tm_at(unix, nanos, 0, "UTC"),
            LocalZone::Rule(r) => {
                let (o, n) = r.at(unix);
                tm_at(unix, nanos, o, n)
            }
            LocalZone::File(z) => {
                let (o, n) = z.at(unix);
                tm_at(unix, nanos, o, &n)
            }
        }
    }
}

/// The current local time.
pub fn now(zone: &LocalZone) -> Tm {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    zone.tm(d.as_secs() as i64, d.subsec_nanos())
}

// ---------------------------------------------------------------------------
// strftime (C locale).

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn day_name(t: &Tm) -> &'static str {
    DAYS.get(t.weekday as usize).copied().unwrap_or("?")
}

fn month_name(t: &Tm) -> &'static str {
    MONTHS
        .get((t.month as usize).wrapping_sub(1))
        .copied()
        .unwrap_or("?")
}

fn short(s: &str) -> &str {
    s.get(..3).unwrap_or(s)
}

/// ISO 8601 week-based year and week number.
fn iso_week(t: &Tm) -> (i64, u32) {
    let wday = (t.weekday + 6) % 7; // Monday = 0
    let yday = i64::from(t.yearday);
    let mut year = t.year;
    let mut week = (yday - i64::from(wday) + 10) / 7;
    if week < 1 {
        year -= 1;
        let prev_days = if is_leap(year) { 366 } else { 365 };
        week = (yday + prev_days - i64::from(wday) + 10) / 7;
    } else {
        let days = if is_leap(year) { 366 } else { 365 };
        if week == 53 && yday - i64::from(wday) + 3 >= days {
            year += 1;
            week = 1;
        }
    }
    (year, week as u32)
}

fn offset_text(off: i64) -> String {
    let sign = if off < 0 { '-' } else { '+' };
    let a = off.abs();
    format!("{sign}{:02}{:02}", a / 3600, a / 60 % 60)
}

/// One conversion (`spec` without the '%'), appended to `out`. Unknown
/// conversions are copied as written, as glibc does.
pub fn strftime_one(spec: char, t: &Tm, out: &mut String) {
    use std::fmt::Write as _;
    let hour12 = if t.hour % 12 == 0 { 12 } else { t.hour % 12 };
    let _ = match spec {
        'a' => write!(out, "{}", short(day_name(t))),
        'A' => write!(out, "{}", day_name(t)),
        'b' | 'h' => write!(out, "{}", short(month_name(t))),
        'B' => write!(out, "{}", month_name(t)),
        'c' => write!(
            out,
            "{} {} {:2} {:02}:{:02}:{:02} {}",
            short(day_name(t)),
            short(month_name(t)),
            t.day,
            t.hour,
            t.minute,
            t.second,
            t.year
        ),
        'C' => write!(out, "{:02}", t.year.div_euclid(100)),
        'd' => write!(out, "{:02}", t.day),
        'D' | 'x' => write!(
            out,
            "{:02}/{:02}/{:02}",
            t.month,
            t.day,
            t.year.rem_euclid(100)
        ),
        'e' => write!(out, "{:2}", t.day),
        'F' => write!(out, "{}-{:02}-{:02}", t.year, t.month, t.day),
        'g' => write!(out, "{:02}", iso_week(t).0.rem_euclid(100)),
        'G' => write!(out, "{}", iso_week(t).0),
        'H' => write!(out, "{:02}", t.hour),
        'I' => write!(out, "{:02}", hour12),
        'j' => write!(out, "{:03}", t.yearday + 1),
        'k' => write!(out, "{:2}", t.hour),
        'l' => write!(out, "{:2}", hour12),
        'm' => write!(out, "{:02}", t.month),
        'M' => write!(out, "{:02}", t.minute),
        'n' => {
            out.push('\n');
            Ok(())
        }
        'p' => write!(out, "{}", if t.hour < 12 { "AM" } else { "PM" }),
        'P' => write!(out, "{}", if t.hour < 12 { "am" } else { "pm" }),
        'r' => write!(
            out,
            "{:02}:{:02}:{:02} {}",
            hour12,
            t.minute,
            t.second,
            if t.hour < 12 { "AM" } else { "PM" }
        ),
        'R' => write!(out, "{:02}:{:02}", t.hour, t.minute),
        's' => write!(out, "{}", t.unix),
        'S' => write!(out, "{:02}", t.second),
        't' => {
            out.push('\t');
            Ok(())
        }
        'T' | 'X' => write!(out, "{:02}:{:02}:{:02}", t.hour, t.minute, t.second),
        'u' => write!(out, "{}", if t.weekday == 0 { 7 } else { t.weekday }),
        'U' => write!(out, "{:02}", (t.yearday + 7 - t.weekday) / 7),
        'V' => write!(out, "{:02}", iso_week(t).1),
        'w' => write!(out, "{}", t.weekday),
        'W' => write!(out, "{:02}", (t.yearday + 7 - (t.weekday + 6) % 7) / 7),
        'y' => write!(out, "{:02}", t.year.rem_euclid(100)),
        'Y' => write!(out, "{}", t.year),
        'z' => write!(out, "{}", offset_text(t.utc_offset)),
        'Z' => write!(out, "{}", t.zone),
        '%' => write!(out, "%"),
        other => write!(out, "%{other}"),
    };
}

/// `strftime` over a whole format string.
pub fn strftime(fmt: &str, t: &Tm) -> String {
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c == '%' {
            match chars.next() {
                Some(spec) => strftime_one(spec, t, &mut out),
                None => out.push('%'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        let mut x: u64 = 7;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let d = (x % 400_000) as i64 - 200_000;
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
    }

    #[test]
    fn utc_formatting() {
        // 2021-03-04T05:06:07Z, a Thursday.
        let t = tm_at(1_614_834_367, 5, 0, "UTC");
        assert_eq!(strftime("%FT%T%z", &t), "2021-03-04T05:06:07+0000");
        assert_eq!(
            strftime("%a %A %b %B %j %u %w %y %C %e|%%", &t),
            "Thu Thursday Mar March 063 4 4 21 20  4|%"
        );
        assert_eq!(
            strftime("%I %p %r %R %s %D %Z %q", &t),
            "05 AM 05:06:07 AM 05:06 1614834367 03/04/21 UTC %q"
        );
        assert_eq!(strftime("%G-W%V %U %W", &t), "2021-W09 09 09");
        let jan1 = tm_at(days_from_civil(2021, 1, 1) * 86_400, 0, 0, "UTC");
        assert_eq!(strftime("%G-W%V-%u", &jan1), "2020-W53-5");
    }

    #[test]
    fn posix_rules() {
        let cet = PosixTz::parse("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        // 2021-01-15 12:00Z: winter.
        let winter = days_from_civil(2021, 1, 15) * 86_400 + 43_200;
        assert_eq!(cet.at(winter), (3600, "CET"));
        // 2021-07-01: summer.
        let summer = days_from_civil(2021, 7, 1) * 86_400;
        assert_eq!(cet.at(summer), (7200, "CEST"));
        // DST starts 2021-03-28 01:00Z exactly.
        let start = days_from_civil(2021, 3, 28) * 86_400 + 3600;
        assert_eq!(cet.at(start - 1).0, 3600);
        assert_eq!(cet.at(start).0, 7200);
        // And ends 2021-10-31 01:00Z.
        let end = days_from_civil(2021, 10, 31) * 86_400 + 3600;
        assert_eq!(cet.at(end - 1).0, 7200);
        assert_eq!(cet.at(end).0, 3600);
        // Southern hemisphere and angle-bracket names.
        let nz = PosixTz::parse("NZST-12NZDT,M9.5.0,M4.1.0/3").unwrap();
        assert_eq!(nz.at(summer).0, 12 * 3600);
        assert_eq!(nz.at(winter).0, 13 * 3600);
        let plus = PosixTz::parse("<+0330>-3:30").unwrap();
        assert_eq!(plus.at(0), (12_600, "+0330"));
        assert!(PosixTz::parse("garbage!").is_none());
        assert!(PosixTz::parse("").is_none());
        let t = LocalZone::from_tz("EST5EDT").tm(summer, 0);
        assert_eq!(strftime("%H:%M %z %Z", &t), "20:00 -0400 EDT");
        assert_eq!(LocalZone::from_tz(""), LocalZone::Utc);
    }

    #[test]
    fn tzif_files_when_installed() {
        // Skipped quietly on systems without tzdata.
        let Ok(data) = std::fs::read("/usr/share/zoneinfo/Europe/Paris") else {
            return;
        };
        let z = Zone::parse(&data).expect("valid TZif");
        let summer = days_from_civil(2021, 7, 1) * 86_400;
        assert_eq!(z.at(summer), (7200, "CEST".to_string()));
        // Far future: the footer rule.
        let future = days_from_civil(2090, 1, 1) * 86_400;
        assert_eq!(z.at(future), (3600, "CET".to_string()));
    }

    #[test]
    fn damaged_tzif_never_panics() {
        let mut x: u64 = 99;
        let mut base = b"TZif2".to_vec();
        base.extend(std::iter::repeat_n(0u8, 60));
        for _ in 0..2000 {
            let mut d = base.clone();
            for _ in 0..6 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x % d.len() as u64) as usize;
                d[i] = (x >> 8) as u8;
            }
            if let Some(z) = Zone::parse(&d) {
                let _ = z.at(0);
            }
        }
    }
}
