//! Reading the Prometheus text exposition that the admin plane serves.

/// The sum of every sample of `name` whose labels include all of `labels` (0 when none match),
/// e.g. `value(&text, "sluice_tokens_total", &[("tenant", "acme"), ("type", "prompt")])`.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text, name).filter(|(l, _)| labels.iter().all(|want| l.contains(&(want.0, want.1)))).map(|(_, v)| v).sum()
}

/// Whether any sample of `name` exists, whatever its labels and value.
pub fn has(text: &str, name: &str) -> bool {
    samples(text, name).next().is_some()
}

/// Every sample of exactly `name`: its labels and value.
pub fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (Vec<(&'a str, &'a str)>, f64)> + 'a {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(move |line| {
        let (series, value) = line.rsplit_once(' ')?;
        let value: f64 = value.parse().ok()?;
        let (metric, labels) = match series.split_once('{') {
            Some((metric, rest)) => (metric, parse_labels(rest.strip_suffix('}')?)),
            None => (series, Vec::new()),
        };
        (metric == name).then_some((labels, value))
    })
}

/// `a="x",b="y"` → pairs. Sluice's label values never contain quotes or commas.
fn parse_labels(s: &str) -> Vec<(&str, &str)> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((k.trim(), v.trim().strip_prefix('"')?.strip_suffix('"')?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_matching_series() {
        let text = "# HELP x y\n# TYPE x counter\n\
                    sluice_tokens_total{model=\"m\",tenant=\"acme\",type=\"prompt\"} 12\n\
                    sluice_tokens_total{model=\"m\",tenant=\"acme\",type=\"completion\"} 8\n\
                    sluice_tokens_total_other 5\n\
                    sluice_requests_in_flight 0\n";
        assert_eq!(value(text, "sluice_tokens_total", &[("tenant", "acme")]), 20.0);
        assert_eq!(value(text, "sluice_tokens_total", &[("type", "prompt")]), 12.0);
        assert_eq!(value(text, "sluice_tokens_total", &[("type", "cached")]), 0.0);
        assert!(has(text, "sluice_requests_in_flight"));
        assert!(!has(text, "sluice_nothing"));
    }
}
