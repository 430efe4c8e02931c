//! Calendar months in UTC, for monthly quotas, from Unix milliseconds (no time-zone database:
//! UTC months need only the civil calendar).

/// Milliseconds in a day.
const DAY_MS: u64 = 86_400_000;

/// The month containing `unix_ms`: its index (months since January 1970) and the Unix
/// milliseconds at which it ends.
pub fn month(unix_ms: u64) -> (u64, u64) {
    let (year, month) = civil_from_days(unix_ms / DAY_MS);
    let index = (year - 1970) * 12 + (month - 1);
    let (next_year, next_month) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    (index, days_from_civil(next_year, next_month) * DAY_MS)
}

/// Year and month (1-12) of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month)
}

/// Days from 1970-01-01 to the first day of `month` (1-12) of `year` (1970 or later).
fn days_from_civil(year: u64, month: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_start_and_end_where_the_calendar_says() {
        // 2026-12-06T04:00:00Z
        let (index, end) = month(1_796_529_600_000);
        assert_eq!(index, (2026 - 1970) * 12 + 11);
        assert_eq!(end, 1_798_761_600_000, "2027-01-01T00:00:00Z");
        // 2024-02-29T23:59:59.999Z is still February of a leap year.
        let (feb, end) = month(1_709_251_199_999);
        assert_eq!(feb, (2024 - 1970) * 12 + 1);
        assert_eq!(end, 1_709_251_200_000);
        assert_eq!(month(1_709_251_200_000).0, feb + 1);
        assert_eq!(month(0), (0, 31 * DAY_MS));
    }
}
