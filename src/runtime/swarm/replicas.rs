//! A service's replicas and secrets: each secret made once per content (named by its digest),
//! and a service scaled to 0 or 1 with a wait for its task.

use super::{SwarmRuntime, calls, err, filters, label_of};
use crate::runtime::{
    RuntimeError, labels,
    spec::ContainerSpec,
    swarm::service::{FOR_LABEL, FileSecret},
};
use bollard::{
    models::{SecretSpec, ServiceSpec},
    query_parameters::{InspectServiceOptions, ListSecretsOptions, UpdateServiceOptions},
};
use std::time::Duration;

impl SwarmRuntime {
    /// Ensures a secret per rendered file of `s`; returns them with their ids.
    pub(super) async fn secrets(
        &self,
        s: &ContainerSpec,
    ) -> Result<Vec<(FileSecret, String)>, RuntimeError> {
        let ns = label_of(&s.labels, labels::NAMESPACE);
        let mut out = vec![];
        for m in s
            .mounts
            .iter()
            .filter(|m| m.kind == crate::runtime::spec::MountKind::File)
        {
            let data = std::fs::read(&m.source).map_err(|e| RuntimeError::Call {
                kind: "file",
                name: m.source.clone(),
                message: e.to_string(),
            })?;
            let f = super::service::file_secret(&ns, &s.name, &m.target, data);
            let id = self.ensure_secret(s, &f).await?;
            out.push((f, id));
        }
        Ok(out)
    }

    pub(super) async fn ensure_secret(
        &self,
        s: &ContainerSpec,
        f: &FileSecret,
    ) -> Result<String, RuntimeError> {
        let found = self
            .manager
            .list_secrets(Some(ListSecretsOptions {
                filters: filters("name", f.name.clone()),
            }))
            .await
            .map_err(err("secret", &f.name))?;
        if let Some(id) = found
            .into_iter()
            .find(|x| x.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(&f.name))
            .and_then(|x| x.id)
        {
            return Ok(id);
        }
        self.count();
        let mut l: std::collections::HashMap<String, String> =
            s.labels.clone().into_iter().collect();
        l.remove(labels::SPEC_HASH);
        l.insert(FOR_LABEL.into(), s.name.clone());
        use base64::Engine as _;
        let spec = SecretSpec {
            name: Some(f.name.clone()),
            labels: Some(l),
            data: Some(base64::engine::general_purpose::STANDARD.encode(&f.data)),
            ..Default::default()
        };
        let r = self.manager.create_secret(spec).await;
        r.map(|r| r.id).map_err(err("secret", &f.name))
    }

    /// Sets a service's replica count (0 or 1), then waits for its task to match.
    pub(super) async fn scale(
        &self,
        name: &str,
        replicas: i64,
        wait: Duration,
    ) -> Result<(), RuntimeError> {
        // The manager refuses an update made against an older version of the service ("update
        // out of sequence", e.g. right after it was created): read it again and retry.
        let mut tries = 0;
        let now = loop {
            match self.set_replicas(name, replicas).await {
                Err(RuntimeError::Call { message, .. })
                    if message.contains("out of sequence") && tries < 5 =>
                {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                r => break r?,
            }
        };
        let Some(now) = now else { return Ok(()) };
        // Already scaled: a task that is not there yet (its node is down, say) is the
        // status's to report, not a reason to hold this pass for long.
        let wait = if now == Some(replicas) {
            wait.min(Duration::from_secs(5))
        } else {
            wait
        };
        calls::wait_tasks(&self.manager, name, replicas > 0, wait).await
    }

    /// Updates the service's replica count if it differs; returns the count it had (None:
    /// there is no such service, and 0 was wanted).
    pub(super) async fn set_replicas(
        &self,
        name: &str,
        replicas: i64,
    ) -> Result<Option<Option<i64>>, RuntimeError> {
        let svc = match self
            .manager
            .inspect_service(name, None::<InspectServiceOptions>)
            .await
        {
            Err(e) if replicas == 0 && crate::runtime::docker::status_of(&e) == Some(404) => {
                return Ok(None);
            }
            r => r.map_err(err("service", name))?,
        };
        let mut spec: ServiceSpec = svc.spec.unwrap_or_default();
        let now = spec
            .mode
            .as_ref()
            .and_then(|m| m.replicated.as_ref())
            .and_then(|r| r.replicas);
        if now != Some(replicas) {
            self.count();
            if let Some(r) = spec.mode.as_mut().and_then(|m| m.replicated.as_mut()) {
                r.replicas = Some(replicas);
            }
            let version = svc.version.and_then(|v| v.index).unwrap_or(0) as i32;
            let opts = UpdateServiceOptions {
                version,
                ..Default::default()
            };
            self.manager
                .update_service(name, spec, opts, None)
                .await
                .map_err(err("service", name))?;
        }
        Ok(Some(now))
    }
}
