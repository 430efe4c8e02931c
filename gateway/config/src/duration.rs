//! Human durations in config files: `"250ms"`, `"5s"`, `"2m"`, `"1h"`.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("duration {s:?} needs a unit (ms, s, m or h), e.g. \"500ms\" or \"5s\""))?;
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("duration {s:?} does not start with a number"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("duration {s:?} has unknown unit {other:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("duration {s:?} is out of range"))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse(&s).map_err(serde::de::Error::custom)
}

pub fn deserialize_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    Option::<String>::deserialize(d)?.map(|s| parse(&s).map_err(serde::de::Error::custom)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(parse("5").unwrap_err().contains("needs a unit"));
        assert!(parse("5 days").unwrap_err().contains("unknown unit"));
        assert!(parse("s").unwrap_err().contains("number"));
    }
}
