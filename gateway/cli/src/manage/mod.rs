//! `sluice tenant|key|limits|slo|pool|endpoint|plugin|binding|usage|audit|reload|cache`: the admin API's
//! operations from the command line, over HTTP (never to the database), for people and scripts.
//!
//! Tables by default, `--json` for the API's response as is. API errors print
//! `error: <message>` and exit 1 (through `main`).

mod client;
mod gateway;
mod plugins;
mod pools;
mod reports;
mod table;
mod tenants;

use std::io::Write;

use clap::{Args, Subcommand};
use serde_json::Value;

pub use client::{AdminClient, ClientError};

/// Where the admin API is and how to talk to it; accepted before or after the subcommand.
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// The admin API's base URL (the gateway's admin listener).
    #[arg(long, global = true, env = "SLUICE_ADMIN_URL", default_value = "http://127.0.0.1:9090")]
    pub admin_url: String,
    /// The admin token, sent as `Authorization: Bearer <token>`.
    #[arg(long, global = true, env = "SLUICE_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON response instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A command group with the connection flags.
#[derive(Debug, Args)]
pub struct Manage<T: Subcommand> {
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(subcommand)]
    pub command: T,
}

#[derive(Debug, Subcommand)]
pub enum ManageCommand {
    /// Tenants: create, list, get, update, suspend, resume, delete.
    Tenant(Manage<tenants::TenantCommand>),
    /// API keys: create (prints the secret once), list, revoke.
    Key(Manage<tenants::KeyCommand>),
    /// A tenant's limits (requests and tokens per minute, concurrency, monthly budget), or one
    /// of its keys' or models'.
    Limits(Manage<tenants::LimitsCommand>),
    /// A tenant's latency objectives per model.
    Slo(Manage<tenants::SloCommand>),
    /// Pools of inference workers.
    Pool(Manage<pools::PoolCommand>),
    /// A pool's endpoints: add, drain, undrain, remove.
    Endpoint(Manage<pools::EndpointCommand>),
    /// Policy plugins: upload a component, list, versions, activate, roll back; and offline:
    /// new (a crate from a template), build (for wasm32-wasip2), test (run a component's hooks).
    Plugin(Manage<plugins::PluginCommand>),
    /// Where plugins run: add, list, remove.
    Binding(Manage<plugins::BindingCommand>),
    /// Usage per tenant and model over a time range (default: the last 24 hours).
    Usage(reports::UsageArgs),
    /// The audit log of admin changes, newest first.
    Audit(reports::AuditArgs),
    /// Re-read the gateway's config file (as SIGHUP does) and print what changed.
    Reload(gateway::ReloadArgs),
    /// The response cache: purge entries.
    Cache(Manage<gateway::CacheCommand>),
}

pub async fn run(command: ManageCommand) -> anyhow::Result<()> {
    match command {
        ManageCommand::Tenant(m) => tenants::tenant(&Ctx::new(&m.admin)?, m.command).await,
        ManageCommand::Key(m) => tenants::key(&Ctx::new(&m.admin)?, m.command).await,
        ManageCommand::Limits(m) => tenants::limits(&Ctx::new(&m.admin)?, m.command).await,
        ManageCommand::Slo(m) => tenants::slo(&Ctx::new(&m.admin)?, m.command).await,
        ManageCommand::Pool(m) => pools::pool(&Ctx::new(&m.admin)?, m.command).await,
        ManageCommand::Endpoint(m) => pools::endpoint(&Ctx::new(&m.admin)?, m.command).await,
        // Authoring works offline: no admin client is made.
        ManageCommand::Plugin(Manage { admin, command: plugins::PluginCommand::Authoring(command) }) => {
            crate::authoring::run(command, admin.json).await
        }
        ManageCommand::Plugin(m) => plugins::plugin(&Ctx::new(&m.admin)?, m.command).await,
        ManageCommand::Binding(m) => plugins::binding(&Ctx::new(&m.admin)?, m.command).await,
        ManageCommand::Usage(args) => reports::usage(&Ctx::new(&args.admin)?, args).await,
        ManageCommand::Audit(args) => reports::audit(&Ctx::new(&args.admin)?, args).await,
        ManageCommand::Reload(args) => gateway::reload(&Ctx::new(&args.admin)?).await,
        ManageCommand::Cache(m) => gateway::cache(&Ctx::new(&m.admin)?, m.command).await,
    }
}

/// What every command needs: the client and how to print.
pub(crate) struct Ctx {
    pub api: AdminClient,
    pub json: bool,
}

impl Ctx {
    fn new(args: &AdminArgs) -> anyhow::Result<Ctx> {
        Ok(Ctx { api: AdminClient::new(&args.admin_url, args.token.clone())?, json: args.json })
    }

    /// `--json`: the response as is; otherwise `human` renders it.
    pub fn show(
        &self,
        value: &Value,
        human: impl FnOnce(&mut dyn Write, &Value) -> std::io::Result<()>,
    ) -> anyhow::Result<()> {
        let mut out = std::io::stdout();
        if self.json {
            writeln!(out, "{}", serde_json::to_string_pretty(value)?)?;
        } else {
            human(&mut out, value)?;
        }
        out.flush()?;
        Ok(())
    }
}

/// Items of a JSON list response (an empty slice for anything else).
pub(crate) fn items(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}
