//! The app shell: the login gate, the navigation, the routes.

mod api;
mod audit;
mod charts;
mod live;
mod login;
mod model_limits;
mod plugins;
mod pools;
mod session;
mod stream;
mod tenants;
mod usage_page;
mod widgets;

use leptos::prelude::*;
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::path;

/// Creates the app-wide signals before any component exists: a signal belongs to the owner that
/// is current when it is created, and these must outlive every page (reading a disposed signal
/// aborts the module).
pub fn init() {
    session::init();
}

#[component]
pub fn App() -> impl IntoView {
    let token = session::token();
    // Nothing but the login page exists without a token: no request is made, no stream opened.
    move || match token.get() {
        None => view! { <login::Login /> }.into_any(),
        Some(_) => view! { <Shell /> }.into_any(),
    }
}

#[component]
fn Shell() -> impl IntoView {
    provide_context(stream::connect());
    let live = expect_context::<stream::Live>();
    let dot = move || match live.status.get() {
        stream::Status::Live => ("dot live", "live"),
        stream::Status::Connecting => ("dot", "connecting"),
        stream::Status::Reconnecting => ("dot down", "reconnecting"),
    };
    view! {
        <Router>
            <header class="top">
                <span class="brand">"Sluice"</span>
                <nav>
                    <A href="/" exact=true>"Live"</A>
                    <A href="/tenants">"Tenants"</A>
                    <A href="/pools">"Pools & workers"</A>
                    <A href="/plugins">"Plugins"</A>
                    <A href="/usage">"Usage"</A>
                    <A href="/audit">"Audit log"</A>
                </nav>
                <span class="status" title="live stream">
                    <i class=move || dot().0></i>
                    {move || dot().1}
                </span>
                <button type="button" class="logout" on:click=move |_| session::logout(None)>"Log out"</button>
            </header>
            <stream::StreamBanner />
            <main>
                <Routes fallback=|| view! { <p>"No such page."</p> }>
                    <Route path=path!("/") view=live::LivePage />
                    <Route path=path!("/tenants") view=tenants::TenantsPage />
                    <Route path=path!("/tenants/:name") view=tenants::TenantPage />
                    <Route path=path!("/pools") view=pools::PoolsPage />
                    <Route path=path!("/plugins") view=plugins::PluginsPage />
                    <Route path=path!("/usage") view=usage_page::UsagePage />
                    <Route path=path!("/audit") view=audit::AuditPage />
                </Routes>
            </main>
        </Router>
    }
}
