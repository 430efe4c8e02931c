//! Tenants: the list with live usage and 429s, creating one, and a tenant's page (priority,
//! suspension, use against limits, the response cache, limits, limits per model, SLOs, API keys
//! with their own limits).

use std::time::Duration;

use leptos::prelude::*;
use leptos_router::hooks::use_params_map;
use serde::Deserialize;
use sluice_live::{CacheCounts, CacheLive};
use sluice_store_model::{
    ApiKey, CreatedKey, Limits, NewTenant, Priority, Slo, Tenant, TenantDetail, TenantPatch, TenantStatus, UsageCounts,
};

use super::api::{self, seg};
use super::model_limits::ModelLimitsList;
use super::stream::Live;
use super::widgets::{CopyButton, ErrorNote, act, load, show};
use crate::{format, forms};

fn priority_label(p: Priority) -> &'static str {
    match p {
        Priority::High => "high",
        Priority::Normal => "normal",
        Priority::Low => "low",
    }
}

fn parse_priority(s: &str) -> Priority {
    match s {
        "high" => Priority::High,
        "low" => Priority::Low,
        _ => Priority::Normal,
    }
}

#[component]
pub fn TenantsPage() -> impl IntoView {
    let reload = RwSignal::new(0u32);
    let tenants = load::<Vec<Tenant>>(|| "/tenants".into(), reload);
    let live = expect_context::<Live>();
    let name = RwSignal::new(String::new());
    let priority = RwSignal::new("normal".to_owned());
    let error = RwSignal::new(None::<String>);
    let create = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let name_value = match forms::tenant_name(&name.get_untracked()) {
            Ok(n) => n,
            Err(e) => return error.set(Some(e.to_string())),
        };
        let body = NewTenant {
            name: name_value,
            priority: parse_priority(&priority.get_untracked()),
            status: TenantStatus::Active,
        };
        act(error, reload, async move { api::send::<Tenant>("POST", "/tenants", &body).await }, move |_| {
            name.set(String::new())
        });
    };
    let table = show(tenants, move |list: &Vec<Tenant>| {
        let rows = list
            .iter()
            .map(|t| {
                let n = t.name.clone();
                let usage = move || {
                    live.history.with(|h| {
                        let f = h.latest.as_ref()?;
                        let tenant = f.tenants.get(&n)?;
                        Some((
                            format::rate(tenant.traffic.requests_per_s),
                            format::rate(tenant.traffic.tokens_in_per_s + tenant.traffic.tokens_out_per_s),
                            tenant.slo.and_then(|s| s.attainment).map_or_else(|| "–".into(), format::percent),
                            tenant.traffic.rejected_per_s,
                        ))
                    })
                };
                let usage2 = usage.clone();
                let usage3 = usage.clone();
                let usage4 = usage.clone();
                view! {
                    <tr data-tenant=t.name.clone()>
                        <td><a href=format!("/tenants/{}", t.name)>{t.name.clone()}</a></td>
                        <td><span class=format!("pill {}", if t.status == TenantStatus::Active { "ok" } else { "bad" })>
                            {if t.status == TenantStatus::Active { "active" } else { "suspended" }}</span></td>
                        <td>{priority_label(t.priority)}</td>
                        <td class="num">{move || usage().map_or_else(|| "0/s".into(), |u| u.0)}</td>
                        <td class="num">{move || usage2().map_or_else(|| "0/s".into(), |u| u.1)}</td>
                        <td class="num">{move || usage3().map_or_else(|| "–".into(), |u| u.2)}</td>
                        {move || {
                            let rejected = usage4().map_or(0.0, |u| u.3);
                            let class = if rejected > 0.0 { "num bad" } else { "num" };
                            view! { <td class=class data-col="rejected">{format::rate(rejected)}</td> }
                        }}
                        <td>{format::datetime(t.created_at.0)}</td>
                    </tr>
                }
            })
            .collect_view();
        view! {
            <table>
                <thead><tr><th>"tenant"</th><th>"status"</th><th>"priority"</th><th>"req/s"</th><th>"tokens/s"</th>
                    <th>"SLO attainment"</th><th title="Requests refused by the tenant's rate limits">"429/s"</th><th>"created (UTC)"</th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
        }
    });
    view! {
        <h1>"Tenants"</h1>
        {table}
        <h2>"New tenant"</h2>
        <form class="inline" on:submit=create>
            <label>"Name"<input name="tenant-name" placeholder="acme" prop:value=move || name.get()
                on:input=move |ev| name.set(event_target_value(&ev)) /></label>
            <label>"Priority"
                <select name="tenant-priority" on:change=move |ev| priority.set(event_target_value(&ev))>
                    <option value="high">"high"</option>
                    <option value="normal" selected=true>"normal"</option>
                    <option value="low">"low"</option>
                </select>
            </label>
            <button type="submit">"Create tenant"</button>
        </form>
        <ErrorNote error=error />
    }
}

