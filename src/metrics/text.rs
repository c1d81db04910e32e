//! OpenMetrics text to the classic Prometheus text format 0.0.4: counters are described under
//! their `_total` sample name, and `# UNIT` and `# EOF` lines go (the classic format has
//! neither). Everything else is the same in both.

use std::collections::HashSet;

pub fn classic(open: &str) -> String {
    let counters: HashSet<&str> = open
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open.len());
    for line in open.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let described = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        match described {
            Some(l) => out.push_str(l.trim_end()),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_described_under_their_total_name_and_openmetrics_only_lines_go() {
        let open = "# HELP berth_cpu_seconds CPU time used.\n# TYPE berth_cpu_seconds counter\n\
                    # UNIT berth_cpu_seconds seconds\nberth_cpu_seconds_total{tenant=\"a\"} 1.5\n\
                    # HELP berth_up Up.\n# TYPE berth_up gauge\nberth_up 1\n# EOF\n";
        assert_eq!(
            classic(open),
            "# HELP berth_cpu_seconds_total CPU time used.\n# TYPE berth_cpu_seconds_total counter\n\
             berth_cpu_seconds_total{tenant=\"a\"} 1.5\n\
             # HELP berth_up Up.\n# TYPE berth_up gauge\nberth_up 1\n"
        );
    }
}
