//! The two text formats `/metrics` answers in, and which one a scraper
//! asked for.
//!
//! prometheus-client encodes OpenMetrics 1.0 only; [`to_prometheus_text`]
//! rewrites that output as the Prometheus text format 0.0.4 for scrapers
//! that ask for `text/plain`. The two differ in little: a counter's
//! `# HELP`/`# TYPE` name its sample (`x_total`), not the family (`x`);
//! there is no `# UNIT`, no `# EOF`, no `_created` sample, no exemplar, and
//! no `info` or `stateset` type (both become gauges).

/// A text format of the exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0.
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    Prometheus,
}

impl Format {
    /// The format an `Accept` header asks for: the Prometheus text format
    /// when `text/plain` is acceptable and preferred (a higher q-value)
    /// over `application/openmetrics-text`; OpenMetrics otherwise,
    /// including without an `Accept` header and for `*/*`.
    ///
    /// Prometheus 2 sends `application/openmetrics-text;version=1.0.0,
    /// application/openmetrics-text;version=0.0.1;q=0.75,
    /// text/plain;version=0.0.4;q=0.5,*/*;q=0.1` and so gets OpenMetrics;
    /// scrapers of the older format send `text/plain;version=0.0.4`.
    pub fn from_accept(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::OpenMetrics;
        };
        let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim();
            let mut q = 1.0f32;
            for param in parts {
                if let Some((name, value)) = param.split_once('=') {
                    if name.trim().eq_ignore_ascii_case("q") {
                        // An unreadable q-value makes the range unacceptable.
                        q = value.trim().parse().unwrap_or(0.0);
                    }
                }
            }
            if media.eq_ignore_ascii_case("application/openmetrics-text") {
                openmetrics = openmetrics.max(q);
            } else if media.eq_ignore_ascii_case("text/plain") {
                text = text.max(q);
            }
        }
        if text > 0.0 && text > openmetrics {
            Format::Prometheus
        } else {
            Format::OpenMetrics
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Rewrites an OpenMetrics exposition (as prometheus-client writes it:
/// `# HELP` before `# TYPE`, each family's samples after them) in the
/// Prometheus text format 0.0.4.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // The family being copied and its OpenMetrics type.
    let mut family = String::new();
    let mut kind = "";
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, om_type) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            family.clear();
            family.push_str(name);
            kind = match om_type {
                "counter" => "counter",
                "gauge" => "gauge",
                "histogram" => "histogram",
                "summary" => "summary",
                "info" => "info",
                "stateset" => "stateset",
                _ => "untyped",
            };
            let (sample_name, prom_type) = match kind {
                "counter" => (format!("{name}_total"), Some("counter")),
                "info" => (format!("{name}_info"), Some("gauge")),
                "stateset" => (name.to_string(), Some("gauge")),
                "untyped" => (name.to_string(), None),
                other => (name.to_string(), Some(other)),
            };
            if let Some((help_name, text)) = help.take() {
                if help_name == name {
                    out.push_str("# HELP ");
                    out.push_str(&sample_name);
                    out.push(' ');
                    // OpenMetrics escapes `"` in HELP; 0.0.4 does not.
                    out.push_str(&text.replace("\\\"", "\""));
                    out.push('\n');
                }
            }
            if let Some(t) = prom_type {
                out.push_str("# TYPE ");
                out.push_str(&sample_name);
                out.push(' ');
                out.push_str(t);
                out.push('\n');
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            // `# UNIT`, `# EOF`, anything else OpenMetrics-only.
            continue;
        }
        let sample = strip_exemplar(line);
        let name_end = sample.find(['{', ' ']).unwrap_or(sample.len());
        let name = &sample[..name_end];
        let created = name
            .strip_prefix(family.as_str())
            .is_some_and(|s| s == "_created");
        if created && matches!(kind, "counter" | "histogram" | "summary") {
            continue;
        }
        out.push_str(sample);
        out.push('\n');
    }
    out
}