#[component]
pub fn TenantPage() -> impl IntoView {
    let params = use_params_map();
    let name = move || params.read().get("name").unwrap_or_default();
    let reload = RwSignal::new(0u32);
    let detail = load::<TenantDetail>(move || format!("/tenants/{}", seg(&name())), reload);
    // Lives above the reloaded part so that a new key's secret stays on screen after the list
    // refreshes.
    let created = RwSignal::new(None::<CreatedKey>);
    view! {
        <p><a href="/tenants">"← Tenants"</a></p>
        <h1>{name}</h1>
        {show(detail, move |d: &TenantDetail| view! {
            <Settings detail=d.clone() reload=reload />
            <UseAgainstLimits tenant=d.tenant.name.clone() limits=d.limits.clone() />
            <ResponseCache tenant=d.tenant.name.clone() />
            <LimitsForm tenant=d.tenant.name.clone() limits=d.limits.clone() reload=reload />
            <ModelLimitsList limits=d.model_limits.clone() />
            <SlosForm tenant=d.tenant.name.clone() slos=d.slos.clone() reload=reload />
            <Keys tenant=d.tenant.name.clone() keys=d.keys.clone() reload=reload created=created />
        })}
    }
}

#[component]
fn Settings(detail: TenantDetail, reload: RwSignal<u32>) -> impl IntoView {
    let error = RwSignal::new(None::<String>);
    let tenant = detail.tenant.name.clone();
    let suspended = detail.tenant.status == TenantStatus::Suspended;
    let patch = move |body: TenantPatch| {
        let path = format!("/tenants/{}", seg(&tenant));
        act(error, reload, async move { api::send::<Tenant>("PATCH", &path, &body).await }, |_| {});
    };
    let patch2 = patch.clone();
    view! {
        <section class="box">
            <h2>"Status and priority"</h2>
            <p>
                "Status: "
                <span class=if suspended { "pill bad" } else { "pill ok" }>{if suspended { "suspended" } else { "active" }}</span>
                " "
                <button type="button" class=if suspended { "" } else { "danger" } on:click=move |_| {
                    let status = if suspended { TenantStatus::Active } else { TenantStatus::Suspended };
                    patch(TenantPatch { status: Some(status), priority: None })
                }>{if suspended { "Reactivate" } else { "Suspend" }}</button>
            </p>
            <label>"Priority "
                <select name="priority" on:change=move |ev| {
                    patch2(TenantPatch { priority: Some(parse_priority(&event_target_value(&ev))), status: None })
                }>
                    {[Priority::High, Priority::Normal, Priority::Low].into_iter().map(|p| view! {
                        <option value=priority_label(p) selected=p == detail.tenant.priority>{priority_label(p)}</option>
                    }).collect_view()}
                </select>
            </label>
            <ErrorNote error=error />
        </section>
    }
}

/// The part of `GET /admin/api/tenants/{name}/usage` the page reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct UsageTotals {
    totals: UsageCounts,
}

/// How often the month's token count is fetched again while the page is open.
const BUDGET_REFRESH: Duration = Duration::from_secs(10);

