//! The end of a run: a table for people, or one JSON object for machines,
//! on stdout; and the verdict (a run whose results show a server bug, such
//! as a message lost without a close, exits non-zero after reporting).

use serde_json::{json, Value};

/// What a mode measured.
#[derive(Debug, Clone)]
pub struct Summary {
    pub mode: &'static str,
    /// The run's parameters, as given or defaulted.
    pub params: Value,
    /// The measurements, with units in the key names.
    pub results: Value,
    /// The table rows: label and value.
    pub rows: Vec<(String, String)>,
    /// Set when the results show the target misbehaving.
    pub failure: Option<String>,
}

impl Summary {
    pub fn new(mode: &'static str, params: Value, results: Value) -> Summary {
        Summary {
            mode,
            params,
            results,
            rows: Vec::new(),
            failure: None,
        }
    }

    /// Adds a table row.
    pub fn row(&mut self, label: &str, value: impl Into<String>) -> &mut Self {
        self.rows.push((label.to_string(), value.into()));
        self
    }

    /// The JSON object `--json` prints.
    pub fn json(&self) -> Value {
        json!({
            "mode": self.mode,
            "params": self.params,
            "results": self.results,
            "ok": self.failure.is_none(),
            "failure": self.failure,
        })
    }

    /// The table.
    pub fn table(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|(l, _)| l.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = format!("wsgate bench {}\n", self.mode);
        for (label, value) in &self.rows {
            out.push_str(&format!("  {label:<width$}  {value}\n"));
        }
        if let Some(f) = &self.failure {
            out.push_str(&format!("  FAILED: {f}\n"));
        }
        out
    }

    pub fn print(&self, json: bool) -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string(&self.json())?);
        } else {
            print!("{}", self.table());
        }
        Ok(())
    }

    /// An error when the results show a failure.
    pub fn verdict(&self) -> anyhow::Result<()> {
        match &self.failure {
            Some(f) => anyhow::bail!("{f}"),
            None => Ok(()),
        }
    }
}

/// A rate for the table: `12,345/s`.
pub fn rate(per_s: f64) -> String {
    format!("{}/s", thousands(per_s.round() as u64))
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Rounds to two decimals for JSON.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_json() {
        let mut s = Summary::new("echo", json!({"conns": 2}), json!({"msgs_per_s": 10.0}));
        s.row("conns", "2").row("throughput", rate(12_345.4));
        let t = s.table();
        assert!(t.contains("wsgate bench echo"), "{t}");
        assert!(t.contains("  conns       2\n"), "{t}");
        assert!(t.contains("throughput  12,345/s"), "{t}");
        let j = s.json();
        assert_eq!(j["mode"], "echo");
        assert_eq!(j["params"]["conns"], 2);
        assert_eq!(j["ok"], true);
        s.verdict().expect("ok");
        s.failure = Some("lost 3".into());
        assert!(s.table().contains("FAILED: lost 3"));
        assert_eq!(s.json()["ok"], false);
        assert!(s.verdict().is_err());
    }

    #[test]
    fn formats_numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(round2(1.23456), 1.23);
    }
}
