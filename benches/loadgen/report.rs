//! The result of a run: one flat JSON object on one line (what the comparison script
//! parses) and the same figures as a human-readable line.

use hdrhistogram::Histogram;
use std::fmt::Write;

pub struct Report {
    scenario: String,
    ok: bool,
    problems: Vec<String>,
    figures: Vec<(String, f64)>,
}

impl Report {
    pub fn new(scenario: &str) -> Report {
        Report {
            scenario: scenario.to_string(),
            ok: true,
            problems: Vec::new(),
            figures: Vec::new(),
        }
    }

    pub fn ok(&self) -> bool {
        self.ok
    }

    pub fn add(&mut self, name: &str, value: f64) {
        self.figures.push((name.to_string(), value));
    }

    /// A failed check (lost or duplicated messages): the run exits non-zero.
    pub fn fail(&mut self, problem: String) {
        self.ok = false;
        self.problems.push(problem);
    }

    /// p50, p99, p99.9 and max of a µs histogram, as `<prefix>_p50_us` and so on.
    pub fn percentiles(&mut self, prefix: &str, h: &Histogram<u64>) {
        for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)] {
            self.add(
                &format!("{prefix}_{name}_us"),
                h.value_at_quantile(q) as f64,
            );
        }
        self.add(&format!("{prefix}_max_us"), h.max() as f64);
    }

    /// VmRSS and VmHWM of the broker's process, when its pid was given.
    pub fn memory(&mut self, pid: Option<u32>, when: &str) {
        if let Some((rss, hwm)) = pid.and_then(read_memory) {
            self.add(&format!("rss_{when}_kb"), rss as f64);
            self.add(&format!("hwm_{when}_kb"), hwm as f64);
        }
    }

    /// Adds `name`: the broker's RSS growth since `before` (a `read_memory` reading), in
    /// KiB, divided by `count`.
    pub fn growth_per(
        &mut self,
        pid: Option<u32>,
        before: Option<(u64, u64)>,
        count: u64,
        name: &str,
    ) {
        if let (Some((rss0, _)), Some((rss1, _))) = (before, pid.and_then(read_memory)) {
            self.add(name, rss1.saturating_sub(rss0) as f64 / count.max(1) as f64);
        }
    }

    pub fn json(&self) -> String {
        let mut s = format!("{{\"scenario\":\"{}\",\"ok\":{}", self.scenario, self.ok);
        for (name, value) in &self.figures {
            let _ = write!(s, ",\"{name}\":{}", number(*value));
        }
        let problems: Vec<String> = self
            .problems
            .iter()
            .map(|p| format!("\"{}\"", p.replace('"', "'")))
            .collect();
        let _ = write!(s, ",\"problems\":[{}]}}", problems.join(","));
        s
    }

    pub fn human(&self) -> String {
        let mut s = format!(
            "{}: {}",
            self.scenario,
            if self.ok { "ok" } else { "FAILED" }
        );
        for (name, value) in &self.figures {
            let _ = write!(s, ", {name} {}", number(*value));
        }
        for p in &self.problems {
            let _ = write!(s, "; {p}");
        }
        s
    }
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v.abs() < 10.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.1}")
    }
}

/// (VmRSS, VmHWM) in kB from /proc/PID/status.
pub fn read_memory(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}
