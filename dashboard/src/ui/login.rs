//! The login page: the admin token is checked against the API before it is kept.

use leptos::prelude::*;
use leptos::task::spawn_local;

use super::api::{self, Body};
use super::session;

#[component]
pub fn Login() -> impl IntoView {
    let token = RwSignal::new(String::new());
    let error = RwSignal::new(session::logout_reason().get_untracked());
    let busy = RwSignal::new(false);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let candidate = token.get_untracked().trim().to_owned();
        if candidate.is_empty() {
            error.set(Some("Enter the admin token (SLUICE_ADMIN_TOKEN, or [admin] token in the config).".into()));
            return;
        }
        busy.set(true);
        error.set(None);
        spawn_local(async move {
            match api::raw("GET", "/tenants", Body::Empty, Some(candidate.clone())).await {
                Ok(_) => session::login(candidate),
                Err(e) => error.set(Some(e.to_string())),
            }
            busy.set(false);
        });
    };
    view! {
        <div class="login">
            <form on:submit=submit>
                <h1>"Sluice"</h1>
                <p class="muted">"Admin dashboard"</p>
                <label>
                    "Admin token"
                    <input type="password" name="token" autocomplete="current-password" autofocus=true
                        prop:value=move || token.get()
                        on:input=move |ev| token.set(event_target_value(&ev)) />
                </label>
                <button type="submit" disabled=move || busy.get()>"Log in"</button>
                {move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })}
            </form>
        </div>
    }
}
