//! SVG charts drawn from Rust: time-series lines with units on the y axis, a legend, target
//! lines, and a crosshair shared by every chart on the page that lists the values under it.

use leptos::prelude::*;
use wasm_bindgen::JsCast;

use crate::chart::{Scale, path, time_ticks, y_axis};
use crate::format;

const W: f64 = 640.0;
const H: f64 = 200.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 24.0;

/// Colours that stay distinct for the first few series, in order.
pub const PALETTE: [&str; 8] = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777"];

pub fn color(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub label: String,
    pub color: &'static str,
    pub points: Vec<(i64, Option<f64>)>,
}

/// A horizontal target (an SLO) drawn dashed across the chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub label: String,
    pub color: &'static str,
    pub value: f64,
}

#[derive(Clone)]
pub struct ChartSpec {
    pub title: String,
    /// The y axis's unit, shown beside its label: `tokens/s`, `ms`, `%`.
    pub unit: &'static str,
    pub format: fn(f64) -> String,
    pub span: (i64, i64),
    pub lines: Vec<Line>,
    pub targets: Vec<Target>,
    /// Fix the top of the y axis (attainment charts run to 100 %).
    pub y_max: Option<f64>,
}

fn value_at(points: &[(i64, Option<f64>)], at: i64) -> Option<f64> {
    let i = points.partition_point(|(t, _)| *t <= at);
    i.checked_sub(1).and_then(|i| points.get(i)).and_then(|(_, v)| *v)
}

/// One chart. `hover` is the time under the pointer, shared across charts.
pub fn line_chart(spec: ChartSpec, hover: RwSignal<Option<i64>>) -> impl IntoView {
    let ChartSpec { title, unit, format: fmt, span, lines, targets, y_max } = spec;
    let data_max = lines.iter().flat_map(|l| l.points.iter().filter_map(|(_, v)| *v)).fold(0.0, f64::max);
    let target_max = targets.iter().map(|t| t.value).fold(0.0, f64::max);
    let (top, ticks) = match y_max {
        Some(m) => y_axis(m, 4),
        None => y_axis(data_max.max(target_max * 1.1), 4),
    };
    let x = Scale::new((span.0 as f64, span.1 as f64), (LEFT, W - RIGHT));
    let y = Scale::new((0.0, top), (H - BOTTOM, TOP));

    let grid = ticks
        .iter()
        .map(|t| {
            let py = y.map(*t);
            view! {
                <line class="grid" x1=LEFT x2=W - RIGHT y1=py y2=py />
                <text class="tick" x=LEFT - 6.0 y=py + 4.0 text-anchor="end">{fmt(*t)}</text>
            }
        })
        .collect_view();
    let xticks = time_ticks(span.0, span.1, 6)
        .into_iter()
        .map(|t| {
            let px = x.map(t as f64);
            view! { <text class="tick" x=px y=H - 6.0 text-anchor="middle">{format::clock(t)}</text> }
        })
        .collect_view();
    let target_lines = targets
        .iter()
        .map(|t| {
            let py = y.map(t.value.min(top));
            view! {
                <line class="target" x1=LEFT x2=W - RIGHT y1=py y2=py stroke=t.color>
                    <title>{format!("{}: {}", t.label, fmt(t.value))}</title>
                </line>
            }
        })
        .collect_view();
    let paths = lines
        .iter()
        .map(|l| {
            let d = path(l.points.iter().map(|(t, v)| (*t as f64, *v)), &x, &y);
            view! { <path class="series" d=d stroke=l.color fill="none" /> }
        })
        .collect_view();

    let on_move = move |ev: leptos::ev::MouseEvent| {
        let Some(el) = ev.current_target().and_then(|t| t.dyn_into::<web_sys::Element>().ok()) else { return };
        let rect = el.get_bounding_client_rect();
        if rect.width() <= 0.0 {
            return;
        }
        let px = (f64::from(ev.client_x()) - rect.left()) / rect.width() * W;
        if (LEFT..=W - RIGHT).contains(&px) {
            hover.set(Some(x.invert(px) as i64));
        } else {
            hover.set(None);
        }
    };
    let crosshair = move || {
        hover.get().filter(|t| *t >= span.0 && *t <= span.1).map(|t| {
            let px = x.map(t as f64);
            view! { <line class="crosshair" x1=px x2=px y1=TOP y2=H - BOTTOM /> }
        })
    };
    let readout_lines = lines.clone();
    let readout = move || {
        hover.get().filter(|t| *t >= span.0 && *t <= span.1).map(|t| {
            let items = readout_lines
                .iter()
                .map(|l| {
                    let v = value_at(&l.points, t).map_or_else(|| "–".to_owned(), fmt);
                    view! { <span class="item"><i style=format!("background:{}", l.color)></i>{format!("{} {v}", l.label)}</span> }
                })
                .collect_view();
            view! { <div class="readout"><b>{format::clock(t)}</b>{items}</div> }
        })
    };
    let legend = lines
        .iter()
        .map(|l| {
            let last = l.points.last().and_then(|(_, v)| *v).map_or_else(|| "–".to_owned(), fmt);
            view! { <span class="item"><i style=format!("background:{}", l.color)></i>{format!("{} {last}", l.label)}</span> }
        })
        .chain(targets.iter().map(|t| {
            view! { <span class="item target"><i style=format!("border-color:{}", t.color)></i>{format!("{} {}", t.label, fmt(t.value))}</span> }
        }))
        .collect_view();

    view! {
        <figure class="chart">
            <figcaption>{title}<span class="unit">{format!(" ({unit})")}</span></figcaption>
            <svg viewBox=format!("0 0 {W} {H}") role="img" on:mousemove=on_move on:mouseleave=move |_| hover.set(None)>
                {grid}
                {xticks}
                <text class="axis-label" x=12 y=H / 2.0 transform=format!("rotate(-90 12 {})", H / 2.0) text-anchor="middle">{unit}</text>
                {target_lines}
                {paths}
                {crosshair}
            </svg>
            <div class="legend">{legend}</div>
            {readout}
        </figure>
    }
}

