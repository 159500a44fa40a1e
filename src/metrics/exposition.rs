//! The Prometheus text exposition format, version 0.0.4: `# HELP` and `# TYPE` once per
//! metric family, then one sample per line, label values escaped.

use std::fmt::Write;

use super::histogram::HistogramSnapshot;

/// The `Content-Type` of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The kind of a metric family.
#[derive(Debug, Clone, Copy)]
pub enum Type {
    Counter,
    Gauge,
    Histogram,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
        }
    }
}

/// Builds one exposition document.
#[derive(Default)]
pub struct Exposition {
    out: String,
    prefix: String,
}

impl Exposition {
    /// Every metric name is written with `prefix` in front (Qdrant's `service.metrics_prefix`).
    pub fn with_prefix(prefix: &str) -> Exposition {
        Exposition {
            out: String::new(),
            prefix: prefix.to_string(),
        }
    }

    /// Starts a family; its samples follow.
    pub fn family(&mut self, name: &str, kind: Type, help: &str) -> &mut Self {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {}{name} {help}", self.prefix);
        let _ = writeln!(self.out, "# TYPE {}{name} {}", self.prefix, kind.name());
        self
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Self {
        let _ = write!(self.out, "{}{name}", self.prefix);
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", number(value));
        self
    }

    /// A whole histogram (`_bucket`, `_sum`, `_count`) of the current family.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        histogram: &HistogramSnapshot,
    ) -> &mut Self {
        for (bound, count) in &histogram.buckets {
            let _ = write!(self.out, "{}{name}_bucket", self.prefix);
            write_labels(&mut self.out, labels, Some(&number(*bound)));
            let _ = writeln!(self.out, " {count}");
        }
        let _ = write!(self.out, "{}{name}_bucket", self.prefix);
        write_labels(&mut self.out, labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", histogram.count);
        let _ = write!(self.out, "{}{name}_sum", self.prefix);
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", number(histogram.sum_seconds));
        let _ = write!(self.out, "{}{name}_count", self.prefix);
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", histogram.count);
        self
    }

    /// The document.
    pub fn finish(self) -> String {
        self.out
    }
}

fn write_labels(out: &mut String, labels: &[(&str, &str)], le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (name, value) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{name}=\"{}\"", escape(value));
    }
    out.push('}');
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if value.is_nan() {
        "NaN".to_string()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_histograms_complete() {
        let mut e = Exposition::with_prefix("");
        e.family("x_total", Type::Counter, "things").sample(
            "x_total",
            &[("name", "a\"b\\c\nd")],
            3.0,
        );
        let h = HistogramSnapshot {
            buckets: vec![(0.5, 1)],
            count: 2,
            sum_seconds: 1.5,
        };
        e.family("d_seconds", Type::Histogram, "durations")
            .histogram("d_seconds", &[("k", "v")], &h);
        let text = e.finish();
        assert!(text.contains("x_total{name=\"a\\\"b\\\\c\\nd\"} 3\n"));
        assert!(text.contains("d_seconds_bucket{k=\"v\",le=\"0.5\"} 1\n"));
        assert!(text.contains("d_seconds_bucket{k=\"v\",le=\"+Inf\"} 2\n"));
        assert!(text.contains("d_seconds_sum{k=\"v\"} 1.5\n"));
        assert!(text.contains("d_seconds_count{k=\"v\"} 2\n"));
    }
}
