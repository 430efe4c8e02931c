//! The audit log: every admin change, newest first, a page at a time.

use leptos::prelude::*;
use sluice_store_model::AuditEntry;

use super::widgets::{load, show};
use crate::format;

const PAGE: u32 = 50;

#[component]
pub fn AuditPage() -> impl IntoView {
    // Ids of the pages' first entries, so "Newer" can go back.
    let before = RwSignal::new(None::<i64>);
    let history = RwSignal::new(Vec::<Option<i64>>::new());
    let reload = RwSignal::new(0u32);
    let entries = load::<Vec<AuditEntry>>(
        move || match before.get() {
            Some(id) => format!("/audit?limit={PAGE}&before={id}"),
            None => format!("/audit?limit={PAGE}"),
        },
        reload,
    );
    view! {
        <h1>"Audit log"</h1>
        {show(entries, move |list: &Vec<AuditEntry>| {
            let last = list.last().map(|e| e.id);
            let full = list.len() as u32 == PAGE;
            let rows = list.iter().map(|e| view! {
                <tr>
                    <td>{format::datetime(e.at.0)}</td>
                    <td>{e.actor.clone()}</td>
                    <td><code>{e.action.clone()}</code></td>
                    <td>{e.target.clone()}</td>
                    <td><code class="detail">{if e.detail.is_null() { String::new() } else { e.detail.to_string() }}</code></td>
                </tr>
            }).collect_view();
            view! {
                <table>
                    <thead><tr><th>"when (UTC)"</th><th>"who"</th><th>"action"</th><th>"target"</th><th>"detail"</th></tr></thead>
                    <tbody>{rows}</tbody>
                </table>
                {list.is_empty().then(|| view! { <p class="muted">"Nothing recorded yet."</p> })}
                <p>
                    <button type="button" disabled=move || history.with(Vec::is_empty) on:click=move |_| {
                        let mut h = history.get_untracked();
                        before.set(h.pop().flatten());
                        history.set(h);
                    }>"Newer"</button>
                    " "
                    <button type="button" disabled=!full on:click=move |_| {
                        history.update(|h| h.push(before.get_untracked()));
                        before.set(last);
                    }>"Older"</button>
                </p>
            }
        })}
    }
}
