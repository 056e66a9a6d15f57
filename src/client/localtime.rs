//! localtime: wall-clock time in the local time zone and `strftime`, for
//! the time stamps `midge_sub -F` prints (`%I`, `%U`, `%j`'s "tst", `@Y`...).
//!
//! Owns: finding the time zone the way the C library does (`TZ` as a POSIX
//! rule such as `CET-1CEST,M3.5.0,M10.5.0/3`, as a zone name under
//! /usr/share/zoneinfo, or /etc/localtime when unset), the civil calendar,
//! and `strftime` conversions in the C locale, byte-compatible with glibc's
//! (which `mosquitto_sub -F` uses; jiff's own `strftime` differs in places).
//! Reading TZif files and applying POSIX rules is jiff's.
//!
//! Must not: call into libc (no `unsafe` here) or panic on a damaged zone
//! file; anything unreadable falls back to UTC, as glibc does.

use std::time::{SystemTime, UNIX_EPOCH};

use jiff::tz::TimeZone;
use jiff::Timestamp;

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
// Time zones: found the way glibc finds them, read and applied by jiff.

/// The local time zone, looked up like glibc does: `TZ` unset means
/// /etc/localtime; `TZ` names a file (absolute, or under
/// /usr/share/zoneinfo) or else is a POSIX rule; anything unreadable is UTC.
#[derive(Clone, Debug)]
pub struct LocalZone(TimeZone);

impl PartialEq for LocalZone {
    fn eq(&self, other: &LocalZone) -> bool {
        self.0.iana_name() == other.0.iana_name() && self.0 == other.0
    }
}

impl LocalZone {
    pub fn utc() -> LocalZone {
        LocalZone(TimeZone::UTC)
    }

    pub fn from_env() -> LocalZone {
        match std::env::var("TZ") {
            Err(_) => Self::from_file("/etc/localtime").unwrap_or_else(Self::utc),
            Ok(tz) => Self::from_tz(&tz),
        }
    }

    pub fn from_tz(tz: &str) -> LocalZone {
        let name = tz.strip_prefix(':').unwrap_or(tz);
        if name.is_empty() {
            return Self::utc();
        }
        if name.starts_with('/') {
            return Self::from_file(name).unwrap_or_else(Self::utc);
        }
        if !name.contains("..") {
            if let Some(z) = Self::from_file(&format!("/usr/share/zoneinfo/{name}")) {
                return z;
            }
        }
        TimeZone::posix(name)
            .map(LocalZone)
            .unwrap_or_else(|_| Self::utc())
    }

    /// A TZif file (versions 1-4, the footer rule used past the last
    /// transition); None when it cannot be read or parsed.
    fn from_file(path: &str) -> Option<LocalZone> {
        let data = std::fs::read(path).ok()?;
        Self::from_tzif(path, &data)
    }

    /// TZif bytes; None when they are not valid TZif.
    pub fn from_tzif(name: &str, data: &[u8]) -> Option<LocalZone> {
        TimeZone::tzif(name, data).ok().map(LocalZone)
    }

    /// Seconds east of UTC and the zone abbreviation at `unix`.
    pub fn at(&self, unix: i64) -> (i64, String) {
        match Timestamp::new(unix, 0) {
            Ok(ts) => {
                let info = self.0.to_offset_info(ts);
                (
                    i64::from(info.offset().seconds()),
                    info.abbreviation().to_string(),
                )
            }
            Err(_) => (0, "UTC".to_string()),
        }
    }

    pub fn tm(&self, unix: i64, nanos: u32) -> Tm {
        let (offset, abbreviation) = self.at(unix);
        tm_at(unix, nanos, offset, &abbreviation)
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
        let cet = LocalZone::from_tz("CET-1CEST,M3.5.0,M10.5.0/3");
        // 2021-01-15 12:00Z: winter.
        let winter = days_from_civil(2021, 1, 15) * 86_400 + 43_200;
        assert_eq!(cet.at(winter), (3600, "CET".to_string()));
        // 2021-07-01: summer.
        let summer = days_from_civil(2021, 7, 1) * 86_400;
        assert_eq!(cet.at(summer), (7200, "CEST".to_string()));
        // DST starts 2021-03-28 01:00Z exactly.
        let start = days_from_civil(2021, 3, 28) * 86_400 + 3600;
        assert_eq!(cet.at(start - 1).0, 3600);
        assert_eq!(cet.at(start).0, 7200);
        // And ends 2021-10-31 01:00Z.
        let end = days_from_civil(2021, 10, 31) * 86_400 + 3600;
        assert_eq!(cet.at(end - 1).0, 7200);
        assert_eq!(cet.at(end).0, 3600);
        // Southern hemisphere and angle-bracket names.
        let nz = LocalZone::from_tz("NZST-12NZDT,M9.5.0,M4.1.0/3");
        assert_eq!(nz.at(summer).0, 12 * 3600);
        assert_eq!(nz.at(winter).0, 13 * 3600);
        let plus = LocalZone::from_tz("<+0330>-3:30");
        assert_eq!(plus.at(0), (12_600, "+0330".to_string()));
        assert_eq!(LocalZone::from_tz("garbage!"), LocalZone::utc());
        let t = LocalZone::from_tz("EST5EDT").tm(summer, 0);
        assert_eq!(strftime("%H:%M %z %Z", &t), "20:00 -0400 EDT");
        assert_eq!(LocalZone::from_tz(""), LocalZone::utc());
        assert_eq!(LocalZone::from_tz("").tm(0, 0).zone, "UTC");
    }

    #[test]
    fn tzif_files_when_installed() {
        // Skipped quietly on systems without tzdata.
        let Ok(data) = std::fs::read("/usr/share/zoneinfo/Europe/Paris") else {
            return;
        };
        let z = LocalZone::from_tzif("Europe/Paris", &data).expect("valid TZif");
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
            if let Some(z) = LocalZone::from_tzif("damaged", &d) {
                let _ = z.at(0);
            }
        }
    }
}
