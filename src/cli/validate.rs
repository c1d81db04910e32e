//! `berth validate [DIR]`: every check, offline, with every problem listed.

use crate::{desired, spec};
use anyhow::Result;
use std::path::Path;

/// Loads DIR/berth.yaml when present (else defaults rooted at DIR) and checks all templates
/// and instances. Returns the exit code: 0 clean, 1 problems.
pub fn run(dir: &Path) -> Result<i32> {
    let config = dir.join("berth.yaml");
    let host = if config.exists() {
        match desired::host::load(&config) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("{e}");
                return Ok(1);
            }
        }
    } else {
        let file = spec::parse_yaml::<spec::host::HostFile>(
            Path::new("berth.yaml"),
            "state_dir: /var/lib/berth\n",
        )
        .expect("built-in defaults parse");
        desired::host::build(&file, dir).expect("built-in defaults are valid")
    };
    let loaded = desired::load(&host);
    if !loaded.errors.is_empty() {
        eprintln!("{}", loaded.errors);
        eprintln!("{} problem(s) found", loaded.errors.0.len());
        return Ok(1);
    }
    println!(
        "ok: {} template(s), {} instance(s)",
        loaded.templates.len(),
        loaded.desired.instances.len()
    );
    Ok(0)
}
