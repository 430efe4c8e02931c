#![allow(clippy::panic, reason = "test helpers fail the test by panicking")]

use sluice_config::{Config, ConfigError};

const ACCEPTANCE: &str = r#"
[server]
listen = "127.0.0.1:18080"
admin_listen = "127.0.0.1:19090"

[[pools]]
name = "llama"
models = ["llama-3-8b"]
endpoints = ["http://127.0.0.1:18001", "http://127.0.0.1:18002"]

[[tenants]]
name = "acme"
api_keys = ["sk-acme-0123456789"]
"#;

fn no_env(_: &str) -> Option<String> {
    None
}

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, &[], &no_env)
}

fn invalid_field(text: &str) -> String {
    match load(text) {
        Err(ConfigError::Invalid { field, .. }) => field,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn acceptance_config_loads_as_written() {
    let c = load(ACCEPTANCE).unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:18080");
    assert_eq!(c.server.admin_listen.to_string(), "127.0.0.1:19090");
    assert_eq!(c.pools[0].endpoints.len(), 2);
    assert_eq!(c.pools[0].endpoints[0].name, "127.0.0.1:18001");
    assert_eq!(c.tenants[0].api_keys[0].key.expose(), "sk-acme-0123456789");
    assert_eq!(c.models(), ["llama-3-8b"]);
}

#[test]
fn empty_file_gives_defaults() {
    let c = load("").unwrap();
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
    assert!(c.pools.is_empty());
}

#[test]
fn unknown_fields_are_rejected_by_name() {
    let err = load("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap_err();
    assert!(err.to_string().contains("lisen"), "{err}");
}

#[test]
fn rules_name_the_field() {
    assert_eq!(invalid_field("[server]\nlisten = \"nope\""), "server.listen");
    assert_eq!(
        invalid_field("[[pools]]\nname = \"a\"\nmodels = [\"m\"]\nendpoints = [\"ftp://x\"]"),
        "pools[0].endpoints[0]"
    );
    assert_eq!(invalid_field("[[pools]]\nname = \"a\"\nmodels = []\nendpoints = [\"http://x\"]"), "pools[0].models");
    assert_eq!(
        invalid_field(
            "[[pools]]\nname = \"a\"\nmodels = [\"m\"]\nendpoints = [\"http://x\"]\n[[pools]]\nname = \"b\"\nmodels = [\"m\"]\nendpoints = [\"http://y\"]"
        ),
        "pools[1].models[0]"
    );
    assert_eq!(
        invalid_field(
            "[[tenants]]\nname = \"a\"\napi_keys = [\"sk-aaaaaaaa\"]\n[[tenants]]\nname = \"b\"\napi_keys = [\"sk-aaaaaaaa\"]"
        ),
        "tenants[1].api_keys[0]"
    );
    assert_eq!(invalid_field("[[tenants]]\nname = \"a\"\napi_keys = [\"short\"]"), "tenants[0].api_keys[0]");
    assert_eq!(invalid_field("[upstream]\nconnect_timeout = \"0s\""), "upstream.connect_timeout");
}

#[test]
fn bad_duration_is_a_parse_error_with_a_hint() {
    let err = load("[upstream]\nconnect_timeout = \"5\"").unwrap_err();
    assert!(err.to_string().contains("needs a unit"), "{err}");
}

#[test]
fn pool_overrides_global_upstream_defaults() {
    let c = load(
        "[upstream]\nconnect_timeout = \"1s\"\nmax_retries = 5\n[[pools]]\nname = \"a\"\nmodels = [\"m\"]\nendpoints = [{ url = \"http://x:1/\", name = \"w1\", http2 = true }]\n[pools.upstream]\nmax_retries = 0",
    )
    .unwrap();
    let u = &c.pools[0].upstream;
    assert_eq!(u.connect_timeout.as_secs(), 1);
    assert_eq!(u.max_retries, 0);
    let e = &c.pools[0].endpoints[0];
    assert_eq!((e.name.as_str(), e.url.to_string().as_str(), e.http2), ("w1", "http://x:1/", true));
}

#[test]
fn environment_overrides_win_and_are_validated() {
    let vars = vec![
        ("SLUICE__SERVER__LISTEN".to_owned(), "127.0.0.1:7000".to_owned()),
        ("SLUICE__SERVER__MAX_BODY_BYTES".to_owned(), "1024".to_owned()),
        ("UNRELATED".to_owned(), "x".to_owned()),
    ];
    let c = Config::from_toml(ACCEPTANCE, &vars, &no_env).unwrap();
    assert_eq!(c.server.listen.port(), 7000);
    assert_eq!(c.server.max_body_bytes, 1024);

    let bad = vec![("SLUICE__SERVER__LISTEN".to_owned(), "nope".to_owned())];
    assert!(matches!(Config::from_toml("", &bad, &no_env), Err(ConfigError::Invalid { .. })));
    let typo = vec![("SLUICE__SERVER__LISTNE".to_owned(), "x".to_owned())];
    assert!(Config::from_toml("", &typo, &no_env).unwrap_err().to_string().contains("listne"));
}

#[test]
fn secret_references_resolve() {
    let env = |n: &str| (n == "ACME_KEY").then(|| "sk-from-env-123-long-enough-for-an-admin-token".to_owned());
    let c = Config::from_toml(
        "[admin]\ntoken = \"env:ACME_KEY\"\n[[tenants]]\nname = \"a\"\napi_keys = [\"env:ACME_KEY\"]",
        &[],
        &env,
    )
    .unwrap();
    assert_eq!(c.tenants[0].api_keys[0].key.expose(), "sk-from-env-123-long-enough-for-an-admin-token");
    assert_eq!(format!("{:?}", c.admin.token), "Some(***)");
    let err = Config::from_toml("[admin]\ntoken = \"env:NOPE\"", &[], &no_env).unwrap_err();
    assert!(err.to_string().contains("admin.token"), "{err}");
}

#[test]
fn plugins_are_validated_with_defaults_filled_in() {
    let text = format!(
        "{ACCEPTANCE}\n[plugin_host]\ncache_dir = \"/tmp/sluice-cache\"\n\n\
         [[plugins]]\nname = \"deny-list\"\nsource = \"/etc/sluice/deny.wasm\"\ncapabilities = [\"log\", \"config\"]\n\
         order = 5\nfailure = \"open\"\n[plugins.config]\npatterns = [\"x\"]\n\n\
         [[plugins]]\nname = \"router\"\nsource = \"builtin:router\"\nisolation = \"per-request\"\ntimeout = \"2ms\"\n"
    );
    let config = load(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.plugin_host.cache_dir.as_deref(), Some(std::path::Path::new("/tmp/sluice-cache")));
    let [deny, router] = &config.plugins[..] else { panic!("two plugins") };
    assert_eq!(deny.source, sluice_config::PluginSourceConfig::File("/etc/sluice/deny.wasm".into()));
    assert!(!deny.fail_closed);
    assert_eq!(deny.order, 5);
    assert_eq!(deny.config_json, r#"{"patterns":["x"]}"#);
    assert!(matches!(deny.isolation, sluice_config::PluginIsolationConfig::Reuse { .. }));
    assert_eq!(router.source, sluice_config::PluginSourceConfig::Builtin("router".into()));
    assert_eq!(router.isolation, sluice_config::PluginIsolationConfig::PerRequest);
    assert!(router.fail_closed, "fail-closed is the default");
    assert_eq!(router.timeout, std::time::Duration::from_millis(2));
    assert!(config.plugin_host.builtin_router, "the built-in router is bound by default");
    let off = load(&format!("{ACCEPTANCE}\n[plugin_host]\nbuiltin_router = false\n")).unwrap();
    assert!(!off.plugin_host.builtin_router);
}

#[test]
fn bad_plugins_name_the_field() {
    let plugin = |body: &str| format!("{ACCEPTANCE}\n[[plugins]]\n{body}\n");
    let cases = [
        ("name = \"Bad Name\"\nsource = \"builtin:router\"", "plugins[0].name"),
        ("name = \"x\"\nsource = \"builtin:nope\"", "plugins[0].source"),
        ("name = \"x\"\nsource = \"a.wasm\"\ncapabilities = [\"filesystem\"]", "plugins[0].capabilities[0]"),
        ("name = \"x\"\nsource = \"a.wasm\"\nisolation = \"shared\"", "plugins[0].isolation"),
        ("name = \"x\"\nsource = \"a.wasm\"\nfailure = \"maybe\"", "plugins[0].failure"),
        ("name = \"x\"\nsource = \"a.wasm\"\ntimeout = \"1m\"", "plugins[0].timeout"),
        ("name = \"x\"\nsource = \"a.wasm\"\nmax_memory_bytes = 1073741824", "plugins[0].max_memory_bytes"),
        (
            "name = \"x\"\nsource = \"a.wasm\"\nhttp_allow = [\"ok.example.com\", \"https://x.com\"]",
            "plugins[0].http_allow[1]",
        ),
        ("name = \"x\"\nsource = \"a.wasm\"\nhttp_allow = [\"x.com/path\"]", "plugins[0].http_allow[0]"),
        ("name = \"x\"\nsource = \"a.wasm\"\nhttp_allow = [\"\"]", "plugins[0].http_allow[0]"),
        ("name = \"x\"\nsource = \"a.wasm\"\nhttp_allow = [\"x.com:port\"]", "plugins[0].http_allow[0]"),
    ];
    for (body, field) in cases {
        assert_eq!(invalid_field(&plugin(body)), field, "{body}");
    }
    let twice =
        format!("{}\n[[plugins]]\nname = \"x\"\nsource = \"b.wasm\"\n", plugin("name = \"x\"\nsource = \"a.wasm\""));
    assert_eq!(invalid_field(&twice), "plugins[1].name");
}

#[test]
fn database_and_admin_token_fall_back_to_conventional_variables() {
    let env = |n: &str| match n {
        "DATABASE_URL" => Some("postgres://sluice@db:5432/sluice".to_owned()),
        "SLUICE_ADMIN_TOKEN" => Some("admin-token-from-env-0123456789abcdef".to_owned()),
        _ => None,
    };
    let c = Config::from_toml("", &[], &env).unwrap();
    assert_eq!(c.database.url.as_ref().map(|u| u.expose()), Some("postgres://sluice@db:5432/sluice"));
    assert_eq!(c.admin.token.as_ref().map(|t| t.expose()), Some("admin-token-from-env-0123456789abcdef"));
    assert!(c.database.migrate);

    // The file wins over the variables; neither means the embedded store and no admin API.
    let c = Config::from_toml("[database]\nurl = \"postgres://file/db\"\nmigrate = false", &[], &env).unwrap();
    assert_eq!(c.database.url.as_ref().map(|u| u.expose()), Some("postgres://file/db"));
    assert!(!c.database.migrate);
    let c = Config::from_toml("", &[], &no_env).unwrap();
    assert!(c.database.url.is_none() && c.admin.token.is_none());

    let err = Config::from_toml("[database]\nurl = \"mysql://x\"", &[], &no_env).unwrap_err();
    assert!(err.to_string().contains("database.url"), "{err}");
}

#[test]
fn bootstrap_tenants_carry_limits_and_priority() {
    let text = "[[tenants]]\nname = \"acme\"\napi_keys = [\"sk-acme-0001\"]\npriority = \"high\"\n\
                [tenants.limits]\nrequests_per_minute = 600\nmax_concurrency = 8\n";
    let c = Config::from_toml(text, &[], &no_env).unwrap();
    let limits = c.tenants[0].limits.clone().unwrap();
    assert_eq!(limits.requests_per_minute, Some(600));
    assert_eq!(limits.max_concurrency, Some(8));
    assert_eq!(limits.tokens_per_minute, None);
    assert_eq!(c.tenants[0].priority.as_deref(), Some("high"));

    let err = Config::from_toml("[[tenants]]\nname = \"Acme Corp\"", &[], &no_env).unwrap_err();
    assert!(err.to_string().contains("tenants[0].name"), "{err}");
    let err = Config::from_toml("[[tenants]]\nname = \"a\"\n[tenants.limits]\nrpm = 1", &[], &no_env).unwrap_err();
    assert!(err.to_string().contains("rpm"), "{err}");
    let err = Config::from_toml("[[tenants]]\nname = \"a\"\npriority = \"urgent\"", &[], &no_env).unwrap_err();
    assert!(err.to_string().contains("tenants[0].priority"), "{err}");
}

#[test]
fn keys_and_models_carry_limits_of_their_own() {
    let text = "[[tenants]]\nname = \"acme\"\n\
                api_keys = [\"sk-acme-0001\", { key = \"sk-acme-batch\", limits = { requests_per_minute = 60, max_concurrency = 2 } }, { key = \"sk-acme-0003\" }]\n\
                [tenants.model_limits.\"meta-llama/Llama-3.1-8B\"]\ntokens_per_minute = 1000\n\
                [tenants.model_limits.qwen]\nrequests_per_minute = 10\n";
    let c = Config::from_toml(text, &[], &no_env).unwrap();
    let keys = &c.tenants[0].api_keys;
    assert_eq!(
        keys.iter().map(|k| k.key.expose()).collect::<Vec<_>>(),
        ["sk-acme-0001", "sk-acme-batch", "sk-acme-0003"]
    );
    assert_eq!(keys[0].limits, None, "a plain key leaves its stored limits alone");
    let batch = keys[1].limits.unwrap();
    assert_eq!((batch.requests_per_minute, batch.max_concurrency, batch.tokens_per_minute), (Some(60), Some(2), None));
    assert_eq!(keys[2].limits, None);
    let models = c.tenants[0].model_limits.clone().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m.model.as_str()).collect();
    assert_eq!(names, ["meta-llama/Llama-3.1-8B", "qwen"]);
    assert_eq!(models[0].limits.tokens_per_minute, Some(1000));
    assert_eq!(models[1].limits.requests_per_minute, Some(10));
    assert_eq!(load("[[tenants]]\nname = \"a\"").unwrap().tenants[0].model_limits, None);

    let parse_error = |text: &str| match Config::from_toml(text, &[], &no_env) {
        Err(ConfigError::Parse(message)) => message,
        other => panic!("expected a parse error, got {other:?}"),
    };
    let e = parse_error("[[tenants]]\nname = \"a\"\napi_keys = [{ key = \"sk-aaaaaaaa\", limits = { rpm = 1 } }]");
    assert!(e.contains("rpm") && e.contains("requests_per_minute"), "{e}");
    let e = parse_error("[[tenants]]\nname = \"a\"\napi_keys = [{ secret = \"sk-aaaaaaaa\" }]");
    assert!(e.contains("secret"), "{e}");
    let e = parse_error("[[tenants]]\nname = \"a\"\n[tenants.model_limits.llama]\ntpm = 5");
    assert!(e.contains("tpm"), "{e}");

    // TOML integers stop at i64::MAX, which is also the stores' limit.
    let too_large = format!(
        "[[tenants]]\nname = \"a\"\napi_keys = [{{ key = \"sk-aaaaaaaa\", limits = {{ tokens_per_minute = {} }} }}]",
        u64::MAX
    );
    assert!(parse_error(&too_large).contains("too large"));
    assert_eq!(
        invalid_field("[[tenants]]\nname = \"a\"\n[tenants.model_limits.llama]\n"),
        "tenants[0].model_limits.\"llama\"",
        "a model entry without any limit"
    );
    assert_eq!(
        invalid_field("[[tenants]]\nname = \"a\"\n[tenants.model_limits.\"a b\"]\nmax_concurrency = 1"),
        "tenants[0].model_limits.\"a b\""
    );
}

#[test]
fn in_flight_limits_and_the_admission_queue() {
    let c = load(ACCEPTANCE).unwrap();
    let u = &c.pools[0].upstream;
    assert_eq!(u.max_in_flight, None, "no limit unless configured");
    assert_eq!(u.queue_timeout, std::time::Duration::from_secs(5));
    assert_eq!(u.max_queued, 1024);
    assert_eq!(c.pools[0].endpoints[0].max_in_flight, None);

    let c = load(
        r#"
[upstream]
max_in_flight = 8
queue_timeout = "250ms"

[[pools]]
name = "p"
models = ["m"]
endpoints = ["http://127.0.0.1:1", { url = "http://127.0.0.1:2", max_in_flight = 2 }]
[pools.upstream]
max_queued = 10
"#,
    )
    .unwrap();
    let p = &c.pools[0];
    assert_eq!(p.upstream.max_in_flight, Some(8), "inherited from [upstream]");
    assert_eq!(p.upstream.queue_timeout, std::time::Duration::from_millis(250));
    assert_eq!(p.upstream.max_queued, 10);
    assert_eq!(p.endpoints[0].max_in_flight, None, "the pool's limit applies");
    assert_eq!(p.endpoints[1].max_in_flight, Some(2));

    let pool = |table: &str| {
        format!(
            "[[pools]]\nname = \"p\"\nmodels = [\"m\"]\nendpoints = [\"http://127.0.0.1:1\"]\n[pools.upstream]\n{table}\n"
        )
    };
    assert_eq!(invalid_field(&pool("max_in_flight = 0")), "pools[0].upstream.max_in_flight");
    assert_eq!(invalid_field(&pool("max_queued = 0")), "pools[0].upstream.max_queued");
    assert_eq!(invalid_field(&pool("queue_timeout = \"0s\"")), "pools[0].upstream.queue_timeout");
    assert_eq!(
        invalid_field(
            "[[pools]]\nname = \"p\"\nmodels = [\"m\"]\nendpoints = [{ url = \"http://127.0.0.1:1\", max_in_flight = 0 }]"
        ),
        "pools[0].endpoints[0].max_in_flight"
    );
}

#[test]
fn connection_limits_have_safe_defaults_and_name_the_field() {
    let c = load("").unwrap();
    let limits = &c.server.connections;
    assert_eq!(limits.max, 10_000);
    assert_eq!(limits.max_per_ip, 1_000);
    assert_eq!(limits.header_read_timeout, std::time::Duration::from_secs(10));
    assert_eq!(limits.idle_timeout, std::time::Duration::from_secs(60));
    assert_eq!(limits.write_timeout, std::time::Duration::from_secs(30));
    assert_eq!(limits.http2_max_concurrent_streams, 256);
    assert_eq!(c.server.admin_max_connections, 64);

    // A small global cap brings the unset per-client cap down with it.
    let c = load("[server]\nmax_connections = 8\nheader_read_timeout = \"200ms\"\n").unwrap();
    assert_eq!((c.server.connections.max, c.server.connections.max_per_ip), (8, 8));
    assert_eq!(c.server.connections.header_read_timeout, std::time::Duration::from_millis(200));

    for (text, field) in [
        ("[server]\nmax_connections = 0\n", "server.max_connections"),
        ("[server]\nmax_connections = 8\nmax_connections_per_ip = 9\n", "server.max_connections_per_ip"),
        ("[server]\nmax_connections_per_ip = 0\n", "server.max_connections_per_ip"),
        ("[server]\nadmin_max_connections = 0\n", "server.admin_max_connections"),
        ("[server]\nheader_read_timeout = \"0s\"\n", "server.header_read_timeout"),
        ("[server]\nidle_timeout = \"0s\"\n", "server.idle_timeout"),
        ("[server]\nwrite_timeout = \"0s\"\n", "server.write_timeout"),
        ("[server]\nhttp2_max_concurrent_streams = 0\n", "server.http2_max_concurrent_streams"),
    ] {
        assert_eq!(invalid_field(text), field, "{text}");
    }
    let c = Config::from_toml("", &[("SLUICE__SERVER__MAX_CONNECTIONS".into(), "12".into())], &no_env).unwrap();
    assert_eq!(c.server.connections.max, 12);
}

#[test]
fn the_body_budget_defaults_and_must_hold_a_body_of_the_largest_size() {
    let c = Config::from_toml("", &[], &no_env).unwrap();
    assert_eq!(c.server.max_inflight_body_bytes, 256 * 1024 * 1024);
    let c =
        Config::from_toml("[server]\nmax_body_bytes = 1024\nmax_inflight_body_bytes = 4096\n", &[], &no_env).unwrap();
    assert_eq!(c.server.max_inflight_body_bytes, 4096);
    let e = Config::from_toml("[server]\nmax_body_bytes = 4096\nmax_inflight_body_bytes = 1024\n", &[], &no_env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("server.max_inflight_body_bytes") && e.contains("max_body_bytes"), "{e}");
}

#[test]
fn a_tenants_share_of_the_body_budget_defaults_to_a_quarter_and_holds_a_largest_body() {
    let c = Config::from_toml("", &[], &no_env).unwrap();
    assert_eq!(c.server.max_inflight_body_bytes_per_tenant, 64 * 1024 * 1024);
    let c =
        Config::from_toml("[server]\nmax_body_bytes = 2048\nmax_inflight_body_bytes = 4096\n", &[], &no_env).unwrap();
    assert_eq!(c.server.max_inflight_body_bytes_per_tenant, 2048, "a quarter would not hold a largest body");
    let toml =
        "[server]\nmax_body_bytes = 1024\nmax_inflight_body_bytes = 8192\nmax_inflight_body_bytes_per_tenant = 3000\n";
    assert_eq!(Config::from_toml(toml, &[], &no_env).unwrap().server.max_inflight_body_bytes_per_tenant, 3000);
    for share in [512, 9000] {
        let toml = format!(
            "[server]\nmax_body_bytes = 1024\nmax_inflight_body_bytes = 8192\nmax_inflight_body_bytes_per_tenant = {share}\n"
        );
        let e = Config::from_toml(&toml, &[], &no_env).unwrap_err().to_string();
        assert!(e.contains("server.max_inflight_body_bytes_per_tenant"), "{e}");
    }
}

#[test]
fn redis_limits_are_leased_unless_exact_is_asked_for() {
    use sluice_config::RedisLimitsMode;
    let with = |extra: &str| format!("[redis]\nurl = \"redis://127.0.0.1:6379\"\n{extra}");
    let mode = |extra: &str| load(&with(extra)).unwrap().redis.map(|r| r.limits);
    assert_eq!(mode(""), Some(RedisLimitsMode::Leased));
    assert_eq!(mode("limits = \"leased\""), Some(RedisLimitsMode::Leased));
    assert_eq!(mode("limits = \"exact\""), Some(RedisLimitsMode::Exact));
    assert_eq!(invalid_field(&with("limits = \"sometimes\"")), "redis.limits");
}

#[test]
fn response_affinity_defaults_to_a_day_and_names_the_field() {
    use std::time::Duration;

    use sluice_config::{DEFAULT_RESPONSE_AFFINITY_ENTRIES, DEFAULT_RESPONSE_AFFINITY_TTL};
    let affinity = load("").unwrap().response_affinity;
    assert_eq!(affinity.ttl, DEFAULT_RESPONSE_AFFINITY_TTL);
    assert_eq!(affinity.ttl, Duration::from_secs(86_400));
    assert_eq!(affinity.max_entries, DEFAULT_RESPONSE_AFFINITY_ENTRIES);
    let set = load("[response_affinity]\nttl = \"2h\"\nmax_entries = 10").unwrap().response_affinity;
    assert_eq!((set.ttl, set.max_entries), (Duration::from_secs(7200), 10));
    assert_eq!(invalid_field("[response_affinity]\nttl = \"500ms\""), "response_affinity.ttl");
    assert_eq!(invalid_field("[response_affinity]\nttl = \"721h\""), "response_affinity.ttl");
    assert_eq!(invalid_field("[response_affinity]\nmax_entries = 0"), "response_affinity.max_entries");
}

#[test]
fn autoscaling_and_engine_metrics_have_defaults_and_name_the_field() {
    use std::time::Duration;

    use sluice_config::{DEFAULT_AUTOSCALING, DEFAULT_ENGINE_METRICS};
    let c = load("").unwrap();
    assert_eq!(c.autoscaling, DEFAULT_AUTOSCALING);
    assert_eq!(c.upstream.engine_metrics, DEFAULT_ENGINE_METRICS);
    let set = load("[autoscaling]\ninterval = \"1s\"\nwindow = \"30s\"").unwrap().autoscaling;
    assert_eq!((set.interval, set.window), (Duration::from_secs(1), Duration::from_secs(30)));
    assert_eq!(invalid_field("[autoscaling]\ninterval = \"50ms\""), "autoscaling.interval");
    assert_eq!(invalid_field("[autoscaling]\ninterval = \"10s\"\nwindow = \"5s\""), "autoscaling.window");
    assert_eq!(invalid_field("[autoscaling]\ninterval = \"1s\"\nwindow = \"2h\""), "autoscaling.window");
    // An interval too long to multiply is refused, not a panic.
    let huge = format!("[autoscaling]\ninterval = \"{}s\"\nwindow = \"{}s\"", u64::MAX / 2, u64::MAX / 2);
    assert!(matches!(load(&huge), Ok(_) | Err(ConfigError::Invalid { .. })));
    assert_eq!(
        invalid_field("[upstream.engine_metrics]\ninterval = \"2s\"\nmax_age = \"1s\""),
        "upstream.engine_metrics.max_age"
    );
}

#[test]
fn every_built_in_plugin_can_be_bound_by_name() {
    // docs/rate-limits.md binds the rate limiter this way to give it a config of its own.
    for name in ["router", "ratelimit", "cache"] {
        let text = format!("[[plugins]]\nname = \"{name}\"\nsource = \"builtin:{name}\"\n");
        let c = load(&text).unwrap_or_else(|e| panic!("builtin:{name}: {e}"));
        assert_eq!(c.plugins[0].name, name);
    }
    assert_eq!(invalid_field("[[plugins]]\nname = \"x\"\nsource = \"builtin:nope\""), "plugins[0].source");
}
