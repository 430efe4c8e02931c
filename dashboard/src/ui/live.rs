//! The landing page: the gateway's last 15 minutes, updated every second.

use leptos::prelude::*;
use sluice_live::{LiveFrame, WorkerHealth};

use super::charts::{ChartSpec, Line, Target, color, line_chart};
use super::stream::Live;
use crate::format;
use crate::series::{History, Series, TrafficSeries};

fn points(s: &Series) -> Vec<(i64, Option<f64>)> {
    s.points.iter().copied().collect()
}

fn line(label: impl Into<String>, i: usize, s: &Series) -> Line {
    Line { label: label.into(), color: color(i), points: points(s) }
}

fn pct(v: f64) -> String {
    format!("{}%", format::sig3(v))
}

fn ms(v: f64) -> String {
    format::duration_ms(v)
}

/// TTFT or TPOT percentiles overall, with each tenant's target as a dashed line.
fn latency_chart(h: &History, title: &str, ttft: bool) -> ChartSpec {
    let t: &TrafficSeries = &h.total;
    let (p50, p95, p99) =
        if ttft { (&t.ttft_p50, &t.ttft_p95, &t.ttft_p99) } else { (&t.tpot_p50, &t.tpot_p95, &t.tpot_p99) };
    let mut lines = vec![line("p50", 0, p50), line("p95", 1, p95), line("p99", 3, p99)];
    let mut targets = Vec::new();
    if let Some(frame) = &h.latest {
        for (i, (name, tenant)) in frame.tenants.iter().enumerate() {
            let Some(slo) = tenant.slo else { continue };
            let target = if ttft { slo.target.ttft_ms } else { slo.target.tpot_ms };
            if let Some(v) = target {
                targets.push(Target { label: format!("{name} p95 target"), color: color(i + 4), value: f64::from(v) });
                if let Some(series) = h.tenants.get(name) {
                    let s = if ttft { &series.ttft_p95 } else { &series.tpot_p95 };
                    lines.push(line(format!("{name} p95"), i + 4, s));
                }
            }
        }
    }
    ChartSpec { title: title.into(), unit: "ms", format: ms, span: h.span(), lines, targets, y_max: None }
}

fn charts(h: &History) -> Vec<ChartSpec> {
    let span = h.span();
    let t = &h.total;
    let mut attainment = Vec::new();
    let mut attainment_targets = Vec::new();
    for (i, (name, s)) in h.tenants.iter().enumerate() {
        if s.attainment.points.iter().any(|(_, v)| v.is_some()) {
            let pts = s.attainment.points.iter().map(|(t, v)| (*t, v.map(|v| v * 100.0))).collect();
            attainment.push(Line { label: name.clone(), color: color(i), points: pts });
            if let Some(slo) = h.latest.as_ref().and_then(|f| f.tenants.get(name)).and_then(|t| t.slo) {
                attainment_targets.push(Target {
                    label: format!("{name} target"),
                    color: color(i),
                    value: slo.target.attainment * 100.0,
                });
            }
        }
    }
    vec![
        ChartSpec {
            title: "Tokens".into(),
            unit: "tokens/s",
            format: format::si,
            span,
            lines: vec![line("in (prompt)", 0, &t.tokens_in), line("out (completion)", 2, &t.tokens_out)],
            targets: vec![],
            y_max: None,
        },
        ChartSpec {
            title: "Requests".into(),
            unit: "req/s",
            format: format::si,
            span,
            lines: vec![line("requests", 0, &t.requests), line("errors", 1, &t.errors)],
            targets: vec![],
            y_max: None,
        },
        latency_chart(h, "Time to first token", true),
        latency_chart(h, "Time per output token", false),
        ChartSpec {
            title: "SLO attainment (goodput of streamed requests, last minute)".into(),
            unit: "%",
            format: pct,
            span,
            lines: attainment,
            targets: attainment_targets,
            y_max: Some(100.0),
        },
        ChartSpec {
            title: "In flight".into(),
            unit: "requests",
            format: format::si,
            span,
            lines: vec![line("in flight", 0, &t.in_flight)],
            targets: vec![],
            y_max: None,
        },
    ]
}

