//! `sluice pool`, `endpoint`.

use std::io::Write;

use clap::builder::PossibleValuesParser;
use clap::{Subcommand, ValueEnum};
use http::Method;
use serde_json::{Value, json};
use sluice_store::model::PoolApi;

use super::client::encode;
use super::table::Table;
use super::{Ctx, items};

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Create a pool serving these models (add endpoints next).
    Create {
        name: String,
        /// A model the pool serves; repeat or comma-separate for several.
        #[arg(long = "model", required = true, value_delimiter = ',')]
        models: Vec<String>,
        /// The APIs the workers speak, comma-separated (default: chat,completions,embeddings;
        /// vLLM also serves responses and messages).
        #[arg(long, value_delimiter = ',', value_parser = PossibleValuesParser::new(PoolApi::NAMES))]
        apis: Option<Vec<String>>,
    },
    /// Change what a pool says about its workers.
    Update {
        name: String,
        /// The APIs the workers speak, comma-separated; replaces the pool's list.
        #[arg(long, required = true, value_delimiter = ',', value_parser = PossibleValuesParser::new(PoolApi::NAMES))]
        apis: Vec<String>,
    },
    /// List pools.
    List,
    /// Show a pool with its endpoints.
    Get { name: String },
    /// Delete a pool with its endpoints.
    Delete { name: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FlavorArg {
    Vllm,
    Sglang,
    Trtllm,
    LlamaCpp,
    Openai,
}

impl FlavorArg {
    fn name(self) -> &'static str {
        match self {
            FlavorArg::Vllm => "vllm",
            FlavorArg::Sglang => "sglang",
            FlavorArg::Trtllm => "trtllm",
            FlavorArg::LlamaCpp => "llama_cpp",
            FlavorArg::Openai => "openai",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Add an endpoint to a pool.
    Add {
        pool: String,
        name: String,
        /// The worker's base URL, e.g. http://10.0.0.5:8000.
        url: String,
        /// The serving engine (decides how its metrics are read).
        #[arg(long, value_enum, default_value = "vllm")]
        flavor: FlavorArg,
        #[arg(long, default_value_t = 1)]
        weight: u32,
        /// Speak HTTP/2 (prior knowledge) to it.
        #[arg(long)]
        http2: bool,
    },
    /// Let an endpoint finish what it has and send it nothing new.
    Drain { pool: String, name: String },
    /// Put a drained endpoint back in rotation.
    Undrain { pool: String, name: String },
    /// Remove an endpoint from its pool.
    Remove { pool: String, name: String },
}

const POOL_COLUMNS: &[(&str, &str)] = &[
    ("NAME", "name"),
    ("MODELS", "models"),
    ("APIS", "apis"),
    ("ENDPOINTS", "endpoint_count"),
    ("CREATED", "created_at"),
];
const ENDPOINT_COLUMNS: &[(&str, &str)] = &[
    ("NAME", "name"),
    ("URL", "url"),
    ("FLAVOR", "flavor"),
    ("WEIGHT", "weight"),
    ("HTTP2", "http2"),
    ("DRAINED", "drained"),
];

fn with_counts(pools: &[Value]) -> Vec<Value> {
    pools
        .iter()
        .map(|p| {
            let mut p = p.clone();
            p["endpoint_count"] = json!(items(&p["endpoints"]).len());
            p
        })
        .collect()
}

fn print_pool(out: &mut dyn Write, pool: &Value) -> std::io::Result<()> {
    Table::new(POOL_COLUMNS).print(out, &with_counts(std::slice::from_ref(pool)))?;
    writeln!(out, "\nEndpoints")?;
    Table::new(ENDPOINT_COLUMNS).print(out, items(&pool["endpoints"]))
}

pub async fn pool(ctx: &Ctx, command: PoolCommand) -> anyhow::Result<()> {
    match command {
        PoolCommand::Create { name, models, apis } => {
            let body = json!({ "name": name, "models": models, "apis": apis });
            let created = ctx.api.json(Method::POST, "/admin/api/pools", &body).await?;
            ctx.show(&created, print_pool)
        }
        PoolCommand::Update { name, apis } => {
            let path = format!("/admin/api/pools/{}", encode(&name));
            let updated = ctx.api.json(Method::PATCH, &path, &json!({ "apis": apis })).await?;
            ctx.show(&updated, print_pool)
        }
        PoolCommand::List => {
            let list = ctx.api.get("/admin/api/pools").await?;
            ctx.show(&list, |out, v| Table::new(POOL_COLUMNS).print(out, &with_counts(items(v))))
        }
        PoolCommand::Get { name } => {
            let pool = ctx.api.get(&format!("/admin/api/pools/{}", encode(&name))).await?;
            ctx.show(&pool, print_pool)
        }
        PoolCommand::Delete { name } => {
            ctx.api.delete(&format!("/admin/api/pools/{}", encode(&name))).await?;
            ctx.show(&json!({ "deleted": name }), |out, _| writeln!(out, "deleted pool {name}"))
        }
    }
}

pub async fn endpoint(ctx: &Ctx, command: EndpointCommand) -> anyhow::Result<()> {
    let path = |pool: &str, name: Option<&str>| match name {
        Some(name) => format!("/admin/api/pools/{}/endpoints/{}", encode(pool), encode(name)),
        None => format!("/admin/api/pools/{}/endpoints", encode(pool)),
    };
    let pool = match command {
        EndpointCommand::Add { pool, name, url, flavor, weight, http2 } => {
            let body = json!({ "name": name, "url": url, "flavor": flavor.name(), "weight": weight, "http2": http2 });
            ctx.api.json(Method::POST, &path(&pool, None), &body).await?
        }
        EndpointCommand::Drain { pool, name } => {
            ctx.api.json(Method::PUT, &path(&pool, Some(&name)), &json!({ "drained": true })).await?
        }
        EndpointCommand::Undrain { pool, name } => {
            ctx.api.json(Method::PUT, &path(&pool, Some(&name)), &json!({ "drained": false })).await?
        }
        EndpointCommand::Remove { pool, name } => ctx.api.delete(&path(&pool, Some(&name))).await?,
    };
    ctx.show(&pool, print_pool)
}
