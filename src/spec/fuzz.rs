//! Property-based fuzzing of spec loading (the fuzz target kept in the repo; the test suite
//! runs a bounded number of cases each time, with proptest's shrinking on failure): no input
//! panics, and every error in a text names a line and column.

use super::{host::HostFile, instance::InstanceFile, parse_yaml, template::TemplateFile};
use proptest::prelude::*;
use std::path::Path;

/// Pieces that reach the interesting corners: known keys, units at their limits, YAML
/// features (anchors, aliases, flow collections, tags, tabs), names and domains.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("tenant: ".to_string()),
        Just("template: demo\n".to_string()),
        Just("version: \"1\"\n".to_string()),
        Just("limits:\n  ".to_string()),
        Just("memory: 99999999999999999999t\n".to_string()),
        Just("disk: 1e400\n".to_string()),
        Just("cpus: -1\n".to_string()),
        Just("pids: 9223372036854775807\n".to_string()),
        Just("egress: [\"10.0.0.0/8:70000\", \"::1\"]\n".to_string()),
        Just("backups: {keep: 4294967296, schedule: \"* * *\"}\n".to_string()),
        Just("domains: [10.1.2.3, apps.example.com]\n".to_string()),
        Just("parameters: {a: &a [x, *a]}\n".to_string()),
        Just("healthcheck: {interval: 99999999999999999999h, timeout: 1e9h}\n".to_string()),
        Just("timeout: 99999999999999999999h\n".to_string()),
        Just("resync_interval: 99999999999999999999h\n".to_string()),
        Just(
            "proxy: {http: 127.0.0.1:1, timeouts: {header_read: 99999999999999999999h}}\n"
                .to_string()
        ),
        Just("network: {subnet_pool: 10.0.0.0/33, subnet_prefix: 255}\n".to_string()),
        Just("ports: {first: 65535, last: 0}\n".to_string()),
        Just("&x ".to_string()),
        Just("*x ".to_string()),
        Just("!!binary ".to_string()),
        Just("\t".to_string()),
        Just("[".to_string()),
        Just("{".to_string()),
        Just("- ".to_string()),
        Just(": ".to_string()),
        Just("\n  ".to_string()),
        Just("? ".to_string()),
        "[a-z0-9._:/ -]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..40).prop_map(|v| v.concat())
}

fn check<T: serde::de::DeserializeOwned>(src: &str) -> Result<(), TestCaseError> {
    if let Err(e) = parse_yaml::<T>(Path::new("x.yaml"), src) {
        prop_assert!(e.line >= 1 && e.column >= 1, "no place: {e} for {src:?}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn no_text_panics_a_spec_parser_and_every_error_has_a_place(src in text()) {
        check::<InstanceFile>(&src)?;
        check::<TemplateFile>(&src)?;
        check::<HostFile>(&src)?;
    }

    #[test]
    fn no_host_config_panics_validation(src in text()) {
        let file = format!("state_dir: /tmp/x\n{src}");
        if let Ok(loaded) = parse_yaml::<HostFile>(Path::new("berth.yaml"), &file)
            && let Err(errs) = crate::desired::host::build(&loaded, Path::new("/tmp"))
        {
            for e in errs.0 {
                prop_assert!(e.line >= 1, "no place: {e}");
            }
        }
    }

    #[test]
    fn no_instance_file_panics_validation(src in text()) {
        let file = format!("tenant: fz\ntemplate: demo\n{src}");
        let Ok(loaded) = parse_yaml::<InstanceFile>(Path::new("instances/fz.yaml"), &file) else {
            return Ok(());
        };
        let host = crate::fixtures::host();
        let (sources, _) = super::load_templates(&host.templates_dir);
        let templates = sources
            .into_iter()
            .filter_map(|(app, s)| Some((app.clone(), crate::desired::template::validate(&app, s).ok()?)))
            .collect();
        if let Err(errs) = crate::desired::instance::build(&loaded, "fz", &templates, &host) {
            for e in errs.0 {
                prop_assert!(e.line >= 1, "no place: {e}");
            }
        }
    }
}
