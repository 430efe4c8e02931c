//! The APIs agents speak, through the real `sluice` binary against `sluice-sim`, driven by the
//! official SDKs unchanged (issue 24): OpenAI's `client.responses.create`, whole and streamed,
//! and Anthropic's `messages.create` and `messages.stream` (its key in `x-api-key`, as the SDK
//! sends it); Anthropic's SDK raises its own error classes for the gateway's 401 and 404; and the
//! gateway records exactly the usage the SDKs were told. The same Anthropic calls, and a
//! tool-use conversation, also run against a pool whose workers speak only chat completions,
//! through the gateway's translation. With the response cache bound, both SDKs' streaming calls
//! parse an answer replayed from the cache. Then both again against two real vLLM workers.

use std::net::SocketAddr;

use serde_json::Value;
use sluice_e2e::fleet::{start_gateway, start_sim};
use sluice_e2e::{API_KEY, MODEL, TempDir};

/// Runs the SDK calls of the parts named in its fourth argument (`responses`, `messages`,
/// `errors`, `tools`, `cache`) and prints what the SDKs returned, as JSON.
const SCRIPT: &str = r#"
import json, sys, time
import anthropic, openai

base, key, model, parts = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
out = {}
an = anthropic.Anthropic(base_url=base, api_key=key, max_retries=0)

def messages_usage(m):
    return {"input": m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0), "output": m.usage.output_tokens}

if "responses" in parts:
    oa = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
    r = oa.responses.create(model=model, instructions="be brief", input="what is a gateway?", max_output_tokens=8)
    out["responses_whole"] = {"text": r.output_text, "status": r.status,
                              "input": r.usage.input_tokens, "output": r.usage.output_tokens}
    types, text, usage = [], "", None
    for event in oa.responses.create(model=model, input=[{"role": "user", "content": "tell me more"}], stream=True):
        types.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type in ("response.completed", "response.incomplete"):
            usage = event.response.usage
    out["responses_stream"] = {"first": types[0], "last": types[-1], "text": text,
                               "deltas": types.count("response.output_text.delta"),
                               "input": usage.input_tokens, "output": usage.output_tokens}

if "messages" in parts:
    m = an.messages.create(model=model, max_tokens=16, system="be brief",
                           messages=[{"role": "user", "content": "what is a gateway?"}])
    out["messages_whole"] = {"text": m.content[0].text, "stop": m.stop_reason, **messages_usage(m)}
    with an.messages.stream(model=model, max_tokens=12,
                            messages=[{"role": "user", "content": [{"type": "text", "text": "tell me more"}]}]) as s:
        streamed = "".join(s.text_stream)
        final = s.get_final_message()
    out["messages_stream"] = {"text": streamed, "final_text": final.content[0].text, "stop": final.stop_reason,
                              **messages_usage(final)}

if "errors" in parts:
    errors = {}
    try:
        anthropic.Anthropic(base_url=base, api_key="sk-wrong-0123456789", max_retries=0).messages.create(
            model=model, max_tokens=4, messages=[{"role": "user", "content": "x"}])
    except anthropic.AuthenticationError as e:
        errors["401"] = {"class": type(e).__name__, "type": e.body["error"]["type"]}
    try:
        an.messages.create(model="no-such-model", max_tokens=4, messages=[{"role": "user", "content": "x"}])
    except anthropic.NotFoundError as e:
        errors["404"] = {"class": type(e).__name__, "type": e.body["error"]["type"]}
    out["errors"] = errors

if "tools" in parts:
    tools = [{"name": "get_weather", "description": "the weather in a city",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    ask = [{"role": "user", "content": "what is the weather in Oslo?"}]
    forced = {"type": "tool", "name": "get_weather"}
    c = an.messages.create(model=model, max_tokens=6, tools=tools, tool_choice=forced, messages=ask)
    call = c.content[0]
    out["call"] = {"type": call.type, "name": call.name, "city": call.input.get("city"), **messages_usage(c)}
    with an.messages.stream(model=model, max_tokens=6, tools=tools, tool_choice=forced, messages=ask) as s:
        final = s.get_final_message()
    streamed_call = final.content[0]
    out["streamed_call"] = {"type": streamed_call.type, "name": streamed_call.name,
                            "city": streamed_call.input.get("city"), **messages_usage(final)}
    t = an.messages.create(model=model, max_tokens=4, tools=tools, messages=ask + [
        {"role": "assistant", "content": c.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "4 C, rain"}]}])
    out["tools"] = {"type": t.content[0].type, "stop": t.stop_reason, **messages_usage(t)}
    try:
        an.messages.create(model=model, max_tokens=4, thinking={"type": "enabled", "budget_tokens": 1024},
                           messages=[{"role": "user", "content": "x"}])
    except anthropic.BadRequestError as e:
        out["refused"] = {"type": e.body["error"]["type"], "message": e.body["error"]["message"]}
