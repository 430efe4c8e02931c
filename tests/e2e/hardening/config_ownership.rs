//! Finding 4: removing a key from the config file did not revoke it, a removed endpoint kept
//! its traffic and a changed model list was ignored, even after a restart. Now the file owns
//! what it declares: after `SIGHUP`, a key and a tenant it dropped get `401` and an endpoint it
//! dropped gets no request, while a key the admin API made serves on; after a restart on the
//! same store, a key dropped meanwhile gets `401` and a model added is served. Each change is
//! one log line. The good tenant is served before, during and after the reload, and again after
//! the restart.

use std::path::PathBuf;

use http::StatusCode;
use serde_json::json;
use sluice_e2e::client::{get, post};
use sluice_e2e::fleet::{Gateway, Launch, Sim, start_gateway_with, start_sim};
use sluice_e2e::tenancy::{ADMIN_TOKEN, Load, tenants_toml, wait_until};
use sluice_e2e::{MODEL, TempDir};

use super::{PATIENCE, Pool, assert_good_unharmed, gateway_toml, good_alongside};

/// The tenant whose keys the file changes (beside the harness's `acme` and the good tenant).
const DELTA: &str = "delta";
const KEEP: &str = "sk-delta-keep-0123456789";
const DROPPED_BY_RELOAD: &str = "sk-delta-reload-0123456789";
const DROPPED_BY_RESTART: &str = "sk-delta-restart-0123456789";
const BETA: &str = "sk-beta-0123456789";
const SECOND_MODEL: &str = "model-two";

/// What one version of the file declares besides the good tenant.
struct Declared<'a> {
    endpoints: &'a [(&'a str, &'a Sim)],
    models: &'a [&'a str],
    delta_keys: &'a [&'a str],
    beta: bool,
}

fn file(listen: std::net::SocketAddr, admin: std::net::SocketAddr, d: &Declared) -> String {
    let endpoints = d.endpoints.iter().map(|(name, sim)| format!("{{ url = \"{}\", name = \"{name}\" }}", sim.url()));
    let pool = Pool { name: "llama", models: d.models, endpoints: endpoints.collect(), upstream: "" };
    let keys: Vec<String> = d.delta_keys.iter().map(|k| format!("\"{k}\"")).collect();
    let mut extra = format!("[[tenants]]\nname = \"{DELTA}\"\napi_keys = [{}]\n\n", keys.join(", "));
    if d.beta {
        extra += &tenants_toml(&["beta"]);
    }
    gateway_toml(listen, admin, "", &[pool], &extra)
}

async fn status(gw: &Gateway, key: &str, model: &str) -> StatusCode {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2});
    post(&format!("{}/v1/chat/completions", gw.api()), Some(key), &body).await.status
}

