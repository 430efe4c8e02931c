//! `SIGHUP` reloads the real binary's config file: a tenant the file adds serves, and an invalid
//! file is refused and logged while the process keeps serving what it had.

use std::time::Duration;

use serde_json::json;
use sluice_e2e::client::post;
use sluice_e2e::fleet::{config, start_gateway, start_sim};
use sluice_e2e::tenancy::{chat, key, tenants_toml, wait_until};
use sluice_e2e::{API_KEY, MODEL, TempDir};

const WAIT: Duration = Duration::from_secs(10);

async fn chat_status(api: &str, key: &str) -> u16 {
    post(&format!("{api}/v1/chat/completions"), Some(key), &chat()).await.status.as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_config_file_and_refuses_an_invalid_one() {
    let dir = TempDir::new("reload-sighup");
    let sim = start_sim(&dir, "sim", None, &[]).await;
    let endpoints = [sim.url()];
    let mut gw = start_gateway(&dir, |listen, admin| config(listen, admin, &endpoints, "", "")).await;
    let api = gw.api();
    let beta = key("beta");
    assert_eq!(chat_status(&api, API_KEY).await, 200);
    assert_eq!(chat_status(&api, &beta).await, 401);

    // The file gains a tenant; SIGHUP makes it serve.
    std::fs::write(&gw.config, config(gw.listen, gw.admin, &endpoints, "", &tenants_toml(&["beta"]))).unwrap();
    gw.proc.signal("HUP");
    wait_until("beta's key works after SIGHUP", WAIT, || async { chat_status(&api, &beta).await == 200 }).await;
    assert!(gw.proc.stderr().contains("configuration reloaded"), "{}", gw.proc.diagnostics());

    // An invalid file (beta twice) is refused and logged naming the field; the process keeps
    // serving both tenants.
    let invalid = format!("{}{}", tenants_toml(&["beta"]), tenants_toml(&["beta"]));
    std::fs::write(&gw.config, config(gw.listen, gw.admin, &endpoints, "", &invalid)).unwrap();
    gw.proc.signal("HUP");
    let stderr = || gw.proc.stderr();
    wait_until("the refusal is logged", WAIT, || async { stderr().contains("configuration not reloaded") }).await;
    let log = gw.proc.stderr();
    let refusal = log.lines().find(|l| l.contains("configuration not reloaded")).unwrap();
    assert!(refusal.contains("tenants[2].name: duplicate tenant"), "{refusal}");
    assert!(gw.proc.exited().is_none(), "SIGHUP ended the process\n{}", gw.proc.diagnostics());
    assert_eq!(chat_status(&api, API_KEY).await, 200);
    assert_eq!(chat_status(&api, &beta).await, 200);
    let models = sluice_e2e::client::get(&format!("{api}/v1/models"), Some(&beta)).await;
    assert_eq!(models.json()["data"][0]["id"], json!(MODEL), "{}", models.text());
}
