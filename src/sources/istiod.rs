//! Parsing what istiod answers on its debug and metrics endpoints. The demo simulator emits
//! already-parsed results; a real probe (port-forward to pod port 15014, or an explicit URL)
//! feeds the raw bodies through these functions.

use crate::topology::snapshot::{ClusterzEntry, IstiodMetrics, SynczEntry};

/// `/debug/clusterz`: `[{"id", "secretName", "syncStatus"}]`, sorted by id.
pub fn parse_clusterz(body: &str) -> Result<Vec<ClusterzEntry>, String> {
    let mut rows: Vec<ClusterzEntry> =
        serde_json::from_str(body).map_err(|e| format!("/debug/clusterz: {e}"))?;
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(rows)
}

/// `/debug/syncz`: one row per connected proxy, sorted by proxy. istiod lists them in no
/// particular order (a new one each time it is asked): sorted, two answers that tell the same
/// are equal, and an unchanged probe need not be passed on.
pub fn parse_syncz(body: &str) -> Result<Vec<SynczEntry>, String> {
    let mut rows: Vec<SynczEntry> =
        serde_json::from_str(body).map_err(|e| format!("/debug/syncz: {e}"))?;
    rows.sort_by(|a, b| (&a.proxy, &a.cluster_id).cmp(&(&b.proxy, &b.cluster_id)));
    Ok(rows)
}

/// The metric families meshtop reads from istiod.
const READ: &[&str] = &[
    "pilot_xds ",
    "pilot_xds{",
    "pilot_xds_pushes",
    "pilot_proxy_convergence_time",
    "pilot_total_xds_rejects",
];

/// Prometheus text from `:15014/metrics` (parsed by `prometheus-parse`); only the series meshtop
/// shows are read, summed over their labels.
pub fn parse_metrics(body: &str) -> IstiodMetrics {
    use prometheus_parse::{Scrape, Value};
    let mut m = IstiodMetrics::default();
    // istiod serves thousands of series; only those read here (and their TYPE lines) are
    // handed to the parser, which keeps an idle probe cheap.
    let wanted = |name: &str| READ.iter().any(|r| name.starts_with(r));
    let lines = body.lines().filter(|l| match l.strip_prefix("# TYPE ") {
        Some(rest) => wanted(rest),
        None => !l.starts_with('#') && wanted(l),
    });
    let Ok(scrape) = Scrape::parse(lines.map(|l| Ok(l.to_string()))) else {
        return m;
    };
    for sample in scrape.samples {
        let value = match &sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(_) | Value::Summary(_) => continue,
        };
        match sample.metric.as_str() {
            "pilot_xds" => m.xds_clients += value,
            "pilot_xds_pushes" => m.pushes += value,
            "pilot_proxy_convergence_time_sum" => m.convergence_sum += value,
            "pilot_proxy_convergence_time_count" => m.convergence_count += value,
            "pilot_total_xds_rejects" => m.xds_rejects += value,
            _ => {}
        }
    }
    m
}

/// `pilot_info{version="…"}` from istiod's metrics, when `/version` said nothing useful.
pub fn metrics_version(body: &str) -> Option<String> {
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).ok()?;
    scrape
        .samples
        .iter()
        .find(|s| s.metric == "pilot_info")
        .and_then(|s| s.labels.get("version"))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_sum_labelled_series() {
        let text = "# HELP pilot_xds Number of endpoints connected\n\
                    pilot_xds{version=\"1.28.2\"} 7\n\
                    pilot_xds{version=\"1.27.3\"} 2\n\
                    pilot_xds_pushes{type=\"cds\"} 10\n\
                    pilot_xds_pushes{type=\"eds\"} 32\n\
                    pilot_proxy_convergence_time_sum 0.5\n\
                    pilot_proxy_convergence_time_count 50\n\
                    pilot_total_xds_rejects 1\n";
        let m = parse_metrics(text);
        assert_eq!(m.xds_clients, 9.0);
        assert_eq!(m.pushes, 42.0);
        assert_eq!(m.convergence_count, 50.0);
        assert_eq!(m.xds_rejects, 1.0);
    }

    #[test]
    fn metrics_read_a_typed_histogram() {
        let text = "# TYPE pilot_proxy_convergence_time histogram\n\
                    pilot_proxy_convergence_time_bucket{le=\"0.1\"} 3\n\
                    pilot_proxy_convergence_time_bucket{le=\"+Inf\"} 4\n\
                    pilot_proxy_convergence_time_sum 0.25\n\
                    pilot_proxy_convergence_time_count 4\n\
                    # TYPE pilot_xds gauge\n\
                    pilot_xds{version=\"1.31-dev\"} 5\n";
        let m = parse_metrics(text);
        assert_eq!(m.convergence_count, 4.0);
        assert_eq!(m.convergence_sum, 0.25);
        assert_eq!(m.xds_clients, 5.0);
    }

    #[test]
    fn version_label_of_pilot_info() {
        let text = "# TYPE pilot_info gauge\npilot_info{version=\"1.31-dev\"} 1\n";
        assert_eq!(metrics_version(text).as_deref(), Some("1.31-dev"));
        assert_eq!(metrics_version("pilot_xds 3\n"), None);
    }

    #[test]
    fn clusterz_reads_istiod_field_names() {
        let rows = parse_clusterz(
            r#"[{"id":"primary","secretName":"","syncStatus":"synced"},
                {"id":"remote","secretName":"istio-system/istio-remote-secret-remote","syncStatus":"timeout"}]"#,
        )
        .unwrap();
        assert_eq!(rows[1].id, "remote");
        assert_eq!(rows[1].sync_status, "timeout");
        assert!(parse_clusterz("{not json").is_err());
    }

    #[test]
    fn syncz_reads_rows() {
        let rows = parse_syncz(
            r#"[{"cluster_id":"remote","proxy":"api-1.payments","istio_version":"1.28.2","cds":"SYNCED"}]"#,
        )
        .unwrap();
        assert_eq!(rows[0].cluster_id, "remote");
        assert_eq!(rows[0].proxy, "api-1.payments");
    }

    #[test]
    fn syncz_in_any_order_reads_the_same() {
        let a =
            parse_syncz(r#"[{"cluster_id":"c","proxy":"b.ns"},{"cluster_id":"c","proxy":"a.ns"}]"#);
        let b =
            parse_syncz(r#"[{"cluster_id":"c","proxy":"a.ns"},{"cluster_id":"c","proxy":"b.ns"}]"#);
        assert_eq!(a, b);
    }
}
