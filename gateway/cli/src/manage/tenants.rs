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
const KEY_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("PREFIX", "prefix"),
    ("NAME", "name"),
    ("CREATED", "created_at"),
    ("REVOKED", "revoked_at"),
    ("RPM", "limits.requests_per_minute"),
    ("TPM", "limits.tokens_per_minute"),
    ("CONCURRENCY", "limits.max_concurrency"),
    ("MONTHLY BUDGET", "limits.monthly_token_budget"),
];
const LIMIT_FIELDS: &[(&str, &str)] = &[
    ("requests per minute", "requests_per_minute"),
    ("tokens per minute", "tokens_per_minute"),
    ("max concurrency", "max_concurrency"),
    ("monthly token budget", "monthly_token_budget"),
    ("allowed models", "allowed_models"),
];
/// A key's or a model's limits: the tenant's without `allowed_models`.
const SCOPE_LIMIT_FIELDS: &[(&str, &str)] = LIMIT_FIELDS.split_at(4).0;
const MODEL_LIMIT_COLUMNS: &[(&str, &str)] = &[
    ("MODEL", "model"),
    ("RPM", "limits.requests_per_minute"),
    ("TPM", "limits.tokens_per_minute"),
    ("CONCURRENCY", "limits.max_concurrency"),
    ("MONTHLY BUDGET", "limits.monthly_token_budget"),
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
                writeln!(out, "\nLimits per model")?;
                Table::new(MODEL_LIMIT_COLUMNS).print(out, items(&v["model_limits"]))?;
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
    /// Replace a tenant's limits, or one key's or one model's (`--key`, `--model`); any limit
    /// not given becomes unlimited (for a key or model: not limited by that scope).
    Set {
        tenant: String,
        /// Set the limits of this API key (its id, from `key list`) instead of the tenant's.
        #[arg(long, conflicts_with = "model")]
        key: Option<i64>,
        /// Set the tenant's limits for this model instead of the tenant's own.
        #[arg(long)]
        model: Option<String>,
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
        /// Models the tenant may call (comma-separated); default: every model. Tenant only.
        #[arg(long, value_delimiter = ',', conflicts_with_all = ["key", "model"])]
        allowed_models: Option<Vec<String>>,
    },
    /// Remove one key's or one model's limits (the tenant's own stay).
    Clear {
        tenant: String,
        #[arg(long, conflicts_with = "model", required_unless_present = "model")]
        key: Option<i64>,
        #[arg(long)]
        model: Option<String>,
    },
    /// Show a tenant's limits, or one key's or one model's.
    Get {
        tenant: String,
        #[arg(long, conflicts_with = "model")]
        key: Option<i64>,
        #[arg(long)]
        model: Option<String>,
    },
}

/// Which limits a `limits` command is about.
enum LimitsScope {
    Tenant,
    Key(i64),
    Model(String),
}

impl LimitsScope {
    fn new(key: Option<i64>, model: Option<String>) -> Self {
        match (key, model) {
            (Some(id), _) => LimitsScope::Key(id),
            (None, Some(model)) => LimitsScope::Model(model),
            (None, None) => LimitsScope::Tenant,
        }
    }

    fn path(&self, tenant: &str) -> String {
        let tenant = encode(tenant);
        match self {
            LimitsScope::Tenant => format!("/admin/api/tenants/{tenant}/limits"),
            LimitsScope::Key(id) => format!("/admin/api/tenants/{tenant}/keys/{id}/limits"),
            LimitsScope::Model(model) => format!("/admin/api/tenants/{tenant}/models/{}/limits", encode(model)),
        }
    }
}

pub async fn limits(ctx: &Ctx, command: LimitsCommand) -> anyhow::Result<()> {
    match command {
        LimitsCommand::Set { tenant, key, model, rpm, tpm, max_concurrency, monthly_token_budget, allowed_models } => {
            let mut body = json!({
                "requests_per_minute": rpm,
                "tokens_per_minute": tpm,
                "max_concurrency": max_concurrency,
                "monthly_token_budget": monthly_token_budget,
            });
            let scope = LimitsScope::new(key, model);
            if let LimitsScope::Tenant = scope {
                body["allowed_models"] = json!(allowed_models);
            }
            let set = ctx.api.json(Method::PUT, &scope.path(&tenant), &body).await?;
            show_limits(ctx, &scope, &set)
        }
        LimitsCommand::Clear { tenant, key, model } => {
            let scope = LimitsScope::new(key, model);
            let cleared = ctx.api.delete(&scope.path(&tenant)).await?;
            match scope {
                LimitsScope::Model(model) => {
                    let done = json!({ "deleted": { "tenant": tenant, "model": model } });
                    ctx.show(&done, |out, _| writeln!(out, "removed the limits of {model} for tenant {tenant}"))
                }
                _ => show_limits(ctx, &scope, &cleared),
            }
        }
        LimitsCommand::Get { tenant, key, model } => {
            let scope = LimitsScope::new(key, model);
            match &scope {
                LimitsScope::Tenant | LimitsScope::Key(_) => {
                    let detail = ctx.api.get(&format!("/admin/api/tenants/{}", encode(&tenant))).await?;
                    let shown = match scope {
                        LimitsScope::Key(id) => items(&detail["keys"])
                            .iter()
                            .find(|k| k["id"].as_i64() == Some(id))
                            .cloned()
                            .ok_or_else(|| anyhow::anyhow!("tenant {tenant} has no key {id}"))?,
                        _ => detail["limits"].clone(),
                    };
                    show_limits(ctx, &scope, &shown)
                }
                LimitsScope::Model(_) => {
                    let shown = ctx.api.get(&scope.path(&tenant)).await?;
                    show_limits(ctx, &scope, &shown)
                }
            }
        }
    }
}

/// The API's answer: the tenant's limits, a key (with its `limits`) or a model's entry.
fn show_limits(ctx: &Ctx, scope: &LimitsScope, value: &Value) -> anyhow::Result<()> {
    match scope {
        LimitsScope::Tenant => ctx.show(value, |out, v| print_fields(out, v, LIMIT_FIELDS)),
        LimitsScope::Key(_) => ctx.show(value, |out, v| {
            writeln!(out, "key {} ({})", v["id"], v["prefix"].as_str().unwrap_or_default())?;
            print_fields(out, &v["limits"], SCOPE_LIMIT_FIELDS)
        }),
        LimitsScope::Model(_) => ctx.show(value, |out, v| {
            writeln!(out, "model {}", v["model"].as_str().unwrap_or_default())?;
            print_fields(out, &v["limits"], SCOPE_LIMIT_FIELDS)
        }),
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
