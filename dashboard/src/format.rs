//! Numbers and times as an operator reads them at a glance: three significant figures, SI
//! suffixes, durations in the unit that keeps them short.

/// `1234.5` → `1.23k`, `0.5` → `0.5`, `12_300_000` → `12.3M`.
pub fn si(value: f64) -> String {
    if !value.is_finite() {
        return "–".into();
    }
    let abs = value.abs();
    let (scaled, suffix) = if abs >= 1e9 {
        (value / 1e9, "G")
    } else if abs >= 1e6 {
        (value / 1e6, "M")
    } else if abs >= 1e3 {
        (value / 1e3, "k")
    } else {
        (value, "")
    };
    format!("{}{suffix}", sig3(scaled))
}

/// Three significant figures without trailing zeros: `1.50` → `1.5`, `123.4` → `123`.
pub fn sig3(value: f64) -> String {
    if value == 0.0 {
        return "0".into();
    }
    let abs = value.abs();
    let decimals = if abs >= 100.0 {
        0
    } else if abs >= 10.0 {
        1
    } else if abs >= 1.0 {
        2
    } else {
        3
    };
    let text = format!("{value:.decimals$}");
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_owned() } else { text }
}

/// A rate per second: `12.3k/s`.
pub fn rate(per_s: f64) -> String {
    format!("{}/s", si(per_s))
}

/// Milliseconds as a duration: `850 µs`, `42.1 ms`, `1.25 s`, `2m 05s`.
pub fn duration_ms(ms: f64) -> String {
    if !ms.is_finite() || ms < 0.0 {
        return "–".into();
    }
    if ms == 0.0 {
        "0".into()
    } else if ms < 1.0 {
        format!("{} µs", sig3(ms * 1e3))
    } else if ms < 1e3 {
        format!("{} ms", sig3(ms))
    } else if ms < 60e3 {
        format!("{} s", sig3(ms / 1e3))
    } else {
        let total = (ms / 1e3).round() as u64;
        format!("{}m {:02}s", total / 60, total % 60)
    }
}

/// A share in [0, 1] as a percentage: `0.987` → `98.7%`.
pub fn percent(share: f64) -> String {
    if !share.is_finite() {
        return "–".into();
    }
    let pct = share * 100.0;
    if (99.95..100.0).contains(&pct) {
        // Never round a miss up to a perfect score.
        return "99.9%".into();
    }
    format!("{}%", sig3(pct).trim_start_matches('-'))
}

/// A count in full with thousands separators: `1234567` → `1,234,567` (limits are read exactly).
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A key's or a model's limits on one line: `60 req/min · 1,000 tok/min · 2 at once ·
/// 5,000,000 tok/month`, only those set; `—` for none.
pub fn scope_limits(limits: &sluice_store_model::ScopeLimits) -> String {
    let parts: Vec<String> = [
        (limits.requests_per_minute, "req/min"),
        (limits.tokens_per_minute, "tok/min"),
        (limits.max_concurrency, "at once"),
        (limits.monthly_token_budget, "tok/month"),
    ]
    .into_iter()
    .filter_map(|(value, unit)| value.map(|v| format!("{} {unit}", count(v))))
    .collect();
    if parts.is_empty() { "—".to_owned() } else { parts.join(" · ") }
}

/// Which requests an SLO attainment covers, from [`sluice_live::SloLive::coverage`]: only
/// streams are judged (TTFT and TPOT targets describe streams), so the page says how many of
/// the window's requests that is. `None` for a gateway too old to count them.
pub fn slo_coverage(slo: &sluice_live::SloLive) -> Option<String> {
    let (judged, of) = slo.coverage()?;
    Some(if judged == of {
        format!("all {} requests streamed", count(of))
    } else {
        format!("streamed requests only: {} of {}", count(judged), count(of))
    })
}

/// How much of a limit `used` is: `None` for no limit; a limit of 0 is full at once.
pub fn share_of(used: f64, limit: Option<u64>) -> Option<f64> {
    let limit = limit?;
    if limit == 0 {
        return Some(if used > 0.0 { f64::INFINITY } else { 1.0 });
    }
    Some(used.max(0.0) / limit as f64)
}

