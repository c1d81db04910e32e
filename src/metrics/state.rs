//! Scrape-time figures from berth's own state: certificates, the fleet upgrade, scheduled
//! jobs and backups, and whether the engine answers.

use super::encode;
use crate::proxy::meter::TenantLabel;
use crate::{certs::CertManager, services::Cx, upgrade::Fleet};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet},
    registry::Unit,
};
use serde::Serialize;
use std::{collections::BTreeMap, sync::Arc};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertLabels {
    domain: String,
    tenant: String,
    issuer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpgradeLabels {
    app: String,
    to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
struct UpgradePhaseLabels {
    app: String,
    to: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpgradeStatusLabels {
    app: String,
    to: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RepoLabels {
    tenant: String,
    repository: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RepoLabel {
    repository: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    tenant: String,
    job: String,
}

pub struct State {
    pub cx: Cx,
    pub fleet: Fleet,
    pub certs: Option<Arc<CertManager>>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State").finish_non_exhaustive()
    }
}

/// The serde name of an enum value (`rolled_back`, `running` …).
pub(super) fn name_of(v: impl Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

pub(super) fn flag(b: bool) -> f64 {
    f64::from(u8::from(b))
}

impl State {
    fn certs(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let rows = self.certs.as_ref().map(|c| c.rows()).unwrap_or_default();
        let labels = |r: &crate::certs::manager::CertRow| CertLabels {
            domain: r.domain.clone(),
            tenant: r.tenant.clone(),
            issuer: r.issuer.clone(),
        };
        encode::gauges(
            enc,
            "berth_certificate_expiry_timestamp",
            "When the certificate served for the domain expires",
            Some(Unit::Seconds),
            rows.iter().map(|r| (labels(r), r.not_after as f64)),
        )?;
        encode::gauges(
            enc,
            "berth_certificate_renewal_ok",
            "0 while the last renewal attempt for the domain failed (it is retried with backoff)",
            None,
            rows.iter()
                .map(|r| (labels(r), flag(r.last_error.is_none()))),
        )
    }

    fn upgrade(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let st = self.fleet.upgrades.status();
        let labels = |s: &crate::upgrade::state::UpgradeState| UpgradeLabels {
            app: s.app.clone(),
            to: s.to.clone(),
        };
        encode::gauges(
            enc,
            "berth_upgrade_running",
            "1 while a fleet upgrade runs (0: paused, halted or finished)",
            None,
            st.iter().map(|s| {
                (
                    labels(s),
                    flag(s.status == crate::upgrade::state::FleetStatus::Running),
                )
            }),
        )?;
        encode::gauges(
            enc,
            "berth_upgrade_status",
            "1 for the fleet upgrade's status now (running, paused, halted, aborted, done)",
            None,
            st.iter().map(|s| {
                let l = UpgradeStatusLabels {
                    app: s.app.clone(),
                    to: s.to.clone(),
                    status: name_of(s.status),
                };
                (l, 1.0)
            }),
        )?;
        encode::gauges(
            enc,
            "berth_upgrade_wave",
            "Wave of the fleet upgrade running or next (counted from 1)",
            None,
            st.iter()
                .map(|s| (labels(s), (s.wave + 1).min(s.waves.len()) as f64)),
        )?;
        encode::gauges(
            enc,
            "berth_upgrade_waves",
            "Waves in the fleet upgrade's plan",
            None,
            st.iter().map(|s| (labels(s), s.waves.len() as f64)),
        )?;
        let mut by_phase = BTreeMap::<UpgradePhaseLabels, f64>::new();
        if let Some(s) = &st {
            for p in s.tenants.values() {
                let l = UpgradePhaseLabels {
                    app: s.app.clone(),
                    to: s.to.clone(),
                    phase: name_of(p.phase),
                };
                *by_phase.entry(l).or_default() += 1.0;
            }
        }
        encode::gauges(
            enc,
            "berth_upgrade_tenants",
            "Tenants of the fleet upgrade by phase (pending, done, rolled_back …)",
            None,
            by_phase,
        )
    }

    fn jobs_and_backups(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let desired = self.cx.passes.desired();
        let mut jobs = vec![];
        for t in desired.instances.keys() {
            for (job, rec) in self.fleet.jobs.jobs(t) {
                let l = JobLabels {
                    tenant: t.clone(),
                    job,
                };
                jobs.push((l, rec));
            }
        }
        encode::gauges(
            enc,
            "berth_job_last_success_timestamp",
            "When the job last exited 0",
            Some(Unit::Seconds),
            jobs.iter()
                .filter_map(|(l, r)| Some((l.clone(), r.last_success? as f64))),
        )?;
        encode::gauges(
            enc,
            "berth_job_last_exit_code",
            "Exit status of the job's last run (-1: it could not be started)",
            None,
            jobs.iter().filter_map(|(l, r)| {
                let last = r.runs.back()?;
                Some((l.clone(), last.exit_code.unwrap_or(-1) as f64))
            }),
        )?;
        encode::counters(
            enc,
            "berth_job_skipped_overlaps",
            "Times the job's schedule fired while its previous run still went",
            None,
            jobs.iter()
                .map(|(l, r)| (l.clone(), r.skipped_overlap as f64)),
        )?;
        let backups: Vec<_> = desired
            .instances
            .keys()
            .filter_map(|t| Some((t.clone(), self.fleet.backup_schedule.last(t)?)))
            .collect();
        encode::gauges(
            enc,
            "berth_backup_last_scheduled_timestamp",
            "When the tenant's last scheduled backup ran",
            Some(Unit::Seconds),
            backups
                .iter()
                .map(|(t, b)| (TenantLabel { tenant: t.clone() }, b.at as f64)),
        )?;
        encode::gauges(
            enc,
            "berth_backup_last_scheduled_ok",
            "1 when the tenant's last scheduled backup was written",
            None,
            backups
                .iter()
                .map(|(t, b)| (TenantLabel { tenant: t.clone() }, flag(b.error.is_none()))),
        )
    }

    /// Each tenant's copies in each off-host repository, from its `offsite.json`.
    fn offsite(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let rows: Vec<_> = self
            .fleet
            .backups
            .offsite_rows()
            .into_iter()
            .map(|(tenant, repository, r)| (RepoLabels { tenant, repository }, r))
            .collect();
        encode::gauges(
            enc,
            "berth_offsite_backup_last_success_timestamp",
            "When a backup of the tenant last landed in the repository",
            Some(Unit::Seconds),
            rows.iter()
                .filter_map(|(l, r)| Some((l.clone(), r.last_success? as f64))),
        )?;
        encode::gauges(
            enc,
            "berth_offsite_backup_ok",
            "1 when the tenant's last copy to the repository landed",
            None,
            rows.iter().map(|(l, r)| {
                let ok = r.last_success.unwrap_or(0) >= r.last_failure.unwrap_or(0)
                    && r.last_success.is_some();
                (l.clone(), flag(ok))
            }),
        )?;
        encode::counters(
            enc,
            "berth_offsite_backup_failures",
            "Copies of the tenant's backups the repository did not take",
            None,
            rows.iter().map(|(l, r)| (l.clone(), r.failures as f64)),
        )?;
        encode::gauges(
            enc,
            "berth_offsite_backup_last_added",
            "What the last copy added to the repository, after deduplication",
            Some(Unit::Bytes),
            rows.iter().map(|(l, r)| (l.clone(), r.bytes_added as f64)),
        )?;
        encode::gauges(
            enc,
            "berth_offsite_backup_last_duration",
            "How long the last copy took",
            Some(Unit::Seconds),
            rows.iter().map(|(l, r)| (l.clone(), r.seconds)),
        )?;
        // Only repositories configured with a check now: one removed is not alerted on.
        let mut checks = self.fleet.repo_checks.records();
        checks.retain(|repo, _| self.fleet.backups.is_checked(repo));
        let label = |repo: &String| RepoLabel {
            repository: repo.clone(),
        };
        encode::gauges(
            enc,
            "berth_offsite_check_ok",
            "1 when the repository's last scheduled restic check passed",
            None,
            checks.iter().map(|(repo, c)| (label(repo), flag(c.ok))),
        )?;
        encode::gauges(
            enc,
            "berth_offsite_check_last_timestamp",
            "When the repository's last scheduled restic check ended",
            Some(Unit::Seconds),
            checks.iter().map(|(repo, c)| (label(repo), c.at as f64)),
        )
    }

    fn agent(&self, enc: &mut DescriptorEncoder) -> std::fmt::Result {
        let board = self.cx.passes.board();
        encode::gauges(
            enc,
            "berth_engine_up",
            "1 when the last reconcile pass reached the Docker engine",
            None,
            [(encode::NO_LABELS, flag(board.engine_error.is_none()))],
        )?;
        let pulls = self.cx.svc.pulls().pulling();
        encode::gauges(
            enc,
            "berth_image_pull_bytes",
            "Bytes downloaded so far by each image pull under way",
            None,
            pulls.values().map(|p| {
                (
                    ImageLabel {
                        image: p.image.clone(),
                    },
                    p.bytes as f64,
                )
            }),
        )?;
        encode::gauges(
            enc,
            "berth_image_pull_layers_done",
            "Layers finished by each image pull under way",
            None,
            pulls.values().map(|p| {
                (
                    ImageLabel {
                        image: p.image.clone(),
                    },
                    p.layers_done as f64,
                )
            }),
        )?;
        let egress = self.cx.svc.egress().map(|e| e.state()).unwrap_or_default();
        encode::gauges(
            enc,
            "berth_egress_enforced",
            "1 when the tenants' egress policy is in the kernel as of the last pass",
            None,
            [(encode::NO_LABELS, flag(egress.enforced))],
        )?;
        encode::gauges(
            enc,
            "berth_egress_rules",
            "Rules in berth's egress chains",
            None,
            [(encode::NO_LABELS, egress.rules as f64)],
        )?;
        encode::gauges(
            enc,
            "berth_spec_errors",
            "Template and instance files that do not validate (nothing is changed for them)",
            None,
            [(encode::NO_LABELS, board.spec_errors.len() as f64)],
        )
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ImageLabel {
    image: String,
}

impl Collector for State {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        self.certs(&mut enc)?;
        self.upgrade(&mut enc)?;
        self.jobs_and_backups(&mut enc)?;
        self.offsite(&mut enc)?;
        self.agent(&mut enc)
    }
}
