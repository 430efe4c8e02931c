//! `sluice plugin`, `binding`: the admin API's plugin operations (`new`, `build` and `test`, which
//! need no gateway, are in `crate::authoring`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use http::Method;
use serde_json::{Value, json};

use super::client::encode;
use super::table::Table;
use super::{Ctx, items};

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Upload a component (.wasm) as the plugin's next version; it is checked, not activated.
    Upload { name: String, file: PathBuf },
    /// List plugins with their active versions.
    List,
    /// List a plugin's versions, newest first.
    Versions { name: String },
    /// Run this version wherever the plugin is bound, granted exactly the capabilities named
    /// with --grant; a version importing one not granted is refused, naming the import.
    Activate {
        name: String,
        version: i32,
        /// A capability to grant (log, clock, counters, cache, config, metrics, embeddings,
        /// http); repeat it or separate names with commas. None granted without it.
        #[arg(long = "grant", alias = "grants", value_name = "CAPABILITY", value_delimiter = ',')]
        grants: Vec<String>,
    },
    /// Activate the highest version below the active one, with the grants it last ran with.
    Rollback { name: String },
    #[command(flatten)]
    Authoring(crate::authoring::AuthoringCommand),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FailurePolicyArg {
    /// Skip the plugin when it fails.
    Open,
    /// Refuse the request when it fails.
    Closed,
}

#[derive(Debug, Subcommand)]
pub enum BindingCommand {
    /// Bind a plugin: globally (the default), for one tenant or for one model.
    Add {
        plugin: String,
        #[arg(long, conflicts_with = "model")]
        tenant: Option<String>,
        #[arg(long)]
        model: Option<String>,
        /// Lower runs first.
        #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
        order: i32,
        #[arg(long, value_enum, default_value = "open")]
        failure_policy: FailurePolicyArg,
        /// The plugin's configuration, a JSON object.
        #[arg(long, default_value = "{}")]
        config: String,
        /// The deadline of each call, in milliseconds (1 to the host's maximum, 1000); the
        /// host's default (10) without it.
        #[arg(long)]
        timeout_ms: Option<u32>,
        /// The most memory an instance may grow to, in bytes (1 MiB to the plugin engine's
        /// maximum); the host's default (16 MiB) without it.
        #[arg(long)]
        max_memory_bytes: Option<u64>,
    },
    /// List bindings in the order they run.
    List,
    /// Remove a binding by its id.
    Remove { id: i64 },
}

const PLUGIN_COLUMNS: &[(&str, &str)] =
    &[("NAME", "name"), ("ACTIVE", "active_version"), ("GRANTED", "granted"), ("CREATED", "created_at")];
const VERSION_COLUMNS: &[(&str, &str)] = &[
    ("VERSION", "version"),
    ("SHA256", "sha256"),
    ("BYTES", "size_bytes"),
    ("HOOKS", "manifest.hooks"),
    ("REQUESTED", "manifest.capabilities"),
    ("GRANTED", "granted"),
    ("CREATED", "created_at"),
];
const BINDING_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("PLUGIN", "plugin"),
    ("SCOPE", "scope.kind"),
    ("TARGET", "scope.name"),
    ("ORDER", "order"),
    ("FAILURE", "failure_policy"),
    ("TIMEOUT_MS", "timeout_ms"),
    ("MAX_MEMORY", "max_memory_bytes"),
    ("CONFIG", "config"),
];

pub async fn plugin(ctx: &Ctx, command: PluginCommand) -> anyhow::Result<()> {
    let one_plugin = |out: &mut dyn Write, v: &Value| Table::new(PLUGIN_COLUMNS).print(out, std::slice::from_ref(v));
    match command {
        PluginCommand::Upload { name, file } => {
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let path = format!("/admin/api/plugins/{}/versions", encode(&name));
            let version = ctx.api.upload(&path, "application/wasm", bytes.into()).await?;
            ctx.show(&version, |out, v| Table::new(VERSION_COLUMNS).print(out, std::slice::from_ref(v)))
        }
        PluginCommand::List => {
            let list = ctx.api.get("/admin/api/plugins").await?;
            ctx.show(&list, |out, v| Table::new(PLUGIN_COLUMNS).print(out, items(v)))
        }
        PluginCommand::Versions { name } => {
            let list = ctx.api.get(&format!("/admin/api/plugins/{}/versions", encode(&name))).await?;
            ctx.show(&list, |out, v| Table::new(VERSION_COLUMNS).print(out, items(v)))
        }
        PluginCommand::Activate { name, version, grants } => {
            let path = format!("/admin/api/plugins/{}/activate", encode(&name));
            let body = json!({ "version": version, "grants": grants });
            let plugin = ctx.api.json(Method::POST, &path, &body).await?;
            ctx.show(&plugin, one_plugin)
        }
        PluginCommand::Rollback { name } => {
            let path = format!("/admin/api/plugins/{}/rollback", encode(&name));
            let plugin = ctx.api.post(&path).await?;
            ctx.show(&plugin, one_plugin)
        }
        // Dispatched by `manage::run` before a client is made.
        PluginCommand::Authoring(command) => crate::authoring::run(command, ctx.json).await,
    }
}

pub async fn binding(ctx: &Ctx, command: BindingCommand) -> anyhow::Result<()> {
    match command {
        BindingCommand::Add { plugin, tenant, model, order, failure_policy, config, timeout_ms, max_memory_bytes } => {
            let scope = match (tenant, model) {
                (Some(t), _) => json!({ "kind": "tenant", "name": t }),
                (None, Some(m)) => json!({ "kind": "model", "name": m }),
                (None, None) => json!({ "kind": "global" }),
            };
            let config: Value = serde_json::from_str(&config).context("--config must be a JSON object")?;
            let policy = match failure_policy {
                FailurePolicyArg::Open => "open",
                FailurePolicyArg::Closed => "closed",
            };
            let mut body =
                json!({ "plugin": plugin, "scope": scope, "order": order, "failure_policy": policy, "config": config });
            // Unset limits are left out, so the gateway's defaults apply.
            if let Some(ms) = timeout_ms {
                body["timeout_ms"] = json!(ms);
            }
            if let Some(bytes) = max_memory_bytes {
                body["max_memory_bytes"] = json!(bytes);
            }
            let created = ctx.api.json(Method::POST, "/admin/api/bindings", &body).await?;
            ctx.show(&created, |out, v| Table::new(BINDING_COLUMNS).print(out, std::slice::from_ref(v)))
        }
        BindingCommand::List => {
            let list = ctx.api.get("/admin/api/bindings").await?;
            ctx.show(&list, |out, v| Table::new(BINDING_COLUMNS).print(out, items(v)))
        }
        BindingCommand::Remove { id } => {
            ctx.api.delete(&format!("/admin/api/bindings/{id}")).await?;
            ctx.show(&json!({ "deleted": id }), |out, _| writeln!(out, "removed binding {id}"))
        }
    }
}
