//! Idle reconcile pass over 1,000 instances on the in-memory runtime: what one pass costs in
//! berth itself (reading and validating 1,000 files, planning, status) when nothing changes.
//! Run: cargo bench --bench idle_pass [-- N]

use berth::{desired, reconcile::Controller, runtime::fake::FakeRuntime, services::Services, spec};
use std::{path::Path, sync::Arc, time::Instant};

fn host(dir: &Path, n: usize) -> desired::HostConfig {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let yaml = format!(
        "state_dir: state\ntemplates_dir: {}\ninstances_dir: instances\nnetwork:\n  subnet_pool: 10.0.0.0/12\nports:\n  first: 10000\n  last: {}\n",
        repo.join("templates").display(),
        10000 + n + 100
    );
    let file = spec::parse_yaml::<spec::host::HostFile>(Path::new("berth.yaml"), &yaml).unwrap();
    desired::host::build(&file, dir).unwrap()
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("instances")).unwrap();
    for i in 0..n {
        let t = format!("t{i:04}");
        std::fs::write(
            dir.path().join(format!("instances/{t}.yaml")),
            format!("tenant: {t}\ntemplate: demo\ndomains: [{t}.example.test]\nparameters:\n  site_title: Tenant {i}\n"),
        )
        .unwrap();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let checker = Arc::new(berth::probe::FakeChecker::default());
        let svc = Services::with_checker(Arc::new(FakeRuntime::new()), host(dir.path(), n), checker)
            .unwrap();
        let ctl = Controller::new(Arc::new(svc));
        let t0 = Instant::now();
        let mut passes = 0;
        while ctl.pass().await.unwrap().steps > 0 {
            ctl.services().probes().tick().await;
            passes += 1;
        }
        println!("provisioned {n} instances on the fake runtime in {passes} passes, {:.0} ms", t0.elapsed().as_secs_f64() * 1e3);
        let mut ms: Vec<f64> = Vec::new();
        ctl.services().probes().tick().await;
        for _ in 0..20 {
            let r = ctl.pass().await.unwrap();
            assert_eq!(r.mutations, 0, "idle pass mutated");
            ms.push(r.duration_ms);
        }
        ms.sort_by(f64::total_cmp);
        println!(
            "idle pass, {n} instances (fake runtime), 20 passes: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms, per instance {:.1} µs, mutations 0",
            ms[10], ms[18], ms[19], ms[10] * 1000.0 / n as f64
        );
    });
}
