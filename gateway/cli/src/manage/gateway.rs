//! `sluice reload` and `sluice cache purge`: asking the running gateway (not its store) to act.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{AdminArgs, Ctx};

#[derive(Debug, Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Remove response-cache entries: a tenant's, a model's, those whose key starts with a
    /// prefix (the `x-sluice-cache-key` of a response), or with --all every one. With the
    /// in-process backend only the replica behind --admin-url is purged.
    Purge(PurgeArgs),
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    /// Only this tenant's entries.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only entries for this model.
    #[arg(long)]
    pub model: Option<String>,
    /// Only entries whose key starts with these hex digits.
    #[arg(long)]
    pub key_prefix: Option<String>,
    /// Every entry (refused with any other filter).
    #[arg(long, conflicts_with_all = ["tenant", "model", "key_prefix"])]
    pub all: bool,
}

/// `sluice reload`: `POST /admin/api/reload`; prints what changed and what waits for a restart.
pub async fn reload(ctx: &Ctx) -> anyhow::Result<()> {
    let report = ctx.api.post("/admin/api/reload").await?;
    ctx.show(&report, |out, v| {
        let lines =
            |key: &str| v[key].as_array().map_or_else(Vec::new, |a| a.iter().filter_map(Value::as_str).collect());
        let applied = lines("applied");
        if applied.is_empty() {
            writeln!(out, "reloaded: nothing changed")?;
        } else {
            writeln!(out, "reloaded:")?;
            for line in applied {
                writeln!(out, "  {line}")?;
            }
        }
        for line in lines("restart_required") {
            writeln!(out, "needs a restart: {line}")?;
        }
        Ok(())
    })
}

pub async fn cache(ctx: &Ctx, command: CacheCommand) -> anyhow::Result<()> {
    match command {
        CacheCommand::Purge(args) => {
            if !args.all && args.tenant.is_none() && args.model.is_none() && args.key_prefix.is_none() {
                anyhow::bail!("name what to purge: --tenant, --model, --key-prefix, or --all for every entry");
            }
            let mut body = json!({});
            for (key, value) in [("tenant", args.tenant), ("model", args.model), ("key_prefix", args.key_prefix)] {
                if let Some(v) = value {
                    body[key] = Value::String(v);
                }
            }
            if args.all {
                body["all"] = Value::Bool(true);
            }
            let report = ctx.api.json(http::Method::POST, "/admin/api/cache/purge", &body).await?;
            ctx.show(&report, |out, v| {
                let purged = v["purged"].as_u64().unwrap_or(0);
                let noun = if purged == 1 { "entry" } else { "entries" };
                let backend = v["backend"].as_str().unwrap_or("?");
                writeln!(out, "purged {purged} {noun} ({backend} backend)")
            })
        }
    }
}
