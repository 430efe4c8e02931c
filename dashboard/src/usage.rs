//! The usage page's arithmetic: the API's per-minute rows rolled up per tenant per day, and the
//! CSV an operator downloads.

use std::collections::{BTreeMap, BTreeSet};

use sluice_store_model::{UsageCounts, UsageRow};

use crate::format;

/// Usage of one tenant on one UTC day, summed over models.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DayRow {
    /// `2026-11-27`.
    pub day: String,
    pub tenant: String,
    pub counts: UsageCounts,
}

/// Sums minute rows into (day, tenant) rows, ordered by day then tenant.
pub fn per_tenant_per_day(rows: &[UsageRow]) -> Vec<DayRow> {
    let mut days: BTreeMap<(i64, String), UsageCounts> = BTreeMap::new();
    for row in rows {
        days.entry((row.key.minute.div_euclid(86_400), row.key.tenant.clone())).or_default().merge(&row.counts);
    }
    days.into_iter().map(|((day, tenant), counts)| DayRow { day: format::date(day * 86_400), tenant, counts }).collect()
}

/// Total tokens (prompt + completion) per tenant for each day, for the stacked chart: the days
/// in order, the tenants in order, and `values[tenant][day]`.
pub fn tokens_matrix(rows: &[DayRow]) -> (Vec<String>, Vec<String>, Vec<Vec<f64>>) {
    let days: Vec<String> = rows.iter().map(|r| r.day.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let tenants: Vec<String> = rows.iter().map(|r| r.tenant.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let mut values = vec![vec![0.0; days.len()]; tenants.len()];
    for r in rows {
        let (Ok(t), Ok(d)) = (tenants.binary_search(&r.tenant), days.binary_search(&r.day)) else { continue };
        if let Some(cell) = values.get_mut(t).and_then(|v| v.get_mut(d)) {
            *cell += (r.counts.prompt_tokens + r.counts.completion_tokens) as f64;
        }
    }
    (days, tenants, values)
}

/// RFC 4180 quoting: only fields that need it.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_owned() }
}

pub const CSV_HEADER: &str =
    "day,tenant,requests,errors,prompt_tokens,cached_tokens,completion_tokens,total_tokens,slo_met,mean_ttft_ms";

/// The table as CSV, one line per (day, tenant), with a header.
pub fn csv(rows: &[DayRow]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for r in rows {
        let c = &r.counts;
        let mean_ttft =
            if c.ttft_count > 0 { format!("{:.1}", c.ttft_sum_ms as f64 / c.ttft_count as f64) } else { String::new() };
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            r.day,
            field(&r.tenant),
            c.requests,
            c.errors,
            c.prompt_tokens,
            c.cached_tokens,
            c.completion_tokens,
            c.prompt_tokens + c.completion_tokens,
            c.slo_met,
            mean_ttft
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_store_model::UsageKey;

    fn row(tenant: &str, model: &str, minute: i64, prompt: i64, completion: i64) -> UsageRow {
        UsageRow {
            key: UsageKey { tenant: tenant.into(), model: model.into(), minute },
            counts: UsageCounts {
                requests: 1,
                prompt_tokens: prompt,
                completion_tokens: completion,
                ttft_count: 1,
                ttft_sum_ms: 100,
                ..UsageCounts::default()
            },
        }
    }

    #[test]
    fn minutes_roll_up_per_tenant_and_utc_day() {
        let day = 1_795_737_600; // 2026-11-27T00:00:00Z
        let rows = vec![
            row("acme", "a", day + 60, 10, 1),
            row("acme", "b", day + 86_340, 20, 2),
            row("acme", "a", day + 86_400, 5, 5),
            row("beta", "a", day, 1, 1),
        ];
        let days = per_tenant_per_day(&rows);
        assert_eq!(days.len(), 3);
        assert_eq!((days[0].day.as_str(), days[0].tenant.as_str()), ("2026-11-27", "acme"));
        assert_eq!((days[0].counts.requests, days[0].counts.prompt_tokens), (2, 30));
        assert_eq!(days[1].tenant, "beta");
        assert_eq!(days[2].day, "2026-11-28");

        let (d, t, v) = tokens_matrix(&days);
        assert_eq!(d, vec!["2026-11-27", "2026-11-28"]);
        assert_eq!(t, vec!["acme", "beta"]);
        assert_eq!(v, vec![vec![33.0, 10.0], vec![2.0, 0.0]]);
    }

    #[test]
    fn csv_has_a_header_and_quotes_when_needed() {
        let days = per_tenant_per_day(&[row("acme", "a", 0, 10, 5)]);
        let text = csv(&days);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(CSV_HEADER));
        assert_eq!(lines.next(), Some("1970-01-01,acme,1,0,10,0,5,15,0,100.0"));
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
