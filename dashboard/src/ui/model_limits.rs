//! A tenant's limits per model, read-only: set them with `sluice limits set --model` or
//! `PUT /admin/api/tenants/{name}/models/{model}/limits`.

use leptos::prelude::*;
use sluice_store_model::ModelLimits;

use crate::format;

#[component]
pub fn ModelLimitsList(limits: Vec<ModelLimits>) -> impl IntoView {
    let empty = limits.is_empty();
    let rows = limits
        .into_iter()
        .map(|m| {
            view! {
                <tr data-model=m.model.clone()>
                    <td><code>{m.model.clone()}</code></td>
                    <td>{format::scope_limits(&m.limits)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <section class="box">
            <h2>"Limits per model"</h2>
            {if empty {
                view! { <p class="muted">"None: every model is limited by the tenant's limits only."</p> }.into_any()
            } else {
                view! {
                    <table>
                        <thead><tr><th>"model"</th><th>"limits (on top of the tenant's)"</th></tr></thead>
                        <tbody>{rows}</tbody>
                    </table>
                }
                .into_any()
            }}
            <p class="muted">"Set with " <code>"sluice limits set TENANT --model NAME"</code> " or the admin API."</p>
        </section>
    }
}
