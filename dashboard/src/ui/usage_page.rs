//! Usage: tokens per tenant per day over a date range, as a chart, a table and a CSV download.

use leptos::prelude::*;
use serde::Deserialize;
use sluice_store_model::UsageRow;
use wasm_bindgen::{JsCast, JsValue};

use super::api::seg;
use super::charts::stacked_bars;
use super::widgets::{load, show};
use crate::{format, usage};

/// The part of `GET /admin/api/usage` the page reads.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct UsageReport {
    rows: Vec<UsageRow>,
}

fn today() -> i64 {
    (js_sys::Date::now() / 1000.0) as i64
}

/// Saves `text` as a file through a temporary object URL.
fn download(name: &str, text: &str) -> Result<(), JsValue> {
    let parts = js_sys::Array::of1(&JsValue::from_str(text));
    let options = web_sys::BlobPropertyBag::new();
    options.set_type("text/csv");
    let blob = web_sys::Blob::new_with_str_sequence_and_options(&parts, &options)?;
    let url = web_sys::Url::create_object_url_with_blob(&blob)?;
    let document = web_sys::window().and_then(|w| w.document()).ok_or("no document")?;
    let a: web_sys::HtmlAnchorElement = document.create_element("a")?.dyn_into()?;
    a.set_href(&url);
    a.set_download(name);
    a.click();
    web_sys::Url::revoke_object_url(&url)
}

#[component]
pub fn UsagePage() -> impl IntoView {
    let now = today();
    let from = RwSignal::new(format::date(now - 6 * 86_400));
    let to = RwSignal::new(format::date(now));
    let reload = RwSignal::new(0u32);
    // `to` is a day, inclusive in the form; the API's range is half-open, so ask up to the next day.
    let report = load::<UsageReport>(
        move || {
            let to_day = to.get();
            let next = js_sys::Date::parse(&format!("{to_day}T00:00:00Z")) / 1000.0 + 86_400.0;
            let to_arg = if next.is_finite() { format::date(next as i64) } else { to_day };
            format!("/usage?from={}&to={}", seg(&from.get()), seg(&to_arg))
        },
        reload,
    );
    view! {
        <h1>"Usage"</h1>
        <form class="inline" on:submit=move |ev: leptos::ev::SubmitEvent| { ev.prevent_default(); reload.update(|n| *n += 1) }>
            <label>"From"<input type="date" name="from" prop:value=move || from.get() on:change=move |ev| from.set(event_target_value(&ev)) /></label>
            <label>"To"<input type="date" name="to" prop:value=move || to.get() on:change=move |ev| to.set(event_target_value(&ev)) /></label>
        </form>
        {show(report, move |r: &UsageReport| {
            let days = usage::per_tenant_per_day(&r.rows);
            let (categories, series, values) = usage::tokens_matrix(&days);
            let csv = usage::csv(&days);
            let file = format!("sluice-usage-{}-{}.csv", from.get_untracked(), to.get_untracked());
            let rows = days.iter().map(|d| {
                let c = &d.counts;
                view! {
                    <tr>
                        <td>{d.day.clone()}</td>
                        <td>{d.tenant.clone()}</td>
                        <td class="num">{format::si(c.requests as f64)}</td>
                        <td class="num">{format::si(c.errors as f64)}</td>
                        <td class="num">{format::si(c.prompt_tokens as f64)}</td>
                        <td class="num">{format::si(c.cached_tokens as f64)}</td>
                        <td class="num">{format::si(c.completion_tokens as f64)}</td>
                        <td class="num">{format::si((c.prompt_tokens + c.completion_tokens) as f64)}</td>
                        <td class="num">{if c.requests > 0 { format::percent(c.slo_met as f64 / c.requests as f64) } else { "–".into() }}</td>
                    </tr>
                }
            }).collect_view();
            view! {
                {stacked_bars("Tokens per tenant per day", "tokens", &categories, &series, &values)}
                <p><button type="button" on:click=move |_| { let _ = download(&file, &csv); }>"Download CSV"</button></p>
                <table>
                    <thead><tr><th>"day (UTC)"</th><th>"tenant"</th><th>"requests"</th><th>"errors"</th><th>"prompt tokens"</th>
                        <th>"cached tokens"</th><th>"completion tokens"</th><th>"total tokens"</th><th>"met SLO"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
                {days.is_empty().then(|| view! { <p class="muted">"No usage in this range."</p> })}
            }
        })}
    }
}