/// A bar and a percentage for `share` of a limit; amber from 80%, red from 100%.
fn meter(share: Option<f64>) -> AnyView {
    let Some(share) = share else {
        return view! { <span class="muted">"–"</span> }.into_any();
    };
    let class = if share >= 1.0 {
        "meter bad"
    } else if share >= 0.8 {
        "meter warn"
    } else {
        "meter"
    };
    let width = if share.is_finite() { (share * 100.0).clamp(0.0, 100.0) } else { 100.0 };
    view! {
        <span class=class><span class="track"><i style=format!("width:{width:.1}%")></i></span>
            <span class="pct" data-share="">{if share.is_finite() { format::percent(share) } else { "over".into() }}</span></span>
    }
    .into_any()
}

fn limit_text(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".into(), format::count)
}

/// The tenant's use now against each of its limits: rates from the latest live frame, tokens
/// this month from the usage report.
#[component]
fn UseAgainstLimits(tenant: String, limits: Limits) -> impl IntoView {
    let live = expect_context::<Live>();
    let tick = RwSignal::new(0u32);
    let month = load::<UsageTotals>(
        {
            let tenant = tenant.clone();
            move || {
                let now = (js_sys::Date::now() / 1000.0) as i64;
                format!("/tenants/{}/usage?from={}", seg(&tenant), format::month_start(now))
            }
        },
        tick,
    );
    if let Ok(handle) = set_interval_with_handle(move || tick.update(|n| *n += 1), BUDGET_REFRESH) {
        on_cleanup(move || handle.clear());
    }
    // (admitted requests/s, tokens/s, 429s/s) in the latest frame; `None` before the first frame.
    let rates = Memo::new(move |_| {
        live.history.with(|h| {
            let f = h.latest.as_ref()?;
            Some(f.tenants.get(&tenant).map_or((0.0, 0.0, 0.0), |t| {
                let t = &t.traffic;
                // A refused request counts in `requests_per_s` but used nothing of the limit.
                (
                    (t.requests_per_s - t.rejected_per_s).max(0.0),
                    t.tokens_in_per_s + t.tokens_out_per_s,
                    t.rejected_per_s,
                )
            }))
        })
    });
    let Limits {
        requests_per_minute: rpm, tokens_per_minute: tpm, max_concurrency, monthly_token_budget: budget, ..
    } = limits;
    let per_minute = move |pick: fn((f64, f64, f64)) -> f64, limit: Option<u64>| {
        move || match rates.get() {
            None => (view! { <td class="num muted" data-now="">"–"</td> }.into_any(), meter(None)),
            Some(r) => {
                let v = pick(r) * 60.0;
                (
                    view! { <td class="num" data-now="">{format::si(v)}</td> }.into_any(),
                    meter(format::share_of(v, limit)),
                )
            }
        }
    };
    let rpm_now = per_minute(|r| r.0, rpm);
    let tpm_now = per_minute(|r| r.1, tpm);
    let rejected = move || rates.get().map_or_else(|| "–".into(), |r| format::rate(r.2));
    let used = move || {
        month.with(|m| match m {
            None => (view! { <td class="num muted" data-now="">"…"</td> }.into_any(), meter(None)),
            Some(Err(e)) => (view! { <td class="num error" data-now="">{e.to_string()}</td> }.into_any(), meter(None)),
            Some(Ok(u)) => {
                let tokens = (u.totals.prompt_tokens + u.totals.completion_tokens).max(0) as u64;
                (
                    view! { <td class="num" data-now="" data-tokens=tokens.to_string()>{format::count(tokens)}</td> }
                        .into_any(),
                    meter(format::share_of(tokens as f64, budget)),
                )
            }
        })
    };
    let since = format::month_start((js_sys::Date::now() / 1000.0) as i64);
    view! {
        <section class="box" data-section="use">
            <h2>"Use against limits"</h2>
            <p class="muted">"Rates are the last second's, per minute (requests count when they finish; refused ones are the 429s, not use). "
                "Tokens this month since " {since} " 00:00 UTC, prompt and completion, refreshed every 10 s."</p>
            <table class="use">
                <thead><tr><th></th><th class="num">"now"</th><th class="num">"limit"</th><th>"use"</th></tr></thead>
                <tbody>
                    <tr data-limit="rpm">
                        <td>"Requests per minute"</td>
                        {move || rpm_now().0}
                        <td class="num" data-value="">{limit_text(rpm)}</td>
                        <td>{move || rpm_now().1}</td>
                    </tr>
                    <tr data-limit="tpm">
                        <td>"Tokens per minute"</td>
                        {move || tpm_now().0}
                        <td class="num" data-value="">{limit_text(tpm)}</td>
                        <td>{move || tpm_now().1}</td>
                    </tr>
                    <tr data-limit="concurrency">
                        <td>"Concurrent requests"</td>
                        <td class="num muted" data-now="">"in flight: not measured per tenant"</td>
                        <td class="num" data-value="">{limit_text(max_concurrency)}</td>
                        <td></td>
                    </tr>
                    <tr data-limit="budget">
                        <td>"Monthly token budget"</td>
                        {move || used().0}
                        <td class="num" data-value="">{limit_text(budget)}</td>
                        <td>{move || used().1}</td>
                    </tr>
                    <tr data-metric="rejected">
                        <td>"Refused (429) per second"</td>
                        <td class="num" data-now="">{rejected}</td>
                        <td></td>
                        <td></td>
                    </tr>
                </tbody>
            </table>
        </section>
    }
}