/// A sim's own count of the requests it finished, and of those it is working on.
async fn sim_requests(sim: &Sim) -> (f64, f64) {
    let text = get(&format!("{}/metrics", sim.url()), None).await.text();
    let value = |name| sluice_e2e::metrics::sum(&text, name, &[]).unwrap_or(0.0);
    (value("vllm:request_success_total"), value("vllm:num_requests_running") + value("vllm:num_requests_waiting"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_file_drops_stops_serving_after_sighup_and_after_a_restart() {
    let dir = TempDir::new("hardening-ownership");
    let a = start_sim(&dir, "sim-a", None, &["--model", SECOND_MODEL]).await;
    let b = start_sim(&dir, "sim-b", None, &["--model", SECOND_MODEL]).await;
    let data_dir: PathBuf = dir.path().join("data");
    let launch = |name: &str| Launch { name: name.to_owned(), data_dir: Some(data_dir.clone()), ..Launch::default() };
    let first = Declared {
        endpoints: &[("sim-a", &a), ("sim-b", &b)],
        models: &[MODEL],
        delta_keys: &[KEEP, DROPPED_BY_RELOAD, DROPPED_BY_RESTART],
        beta: true,
    };
    let mut gw = start_gateway_with(&dir, &launch("first"), |l, admin| file(l, admin, &first)).await;
    let good = good_alongside(&gw, Load::new(2)).await;

    for key in [KEEP, DROPPED_BY_RELOAD, DROPPED_BY_RESTART, BETA] {
        assert_eq!(status(&gw, key, MODEL).await, StatusCode::OK, "{key}");
    }
    assert_eq!(status(&gw, KEEP, SECOND_MODEL).await, StatusCode::NOT_FOUND, "not served yet");
    let served_by_b = sim_requests(&b).await.0;
    assert!(served_by_b > 0.0, "both endpoints serve while the file names them");
    // A key the admin API makes for one of the file's tenants: not the file's to remove.
    let made = post(&format!("{}/admin/api/tenants/{DELTA}/keys", gw.admin_url()), Some(ADMIN_TOKEN), &json!({})).await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
    let admin_key = made.json()["key"].as_str().unwrap().to_owned();
    wait_until("the admin API's key serves", PATIENCE, || async {
        status(&gw, &admin_key, MODEL).await == StatusCode::OK
    })
    .await;

    // The file drops a key, tenant beta and endpoint sim-b; SIGHUP.
    let second = Declared {
        endpoints: &[("sim-a", &a)],
        models: &[MODEL],
        delta_keys: &[KEEP, DROPPED_BY_RESTART],
        beta: false,
    };
    std::fs::write(&gw.config, file(gw.listen, gw.admin, &second)).unwrap();
    gw.proc.signal("HUP");
    wait_until("the dropped key is refused after SIGHUP", PATIENCE, || async {
        status(&gw, DROPPED_BY_RELOAD, MODEL).await == StatusCode::UNAUTHORIZED
    })
    .await;
    assert_eq!(status(&gw, BETA, MODEL).await, StatusCode::UNAUTHORIZED, "a dropped tenant's key");
    assert_eq!(status(&gw, KEEP, MODEL).await, StatusCode::OK);
    assert_eq!(status(&gw, &admin_key, MODEL).await, StatusCode::OK, "the admin API's key serves on");
    // The dropped endpoint finishes what it had and gets nothing new.
    wait_until("sim-b has finished what it had", PATIENCE, || async { sim_requests(&b).await.1 == 0.0 }).await;
    let served_by_b = sim_requests(&b).await.0;
    for _ in 0..8 {
        assert_eq!(status(&gw, KEEP, MODEL).await, StatusCode::OK);
    }
    assert_eq!(sim_requests(&b).await, (served_by_b, 0.0), "an endpoint dropped from the file got traffic");
    let log = gw.proc.stderr();
    for change in [
        "of tenant \"delta\" revoked: no longer in the config file",
        "tenant \"beta\" deleted",
        "endpoint \"sim-b\" removed from pool \"llama\"",
    ] {
        assert!(
            log.lines().any(|l| l.contains("config file:") && l.contains(change)),
            "no log line {change:?}:\n{log}"
        );
    }
    assert_good_unharmed(good).await;

    // Stopped, the file drops another key and adds a model; started again on the same store.
    gw.proc.signal("TERM");
    let exit = gw.proc.wait_exit(PATIENCE).await;
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}\n{}", gw.proc.diagnostics());
    let third =
        Declared { endpoints: &[("sim-a", &a)], models: &[MODEL, SECOND_MODEL], delta_keys: &[KEEP], beta: false };
    let mut gw = start_gateway_with(&dir, &launch("second"), |l, admin| file(l, admin, &third)).await;
    let good = good_alongside(&gw, Load::new(2)).await;
    for key in [DROPPED_BY_RESTART, DROPPED_BY_RELOAD, BETA] {
        assert_eq!(status(&gw, key, MODEL).await, StatusCode::UNAUTHORIZED, "{key} after the restart");
    }
    assert_eq!(status(&gw, KEEP, MODEL).await, StatusCode::OK);
    assert_eq!(status(&gw, KEEP, SECOND_MODEL).await, StatusCode::OK, "the model the file added is served");
    assert_eq!(status(&gw, &admin_key, MODEL).await, StatusCode::OK, "the admin API's key survives the restart");
    let log = gw.proc.stderr();
    assert!(
        log.lines().any(|l| l.contains("config file:") && l.contains("revoked: no longer in the config file")),
        "{log}"
    );
    assert_good_unharmed(good).await;
    assert!(gw.proc.exited().is_none(), "{}", gw.proc.diagnostics());
}