if "cache" in parts:
    # The same deterministic streaming call twice: the second is a replay from the cache.
    oa = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
    cache = {}
    for attempt in ("first", "second"):
        s = oa.responses.create(model=model, instructions="be brief", input="what is a sluice?", max_output_tokens=8,
                                temperature=0, store=False, stream=True)
        types, text = [], ""
        for event in s:
            types.append(event.type)
            if event.type == "response.output_text.delta":
                text += event.delta
            if event.type in ("response.completed", "response.incomplete"):
                final = event.response
        cache["responses_" + attempt] = {
            "cache": s.response.headers.get("x-sluice-cache"), "first": types[0], "last": types[-1], "text": text,
            "final_text": final.output_text, "input": final.usage.input_tokens,
            "cached": final.usage.input_tokens_details.cached_tokens, "output": final.usage.output_tokens}
        time.sleep(0.5)
    for attempt in ("first", "second"):
        with an.messages.stream(model=model, max_tokens=12, extra_body={"temperature": 0},
                                messages=[{"role": "user", "content": "what is a sluice?"}]) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
            header = s.response.headers.get("x-sluice-cache")
        cache["messages_" + attempt] = {"cache": header, "text": text, "final_text": final.content[0].text,
                                        "stop": final.stop_reason, "cache_read": final.usage.cache_read_input_tokens or 0,
                                        **messages_usage(final)}
        time.sleep(0.5)
    out["cache"] = cache
print(json.dumps(out))
"#;