#[component]
fn Headline(frame: LiveFrame) -> impl IntoView {
    let t = &frame.total;
    let goodput = frame
        .tenants
        .iter()
        .filter_map(|(name, tenant)| tenant.slo.map(|s| (name.clone(), s)))
        .map(|(name, s)| {
            let ok = s.attainment.is_none_or(|a| a >= s.target.attainment);
            let value = s.attainment.map_or_else(|| "–".to_owned(), format::percent);
            let coverage = format::slo_coverage(&s).map(|text| {
                view! { <span class="sub" data-metric=format!("attainment-coverage-{name}")>{text}</span> }
            });
            view! {
                <div class=if ok { "card goodput ok" } else { "card goodput miss" }>
                    <span class="label">{format!("{name} SLO attainment")}</span>
                    <span class="value" data-metric=format!("attainment-{name}")>{value}</span>
                    <span class="sub">{format!("target {}", format::percent(s.target.attainment))}</span>
                    {coverage}
                </div>
            }
        })
        .collect_view();
    let card = |label: &'static str, metric: &'static str, value: String| {
        view! {
            <div class="card">
                <span class="label">{label}</span>
                <span class="value" data-metric=metric>{value}</span>
            </div>
        }
    };
    view! {
        <section class="cards">
            {goodput}
            {card("Tokens in", "tokens-in", format::rate(t.tokens_in_per_s))}
            {card("Tokens out", "tokens-out", format::rate(t.tokens_out_per_s))}
            {card("Requests", "requests", format::rate(t.requests_per_s))}
            {card("In flight", "in-flight", t.in_flight.map_or_else(|| "–".into(), |n| n.to_string()))}
            {card("Errors", "errors", format::rate(t.errors_per_s))}
            {card("Rate-limited (429)", "rejected", format::rate(t.rejected_per_s))}
            {card("TTFT p95", "ttft-p95", t.ttft_ms.map_or_else(|| "–".into(), |p| format::duration_ms(p.p95)))}
        </section>
    }
}

/// `queued`: the tenant's requests waiting in saturated pools' admission queues (`None` for
/// models and APIs, which are not queued by).
fn traffic_row(
    name: &str,
    t: &sluice_live::Traffic,
    attainment: Option<f64>,
    queued: Option<u64>,
) -> impl IntoView + use<> {
    view! {
        <tr data-slice=name.to_owned()>
            <td>{name.to_owned()}</td>
            <td class="num">{format::rate(t.requests_per_s)}</td>
            <td class="num">{format::rate(t.tokens_in_per_s)}</td>
            <td class="num">{format::rate(t.tokens_out_per_s)}</td>
            <td class="num">{format::rate(t.errors_per_s)}</td>
            <td class="num" data-rejected=name.to_owned()>{format::rate(t.rejected_per_s)}</td>
            <td class="num">{t.ttft_ms.map_or_else(|| "–".into(), |p| format::duration_ms(p.p95))}</td>
            <td class="num">{t.tpot_ms.map_or_else(|| "–".into(), |p| format::duration_ms(p.p95))}</td>
            <td class="num">{attainment.map_or_else(|| "–".into(), format::percent)}</td>
            <td class="num" data-queued=name.to_owned()>{queued.map_or_else(|| "–".into(), |n| n.to_string())}</td>
            <td class="num" data-cache-hits=name.to_owned()>
                {t.cache.and_then(|c| c.window.hit_ratio()).map_or_else(|| "–".into(), format::percent)}</td>
        </tr>
    }
}

fn breakdown(frame: &LiveFrame) -> impl IntoView + use<> {
    let head = || {
        view! {
            <tr><th></th><th>"req/s"</th><th>"tokens in/s"</th><th>"tokens out/s"</th><th>"errors/s"</th>
            <th title="requests refused by rate limits">"429/s"</th><th>"TTFT p95"</th><th>"TPOT p95"</th><th title="streamed requests meeting their TTFT and TPOT targets over the last minute; whole (non-streamed) responses are not judged">"SLO attainment"</th>
            <th title="requests waiting for a slot in saturated pools">"queued"</th>
            <th title="response cache: exact and semantic hits of the requests looked up, over the last minute">"cache hits"</th></tr>
        }
    };
    let tenants = frame
        .tenants
        .iter()
        .map(|(n, t)| traffic_row(n, &t.traffic, t.slo.and_then(|s| s.attainment), Some(frame.queued(n))))
        .collect_view();
    let models = frame.models.iter().map(|(n, t)| traffic_row(n, t, None, None)).collect_view();
    let apis = frame.apis.iter().map(|(n, t)| traffic_row(n, t, None, None)).collect_view();
    view! {
        <section class="split">
            <div data-breakdown="tenant"><h2>"By tenant"</h2><table><thead>{head()}</thead><tbody>{tenants}</tbody></table></div>
            <div data-breakdown="model"><h2>"By model"</h2><table><thead>{head()}</thead><tbody>{models}</tbody></table></div>
            <div data-breakdown="api"><h2>"By API"</h2><table><thead>{head()}</thead><tbody>{apis}</tbody></table></div>
        </section>
    }
}

pub fn health_label(h: WorkerHealth) -> &'static str {
    match h {
        WorkerHealth::Healthy => "healthy",
        WorkerHealth::Unhealthy => "unhealthy",
        WorkerHealth::Ejected => "ejected",
        WorkerHealth::Drained => "drained",
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "–".to_owned(), f)
}

