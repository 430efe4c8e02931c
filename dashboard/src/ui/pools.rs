//! Pools and workers: add a pool (its models and the APIs its workers speak), add endpoints,
//! drain, undrain and remove them, with each worker's live state from the stream.

use leptos::prelude::*;
use sluice_store_model::{EngineFlavor, NewEndpoint, NewPool, Pool, validate};

use super::api::{self, seg};
use super::live::health_label;
use super::stream::Live;
use super::widgets::{ErrorNote, act, load, show};
use crate::{format, forms};

#[component]
pub fn PoolsPage() -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let pools = load::<Vec<Pool>>(|| "/pools".into(), reload);
    let error = RwSignal::new(None::<String>);
    let name = RwSignal::new(String::new());
    let models = RwSignal::new(String::new());
    let apis = RwSignal::new(String::new());
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let pool = name.get_untracked().trim().to_owned();
        let models: Vec<String> =
            models.get_untracked().split(',').map(str::trim).filter(|m| !m.is_empty()).map(str::to_owned).collect();
        let checked = validate::name("name", &pool).and_then(|()| {
            if models.is_empty() {
                return Err(sluice_store_model::StoreError::invalid("models", "name at least one model"));
            }
            models.iter().try_for_each(|m| validate::model("models", m))
        });
        if let Err(e) = checked {
            return error.set(Some(forms::FieldError::from(e).to_string()));
        }
        let apis = match forms::pool_apis(&apis.get_untracked()) {
            Ok(apis) => apis,
            Err(e) => return error.set(Some(e.to_string())),
        };
        let body = NewPool { name: pool, models, apis };
        act(error, reload, async move { api::send::<Pool>("POST", "/pools", &body).await }, move |_| {
            name.set(String::new())
        });
    };
    view! {
        <h1>"Pools & workers"</h1>
        {show(pools, move |list: &Vec<Pool>| {
            list.iter().map(|p| view! { <PoolBox pool=p.clone() reload=reload /> }).collect_view()
        })}
        <h2>"New pool"</h2>
        <form class="inline" on:submit=create>
            <label>"Name"<input name="pool-name" placeholder="gpu-a" prop:value=move || name.get()
                on:input=move |ev| name.set(event_target_value(&ev)) /></label>
            <label>"Models (comma-separated)"<input name="pool-models" placeholder="llama-3-8b" prop:value=move || models.get()
                on:input=move |ev| models.set(event_target_value(&ev)) /></label>
            <label>"APIs (empty: chat, completions, embeddings)"<input name="pool-apis" placeholder="chat,responses,messages"
                prop:value=move || apis.get() on:input=move |ev| apis.set(event_target_value(&ev)) /></label>
            <button type="submit">"Create pool"</button>
        </form>
        <ErrorNote error=error />
    }
}

#[component]
fn PoolBox(pool: Pool, reload: RwSignal<u32>) -> impl IntoView {
    let live = expect_context::<Live>();
    let error = RwSignal::new(None::<String>);
    let pool_name = pool.name.clone();
    let apis = pool.apis.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ");
    let rows = pool
        .endpoints
        .iter()
        .map(|e| {
            let base = format!("/pools/{}/endpoints/{}", seg(&pool.name), seg(&e.name));
            let drained = e.drained;
            let (pool_n, ep_n) = (pool.name.clone(), e.name.clone());
            let state = move || {
                live.history.with(|h| {
                    let w = h.latest.as_ref()?.workers.iter().find(|w| w.pool == pool_n && w.name == ep_n)?.clone();
                    let e = w.engine;
                    Some(format!(
                        "{} · {} in flight · queue {} · KV {}",
                        health_label(w.health),
                        w.in_flight,
                        e.and_then(|e| e.waiting).map_or_else(|| "–".into(), format::si),
                        e.and_then(|e| e.kv_cache_usage).map_or_else(|| "–".into(), format::percent),
                    ))
                })
            };
            let drain_path = base.clone();
            let remove_path = base;
            view! {
                <tr data-endpoint=e.name.clone()>
                    <td>{e.name.clone()}</td>
                    <td><code>{e.url.clone()}</code></td>
                    <td class="num">{e.weight}</td>
                    <td><span class=if drained { "pill warn" } else { "pill ok" } data-drained=drained.to_string()>
                        {if drained { "drained" } else { "serving" }}</span></td>
                    <td class="live-state">{move || state().unwrap_or_else(|| "no live data".into())}</td>
                    <td>
                        <button type="button" on:click=move |_| {
                            let path = drain_path.clone();
                            let body = serde_json::json!({ "drained": !drained });
                            act(error, reload, async move { api::send::<Pool>("PUT", &path, &body).await }, |_| {});
                        }>{if drained { "Undrain" } else { "Drain" }}</button>
                        " "
                        <button type="button" class="danger" on:click=move |_| {
                            let path = remove_path.clone();
                            act(error, reload, async move { api::delete(&path).await }, |_| {});
                        }>"Remove"</button>
                    </td>
                </tr>
            }
        })
        .collect_view();

    let ep_name = RwSignal::new(String::new());
    let ep_url = RwSignal::new(String::new());
    let ep_weight = RwSignal::new(String::new());
    let add = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (name, url, weight) =
            match forms::endpoint(&ep_name.get_untracked(), &ep_url.get_untracked(), &ep_weight.get_untracked()) {
                Ok(v) => v,
                Err(e) => return error.set(Some(e.to_string())),
            };
        let body = NewEndpoint { name, url, flavor: EngineFlavor::Vllm, weight, http2: false };
        let path = format!("/pools/{}/endpoints", seg(&pool_name));
        act(error, reload, async move { api::send::<Pool>("POST", &path, &body).await }, move |_| {
            ep_name.set(String::new());
            ep_url.set(String::new());
        });
    };
    let input = |sig: RwSignal<String>, name: &'static str, hint: &'static str| {
        view! {
            <input name=name placeholder=hint prop:value=move || sig.get() on:input=move |ev| sig.set(event_target_value(&ev)) />
        }
    };
    view! {
        <section class="box" data-pool=pool.name.clone()>
            <h2>{pool.name.clone()}<span class="muted">{format!(" serves {}", pool.models.join(", "))}</span></h2>
            <p class="muted" data-apis=apis.clone()>{format!("speaks {apis}")}</p>
            <table>
                <thead><tr><th>"endpoint"</th><th>"url"</th><th>"weight"</th><th>"rotation"</th><th>"live"</th><th></th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
            <form class="inline" on:submit=add>
                <label>"Name"{input(ep_name, "endpoint-name", "w3")}</label>
                <label>"URL"{input(ep_url, "endpoint-url", "http://10.0.0.3:8000")}</label>
                <label>"Weight"{input(ep_weight, "endpoint-weight", "1")}</label>
                <button type="submit">"Add endpoint"</button>
            </form>
            <ErrorNote error=error />
        </section>
    }
}