/// Vertical bars, stacked per category: `values[series][category]`.
pub fn stacked_bars(
    title: &str,
    unit: &'static str,
    categories: &[String],
    series: &[String],
    values: &[Vec<f64>],
) -> impl IntoView + use<> {
    let totals: Vec<f64> =
        (0..categories.len()).map(|c| values.iter().map(|s| s.get(c).copied().unwrap_or(0.0)).sum()).collect();
    let (top, ticks) = y_axis(totals.iter().copied().fold(0.0, f64::max), 4);
    let y = Scale::new((0.0, top), (H - BOTTOM, TOP));
    let n = categories.len().max(1) as f64;
    let slot = (W - LEFT - RIGHT) / n;
    let bar = (slot * 0.7).min(60.0);
    let grid = ticks
        .iter()
        .map(|t| {
            let py = y.map(*t);
            view! {
                <line class="grid" x1=LEFT x2=W - RIGHT y1=py y2=py />
                <text class="tick" x=LEFT - 6.0 y=py + 4.0 text-anchor="end">{format::si(*t)}</text>
            }
        })
        .collect_view();
    let mut rects = Vec::new();
    for (c, category) in categories.iter().enumerate() {
        let x0 = LEFT + slot * c as f64 + (slot - bar) / 2.0;
        let mut base = 0.0;
        for (s, name) in series.iter().enumerate() {
            let v = values.get(s).and_then(|row| row.get(c)).copied().unwrap_or(0.0);
            if v <= 0.0 {
                continue;
            }
            let (y0, y1) = (y.map(base), y.map(base + v));
            base += v;
            let label = format!("{category} · {name}: {} {unit}", format::si(v));
            rects.push(view! {
                <rect x=x0 y=y1 width=bar height=(y0 - y1).max(0.5) fill=color(s)><title>{label}</title></rect>
            });
        }
    }
    let labels = categories
        .iter()
        .enumerate()
        .map(|(c, category)| {
            let px = LEFT + slot * (c as f64 + 0.5);
            view! { <text class="tick" x=px y=H - 6.0 text-anchor="middle">{category.clone()}</text> }
        })
        .collect_view();
    let legend = series
        .iter()
        .enumerate()
        .map(|(s, name)| view! { <span class="item"><i style=format!("background:{}", color(s))></i>{name.clone()}</span> })
        .collect_view();
    view! {
        <figure class="chart">
            <figcaption>{title.to_owned()}<span class="unit">{format!(" ({unit})")}</span></figcaption>
            <svg viewBox=format!("0 0 {W} {H}") role="img">
                {grid}
                <text class="axis-label" x=12 y=H / 2.0 transform=format!("rotate(-90 12 {})", H / 2.0) text-anchor="middle">{unit}</text>
                {rects}
                {labels}
            </svg>
            <div class="legend">{legend}</div>
        </figure>
    }
}