/// What the response cache did for the tenant over the last minute, from the live frames.
#[component]
fn ResponseCache(tenant: String) -> impl IntoView {
    let live = expect_context::<Live>();
    // `None` before the first frame; `Some(None)` when no request of the tenant's last minute
    // went through a cache policy.
    let cache = Memo::new(move |_| {
        live.history.with(|h| h.latest.as_ref().map(|f| f.tenants.get(&tenant).and_then(|t| t.traffic.cache)))
    });
    let row = |label: &'static str, key: &'static str, count: fn(&CacheCounts) -> u64, rate: fn(&CacheLive) -> f64| {
        view! {
            <tr data-cache=key>
                <td>{label}</td>
                <td class="num" data-window="">{move || cache.get().flatten().map_or_else(|| "0".into(), |c| format::count(count(&c.window)))}</td>
                <td class="num" data-now="">{move || cache.get().flatten().map_or_else(|| "0/s".into(), |c| format::rate(rate(&c)))}</td>
            </tr>
        }
    };
    let ratio =
        move || cache.get().flatten().and_then(|c| c.window.hit_ratio()).map_or_else(|| "–".into(), format::percent);
    view! {
        <section class="box" data-section="cache">
            <h2>"Response cache"</h2>
            {move || match cache.get() {
                None => view! { <p class="muted">"Waiting for the first frame…"</p> }.into_any(),
                Some(None) => view! { <p class="muted" data-cache-state="idle">
                    "No request of this tenant went through a cache policy in the last minute "
                    "(bind the built-in cache plugin to use one)."</p> }.into_any(),
                Some(Some(_)) => view! { <p class="muted" data-cache-state="active">
                    "Hit ratio over the last minute (exact and semantic hits of the requests looked up): "
                    <b data-hit-ratio="">{ratio}</b></p> }.into_any(),
            }}
            <table class="use">
                <thead><tr><th></th><th class="num">"last minute"</th><th class="num">"now"</th></tr></thead>
                <tbody>
                    {row("Hits", "hits", |c| c.hits, |c| c.hits_per_s)}
                    {row("Semantic hits", "semantic-hits", |c| c.semantic_hits, |c| c.semantic_hits_per_s)}
                    {row("Misses", "misses", |c| c.misses, |c| c.misses_per_s)}
                    {row("Bypassed", "bypasses", |c| c.bypasses, |c| c.bypasses_per_s)}
                    {row("Tokens saved", "saved-tokens", |c| c.saved_tokens, |c| c.saved_tokens_per_s)}
                </tbody>
            </table>
        </section>
    }
}

