//! The live stream: one `EventSource` on `/admin/api/live` for the whole app while logged in,
//! feeding a 15-minute [`History`] every page can read. `EventSource` cannot send headers and
//! the token must not travel in a URL, so each source opens with a fresh one-use ticket
//! (`?ticket=`) bought with the token; a reconnect the browser makes by itself reuses the spent
//! ticket, is refused, and the source is replaced with one holding a new ticket.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use sluice_live::LiveFrame;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

use super::{api, session};
use crate::series::History;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Connecting,
    Live,
    /// The stream dropped; the app is reconnecting.
    Reconnecting,
}

#[derive(Clone, Copy)]
pub struct Live {
    pub history: RwSignal<History>,
    pub status: RwSignal<Status>,
    /// The time under the pointer, shared by the charts.
    pub hover: RwSignal<Option<i64>>,
}

thread_local! {
    /// The open source, and a counter that retires pending reconnects of an older session.
    static CURRENT: std::cell::RefCell<(u32, Option<web_sys::EventSource>)> = const { std::cell::RefCell::new((0, None)) };
}

fn epoch() -> u32 {
    CURRENT.with(|c| c.borrow().0)
}

/// Closes the stream (on logout); pending reconnects give up.
pub fn close() {
    CURRENT.with(|c| {
        let mut c = c.borrow_mut();
        c.0 += 1;
        if let Some(source) = c.1.take() {
            source.close();
        }
    });
}

/// Starts the stream for this token; it reconnects until [`close`].
pub fn connect() -> Live {
    close();
    let live = Live {
        history: RwSignal::new(History::default()),
        status: RwSignal::new(Status::Connecting),
        hover: RwSignal::new(None),
    };
    open(live, epoch(), 0);
    live
}

/// Gets a ticket, then opens one `EventSource` with it; when it closes for good (the browser
/// gives up, e.g. after a 401 or while the gateway is down), starts over after a pause.
fn open(live: Live, epoch_at_start: u32, generation: u32) {
    if epoch() != epoch_at_start || session::current().is_none() {
        return;
    }
    spawn_local(async move {
        // A 401 here logs out (the token stopped working); anything else is retried.
        match api::live_ticket().await {
            Ok(ticket) => open_with(live, epoch_at_start, generation, &ticket),
            Err(_) => {
                live.status.set(Status::Reconnecting);
                retry(live, epoch_at_start, generation);
            }
        }
    });
}

fn open_with(live: Live, epoch_at_start: u32, generation: u32, ticket: &str) {
    if epoch() != epoch_at_start {
        return;
    }
    let url = format!("/admin/api/live?ticket={}", js_sys::encode_uri_component(ticket));
    let Ok(source) = web_sys::EventSource::new(&url) else {
        retry(live, epoch_at_start, generation);
        return;
    };

    let on_frame = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |ev: web_sys::MessageEvent| {
        let Some(data) = ev.data().as_string() else { return };
        if let Ok(frame) = serde_json::from_str::<LiveFrame>(&data) {
            live.status.set(Status::Live);
            live.history.update(|h| h.ingest(frame));
        }
    });
    let _ = source.add_event_listener_with_callback("frame", on_frame.as_ref().unchecked_ref());
    on_frame.forget();

    let on_open = Closure::<dyn FnMut()>::new(move || live.status.set(Status::Live));
    source.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    on_open.forget();

    let watched = source.clone();
    let on_error = Closure::<dyn FnMut()>::new(move || {
        live.status.set(Status::Reconnecting);
        // CLOSED: the browser will not retry by itself (an HTTP error rather than a dropped
        // connection), so start over with a new source.
        if watched.ready_state() == web_sys::EventSource::CLOSED {
            retry(live, epoch_at_start, generation);
        }
    });
    source.set_onerror(Some(on_error.as_ref().unchecked_ref()));
    on_error.forget();

    CURRENT.with(|c| {
        if let Some(old) = c.borrow_mut().1.replace(source) {
            old.close();
        }
    });
}

fn retry(live: Live, epoch_at_start: u32, generation: u32) {
    let pause = Duration::from_millis(1000 * u64::from(generation.min(4) + 1));
    set_timeout(move || open(live, epoch_at_start, generation + 1), pause);
}

/// The banner every page shows while the stream is down.
#[component]
pub fn StreamBanner() -> impl IntoView {
    let live = expect_context::<Live>();
    move || match live.status.get() {
        Status::Reconnecting => {
            Some(view! { <div class="banner" role="status">"Live stream disconnected — reconnecting…"</div> })
        }
        _ => None,
    }
}
