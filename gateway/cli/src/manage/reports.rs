//! `sluice usage`, `audit`.

use std::collections::BTreeMap;

use clap::Args;
use serde_json::{Value, json};

use super::client::encode;
use super::table::Table;
use super::{AdminArgs, Ctx, items};

#[derive(Debug, Args)]
pub struct UsageArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this model.
    #[arg(long)]
    pub model: Option<String>,
    /// Start: RFC 3339 (2026-11-27T13:00:00Z) or a date (2026-11-27). Default: 24 hours before --to.
    #[arg(long)]
    pub from: Option<String>,
    /// End (exclusive), same forms. Default: now.
    #[arg(long)]
    pub to: Option<String>,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// How many entries (1-1000).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Entries older than this id (the last id of the previous page).
    #[arg(long)]
    pub before: Option<i64>,
}

const USAGE_COLUMNS: &[(&str, &str)] = &[
    ("TENANT", "tenant"),
    ("MODEL", "model"),
    ("REQUESTS", "requests"),
    ("ERRORS", "errors"),
    ("PROMPT", "prompt_tokens"),
    ("CACHED", "cached_tokens"),
    ("COMPLETION", "completion_tokens"),
    ("SLO MET", "slo_met"),
    ("TTFT MEAN MS", "ttft_mean_ms"),
];
const COUNTERS: &[&str] = &[
    "requests",
    "errors",
    "prompt_tokens",
    "cached_tokens",
    "completion_tokens",
    "slo_met",
    "ttft_count",
    "ttft_sum_ms",
];

pub async fn usage(ctx: &Ctx, args: UsageArgs) -> anyhow::Result<()> {
    let mut query = Vec::new();
    for (key, value) in [("from", &args.from), ("to", &args.to), ("model", &args.model)] {
        if let Some(v) = value {
            query.push(format!("{key}={}", encode(v)));
        }
    }
    let base = match &args.tenant {
        Some(t) => format!("/admin/api/tenants/{}/usage", encode(t)),
        None => "/admin/api/usage".to_owned(),
    };
    let path = if query.is_empty() { base } else { format!("{base}?{}", query.join("&")) };
    let report = ctx.api.get(&path).await?;
    ctx.show(&report, |out, v| {
        writeln!(out, "from {} to {}", v["from"].as_str().unwrap_or("?"), v["to"].as_str().unwrap_or("?"))?;
        // Per-minute rows summed per tenant and model; --json has the minutes.
        let mut sums: BTreeMap<(String, String), Value> = BTreeMap::new();
        for row in items(&v["rows"]) {
            let key = (row["tenant"].as_str().unwrap_or("").to_owned(), row["model"].as_str().unwrap_or("").to_owned());
            let sum = sums.entry(key.clone()).or_insert_with(|| json!({ "tenant": key.0, "model": key.1 }));
            for counter in COUNTERS {
                let total = sum[*counter].as_i64().unwrap_or(0) + row[*counter].as_i64().unwrap_or(0);
                sum[*counter] = json!(total);
            }
        }
        let mut rows: Vec<Value> = sums.into_values().collect();
        let mut totals = v["totals"].clone();
        totals["tenant"] = json!("TOTAL");
        rows.push(totals);
        for row in &mut rows {
            let (count, sum) = (row["ttft_count"].as_i64().unwrap_or(0), row["ttft_sum_ms"].as_i64().unwrap_or(0));
            row["ttft_mean_ms"] = if count > 0 { json!(sum / count) } else { Value::Null };
        }
        Table::new(USAGE_COLUMNS).print(out, &rows)
    })
}

pub async fn audit(ctx: &Ctx, args: AuditArgs) -> anyhow::Result<()> {
    let mut path = format!("/admin/api/audit?limit={}", args.limit);
    if let Some(before) = args.before {
        path.push_str(&format!("&before={before}"));
    }
    let entries = ctx.api.get(&path).await?;
    ctx.show(&entries, |out, v| {
        Table::new(&[
            ("ID", "id"),
            ("AT", "at"),
            ("ACTOR", "actor"),
            ("ACTION", "action"),
            ("TARGET", "target"),
            ("DETAIL", "detail"),
        ])
        .print(out, items(v))
    })
}
