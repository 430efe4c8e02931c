//! `SLUICE__SECTION__KEY=value` environment overrides, applied to the parsed TOML document
//! before it is deserialised so that they go through the same validation as the file.

use crate::ConfigError;

const PREFIX: &str = "SLUICE__";

pub fn apply_env(doc: &mut toml::Table, vars: &[(String, String)]) -> Result<(), ConfigError> {
    for (var, value) in vars {
        let Some(path) = var.strip_prefix(PREFIX) else { continue };
        let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        if keys.iter().any(String::is_empty) {
            return Err(ConfigError::Env { var: var.clone(), reason: "empty key segment".into() });
        }
        let Some((last, parents)) = keys.split_last() else { continue };
        let mut table = &mut *doc;
        for key in parents {
            let entry = table.entry(key.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = entry.as_table_mut().ok_or_else(|| ConfigError::Env {
                var: var.clone(),
                reason: format!(
                    "{key} is not a table (arrays such as pools cannot be overridden from the environment)"
                ),
            })?;
        }
        table.insert(last.clone(), parse_value(value));
    }
    Ok(())
}

/// Numbers and booleans become typed values; anything else stays a string, so that
/// `SLUICE__SERVER__LISTEN=0.0.0.0:8080` needs no quoting.
fn parse_value(value: &str) -> toml::Value {
    if let Ok(b) = value.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(i) = value.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    toml::Value::String(value.to_owned())
}
