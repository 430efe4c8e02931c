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
    /// Run this version wherever the plugin is bound.
    Activate { name: String, version: i32 },
    /// Activate the highest version below the active one.
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
    },
    /// List bindings in the order they run.
    List,
    /// Remove a binding by its id.
    Remove { id: i64 },
}

const PLUGIN_COLUMNS: &[(&str, &str)] = &[("NAME", "name"), ("ACTIVE", "active_version"), ("CREATED", "created_at")];
const VERSION_COLUMNS: &[(&str, &str)] = &[
    ("VERSION", "version"),
    ("SHA256", "sha256"),
    ("BYTES", "size_bytes"),
    ("HOOKS", "manifest.hooks"),
    ("CAPABILITIES", "manifest.capabilities"),
    ("CREATED", "created_at"),
];
const BINDING_COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("PLUGIN", "plugin"),
    ("SCOPE", "scope.kind"),
    ("TARGET", "scope.name"),
    ("ORDER", "order"),
    ("FAILURE", "failure_policy"),
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
        PluginCommand::Activate { name, version } => {
            let path = format!("/admin/api/plugins/{}/activate", encode(&name));
            let plugin = ctx.api.json(Method::POST, &path, &json!({ "version": version })).await?;
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
        BindingCommand::Add { plugin, tenant, model, order, failure_policy, config } => {
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
            let body =
                json!({ "plugin": plugin, "scope": scope, "order": order, "failure_policy": policy, "config": config });
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
