//! `sluice tenant`, `key`, `limits`, `slo`.

use std::io::Write;

use clap::{Subcommand, ValueEnum};
use http::Method;
use serde_json::{Value, json};

use super::client::encode;
use super::table::{Table, print_fields};
use super::{Ctx, items};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PriorityArg {
    High,
    Normal,
    Low,
}

impl PriorityArg {
    fn name(self) -> &'static str {
        match self {
            PriorityArg::High => "high",
            PriorityArg::Normal => "normal",
            PriorityArg::Low => "low",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant.
    Create {
        name: String,
        #[arg(long, value_enum)]
        priority: Option<PriorityArg>,
        /// Create it suspended (its keys are refused until `tenant resume`).
        #[arg(long)]
        suspended: bool,
    },
    /// List tenants.
    List,
    /// Show a tenant with its limits, SLOs and keys.
    Get { name: String },
    /// Change a tenant's priority.
    Update {
        name: String,
        #[arg(long, value_enum)]
        priority: PriorityArg,
    },
    /// Refuse the tenant's keys (nothing is deleted).
    Suspend { name: String },
    /// Accept the tenant's keys again.
    Resume { name: String },
    /// Delete a tenant with its keys, limits, SLOs and bindings (usage stays).
    Delete { name: String },
}

const TENANT_COLUMNS: &[(&str, &str)] =
    &[("NAME", "name"), ("STATUS", "status"), ("PRIORITY", "priority"), ("CREATED", "created_at")];
const KEY_COLUMNS: &[(&str, &str)] =
    &[("ID", "id"), ("PREFIX", "prefix"), ("NAME", "name"), ("CREATED", "created_at"), ("REVOKED", "revoked_at")];
const LIMIT_FIELDS: &[(&str, &str)] = &[
    ("requests per minute", "requests_per_minute"),
    ("tokens per minute", "tokens_per_minute"),
    ("max concurrency", "max_concurrency"),
    ("monthly token budget", "monthly_token_budget"),
    ("allowed models", "allowed_models"),
];
const SLO_COLUMNS: &[(&str, &str)] = &[
    ("MODEL", "model"),
    ("TTFT P95 MS", "ttft_p95_ms"),
    ("TPOT P95 MS", "tpot_p95_ms"),
    ("TARGET", "target_attainment"),
];

pub async fn tenant(ctx: &Ctx, command: TenantCommand) -> anyhow::Result<()> {
    let one = |out: &mut dyn Write, v: &Value| Table::new(TENANT_COLUMNS).print(out, std::slice::from_ref(v));
    match command {
        TenantCommand::Create { name, priority, suspended } => {
            let mut body = json!({ "name": name });
            if let Some(p) = priority {
                body["priority"] = json!(p.name());
            }
            if suspended {
                body["status"] = json!("suspended");
            }
            let created = ctx.api.json(Method::POST, "/admin/api/tenants", &body).await?;
            ctx.show(&created, one)
        }
        TenantCommand::List => {
            let list = ctx.api.get("/admin/api/tenants").await?;
            ctx.show(&list, |out, v| Table::new(TENANT_COLUMNS).print(out, items(v)))
        }
        TenantCommand::Get { name } => {
            let detail = ctx.api.get(&format!("/admin/api/tenants/{}", encode(&name))).await?;
            ctx.show(&detail, |out, v| {
                one(out, v)?;
                writeln!(out, "\nLimits")?;
                print_fields(out, &v["limits"], LIMIT_FIELDS)?;
                writeln!(out, "\nSLOs")?;
                Table::new(SLO_COLUMNS).print(out, items(&v["slos"]))?;
                writeln!(out, "\nKeys")?;
                Table::new(KEY_COLUMNS).print(out, items(&v["keys"]))
            })
        }
        TenantCommand::Update { name, priority } => patch(ctx, &name, json!({ "priority": priority.name() })).await,
        TenantCommand::Suspend { name } => patch(ctx, &name, json!({ "status": "suspended" })).await,
        TenantCommand::Resume { name } => patch(ctx, &name, json!({ "status": "active" })).await,
        TenantCommand::Delete { name } => {
            ctx.api.delete(&format!("/admin/api/tenants/{}", encode(&name))).await?;
            ctx.show(&json!({ "deleted": name }), |out, _| writeln!(out, "deleted tenant {name}"))
        }
    }
}

async fn patch(ctx: &Ctx, name: &str, body: Value) -> anyhow::Result<()> {
    let updated = ctx.api.json(Method::PATCH, &format!("/admin/api/tenants/{}", encode(name)), &body).await?;
    ctx.show(&updated, |out, v| Table::new(TENANT_COLUMNS).print(out, std::slice::from_ref(v)))
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key; the secret goes to stdout (only this once), the rest to stderr:
    /// `KEY=$(sluice key create acme)`.
    Create {
        tenant: String,
        /// A label for people (`ci`, `laptop`).
        #[arg(long)]
        name: Option<String>,
    },
    /// List a tenant's keys (prefixes only), revoked ones included.
    List { tenant: String },
    /// Revoke a key by its id.
    Revoke { tenant: String, id: i64 },
}

pub async fn key(ctx: &Ctx, command: KeyCommand) -> anyhow::Result<()> {
    match command {
        KeyCommand::Create { tenant, name } => {
            let body = name.map_or_else(|| json!({}), |n| json!({ "name": n }));
            let path = format!("/admin/api/tenants/{}/keys", encode(&tenant));
            let created = ctx.api.json(Method::POST, &path, &body).await?;
            ctx.show(&created, |out, v| {
                writeln!(out, "{}", v["key"].as_str().unwrap_or_default())?;
                let mut err = std::io::stderr();
                writeln!(
                    err,
                    "created key {} ({}) for tenant {}; the secret above is shown only this once",
                    v["id"],
                    v["prefix"].as_str().unwrap_or_default(),
                    v["tenant"].as_str().unwrap_or_default(),
                )
            })
        }
        KeyCommand::List { tenant } => {
            let list = ctx.api.get(&format!("/admin/api/tenants/{}/keys", encode(&tenant))).await?;
            ctx.show(&list, |out, v| Table::new(KEY_COLUMNS).print(out, items(v)))
        }
        KeyCommand::Revoke { tenant, id } => {
            let path = format!("/admin/api/tenants/{}/keys/{id}", encode(&tenant));
            let revoked = ctx.api.delete(&path).await?;
            ctx.show(&revoked, |out, v| Table::new(KEY_COLUMNS).print(out, std::slice::from_ref(v)))
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum LimitsCommand {
    /// Replace a tenant's limits; any limit not given becomes unlimited.
    Set {
        tenant: String,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<u64>,
        /// Tokens (prompt + completion) per minute.
        #[arg(long)]
        tpm: Option<u64>,
        /// Requests in flight at once.
        #[arg(long)]
        max_concurrency: Option<u64>,
        /// Tokens per calendar month.
        #[arg(long)]
        monthly_token_budget: Option<u64>,
        /// Models the tenant may call (comma-separated); default: every model.
        #[arg(long, value_delimiter = ',')]
        allowed_models: Option<Vec<String>>,
    },
    /// Show a tenant's limits.
    Get { tenant: String },
}

pub async fn limits(ctx: &Ctx, command: LimitsCommand) -> anyhow::Result<()> {
    match command {
        LimitsCommand::Set { tenant, rpm, tpm, max_concurrency, monthly_token_budget, allowed_models } => {
            let body = json!({
                "requests_per_minute": rpm,
                "tokens_per_minute": tpm,
                "max_concurrency": max_concurrency,
                "monthly_token_budget": monthly_token_budget,
                "allowed_models": allowed_models,
            });
            let path = format!("/admin/api/tenants/{}/limits", encode(&tenant));
            let set = ctx.api.json(Method::PUT, &path, &body).await?;
            ctx.show(&set, |out, v| print_fields(out, v, LIMIT_FIELDS))
        }
        LimitsCommand::Get { tenant } => {
            let detail = ctx.api.get(&format!("/admin/api/tenants/{}", encode(&tenant))).await?;
            ctx.show(&detail["limits"], |out, v| print_fields(out, v, LIMIT_FIELDS))
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SloCommand {
    /// Set the SLO for one model (`*` for every model without its own); others stay.
    Set {
        tenant: String,
        #[arg(long)]
        model: String,
        /// 95th-percentile time to first token, ms.
        #[arg(long)]
        ttft_p95_ms: Option<u32>,
        /// 95th-percentile time per output token, ms.
        #[arg(long)]
        tpot_p95_ms: Option<u32>,
        /// Share of requests that must meet the targets, in (0, 1].
        #[arg(long)]
        target: f64,
    },
    /// Remove the SLO for one model.
    Remove {
        tenant: String,
        #[arg(long)]
        model: String,
    },
    /// List a tenant's SLOs.
    List { tenant: String },
}

pub async fn slo(ctx: &Ctx, command: SloCommand) -> anyhow::Result<()> {
    let (tenant, change) = match command {
        SloCommand::List { tenant } => {
            let detail = ctx.api.get(&format!("/admin/api/tenants/{}", encode(&tenant))).await?;
            return ctx.show(&detail["slos"], |out, v| Table::new(SLO_COLUMNS).print(out, items(v)));
        }
        SloCommand::Set { tenant, model, ttft_p95_ms, tpot_p95_ms, target } => {
            let slo = json!({ "model": model, "ttft_p95_ms": ttft_p95_ms, "tpot_p95_ms": tpot_p95_ms, "target_attainment": target });
            (tenant, (model, Some(slo)))
        }
        SloCommand::Remove { tenant, model } => (tenant, (model, None)),
    };
    // The API replaces the whole list: read it, change one model's entry, write it back.
    let path = format!("/admin/api/tenants/{}", encode(&tenant));
    let detail = ctx.api.get(&path).await?;
    let (model, replacement) = change;
    let mut slos: Vec<Value> =
        items(&detail["slos"]).iter().filter(|s| s["model"] != model.as_str()).cloned().collect();
    let removing = replacement.is_none();
    if let Some(slo) = replacement {
        slos.push(slo);
    } else if slos.len() == items(&detail["slos"]).len() {
        anyhow::bail!("tenant {tenant} has no SLO for model {model}");
    }
    let mut sorted = slos;
    sorted.sort_by(|a, b| a["model"].as_str().cmp(&b["model"].as_str()));
    let set = ctx.api.json(Method::PUT, &format!("{path}/slos"), &Value::Array(sorted)).await?;
    ctx.show(&set, |out, v| {
        if removing {
            writeln!(out, "removed the SLO for {model}")?;
        }
        Table::new(SLO_COLUMNS).print(out, items(v))
    })
}