/// A sample line without its exemplar (` # {labels} value [timestamp]`),
/// which may only follow the label set and the value.
fn strip_exemplar(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut in_quotes = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b'#' if !in_quotes && i > 0 && bytes[i - 1] == b' ' => {
                return line[..i].trim_end();
            }
            _ => {}
        }
        i += 1;
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_choose_the_format() {
        use Format::*;
        let cases: &[(Option<&str>, Format)] = &[
            (None, OpenMetrics),
            (Some(""), OpenMetrics),
            (Some("*/*"), OpenMetrics),
            // Prometheus 2.x.
            (
                Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
                OpenMetrics,
            ),
            // Prometheus 3 limited to the classic text format, and older
            // scrapers.
            (Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1"), Prometheus),
            (Some("text/plain;version=0.0.4"), Prometheus),
            (Some("text/plain"), Prometheus),
            (Some("Text/Plain; charset=utf-8"), Prometheus),
            (Some("text/plain;q=0.9, application/openmetrics-text"), OpenMetrics),
            (Some("text/plain, application/openmetrics-text;q=0.5"), Prometheus),
            // Equal preference: OpenMetrics, the richer one.
            (Some("text/plain, application/openmetrics-text"), OpenMetrics),
            (Some("text/plain;q=0"), OpenMetrics),
            (Some("text/plain;q=nonsense"), OpenMetrics),
            (Some("text/html,application/xhtml+xml,*/*;q=0.8"), OpenMetrics),
        ];
        for (accept, want) in cases {
            assert_eq!(Format::from_accept(*accept), *want, "Accept: {accept:?}");
        }
    }

    /// What prometheus-client writes for a counter, a unit counter, a
    /// labelled counter, a gauge and a histogram with a unit.
    fn real_output() -> String {
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::gauge::Gauge;
        use prometheus_client::metrics::histogram::Histogram;
        use prometheus_client::registry::{Registry, Unit};

        let mut registry = Registry::with_prefix("wsgate");
        let plain: Counter = Counter::default();
        plain.inc_by(3);
        registry.register("messages_in", "Inbound data messages", plain);
        let bytes: Counter = Counter::default();
        bytes.inc_by(205);
        registry.register_with_unit(
            "messages_in",
            "Inbound \"payload\" bytes",
            Unit::Bytes,
            bytes,
        );
        let closes = Family::<Vec<(String, String)>, Counter>::default();
        closes
            .get_or_create(&vec![("code".into(), "1000".into())])
            .inc();
        registry.register("closes", "Connections closed, by close code", closes);
        let open: Gauge = Gauge::default();
        open.set(2);
        registry.register("connections_open", "Open now", open);
        let rtt = Histogram::new([0.001, 0.01]);
        rtt.observe(0.0005);
        rtt.observe(0.5);
        registry.register_with_unit("ping_rtt", "Ping round trip", Unit::Seconds, rtt);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encodes");
        out
    }

    #[test]
    fn real_openmetrics_output_becomes_text_0_0_4() {
        let om = real_output();
        assert!(
            om.contains("# UNIT wsgate_messages_in_bytes bytes\n"),
            "{om}"
        );
        assert!(om.ends_with("# EOF\n"), "{om}");
        let text = to_prometheus_text(&om);
        let want = "\
# HELP wsgate_messages_in_total Inbound data messages.
# TYPE wsgate_messages_in_total counter
wsgate_messages_in_total 3
# HELP wsgate_messages_in_bytes_total Inbound \"payload\" bytes.
# TYPE wsgate_messages_in_bytes_total counter
wsgate_messages_in_bytes_total 205
# HELP wsgate_closes_total Connections closed, by close code.
# TYPE wsgate_closes_total counter
wsgate_closes_total{code=\"1000\"} 1
# HELP wsgate_connections_open Open now.
# TYPE wsgate_connections_open gauge
wsgate_connections_open 2
# HELP wsgate_ping_rtt_seconds Ping round trip.
# TYPE wsgate_ping_rtt_seconds histogram
wsgate_ping_rtt_seconds_sum 0.5005
wsgate_ping_rtt_seconds_count 2
wsgate_ping_rtt_seconds_bucket{le=\"0.001\"} 1
wsgate_ping_rtt_seconds_bucket{le=\"0.01\"} 1
wsgate_ping_rtt_seconds_bucket{le=\"+Inf\"} 2
";
        assert_eq!(text, want);
    }

    #[test]
    fn created_samples_exemplars_info_and_unknown_types_are_rewritten() {
        let om = "\
# HELP a Requests.
# TYPE a counter
a_total{path=\"/x # y\"} 7 # {trace=\"ab\"} 1.0 1700000000.0
a_created{path=\"/x # y\"} 1700000000.0
# HELP build Build.
# TYPE build info
build_info{version=\"1.2\"} 1
# TYPE mystery unknown
mystery 4
# EOF
";
        let want = "\
# HELP a_total Requests.
# TYPE a_total counter
a_total{path=\"/x # y\"} 7
# HELP build_info Build.
# TYPE build_info gauge
build_info{version=\"1.2\"} 1
mystery 4
";
        assert_eq!(to_prometheus_text(om), want);
    }
}
