//! Starting the real binaries: simulated workers and the gateway, each ready before return.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::net::{NotReady, free_addr, wait_ready};
use crate::process::Proc;
use crate::temp::TempDir;
use crate::{MODEL, STARTUP, bins};

/// The tenant and key every generated config carries.
pub const TENANT: &str = "acme";
pub const API_KEY: &str = "sk-acme-0123456789";

/// A running `sluice-sim`.
pub struct Sim {
    pub proc: Proc,
    pub addr: SocketAddr,
}

impl Sim {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Starts `sluice-sim --listen ADDR --model llama-3-8b ARGS…` and waits for `/health`.
/// With `addr = None` a free port is picked (and picked again if it was taken meanwhile).
pub async fn start_sim(dir: &TempDir, name: &str, addr: Option<SocketAddr>, args: &[&str]) -> Sim {
    let attempts = if addr.is_some() { 1 } else { 2 };
    for attempt in 1..=attempts {
        let addr = addr.unwrap_or_else(free_addr);
        let mut cmd = bins::sluice_sim();
        cmd.args(["--listen", &addr.to_string(), "--model", MODEL, "--seed", "7"]).args(args);
        let mut proc = Proc::spawn(&format!("{name}-{attempt}"), cmd, dir.path());
        match wait_ready(&mut proc, &format!("http://{addr}/health"), STARTUP).await {
            Ok(()) => return Sim { proc, addr },
            Err(NotReady::Exited(_)) if attempt < attempts && proc.bind_failed() => continue,
            Err(e) => panic!("sluice-sim {name} on {addr} did not become ready: {e:?}\n{}", proc.diagnostics()),
        }
    }
    unreachable!("the loop returns or panics")
}

/// A running `sluice serve`.
pub struct Gateway {
    pub proc: Proc,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub config: PathBuf,
}

impl Gateway {
    pub fn api(&self) -> String {
        format!("http://{}", self.listen)
    }

    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    /// `/metrics` as text.
    pub async fn metrics(&self) -> String {
        let reply = crate::client::get(&format!("{}/metrics", self.admin_url()), None).await;
        assert_eq!(reply.status, 200, "GET /metrics: {}", reply.text());
        reply.text()
    }
}

/// A gateway config with one pool serving [`MODEL`] from `endpoints` and one tenant with
/// [`API_KEY`]; `extra` is appended verbatim (more tables).
pub fn config(listen: SocketAddr, admin: SocketAddr, endpoints: &[String], server_extra: &str, extra: &str) -> String {
    let endpoints: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "[server]\nlisten = \"{listen}\"\nadmin_listen = \"{admin}\"\n{server_extra}\n\
         [[pools]]\nname = \"llama\"\nmodels = [\"{MODEL}\"]\nendpoints = [{}]\n\n\
         [[tenants]]\nname = \"{TENANT}\"\napi_keys = [\"{API_KEY}\"]\n\n{extra}",
        endpoints.join(", "),
    )
}

/// How `sluice serve` is run, beyond its config file.
#[derive(Debug, Clone)]
pub struct Launch {
    /// Names the gateway's config file, log and default data directory in the test's directory
    /// (`<name>-<attempt>.toml`, `<name>-<attempt>.log`, `data-<name>-<attempt>`), so that a
    /// gateway restarted in the same directory keeps its predecessor's log.
    pub name: String,
    /// The data directory (the embedded store, a generated admin token); set it to restart a
    /// gateway on its predecessor's store.
    pub data_dir: Option<PathBuf>,
    /// A program and its leading arguments that run `sluice` (see [`bins::sluice_wrapped`]).
    pub wrapper: Vec<String>,
}

impl Default for Launch {
    fn default() -> Self {
        Launch { name: "sluice".to_owned(), data_dir: None, wrapper: Vec::new() }
    }
}

/// Writes the config that `make_config(listen, admin)` returns, starts `sluice serve` on it
/// and waits for the admin `/healthz`. Free ports are picked, and picked again once if the
/// gateway lost one of them before binding.
pub async fn start_gateway(dir: &TempDir, make_config: impl Fn(SocketAddr, SocketAddr) -> String) -> Gateway {
    start_gateway_with(dir, &Launch::default(), make_config).await
}

/// [`start_gateway`], run as `launch` says.
pub async fn start_gateway_with(
    dir: &TempDir,
    launch: &Launch,
    make_config: impl Fn(SocketAddr, SocketAddr) -> String,
) -> Gateway {
    let name = &launch.name;
    for attempt in 1..=2 {
        let (listen, admin) = (free_addr(), free_addr());
        let config = dir.write(&format!("{name}-{attempt}.toml"), &make_config(listen, admin));
        let mut cmd = bins::sluice_wrapped(&launch.wrapper);
        // Each gateway keeps its embedded store in the test's own directory: gateways sharing a
        // store file would see each other's pools.
        let data_dir = launch.data_dir.clone().unwrap_or_else(|| dir.path().join(format!("data-{name}-{attempt}")));
        cmd.arg("serve").arg("--config").arg(&config).arg("--data-dir").arg(data_dir);
        let mut proc = Proc::spawn(&format!("{name}-{attempt}"), cmd, dir.path());
        match wait_ready(&mut proc, &format!("http://{admin}/healthz"), STARTUP).await {
            Ok(()) => return Gateway { proc, listen, admin, config },
            Err(NotReady::Exited(_)) if attempt == 1 && proc.bind_failed() => continue,
            Err(e) => panic!("sluice serve did not become ready: {e:?}\n{}", proc.diagnostics()),
        }
    }
    unreachable!("the loop returns or panics")
}