fn num(v: Option<u64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

#[component]
fn LimitsForm(tenant: String, limits: Limits, reload: RwSignal<u32>) -> impl IntoView {
    let rpm = RwSignal::new(num(limits.requests_per_minute));
    let tpm = RwSignal::new(num(limits.tokens_per_minute));
    let conc = RwSignal::new(num(limits.max_concurrency));
    let budget = RwSignal::new(num(limits.monthly_token_budget));
    let models = RwSignal::new(limits.allowed_models.map(|m| m.join(", ")).unwrap_or_default());
    let error = RwSignal::new(None::<String>);
    let saved = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        saved.set(false);
        let body = match forms::limits(
            &rpm.get_untracked(),
            &tpm.get_untracked(),
            &conc.get_untracked(),
            &budget.get_untracked(),
            &models.get_untracked(),
        ) {
            Ok(l) => l,
            Err(e) => return error.set(Some(e.to_string())),
        };
        let path = format!("/tenants/{}/limits", seg(&tenant));
        act(error, reload, async move { api::send::<Limits>("PUT", &path, &body).await }, move |_| saved.set(true));
    };
    let field = |label: &'static str, name: &'static str, sig: RwSignal<String>, hint: &'static str| {
        view! {
            <label>{label}<input name=name placeholder=hint prop:value=move || sig.get()
                on:input=move |ev| sig.set(event_target_value(&ev)) /></label>
        }
    };
    view! {
        <section class="box">
            <h2>"Limits"</h2>
            <form class="grid-form" on:submit=submit>
                {field("Requests per minute", "rpm", rpm, "unlimited")}
                {field("Tokens per minute", "tpm", tpm, "unlimited")}
                {field("Max concurrency", "concurrency", conc, "unlimited")}
                {field("Monthly token budget", "budget", budget, "unlimited")}
                {field("Allowed models (comma-separated)", "models", models, "all models")}
                <button type="submit">"Save limits"</button>
            </form>
            {move || saved.get().then(|| view! { <p class="ok">"Saved."</p> })}
            <ErrorNote error=error />
        </section>
    }
}

#[derive(Clone, Debug, PartialEq)]
struct SloRow {
    model: RwSignal<String>,
    ttft: RwSignal<String>,
    tpot: RwSignal<String>,
    attainment: RwSignal<String>,
}

impl SloRow {
    fn of(s: &Slo) -> Self {
        SloRow {
            model: RwSignal::new(s.model.clone()),
            ttft: RwSignal::new(s.ttft_p95_ms.map(|v| v.to_string()).unwrap_or_default()),
            tpot: RwSignal::new(s.tpot_p95_ms.map(|v| v.to_string()).unwrap_or_default()),
            attainment: RwSignal::new(format::sig3(s.target_attainment * 100.0)),
        }
    }
}