pub fn worker_grid(frame: &LiveFrame) -> impl IntoView + use<> {
    let cells = frame
        .workers
        .iter()
        .map(|w| {
            let e = w.engine;
            let health = health_label(w.health);
            let kv = e.and_then(|e| e.kv_cache_usage);
            view! {
                <div class=format!("worker {health}") data-worker=w.name.clone()>
                    <div class="name">{format!("{}/{}", w.pool, w.name)}<span class="health">{health}</span></div>
                    <dl>
                        <dt>"in flight"</dt><dd>{w.in_flight}</dd>
                        <dt>"queue"</dt><dd>{opt(e.and_then(|e| e.waiting), format::si)}</dd>
                        <dt>"running"</dt><dd>{opt(e.and_then(|e| e.running), format::si)}</dd>
                        <dt>"KV cache"</dt><dd>{opt(kv, format::percent)}</dd>
                        <dt>"prefix hits"</dt><dd>{opt(e.and_then(|e| e.prefix_cache_hit_rate), format::percent)}</dd>
                    </dl>
                    <div class="bar"><i style=format!("width:{:.0}%", kv.unwrap_or(0.0) * 100.0)></i></div>
                </div>
            }
        })
        .collect_view();
    view! { <div class="workers">{cells}</div> }
}

fn plugins_table(frame: &LiveFrame) -> impl IntoView + use<> {
    let rows = frame
        .plugins
        .iter()
        .map(|(name, p)| {
            // Open wins over half-open: some binding of the plugin is being skipped.
            let breaker = match (p.breakers_open, p.breakers_half_open) {
                (0, 0) => "closed".to_owned(),
                (0, h) => format!("half-open ({h})"),
                (o, _) => format!("open ({o})"),
            };
            let class = if p.breakers_open > 0 {
                "pill bad"
            } else if p.breakers_half_open > 0 {
                "pill warn"
            } else {
                "pill ok"
            };
            view! {
                <tr>
                    <td>{name.clone()}</td>
                    <td class="num">{format::rate(p.calls_per_s)}</td>
                    <td class="num">{opt(p.mean_us, |us| format::duration_ms(us / 1e3))}</td>
                    <td class="num">{format::rate(p.errors_per_s)}</td>
                    <td class="num">{p.errors_total}</td>
                    <td><span class=class data-breaker=breaker.clone()>{breaker.clone()}</span></td>
                    <td class="num">{format::rate(p.short_circuits_per_s)}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table>
            <thead><tr>
                <th>"plugin"</th><th>"calls/s"</th><th>"mean time"</th><th>"errors/s"</th><th>"errors total"</th>
                <th title="circuit breaker: open bindings are skipped and their failure policy applies">"breaker"</th>
                <th>"skipped/s"</th>
            </tr></thead>
            <tbody>{rows}</tbody>
        </table>
    }
}

/// Panels the gateway adds over time: an object of numbers is a list of bars, anything else a
/// key/value table.
fn panels(frame: &LiveFrame) -> impl IntoView + use<> {
    frame
        .panels
        .iter()
        .map(|(name, value)| {
            let body = match value.as_object() {
                Some(map) if map.values().all(serde_json::Value::is_number) => {
                    let max = map.values().filter_map(serde_json::Value::as_f64).fold(0.0, f64::max).max(1e-9);
                    map.iter()
                        .map(|(k, v)| {
                            let v = v.as_f64().unwrap_or(0.0);
                            view! {
                                <div class="hbar"><span>{k.clone()}</span>
                                    <i style=format!("width:{:.0}%", v / max * 100.0)></i>
                                    <b>{format::si(v)}</b></div>
                            }
                        })
                        .collect_view()
                        .into_any()
                }
                Some(map) => map
                    .iter()
                    .map(|(k, v)| view! { <div class="kv"><span>{k.clone()}</span><code>{v.to_string()}</code></div> })
                    .collect_view()
                    .into_any(),
                None => view! { <code>{value.to_string()}</code> }.into_any(),
            };
            view! { <div class="panel"><h3>{name.replace('_', " ")}</h3>{body}</div> }
        })
        .collect_view()
}

#[component]
pub fn LivePage() -> impl IntoView {
    let live = expect_context::<Live>();
    let hover = live.hover;
    view! {
        <h1>"Live"</h1>
        {move || {
            live.history.with(|h| match &h.latest {
                None => view! { <p class="muted">"Waiting for the first frame…"</p> }.into_any(),
                Some(frame) => {
                    let specs = charts(h);
                    view! {
                        <Headline frame=frame.clone() />
                        <section class="charts">
                            {specs.into_iter().map(|s| line_chart(s, hover)).collect_view()}
                        </section>
                        {breakdown(frame)}
                        <h2>"Workers"</h2>
                        {worker_grid(frame)}
                        <section class="split">
                            <div><h2>"Plugins"</h2>{plugins_table(frame)}</div>
                            <div class="panels">{panels(frame)}</div>
                        </section>
                    }
                    .into_any()
                }
            })
        }}
    }
}
