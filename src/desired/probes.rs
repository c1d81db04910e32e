//! The `probes:` section of the host config, validated: how often berth probes each tenant, how long it
//! waits, and how many results in a row change a tenant's health.

pub use crate::spec::probes::ProbesFile;
use crate::spec::units;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct ProbeConfig {
    pub interval: Duration,
    pub fast_interval: Duration,
    pub timeout: Duration,
    pub failures: u32,
    pub successes: u32,
    pub start_period: Duration,
    pub concurrency: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            interval: Duration::from_secs(30),
            fast_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(3),
            failures: 3,
            successes: 1,
            start_period: Duration::from_secs(120),
            concurrency: 32,
        }
    }
}

impl ProbeConfig {
    /// The longest a healthy target that stops answering is still shown healthy: the rest of
    /// its slow interval, then `failures` fast probes that each may wait out the timeout.
    pub fn detection_window(&self) -> Duration {
        self.interval.mul_f64(1.1) + (self.fast_interval + self.timeout) * self.failures
    }
}

type FieldError = (String, String);

fn duration(
    field: &str,
    given: &Option<String>,
    range: (Duration, Duration),
    into: &mut Duration,
    errs: &mut Vec<FieldError>,
) {
    let Some(s) = given else { return };
    match units::parse_duration(s).map_err(String::from) {
        Ok(d) if d >= range.0 && d <= range.1 => *into = d,
        Ok(_) => errs.push((
            format!("probes.{field}"),
            format!("{s} is out of range ({:?}..={:?})", range.0, range.1),
        )),
        Err(e) => errs.push((format!("probes.{field}"), e)),
    }
}

fn count<T: Copy + PartialOrd + std::fmt::Display>(
    field: &str,
    given: Option<T>,
    range: (T, T),
    into: &mut T,
    errs: &mut Vec<FieldError>,
) {
    match given {
        Some(n) if n >= range.0 && n <= range.1 => *into = n,
        Some(n) => errs.push((
            format!("probes.{field}"),
            format!("{n} is out of range ({}..={})", range.0, range.1),
        )),
        None => {}
    }
}

/// The validated section, or every bad field with why.
pub fn build(f: &ProbesFile) -> Result<ProbeConfig, Vec<FieldError>> {
    let mut c = ProbeConfig::default();
    let mut errs = Vec::new();
    let (ms, s) = (Duration::from_millis, Duration::from_secs);
    duration(
        "interval",
        &f.interval,
        (s(1), s(3600)),
        &mut c.interval,
        &mut errs,
    );
    duration(
        "fast_interval",
        &f.fast_interval,
        (ms(100), s(60)),
        &mut c.fast_interval,
        &mut errs,
    );
    duration(
        "timeout",
        &f.timeout,
        (ms(100), s(60)),
        &mut c.timeout,
        &mut errs,
    );
    duration(
        "start_period",
        &f.start_period,
        (s(0), s(3600)),
        &mut c.start_period,
        &mut errs,
    );
    count("failures", f.failures, (1, 100), &mut c.failures, &mut errs);
    count(
        "successes",
        f.successes,
        (1, 100),
        &mut c.successes,
        &mut errs,
    );
    count(
        "concurrency",
        f.concurrency,
        (1, 1024),
        &mut c.concurrency,
        &mut errs,
    );
    if errs.is_empty() && c.fast_interval > c.interval {
        errs.push((
            "probes.fast_interval".into(),
            format!(
                "{:?} is longer than probes.interval ({:?})",
                c.fast_interval, c.interval
            ),
        ));
    }
    if errs.is_empty() { Ok(c) } else { Err(errs) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_and_unparsable_settings_name_their_field() {
        let f = ProbesFile {
            interval: Some("0s".into()),
            timeout: Some("soon".into()),
            concurrency: Some(0),
            ..Default::default()
        };
        let errs = build(&f).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            fields,
            ["probes.interval", "probes.timeout", "probes.concurrency"]
        );
    }

    #[test]
    fn a_fast_interval_longer_than_the_slow_one_is_refused() {
        let f = ProbesFile {
            interval: Some("2s".into()),
            fast_interval: Some("5s".into()),
            ..Default::default()
        };
        assert_eq!(build(&f).unwrap_err()[0].0, "probes.fast_interval");
    }

    #[test]
    fn defaults_detect_a_dead_app_within_two_minutes() {
        let w = build(&ProbesFile::default()).unwrap().detection_window();
        assert!(w < Duration::from_secs(120), "{w:?}");
    }
}