#[component]
fn SlosForm(tenant: String, slos: Vec<Slo>, reload: RwSignal<u32>) -> impl IntoView {
    let rows = RwSignal::new(slos.iter().map(SloRow::of).collect::<Vec<_>>());
    let error = RwSignal::new(None::<String>);
    let saved = RwSignal::new(false);
    let add = move |_| {
        rows.update(|r| {
            r.push(SloRow::of(&Slo {
                model: "*".into(),
                ttft_p95_ms: Some(500),
                tpot_p95_ms: Some(50),
                target_attainment: 0.95,
            }))
        })
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        saved.set(false);
        let parsed: Result<Vec<Slo>, forms::FieldError> = rows
            .get_untracked()
            .iter()
            .map(|r| {
                forms::slo(
                    &r.model.get_untracked(),
                    &r.ttft.get_untracked(),
                    &r.tpot.get_untracked(),
                    &r.attainment.get_untracked(),
                )
            })
            .collect();
        let body = match parsed.and_then(|s| sluice_store_model::validate::slos(&s).map(|()| s).map_err(Into::into)) {
            Ok(s) => s,
            Err(e) => return error.set(Some(e.to_string())),
        };
        let path = format!("/tenants/{}/slos", seg(&tenant));
        act(error, reload, async move { api::send::<Vec<Slo>>("PUT", &path, &body).await }, move |_| saved.set(true));
    };
    let input = |sig: RwSignal<String>, name: &'static str, hint: &'static str| {
        view! {
            <input name=name placeholder=hint prop:value=move || sig.get() on:input=move |ev| sig.set(event_target_value(&ev)) />
        }
    };
    view! {
        <section class="box">
            <h2>"SLOs"</h2>
            <p class="muted">"A request meets its SLO when its TTFT and TPOT are within the targets; attainment is the share of requests that must."</p>
            <form on:submit=submit>
                <table>
                    <thead><tr><th>"model (* = all)"</th><th>"TTFT p95 (ms)"</th><th>"TPOT p95 (ms)"</th><th>"attainment (%)"</th><th></th></tr></thead>
                    <tbody>
                        {move || rows.get().into_iter().enumerate().map(|(i, r)| view! {
                            <tr>
                                <td>{input(r.model, "slo-model", "*")}</td>
                                <td>{input(r.ttft, "slo-ttft", "none")}</td>
                                <td>{input(r.tpot, "slo-tpot", "none")}</td>
                                <td>{input(r.attainment, "slo-attainment", "95")}</td>
                                <td><button type="button" on:click=move |_| rows.update(|v| { v.remove(i); })>"Remove"</button></td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
                <button type="button" on:click=add>"Add SLO"</button>
                " "
                <button type="submit">"Save SLOs"</button>
            </form>
            {move || saved.get().then(|| view! { <p class="ok">"Saved."</p> })}
            <ErrorNote error=error />
        </section>
    }
}

#[component]
fn Keys(
    tenant: String,
    keys: Vec<ApiKey>,
    reload: RwSignal<u32>,
    created: RwSignal<Option<CreatedKey>>,
) -> impl IntoView {
    let error = RwSignal::new(None::<String>);
    let label = RwSignal::new(String::new());
    let tenant_for_issue = tenant.clone();
    let issue = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let name = label.get_untracked().trim().to_owned();
        if name.chars().count() > 128 || name.chars().any(char::is_control) {
            return error.set(Some("name: must be 1-128 printable characters".into()));
        }
        let body = if name.is_empty() { serde_json::json!({}) } else { serde_json::json!({ "name": name }) };
        let path = format!("/tenants/{}/keys", seg(&tenant_for_issue));
        act(error, reload, async move { api::send::<CreatedKey>("POST", &path, &body).await }, move |k| {
            label.set(String::new());
            created.set(Some(k));
        });
    };
    let rows = keys
        .into_iter()
        .map(|k| {
            let path = format!("/tenants/{}/keys/{}", seg(&tenant), k.id);
            let revoked = k.revoked_at.is_some();
            view! {
                <tr data-key=k.prefix.clone()>
                    <td><code>{format!("{}…", k.prefix)}</code></td>
                    <td>{k.name.clone().unwrap_or_default()}</td>
                    <td>{format::datetime(k.created_at.0)}</td>
                    <td>{k.revoked_at.map(|t| format::datetime(t.0)).unwrap_or_else(|| "—".into())}</td>
                    <td data-col="key-limits">{format::scope_limits(&k.limits)}</td>
                    <td>{(!revoked).then(|| {
                        let path = path.clone();
                        view! { <button type="button" class="danger" on:click=move |_| {
                            let path = path.clone();
                            act(error, reload, async move { api::delete(&path).await }, |_| {});
                        }>"Revoke"</button> }
                    })}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="box">
            <h2>"API keys"</h2>
            {move || created.get().map(|k| view! {
                <div class="secret" role="status">
                    <p>"New key — copy it now, it is shown only once:"</p>
                    <code data-secret="key">{k.key.clone()}</code>
                    " "
                    <CopyButton text=k.key.clone() />
                    " "
                    <button type="button" on:click=move |_| created.set(None)>"Done"</button>
                </div>
            })}
            <table>
                <thead><tr><th>"prefix"</th><th>"name"</th><th>"created (UTC)"</th><th>"revoked"</th><th title="The key's own limits, on top of the tenant's">"own limits"</th><th></th></tr></thead>
                <tbody>{rows}</tbody>
            </table>
            <form class="inline" on:submit=issue>
                <label>"Key name (optional)"<input name="key-name" placeholder="ci" prop:value=move || label.get()
                    on:input=move |ev| label.set(event_target_value(&ev)) /></label>
                <button type="submit">"Issue key"</button>
            </form>
            <ErrorNote error=error />
        </section>
    }
}
