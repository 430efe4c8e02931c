//! Plugins: upload a component, see versions with their sha256 and requested capabilities,
//! activate one granting the capabilities the admin ticks, roll back, bind (with a deadline and
//! memory limit) and unbind, with live call rates, latency and errors from the stream.

use leptos::prelude::*;
use sluice_store_model::{Binding, FailurePolicy, Plugin, PluginVersion, Scope, validate};
use wasm_bindgen::JsCast;

use super::api::{self, seg};
use super::stream::Live;
use super::widgets::{ErrorNote, act, load, show};
use crate::{format, forms};

#[component]
pub fn PluginsPage() -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let plugins = load::<Vec<Plugin>>(|| "/plugins".into(), reload);
    let bindings = load::<Vec<Binding>>(|| "/bindings".into(), reload);
    view! {
        <h1>"Plugins"</h1>
        {show(plugins, move |list: &Vec<Plugin>| {
            list.iter().map(|p| view! { <PluginBox plugin=p.clone() reload=reload /> }).collect_view()
        })}
        <Upload reload=reload />
        <h2>"Bindings"</h2>
        {show(bindings, move |list: &Vec<Binding>| view! { <BindingsTable bindings=list.clone() reload=reload /> })}
        <BindForm reload=reload />
    }
}

#[component]
fn Upload(reload: RwSignal<u32>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let done = RwSignal::new(None::<String>);
    let file_input = NodeRef::<leptos::html::Input>::new();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        done.set(None);
        let plugin = name.get_untracked().trim().to_owned();
        if let Err(e) = validate::name("name", &plugin) {
            return error.set(Some(forms::FieldError::from(e).to_string()));
        }
        let file = file_input.get_untracked().and_then(|i| {
            let input: &web_sys::HtmlInputElement = i.unchecked_ref();
            input.files().and_then(|f| f.get(0))
        });
        let Some(file) = file else { return error.set(Some("file: choose a .wasm component".into())) };
        if !file.name().ends_with(".wasm") {
            return error.set(Some("file: must be a WebAssembly component (.wasm)".into()));
        }
        let path = format!("/plugins/{}/versions", seg(&plugin));
        act(error, reload, async move { api::upload::<PluginVersion>(&path, file).await }, move |v| {
            done.set(Some(format!(
                "Uploaded {} version {} (sha256 {}…). Activate it to run it.",
                v.plugin,
                v.version,
                &v.sha256[..12.min(v.sha256.len())]
            )))
        });
    };
    view! {
        <section class="box">
            <h2>"Upload a plugin"</h2>
            <form class="inline" on:submit=submit>
                <label>"Plugin name"<input name="plugin-name" placeholder="my-policy" prop:value=move || name.get()
                    on:input=move |ev| name.set(event_target_value(&ev)) /></label>
                <label>"Component (.wasm)"<input type="file" name="plugin-file" accept=".wasm,application/wasm" node_ref=file_input /></label>
                <button type="submit">"Upload"</button>
            </form>
            {move || done.get().map(|m| view! { <p class="ok" role="status">{m}</p> })}
            <ErrorNote error=error />
        </section>
    }
}