/// Bytes with binary prefixes: `1.5 KiB`.
pub fn bytes(n: u64) -> String {
    let n = n as f64;
    if n >= 1024.0 * 1024.0 {
        format!("{} MiB", sig3(n / 1024.0 / 1024.0))
    } else if n >= 1024.0 {
        format!("{} KiB", sig3(n / 1024.0))
    } else {
        format!("{n} B")
    }
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Unix seconds → `2026-11-27` (UTC).
pub fn date(unix_s: i64) -> String {
    let (y, m, d) = civil_from_days(unix_s.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Unix seconds → the first day of that month, `2026-11-01` (UTC): where monthly budgets start.
pub fn month_start(unix_s: i64) -> String {
    let (y, m, _) = civil_from_days(unix_s.div_euclid(86_400));
    format!("{y:04}-{m:02}-01")
}

/// Unix milliseconds → `14:03:07` (UTC).
pub fn clock(unix_ms: i64) -> String {
    let s = unix_ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Unix milliseconds → `2026-11-27 14:03:07` (UTC).
pub fn datetime(unix_ms: i64) -> String {
    format!("{} {}", date(unix_ms.div_euclid(1000)), clock(unix_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn significant_figures_and_suffixes() {
        assert_eq!(si(0.0), "0");
        assert_eq!(si(0.5), "0.5");
        assert_eq!(si(12.0), "12");
        assert_eq!(si(123.4), "123");
        assert_eq!(si(1234.5), "1.23k");
        assert_eq!(si(12_300_000.0), "12.3M");
        assert_eq!(si(-1500.0), "-1.5k");
        assert_eq!(si(f64::NAN), "–");
        assert_eq!(rate(2500.0), "2.5k/s");
    }

    #[test]
    fn durations_pick_their_unit() {
        assert_eq!(duration_ms(0.85), "850 µs");
        assert_eq!(duration_ms(42.12), "42.1 ms");
        assert_eq!(duration_ms(1250.0), "1.25 s");
        assert_eq!(duration_ms(125_000.0), "2m 05s");
        assert_eq!(duration_ms(-1.0), "–");
        assert_eq!(duration_ms(0.0), "0");
    }

    #[test]
    fn percentages_never_round_up_to_perfect() {
        assert_eq!(percent(0.987), "98.7%");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.99996), "99.9%");
        assert_eq!(percent(0.0), "0%");
    }

    #[test]
    fn dates_and_bytes() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_795_789_119), "2026-11-27");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(clock(1_795_789_119_333), "14:18:39");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024), "3 MiB");
        assert_eq!(month_start(1_795_789_119), "2026-11-01");
        assert_eq!(month_start(951_782_400), "2000-02-01");
        // The last second of a month, the first of the next.
        assert_eq!(month_start(1_798_761_599), "2026-12-01");
        assert_eq!(month_start(1_798_761_600), "2027-01-01");
        assert_eq!(month_start(1_798_761_600 + 31 * 86_400 - 1), "2027-01-01");
        assert_eq!(month_start(1_798_761_600 + 31 * 86_400), "2027-02-01");
    }

    #[test]
    fn counts_and_shares_of_limits() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(100_000), "100,000");
        assert_eq!(share_of(30.0, Some(60)), Some(0.5));
        assert_eq!(share_of(5.0, None), None);
        assert_eq!(share_of(0.0, Some(0)), Some(1.0));
        assert_eq!(share_of(-1.0, Some(10)), Some(0.0));
    }

    #[test]
    fn scope_limits_read_on_one_line() {
        let none = sluice_store_model::ScopeLimits::default();
        assert_eq!(scope_limits(&none), "—");
        let some = sluice_store_model::ScopeLimits {
            requests_per_minute: Some(60),
            monthly_token_budget: Some(5_000_000),
            ..none
        };
        assert_eq!(scope_limits(&some), "60 req/min · 5,000,000 tok/month");
    }

    #[test]
    fn slo_coverage_says_which_requests_the_attainment_judges() {
        let slo = |judged, unjudged| sluice_live::SloLive {
            window_eligible: judged,
            window_unjudged: unjudged,
            ..sluice_live::SloLive::default()
        };
        assert_eq!(slo_coverage(&slo(812, 392)).as_deref(), Some("streamed requests only: 812 of 1,204"));
        assert_eq!(slo_coverage(&slo(0, 5)).as_deref(), Some("streamed requests only: 0 of 5"));
        assert_eq!(slo_coverage(&slo(40, 0)).as_deref(), Some("all 40 requests streamed"));
        assert_eq!(slo_coverage(&slo(0, 0)), None);
    }
}
