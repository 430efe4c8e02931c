//! The admin token: kept in the tab's session storage (gone when the tab closes), mirrored in a
//! signal so the whole app switches to the login page the moment it is cleared.

use leptos::prelude::*;

const KEY: &str = "sluice.admin_token";

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok()?
}

thread_local! {
    static TOKEN: RwSignal<Option<String>> =
        RwSignal::new(storage().and_then(|s| s.get_item(KEY).ok().flatten()).filter(|t| !t.is_empty()));
    /// Why the user was sent back to the login page, shown there.
    static REASON: RwSignal<Option<String>> = RwSignal::new(None);
}

/// Touches the signals so they are created outside any reactive owner (see `ui::init`).
pub fn init() {
    let _ = token();
    let _ = logout_reason();
}

pub fn token() -> RwSignal<Option<String>> {
    TOKEN.with(|t| *t)
}

pub fn logout_reason() -> RwSignal<Option<String>> {
    REASON.with(|r| *r)
}

/// The token without subscribing to changes (for requests).
pub fn current() -> Option<String> {
    token().get_untracked()
}

pub fn login(value: String) {
    if let Some(s) = storage() {
        let _ = s.set_item(KEY, &value);
    }
    logout_reason().set(None);
    token().set(Some(value));
}

pub fn logout(reason: Option<String>) {
    super::stream::close();
    if let Some(s) = storage() {
        let _ = s.remove_item(KEY);
    }
    logout_reason().set(reason);
    token().set(None);
}