#[component]
fn PluginBox(plugin: Plugin, reload: RwSignal<u32>) -> impl IntoView {
    let live = expect_context::<Live>();
    let error = RwSignal::new(None::<String>);
    let name = plugin.name.clone();
    let versions = load::<Vec<PluginVersion>>(
        {
            let name = name.clone();
            move || format!("/plugins/{}/versions", seg(&name))
        },
        reload,
    );
    let active = plugin.active_version;
    let stats_name = name.clone();
    let stats = move || {
        live.history.with(|h| {
            let p = h.latest.as_ref()?.plugins.get(&stats_name).copied()?;
            Some(format!(
                "{} calls · mean {} · {} errors · {} errors total",
                format::rate(p.calls_per_s),
                p.mean_us.map_or_else(|| "–".into(), |us| format::duration_ms(us / 1e3)),
                format::rate(p.errors_per_s),
                p.errors_total
            ))
        })
    };
    // The circuit breakers of this plugin's bindings on the gateway serving the dashboard: shown
    // only when one is not closed, since that is when the plugin is being skipped.
    let breaker_name = name.clone();
    let breaker = move || {
        live.history.with(|h| {
            let p = h.latest.as_ref()?.plugins.get(&breaker_name).copied()?;
            match (p.breakers_open, p.breakers_half_open) {
                (0, 0) => None,
                (0, h) => Some(("pill warn", format!("breaker half-open on {h} binding(s): probing"))),
                (o, _) => Some((
                    "pill bad",
                    format!(
                        "breaker open on {o} binding(s): skipped, failure policy applies · {} skipped",
                        format::rate(p.short_circuits_per_s)
                    ),
                )),
            }
        })
    };
    let granted_now = plugin.granted.clone();
    let rollback_path = format!("/plugins/{}/rollback", seg(&name));
    let table_name = name.clone();
    view! {
        <section class="box" data-plugin=name.clone()>
            <h2>{name.clone()}
                <span class="muted" data-active-version=active.map(|v| v.to_string()).unwrap_or_default()>
                    {match active { Some(v) => format!(" active: version {v}"), None => " not active".into() }}
                </span>
            </h2>
            <p class="muted">{move || stats().unwrap_or_else(|| "no calls yet".into())}</p>
            {move || breaker().map(|(class, text)| view! { <p><span class=class data-breaker=text.clone()>{text.clone()}</span></p> })}
            {active.is_some().then(|| view! {
                <p class="muted" data-granted=granted_now.join(",")>"granted: "{capability_list(&granted_now)}</p>
            })}
            {show(versions, move |list: &Vec<PluginVersion>| {
                let rows = list.iter().map(|v| {
                    let path = format!("/plugins/{}/activate", seg(&table_name));
                    let version = v.version;
                    let is_active = active == Some(version);
                    let requested: Vec<String> =
                        validate::requested(&v.manifest).into_iter().map(str::to_owned).collect();
                    // Ticked to start with: what this version was last granted, never more; the
                    // admin ticks anything else it asks for.
                    let ticked = RwSignal::new(v.granted.clone().unwrap_or_default());
                    let boxes = validate::CAPABILITIES.iter().map(|&cap| {
                        let asked = requested.iter().any(|r| r == cap);
                        view! {
                            <label class=if asked { "grant requested" } else { "grant" }>
                                <input type="checkbox" name="grant" value=cap data-grant=cap
                                    prop:checked=move || ticked.with(|t| t.iter().any(|g| g == cap))
                                    on:change=move |ev| {
                                        let on = event_target_checked(&ev);
                                        ticked.update(|t| {
                                            t.retain(|g| g != cap);
                                            if on { t.push(cap.to_owned()); }
                                        });
                                    } />
                                {cap}
                            </label>
                        }
                    }).collect_view();
                    view! {
                        <tr data-version=version.to_string()>
                            <td class="num">{version}</td>
                            <td><code title=v.sha256.clone()>{v.sha256[..12.min(v.sha256.len())].to_owned()}</code></td>
                            <td class="num">{format::bytes(u64::try_from(v.size_bytes).unwrap_or(0))}</td>
                            <td data-requested=requested.join(",")>{capability_list(&requested)}</td>
                            <td>{v.granted.as_deref().map_or_else(|| "never activated".to_owned(), capability_list)}</td>
                            <td>{format::datetime(v.created_at.0)}</td>
                            <td>{if is_active {
                                view! { <span class="pill ok">"active"</span> }.into_any()
                            } else {
                                view! {
                                    <fieldset class="grants"><legend>"grant"</legend>{boxes}</fieldset>
                                    <button type="button" on:click=move |_| {
                                        let path = path.clone();
                                        let body = serde_json::json!({ "version": version, "grants": ticked.get_untracked() });
                                        act(error, reload, async move { api::send::<Plugin>("POST", &path, &body).await }, |_| {});
                                    }>"Activate"</button>
                                }.into_any()
                            }}</td>
                        </tr>
                    }
                }).collect_view();
                view! {
                    <table>
                        <thead><tr><th>"version"</th><th>"sha256"</th><th>"size"</th>
                            <th title="the host capabilities the component imports; activation must grant each">"requested capabilities"</th>
                            <th>"granted"</th><th>"uploaded (UTC)"</th><th></th></tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                }
            })}
            {active.is_some().then(|| view! {
                <button type="button" on:click=move |_| {
                    let path = rollback_path.clone();
                    act(error, reload, async move { api::send::<Plugin>("POST", &path, &serde_json::json!({})).await }, |_| {});
                }>"Roll back to the previous version"</button>
            })}
            <ErrorNote error=error />
        </section>
    }
}

fn capability_list(names: &[String]) -> String {
    if names.is_empty() { "none".into() } else { names.join(", ") }
}

fn scope_label(s: &Scope) -> String {
    match s {
        Scope::Global => "global".into(),
        Scope::Tenant(t) => format!("tenant {t}"),
        Scope::Model(m) => format!("model {m}"),
    }
}

