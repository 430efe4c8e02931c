//! Reading the Prometheus text format, enough to assert on counters.

/// The sum of every sample of `name` whose labels include all of `labels`.
/// Returns `None` when no sample matched (the series does not exist yet).
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(parts) => parts,
            None => continue,
        };
        let (metric, label_text) = match series.split_once('{') {
            Some((m, rest)) => (m, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            continue;
        }
        if !labels.iter().all(|(k, v)| label_text.split(',').any(|pair| pair == format!("{k}=\"{v}\""))) {
            continue;
        }
        if let Ok(v) = value.parse::<f64>() {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::sum;

    #[test]
    fn sums_matching_series() {
        let text = "# HELP x y\n# TYPE x counter\n\
                    sluice_requests_total{model=\"m\",outcome=\"ok\",tenant=\"a\"} 2\n\
                    sluice_requests_total{model=\"m\",outcome=\"client_error\",tenant=\"a\"} 1\n\
                    sluice_requests_in_flight 0\n";
        assert_eq!(sum(text, "sluice_requests_total", &[]), Some(3.0));
        assert_eq!(sum(text, "sluice_requests_total", &[("outcome", "ok")]), Some(2.0));
        assert_eq!(sum(text, "sluice_requests_in_flight", &[]), Some(0.0));
        assert_eq!(sum(text, "sluice_requests_total", &[("tenant", "b")]), None);
        assert_eq!(sum(text, "sluice_requests", &[]), None);
    }
}
