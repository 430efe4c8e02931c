//! The APIs agents speak, through the real `sluice` binary against `sluice-sim`, driven by the
//! official SDKs unchanged (issue 24): OpenAI's `client.responses.create`, whole and streamed,
//! and Anthropic's `messages.create` and `messages.stream` (its key in `x-api-key`, as the SDK
//! sends it); Anthropic's SDK raises its own error classes for the gateway's 401 and 404; and the
//! gateway records exactly the usage the SDKs were told.

use serde_json::Value;
use sluice_e2e::fleet::{start_gateway, start_sim};
use sluice_e2e::{API_KEY, MODEL, TempDir};

/// A virtualenv of the test's own with the official SDKs (pip from PyPI).
fn sdk_python(dir: &TempDir) -> std::path::PathBuf {
    let venv = dir.path().join("venv");
    let run = |cmd: &mut std::process::Command| {
        let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    run(std::process::Command::new("python3").args(["-m", "venv"]).arg(&venv));
    let python = venv.join("bin/python");
    run(std::process::Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "openai>=1.66",
        "anthropic>=0.40",
    ]));
    python
}

const SCRIPT: &str = r#"
import json, sys
import anthropic, openai

base, key, model = sys.argv[1], sys.argv[2], sys.argv[3]
out = {}

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

an = anthropic.Anthropic(base_url=base, api_key=key, max_retries=0)
m = an.messages.create(model=model, max_tokens=16, system="be brief",
                       messages=[{"role": "user", "content": "what is a gateway?"}])
out["messages_whole"] = {"text": m.content[0].text, "stop": m.stop_reason,
                         "input": m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0),
                         "output": m.usage.output_tokens}
with an.messages.stream(model=model, max_tokens=12,
                        messages=[{"role": "user", "content": [{"type": "text", "text": "tell me more"}]}]) as s:
    streamed = "".join(s.text_stream)
    final = s.get_final_message()
out["messages_stream"] = {"text": streamed, "final_text": final.content[0].text, "stop": final.stop_reason,
                          "input": final.usage.input_tokens + (final.usage.cache_read_input_tokens or 0),
                          "output": final.usage.output_tokens}

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
print(json.dumps(out))
"#;

fn count(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdks_speak_responses_and_messages_through_sluice() {
    let dir = TempDir::new("agents-sdk");
    let sim = start_sim(&dir, "sim", None, &["--output-tokens", "20"]).await;
    let endpoint = sim.url();
    let gw = start_gateway(&dir, |listen, admin| {
        format!(
            "[server]\nlisten = \"{listen}\"\nadmin_listen = \"{admin}\"\n\n\
             [[pools]]\nname = \"llama\"\nmodels = [\"{MODEL}\"]\nendpoints = [\"{endpoint}\"]\n\
             apis = [\"chat\", \"responses\", \"messages\"]\n\n\
             [[tenants]]\nname = \"{}\"\napi_keys = [\"{API_KEY}\"]\n",
            sluice_e2e::TENANT
        )
    })
    .await;
    let python = sdk_python(&dir);
    let output = std::process::Command::new(python).args(["-c", SCRIPT, &gw.api(), API_KEY, MODEL]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();

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

    let m = &out["messages_whole"];
    assert_eq!((m["stop"].as_str(), count(&m["output"])), (Some("max_tokens"), 16.0), "{out}");
    let s = &out["messages_stream"];
    assert_eq!(s["text"], s["final_text"], "{out}");
    // The simulator generates exactly the `max_tokens` a request asks for.
    assert_eq!((s["stop"].as_str(), count(&s["output"])), (Some("max_tokens"), 12.0), "{out}");

    assert_eq!(out["errors"]["401"]["type"], "authentication_error", "{out}");
    assert_eq!(out["errors"]["404"]["type"], "not_found_error", "{out}");

    // What the gateway recorded is what the SDKs were told.
    let metrics = gw.metrics().await;
    let parts = ["responses_whole", "responses_stream", "messages_whole", "messages_stream"];
    let prompt: f64 = parts.iter().map(|p| count(&out[p]["input"])).sum();
    let completion: f64 = parts.iter().map(|p| count(&out[p]["output"])).sum();
    let recorded = |kind: &str| {
        sluice_e2e::metrics::sum(&metrics, "sluice_tokens_total", &[("tenant", sluice_e2e::TENANT), ("type", kind)])
            .unwrap_or(0.0)
    };
    assert_eq!(recorded("prompt"), prompt, "{metrics}");
    assert_eq!(recorded("completion"), completion);
    for api in ["responses", "messages"] {
        let ok = sluice_e2e::metrics::sum(&metrics, "sluice_api_requests_total", &[("api", api), ("outcome", "ok")]);
        assert_eq!(ok, Some(2.0), "{api}");
    }
}