#[component]
fn BindingsTable(bindings: Vec<Binding>, reload: RwSignal<u32>) -> impl IntoView {
    let error = RwSignal::new(None::<String>);
    let rows = bindings
        .into_iter()
        .map(|b| {
            let path = format!("/bindings/{}", b.id);
            view! {
                <tr>
                    <td>{b.plugin.clone()}</td>
                    <td>{scope_label(&b.scope)}</td>
                    <td class="num">{b.order}</td>
                    <td>{match b.failure_policy { FailurePolicy::Open => "fail open", FailurePolicy::Closed => "fail closed" }}</td>
                    <td class="num" data-timeout-ms=b.timeout_ms.map(|t| t.to_string()).unwrap_or_default()>
                        {b.timeout_ms.map_or_else(|| "default (10 ms)".to_owned(), |t| format!("{t} ms"))}</td>
                    <td class="num" data-max-memory=b.max_memory_bytes.map(|m| m.to_string()).unwrap_or_default()>
                        {b.max_memory_bytes.map_or_else(|| "default".to_owned(), format::bytes)}</td>
                    <td><code>{b.config.to_string()}</code></td>
                    <td><button type="button" class="danger" on:click=move |_| {
                        let path = path.clone();
                        act(error, reload, async move { api::delete(&path).await }, |_| {});
                    }>"Unbind"</button></td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table>
            <thead><tr><th>"plugin"</th><th>"scope"</th><th>"order"</th><th>"on failure"</th><th>"deadline"</th><th>"memory"</th><th>"config"</th><th></th></tr></thead>
            <tbody>{rows}</tbody>
        </table>
        <ErrorNote error=error />
    }
}

#[component]
fn BindForm(reload: RwSignal<u32>) -> impl IntoView {
    let plugin = RwSignal::new(String::new());
    let kind = RwSignal::new("global".to_owned());
    let target = RwSignal::new(String::new());
    let order = RwSignal::new("0".to_owned());
    let policy = RwSignal::new("open".to_owned());
    let config = RwSignal::new("{}".to_owned());
    let timeout = RwSignal::new(String::new());
    let memory = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let name = plugin.get_untracked().trim().to_owned();
        let target_name = target.get_untracked().trim().to_owned();
        let scope = match kind.get_untracked().as_str() {
            "tenant" => Scope::Tenant(target_name.clone()),
            "model" => Scope::Model(target_name.clone()),
            _ => Scope::Global,
        };
        let checked = validate::name("plugin", &name).and_then(|()| match &scope {
            Scope::Global => Ok(()),
            Scope::Tenant(t) => validate::name("scope.name", t),
            Scope::Model(m) => validate::model("scope.name", m),
        });
        if let Err(e) = checked {
            return error.set(Some(forms::FieldError::from(e).to_string()));
        }
        let Ok(order_value) = order.get_untracked().trim().parse::<i32>() else {
            return error.set(Some("order: must be a whole number (lower runs first)".into()));
        };
        let config_value: serde_json::Value = match serde_json::from_str(&config.get_untracked()) {
            Ok(v @ serde_json::Value::Object(_)) => v,
            _ => return error.set(Some("config: must be a JSON object, e.g. {}".into())),
        };
        // Empty: the host's default. The gateway checks the maxima (it knows its engine's).
        let Ok(timeout_ms) = optional_number::<u32>(&timeout.get_untracked()) else {
            return error.set(Some("timeout_ms: whole milliseconds, or empty for the default".into()));
        };
        let Ok(max_memory_bytes) = optional_number::<u64>(&memory.get_untracked()) else {
            return error.set(Some("max_memory_bytes: whole bytes, or empty for the default".into()));
        };
        let failure_policy =
            if policy.get_untracked() == "closed" { FailurePolicy::Closed } else { FailurePolicy::Open };
        let body = serde_json::json!({
            "plugin": name, "scope": scope, "order": order_value,
            "failure_policy": failure_policy, "config": config_value,
            "timeout_ms": timeout_ms, "max_memory_bytes": max_memory_bytes,
        });
        act(error, reload, async move { api::send::<Binding>("POST", "/bindings", &body).await }, |_| {});
    };
    let input = |sig: RwSignal<String>, name: &'static str, hint: &'static str| {
        view! {
            <input name=name placeholder=hint prop:value=move || sig.get() on:input=move |ev| sig.set(event_target_value(&ev)) />
        }
    };
    view! {
        <form class="inline" on:submit=submit>
            <label>"Plugin"{input(plugin, "bind-plugin", "my-policy")}</label>
            <label>"Scope"
                <select name="bind-scope" on:change=move |ev| kind.set(event_target_value(&ev))>
                    <option value="global">"global"</option>
                    <option value="tenant">"tenant"</option>
                    <option value="model">"model"</option>
                </select>
            </label>
            <label>"Tenant or model"{input(target, "bind-target", "(for tenant/model)")}</label>
            <label>"Order"{input(order, "bind-order", "0")}</label>
            <label>"On failure"
                <select name="bind-policy" on:change=move |ev| policy.set(event_target_value(&ev))>
                    <option value="open">"fail open"</option>
                    <option value="closed">"fail closed"</option>
                </select>
            </label>
            <label>"Config (JSON)"{input(config, "bind-config", "{}")}</label>
            <label>"Deadline (ms)"{input(timeout, "bind-timeout-ms", "default 10")}</label>
            <label>"Memory (bytes)"{input(memory, "bind-max-memory-bytes", "default 16 MiB")}</label>
            <button type="submit">"Bind"</button>
        </form>
        <ErrorNote error=error />
    }
}

/// An empty field is `None`; anything else must parse.
fn optional_number<T: std::str::FromStr>(text: &str) -> Result<Option<T>, T::Err> {
    let text = text.trim();
    if text.is_empty() { Ok(None) } else { text.parse().map(Some) }
}
