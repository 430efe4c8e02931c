//! Config loading: any file an operator (or a template gone wrong) hands to `sluice serve`
//! loads or is refused with an error naming what is wrong; it never panics. A config that
//! loads, loads the same way twice.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = |name: &str| (name == "FUZZ_SECRET").then(|| "a-secret-value-for-the-fuzzer-0123456789".to_owned());
    let first = Config::from_toml(text, &[], &env);
    let second = Config::from_toml(text, &[], &env);
    assert_eq!(first.is_ok(), second.is_ok());
});
