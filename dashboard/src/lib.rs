//! Sluice's admin dashboard: a leptos client-side app that uses only the public admin API
//! (`/admin/api/*`) and the live stream (`/admin/api/live`).
//!
//! The modules at the top are plain Rust (formatting, chart geometry, the live page's 15-minute
//! history, usage roll-ups) and are tested natively with `cargo test`; [`ui`] is the browser
//! part and exists only on `wasm32`.

pub mod chart;
pub mod format;
pub mod forms;
pub mod series;
pub mod usage;

#[cfg(target_arch = "wasm32")]
mod ui;

/// Entry point: wasm-bindgen calls this when the module is instantiated.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen(start)]
pub fn start() {
    ui::init();
    leptos::mount::mount_to_body(ui::App);
}