fn count(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The built-in `cache` plugin, bound as operators bind it.
const CACHE: &str = "\n[[plugins]]\nname = \"cache\"\nsource = \"builtin:cache\"\n";

/// A gateway config with one pool of `endpoints` speaking `apis` (the default when `None`).
fn gateway_toml(listen: SocketAddr, admin: SocketAddr, endpoints: &[String], apis: Option<&str>) -> String {
    let endpoints = endpoints.iter().map(|e| format!("\"{e}\"")).collect::<Vec<_>>().join(", ");
    let apis = apis.map(|a| format!("apis = {a}\n")).unwrap_or_default();
    format!(
        "[server]\nlisten = \"{listen}\"\nadmin_listen = \"{admin}\"\n\n\
         [[pools]]\nname = \"llama\"\nmodels = [\"{MODEL}\"]\nendpoints = [{endpoints}]\n{apis}\n\
         [[tenants]]\nname = \"{}\"\napi_keys = [\"{API_KEY}\"]\n",
        sluice_e2e::TENANT
    )
}

/// Runs the SDK script's `parts` against the gateway at `base` and returns what the SDKs said.
fn run_sdks(dir: &TempDir, base: &str, parts: &str) -> Value {
    let python = sluice_e2e::python::venv_with(dir, &["openai>=1.66", "anthropic>=0.40"]);
    let output = std::process::Command::new(python).args(["-c", SCRIPT, base, API_KEY, MODEL, parts]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// What the gateway recorded is what the SDKs were told for the `calls` (keys of `out`), and
/// each API in `ok` counts that many successful requests.
fn assert_recorded(metrics: &str, out: &Value, calls: &[&str], ok: &[(&str, f64)]) {
    let prompt: f64 = calls.iter().map(|c| count(&out[c]["input"])).sum();
    let completion: f64 = calls.iter().map(|c| count(&out[c]["output"])).sum();
    let recorded = |kind: &str| {
        sluice_e2e::metrics::sum(metrics, "sluice_tokens_total", &[("tenant", sluice_e2e::TENANT), ("type", kind)])
            .unwrap_or(0.0)
    };
    assert_eq!(recorded("prompt"), prompt, "{out} {metrics}");
    assert_eq!(recorded("completion"), completion, "{out}");
    for (api, n) in ok {
        let counted =
            sluice_e2e::metrics::sum(metrics, "sluice_api_requests_total", &[("api", api), ("outcome", "ok")]);
        assert_eq!(counted, Some(*n), "{api}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdks_speak_responses_and_messages_through_sluice() {
    let dir = TempDir::new("agents-sdk");
    let sim = start_sim(&dir, "sim", None, &["--output-tokens", "20"]).await;
    let endpoints = [sim.url()];
    let apis = r#"["chat", "responses", "messages"]"#;
    let gw = start_gateway(&dir, |listen, admin| gateway_toml(listen, admin, &endpoints, Some(apis))).await;
    let out = run_sdks(&dir, &gw.api(), "responses,messages,errors");

    let whole = &out["responses_whole"];
    assert!(whole["text"].as_str().is_some_and(|t| !t.is_empty()), "{out}");
    assert_eq!(count(&whole["output"]), 8.0, "{out}");
    let stream = &out["responses_stream"];
    assert_eq!(
        (stream["first"].as_str(), stream["last"].as_str()),
        (Some("response.created"), Some("response.completed"))
    );
    assert_eq!(count(&stream["deltas"]), count(&stream["output"]), "{out}");
    assert!(stream["text"].as_str().is_some_and(|t| !t.is_empty()));
    assert_messages(&out);
    assert_eq!(out["errors"]["401"]["type"], "authentication_error", "{out}");
    assert_eq!(out["errors"]["404"]["type"], "not_found_error", "{out}");

    let calls = ["responses_whole", "responses_stream", "messages_whole", "messages_stream"];
    assert_recorded(&gw.metrics().await, &out, &calls, &[("responses", 2.0), ("messages", 2.0)]);
}

/// The `messages` part against the simulator, which generates exactly the `max_tokens` asked.
fn assert_messages(out: &Value) {
    let m = &out["messages_whole"];
    assert!(m["text"].as_str().is_some_and(|t| !t.is_empty()), "{out}");
    assert_eq!((m["stop"].as_str(), count(&m["output"])), (Some("max_tokens"), 16.0), "{out}");
    let s = &out["messages_stream"];
    assert_eq!(s["text"], s["final_text"], "the SDK's accumulated message matches its text stream: {out}");
    assert_eq!((s["stop"].as_str(), count(&s["output"])), (Some("max_tokens"), 12.0), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropics_sdk_reaches_a_chat_only_pool_through_the_translation() {
    let dir = TempDir::new("agents-sdk-translated");
    let sim = start_sim(&dir, "sim", None, &["--output-tokens", "20"]).await;
    let endpoints = [sim.url()];
    // The default `apis`: the workers speak chat completions, not Messages.
    let gw = start_gateway(&dir, |listen, admin| gateway_toml(listen, admin, &endpoints, None)).await;
    let out = run_sdks(&dir, &gw.api(), "messages,tools");

    assert_messages(&out);
    for call in ["call", "streamed_call"] {
        let c = &out[call];
        assert_eq!((c["type"].as_str(), c["name"].as_str()), (Some("tool_use"), Some("get_weather")), "{out}");
        assert!(c["city"].as_str().is_some_and(|city| !city.is_empty()), "the SDK parsed the call's input: {out}");
    }
    assert_eq!((out["tools"]["type"].as_str(), count(&out["tools"]["output"])), (Some("text"), 4.0), "{out}");
    assert_eq!(out["refused"]["type"], "invalid_request_error", "{out}");
    assert!(out["refused"]["message"].as_str().is_some_and(|m| m.contains("thinking")), "{out}");

    let calls = ["messages_whole", "messages_stream", "call", "streamed_call", "tools"];
    assert_recorded(&gw.metrics().await, &out, &calls, &[("messages", 5.0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdks_parse_streams_replayed_from_the_response_cache() {
    let dir = TempDir::new("agents-sdk-cache");
    let sim = start_sim(&dir, "sim", None, &["--output-tokens", "20"]).await;
    let endpoints = [sim.url()];
    let apis = r#"["chat", "responses", "messages"]"#;
    let gw = start_gateway(&dir, |listen, admin| gateway_toml(listen, admin, &endpoints, Some(apis)) + CACHE).await;
    let out = run_sdks(&dir, &gw.api(), "cache");
    let cache = &out["cache"];
    for api in ["responses", "messages"] {
        let (first, second) = (&cache[format!("{api}_first")], &cache[format!("{api}_second")]);
        assert_eq!((first["cache"].as_str(), second["cache"].as_str()), (Some("miss"), Some("hit")), "{out}");
        assert!(second["text"].as_str().is_some_and(|t| !t.is_empty()), "{out}");
        assert_eq!(first["text"], second["text"], "the SDK read the same text from the replay: {out}");
        assert_eq!(second["text"], second["final_text"], "and the same final object: {out}");
        assert_eq!(first["input"], second["input"], "{out}");
        assert_eq!(first["output"], second["output"], "{out}");
    }
    let responses = &cache["responses_second"];
    assert_eq!(
        (responses["first"].as_str(), responses["last"].as_str()),
        (Some("response.created"), Some("response.incomplete")),
        "{out}"
    );
    assert_eq!(responses["cached"], responses["input"], "the whole prompt came from the cache: {out}");
    let messages = &cache["messages_second"];
    assert_eq!(messages["stop"], "max_tokens", "{out}");
    assert_eq!(messages["cache_read"], messages["input"], "the whole prompt was a cache read: {out}");
    // Two requests of each API; one of each reached the worker.
    let metrics = gw.metrics().await;
    let hits = sluice_e2e::metrics::sum(&metrics, "sluice_cache_requests_total", &[("result", "hit")]);
    assert_eq!(hits, Some(2.0), "{metrics}");
}

/// A real engine's answer: at least one token, at most the limit (a random model may stop early).
fn within(out: &Value, call: &str, limit: f64) {
    let n = count(&out[call]["output"]);
    assert!((1.0..=limit).contains(&n), "{call}: {n} output tokens for a limit of {limit}: {out}");
}

/// Against two real vLLM workers: Responses and Messages as vLLM serves them itself, and
/// Messages through the translation to vLLM's chat completions. vLLM's model is random, so the
/// text is noise and may end early; what must hold is the protocol and the accounting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdks_reach_two_real_vllm_workers_natively_and_through_the_translation() {
    if !sluice_e2e::vllm::wanted("agents_sdk real vLLM") {
        return;
    }
    let env = sluice_e2e::vllm::env();
    let dir = TempDir::new("agents-sdk-vllm");
    let workers = sluice_e2e::vllm::start_vllms(&env, &dir, 2).await;
    let endpoints: Vec<String> = workers.iter().map(sluice_e2e::vllm::Vllm::url).collect();

    let apis = r#"["chat", "responses", "messages"]"#;
    let native = start_gateway(&dir, |listen, admin| gateway_toml(listen, admin, &endpoints, Some(apis))).await;
    let out = run_sdks(&dir, &native.api(), "responses,messages,errors");
    within(&out, "responses_whole", 8.0);
    within(&out, "messages_whole", 16.0);
    within(&out, "messages_stream", 12.0);
    let stream = &out["responses_stream"];
    assert_eq!(
        (stream["first"].as_str(), stream["last"].as_str()),
        (Some("response.created"), Some("response.completed")),
        "{out}"
    );
    assert_eq!(out["messages_stream"]["text"], out["messages_stream"]["final_text"], "{out}");
    assert_eq!(out["errors"]["401"]["type"], "authentication_error", "{out}");
    assert_eq!(out["errors"]["404"]["type"], "not_found_error", "{out}");
    let calls = ["responses_whole", "responses_stream", "messages_whole", "messages_stream"];
    assert_recorded(&native.metrics().await, &out, &calls, &[("responses", 2.0), ("messages", 2.0)]);

    // The same workers, declared as speaking chat completions only.
    let translated = start_gateway(&dir, |listen, admin| gateway_toml(listen, admin, &endpoints, None)).await;
    let out = run_sdks(&dir, &translated.api(), "messages");
    within(&out, "messages_whole", 16.0);
    within(&out, "messages_stream", 12.0);
    assert_eq!(out["messages_stream"]["text"], out["messages_stream"]["final_text"], "{out}");
    assert_recorded(&translated.metrics().await, &out, &["messages_whole", "messages_stream"], &[("messages", 2.0)]);
}
