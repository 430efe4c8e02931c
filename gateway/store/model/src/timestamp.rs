//! A UTC instant with millisecond precision, stored as unix milliseconds and shown as RFC 3339.
//!
//! Hand-rolled (days ⇄ civil date) so that this crate stays dependency-light and builds for the
//! dashboard's wasm target.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String, format = DateTime))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_unix_ms(ms: i64) -> Self {
        Timestamp(ms)
    }

    pub fn unix_ms(self) -> i64 {
        self.0
    }

    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// Midnight UTC on the first day of this instant's calendar month (UTC): where monthly
    /// token budgets start counting.
    pub fn month_start(self) -> Self {
        let (year, month, _) = civil_from_days(self.0.div_euclid(86_400_000));
        // Saturating: near i64::MIN the month's start lies before the representable range.
        Timestamp(days_from_civil(year, month, 1).saturating_mul(86_400_000))
    }

    /// Not for `wasm32-unknown-unknown`, where the std clock is unavailable.
    pub fn now() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp(ms)
    }

    /// Parses `2026-11-27T13:05:00Z`, `2026-11-27T13:05:00.250+01:00` or a bare date
    /// `2026-11-27` (midnight UTC).
    pub fn parse_rfc3339(text: &str) -> Result<Self, String> {
        let bad =
            || format!("{text:?} is not an RFC 3339 timestamp (e.g. 2026-11-27T13:05:00Z) or a date (2026-11-27)");
        let bytes = text.as_bytes();
        let num = |range: std::ops::Range<usize>| -> Result<i64, String> {
            let part = text.get(range).ok_or_else(bad)?;
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            part.parse::<i64>().map_err(|_| bad())
        };
        if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
            return Err(bad());
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(bad());
        }
        let days = days_from_civil(year, month, day);
        if bytes.len() == 10 {
            return Ok(Timestamp(days * 86_400_000));
        }
        if bytes.len() < 20 || !matches!(bytes[10], b'T' | b't' | b' ') || bytes[13] != b':' || bytes[16] != b':' {
            return Err(bad());
        }
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if hour > 23 || minute > 59 || second > 60 {
            return Err(bad());
        }
        let mut rest = &text[19..];
        let mut millis = 0;
        if let Some(fraction) = rest.strip_prefix('.') {
            let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
            millis = padded.parse::<i64>().map_err(|_| bad())?;
            rest = &fraction[digits..];
        }
        let offset_seconds = match rest {
            "Z" | "z" => 0,
            _ if rest.len() == 6 && matches!(rest.as_bytes()[0], b'+' | b'-') && rest.as_bytes()[3] == b':' => {
                let sign = if rest.starts_with('-') { -1 } else { 1 };
                let hours = rest[1..3].parse::<i64>().map_err(|_| bad())?;
                let minutes = rest[4..6].parse::<i64>().map_err(|_| bad())?;
                sign * (hours * 3600 + minutes * 60)
            }
            _ => return Err(bad()),
        };
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second.min(59) - offset_seconds;
        Ok(Timestamp(seconds * 1000 + millis))
    }
}

impl fmt::Display for Timestamp {
    /// `2026-11-27T13:05:00.250Z`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400_000);
        let in_day = self.0.rem_euclid(86_400_000);
        let (year, month, day) = civil_from_days(days);
        let (h, m, s, ms) = (in_day / 3_600_000, in_day / 60_000 % 60, in_day / 1000 % 60, in_day % 1000);
        write!(f, "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    /// Accepts the RFC 3339 form it writes, or unix milliseconds as a number.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Millis(i64),
            Text(String),
        }
        match Wire::deserialize(deserializer)? {
            Wire::Millis(ms) => Ok(Timestamp(ms)),
            Wire::Text(text) => Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom),
        }
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        let t = Timestamp(1_795_763_100_250);
        let text = t.to_string();
        assert_eq!(text, "2026-11-27T07:05:00.250Z");
        assert_eq!(Timestamp::parse_rfc3339(&text), Ok(t));
        assert_eq!(Timestamp::parse_rfc3339("2026-11-27T08:05:00.25+01:00"), Ok(t));
        assert_eq!(Timestamp::parse_rfc3339("1970-01-01"), Ok(Timestamp(0)));
        assert_eq!(Timestamp(-1).to_string(), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            Timestamp::parse_rfc3339("2024-02-29T00:00:00Z").map(|t| t.to_string()).as_deref(),
            Ok("2024-02-29T00:00:00.000Z")
        );
    }

    #[test]
    fn month_start_is_midnight_utc_on_the_first() {
        let at = |text: &str| Timestamp::parse_rfc3339(text).unwrap();
        for (instant, start) in [
            ("2026-12-06T04:35:49.123Z", "2026-12-01"),
            ("2026-12-01T00:00:00Z", "2026-12-01"),
            ("2026-11-30T23:59:59.999Z", "2026-11-01"),
            ("2024-02-29T12:00:00Z", "2024-02-01"),
            ("2027-01-01T00:00:00.001Z", "2027-01-01"),
            // 23:30 on the 31st at -01:00 is already the next month in UTC.
            ("2026-12-31T23:30:00-01:00", "2027-01-01"),
            ("1969-12-31T23:59:59Z", "1969-12-01"),
        ] {
            assert_eq!(at(instant).month_start(), at(start), "{instant}");
        }
        assert_eq!(Timestamp(0).month_start(), Timestamp(0));
        assert_eq!(Timestamp(i64::MIN).month_start(), Timestamp(i64::MIN));
        assert!(Timestamp(i64::MAX).month_start() <= Timestamp(i64::MAX));
    }

    #[test]
    fn rejects_what_is_not_a_timestamp() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-02-30",
            "2026-11-27T25:00:00Z",
            "2026-11-27T10:00:00",
            "2026-11-27T10:00:00.Z",
        ] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_accepts_text_and_millis() {
        let t: Timestamp = serde_json::from_str("\"2026-11-27T07:05:00.250Z\"").unwrap();
        assert_eq!(t, Timestamp(1_795_763_100_250));
        let t: Timestamp = serde_json::from_str("1795763100250").unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"2026-11-27T07:05:00.250Z\"");
    }
}
