//! Small pieces every page uses: loading data from the API, error notes, copy buttons.

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde::de::DeserializeOwned;

use super::api::{self, ApiError};

/// What a page shows while its data loads or after it failed.
pub type Loaded<T> = RwSignal<Option<Result<T, ApiError>>>;

/// Fetches `path()` now and again whenever `reload` changes (bump it after a change).
pub fn load<T>(path: impl Fn() -> String + 'static, reload: RwSignal<u32>) -> Loaded<T>
where
    T: DeserializeOwned + Send + Sync + 'static,
{
    let state: Loaded<T> = RwSignal::new(None);
    Effect::new(move |_| {
        reload.track();
        let path = path();
        spawn_local(async move {
            let result = api::get::<T>(&path).await;
            state.set(Some(result));
        });
    });
    state
}

/// Runs an API call from a button or form: shows its error in `error`, and on success calls
/// `done` and bumps `reload`.
pub fn act<T, F>(error: RwSignal<Option<String>>, reload: RwSignal<u32>, call: F, done: impl FnOnce(T) + 'static)
where
    T: 'static,
    F: std::future::Future<Output = Result<T, ApiError>> + 'static,
{
    error.set(None);
    spawn_local(async move {
        match call.await {
            Ok(value) => {
                done(value);
                reload.update(|n| *n += 1);
            }
            Err(e) => error.set(Some(e.to_string())),
        }
    });
}

/// A red note under a form or table; nothing when there is no error.
#[component]
pub fn ErrorNote(error: RwSignal<Option<String>>) -> impl IntoView {
    move || error.get().map(|e| view! { <p class="error" role="alert">{e}</p> })
}

/// Shows a loaded value with `render`, a spinner before, the error after a failure.
pub fn show<T, V>(state: Loaded<T>, render: impl Fn(&T) -> V + Send + Sync + 'static) -> impl IntoView
where
    T: Send + Sync + 'static,
    V: IntoView + 'static,
{
    move || {
        state.with(|s| match s {
            None => view! { <p class="muted">"Loading…"</p> }.into_any(),
            Some(Err(e)) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
            Some(Ok(v)) => render(v).into_any(),
        })
    }
}

/// Writes `text` to the clipboard and says so on the button.
#[component]
pub fn CopyButton(text: String) -> impl IntoView {
    let copied = RwSignal::new(false);
    let on_click = move |_| {
        if let Some(w) = web_sys::window() {
            let _ = w.navigator().clipboard().write_text(&text);
            copied.set(true);
        }
    };
    view! {
        <button type="button" class="copy" on:click=on_click>
            {move || if copied.get() { "Copied" } else { "Copy" }}
        </button>
    }
}
