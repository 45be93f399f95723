//! `/metrics` read the way Prometheus reads it: the exposition text parsed by a real parser
//! (`prometheus-parse`), then looked up by metric name and labels.

use prometheus_parse::{Sample, Scrape, Value};

use crate::http::http;

/// One scrape of `/metrics`.
#[derive(Debug)]
pub struct Metrics {
    samples: Vec<Sample>,
    /// The text as served.
    pub text: String,
}

impl Metrics {
    /// `GET /metrics` on `127.0.0.1:port`, parsed; panics unless it is a 200 that parses.
    pub fn scrape(port: u16) -> Metrics {
        let r = http(port, "GET", "/metrics", &[], b"");
        assert_eq!(r.status, 200, "GET /metrics: {}", r.body);
        let lines = r.body.lines().map(|line| Ok(line.to_owned()));
        let scrape = Scrape::parse(lines).unwrap_or_else(|e| panic!("unparsable /metrics: {e}"));
        Metrics {
            samples: scrape.samples,
            text: r.body,
        }
    }

    /// The value of the sample `name` whose labels include `labels`; panics when there is none
    /// (a missing series is a failure, not a zero).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels)
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in /metrics:\n{}", self.text))
    }

    /// [`Metrics::value`] without the panic.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .filter(|sample| sample.metric == name)
            .filter(|sample| labels.iter().all(|(k, v)| sample.labels.get(k) == Some(*v)))
            .find_map(|sample| match &sample.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
                _ => None,
            })
    }

    /// The sum over every sample `name` whose labels include `labels`.
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|sample| sample.metric == name)
            .filter(|sample| labels.iter().all(|(k, v)| sample.labels.get(k) == Some(*v)))
            .map(|sample| match &sample.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                _ => 0.0,
            })
            .sum()
    }

    /// Every sample name (for messages).
    pub fn names(&self) -> Vec<&str> {
        self.samples
            .iter()
            .map(|sample| sample.metric.as_str())
            .collect()
    }
}
