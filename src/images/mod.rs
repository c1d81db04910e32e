//! Images a tenant needs and the engine lacks are pulled in the background, one pull per image
//! however many tenants wait for it, with registry credentials from the host config; a pass
//! meanwhile plans nothing else for those tenants (no object before its images are here), and
//! shows them `pulling` with layers and bytes. A failed pull is reported once, with the
//! registry's reason, as the tenant's error (then backoff and a fresh pull).

pub mod ledger;
pub mod pins;
pub use crate::desired::image_ref as reference;
pub use crate::desired::image_ref::RegistryAuth;
pub mod report;

use crate::runtime::{PullEvent, Runtime};
use serde::Serialize;
use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
};

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("registry {registry}: cannot read password_file {path}: {reason}")]
    Credentials {
        registry: String,
        path: String,
        reason: String,
    },
    #[error("{0}")]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error("pinned {digest}: {source}")]
    PinnedPull {
        digest: String,
        source: crate::runtime::RuntimeError,
    },
    #[error("{image} is pinned to {digest} ({id}) and the registry served other content")]
    PinMoved {
        image: String,
        digest: String,
        id: String,
    },
}

/// A pull under way: layers seen and finished, bytes downloaded of those known.
#[derive(Debug, Clone, Default, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Progress {
    pub image: String,
    pub layers: usize,
    pub layers_done: usize,
    pub bytes: u64,
    pub bytes_total: u64,
}

/// One layer of a pull: bytes downloaded, bytes in all, finished.
type Layer = (u64, u64, bool);

#[derive(Debug, Clone)]
enum State {
    /// By layer id, as the engine reports them.
    Pulling(BTreeMap<String, Layer>),
    Failed(String),
}

/// What a pass learns of an image it found missing.
#[derive(Debug, Clone, PartialEq)]
pub enum Checked {
    /// A pull is under way (started now, or earlier).
    Pulling,
    /// The last pull failed; the reason is handed out once, the next check pulls again.
    Failed(String),
}

pub struct Pulls {
    rt: Arc<dyn Runtime>,
    registries: BTreeMap<String, RegistryAuth>,
    /// Registry host → the host that serves it here (`docker.io` → a pull-through cache).
    mirrors: BTreeMap<String, String>,
    /// `<state>/images.json`: what berth pulled (None in unit tests without a state dir).
    ledger: Option<PathBuf>,
    /// `<state>/image-pins.json` and its content (None: nothing is pinned).
    pins_path: Option<PathBuf>,
    pins: Mutex<pins::Pins>,
    states: Mutex<BTreeMap<String, State>>,
}

impl Pulls {
    pub fn new(
        rt: Arc<dyn Runtime>,
        registries: BTreeMap<String, RegistryAuth>,
        mirrors: BTreeMap<String, String>,
        ledger: Option<PathBuf>,
        pins_path: Option<PathBuf>,
    ) -> Arc<Pulls> {
        let pins = pins_path.as_deref().map(pins::load).unwrap_or_default();
        Arc::new(Pulls {
            rt,
            registries,
            mirrors,
            ledger,
            pins_path,
            pins: Mutex::new(pins),
            states: Mutex::default(),
        })
    }

    /// For an image a pass found missing: its pull's state, starting one if none runs.
    /// `done` is called when a started pull ends (to run a pass at once).
    pub fn check(self: &Arc<Self>, image: &str, done: impl Fn() + Send + 'static) -> Checked {
        let mut states = self.states.lock().expect("pulls lock");
        match states.get(image) {
            Some(State::Pulling(_)) => return Checked::Pulling,
            Some(State::Failed(reason)) => {
                let reason = reason.clone();
                states.remove(image);
                return Checked::Failed(reason);
            }
            None => {}
        }
        states.insert(image.into(), State::Pulling(BTreeMap::new()));
        drop(states);
        let (me, image) = (self.clone(), image.to_string());
        tokio::spawn(async move {
            me.pull(&image).await;
            done();
        });
        Checked::Pulling
    }

    /// Pulls under way, by image.
    pub fn pulling(&self) -> BTreeMap<String, Progress> {
        let states = self.states.lock().expect("pulls lock");
        states
            .iter()
            .filter_map(|(i, s)| match s {
                State::Pulling(layers) => Some((i.clone(), progress_of(i, layers))),
                State::Failed(_) => None,
            })
            .collect()
    }

    async fn pull(&self, image: &str) {
        let started = std::time::Instant::now();
        let result = self.fetch(image).await;
        let mut states = self.states.lock().expect("pulls lock");
        match result {
            Ok(()) => {
                tracing::info!(image, s = started.elapsed().as_secs_f64(), "image pulled");
                states.remove(image);
            }
            Err(reason) => {
                tracing::warn!(image, %reason, "image pull failed");
                states.insert(image.into(), State::Failed(reason.to_string()));
            }
        }
    }

    /// Pulls `image`, from its registry's mirror when one is configured (then tagged with the
    /// name the template gives it, so containers and `berth status` show that name).
    async fn fetch(&self, image: &str) -> Result<(), ImageError> {
        if let Some(pin) = self.pin(image) {
            return self.restore_pin(image, &pin).await;
        }
        let source = self.source(image);
        let auth = self.credentials(&source)?;
        let on = |e: &PullEvent| self.progress(image, e);
        let rt = &self.rt;
        rt.pull_image(&source, auth, &on).await?;
        if source != image {
            rt.tag_image(&source, image).await?;
        }
        self.record(image).await;
        if source != image {
            // The mirror's name was made by this pull too: prune removes it with the other.
            self.record(&source).await;
        }
        Ok(())
    }

    /// Where `image` is pulled from: its registry's mirror when one is configured.
    fn source(&self, image: &str) -> String {
        match self.mirrors.get(reference::registry_of(image)) {
            Some(m) => reference::on_mirror(image, m),
            None => image.to_string(),
        }
    }

    /// Notes the pull in the ledger, so prune knows berth brought the image.
    async fn record(&self, image: &str) {
        let Some(path) = &self.ledger else { return };
        let name = reference::normalize(image);
        let id = match self.rt.list_images().await {
            Ok(list) => list
                .into_iter()
                .find(|i| i.tags.contains(&name))
                .map(|i| i.id),
            Err(_) => None,
        };
        if let Err(e) = ledger::record(path, image, &id.unwrap_or_default()) {
            tracing::warn!(image, error = %e, "pulled image not recorded; prune will keep it");
        }
    }

    /// The registry's credentials for `image`, if the host config has any.
    fn credentials(&self, image: &str) -> Result<Option<(String, String)>, ImageError> {
        let registry = reference::registry_of(image);
        let Some(a) = self.registries.get(registry) else {
            return Ok(None);
        };
        let err = |reason: String| ImageError::Credentials {
            registry: registry.into(),
            path: a.password_file.display().to_string(),
            reason,
        };
        let password =
            crate::store::private::read(&a.password_file).map_err(|e| err(e.to_string()))?;
        Ok(Some((a.username.clone(), password.trim_end().to_string())))
    }

    /// Folds one progress message of the engine into the pull's figures.
    fn progress(&self, image: &str, e: &PullEvent) {
        let mut states = self.states.lock().expect("pulls lock");
        let Some(State::Pulling(layers)) = states.get_mut(image) else {
            return;
        };
        let Some(id) = &e.layer else { return };
        let l = layers.entry(id.clone()).or_default();
        match e.status.as_str() {
            "Downloading" => {
                l.0 = e.current.map_or(l.0, |c| c.max(0) as u64);
                l.1 = e.total.map_or(l.1, |t| t.max(0) as u64);
            }
            "Download complete" | "Already exists" | "Pull complete" => {
                l.0 = l.1;
                l.2 = true;
            }
            _ => {}
        }
    }
}

/// A pull's figures, from its layers.
fn progress_of(image: &str, layers: &BTreeMap<String, Layer>) -> Progress {
    Progress {
        image: image.into(),
        layers: layers.len(),
        layers_done: layers.values().filter(|l| l.2).count(),
        bytes: layers.values().map(|l| l.0).sum(),
        bytes_total: layers.values().map(|l| l.1).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::FakeRuntime;

    fn event(layer: &str, status: &str, current: i64, total: i64) -> PullEvent {
        PullEvent {
            layer: Some(layer.into()),
            status: status.into(),
            current: Some(current),
            total: Some(total),
        }
    }

    #[tokio::test]
    async fn progress_counts_layers_and_bytes_and_a_failure_is_told_once() {
        let rt = Arc::new(FakeRuntime::new());
        let pulls = Pulls::new(rt.clone(), BTreeMap::new(), BTreeMap::new(), None, None);
        pulls
            .states
            .lock()
            .unwrap()
            .insert("x:1".into(), State::Pulling(BTreeMap::new()));
        pulls.progress("x:1", &event("a", "Downloading", 50, 100));
        pulls.progress("x:1", &event("b", "Already exists", 0, 0));
        let p = &pulls.pulling()["x:1"];
        assert_eq!(
            (p.layers, p.layers_done, p.bytes, p.bytes_total),
            (2, 1, 50, 100)
        );
        pulls
            .states
            .lock()
            .unwrap()
            .insert("x:1".into(), State::Failed("manifest unknown".into()));
        assert_eq!(
            pulls.check("x:1", || {}),
            Checked::Failed("manifest unknown".into())
        );
        assert_eq!(pulls.check("x:1", || {}), Checked::Pulling);
    }

    #[tokio::test]
    async fn a_mirrored_image_is_pulled_from_the_mirror_and_named_as_the_template_says() {
        let rt = Arc::new(FakeRuntime::new());
        rt.set_images(&[]);
        let mirrors = BTreeMap::from([("docker.io".to_string(), "127.0.0.1:5000".to_string())]);
        let pulls = Pulls::new(rt.clone(), BTreeMap::new(), mirrors, None, None);
        pulls.fetch("wordpress:6").await.unwrap();
        assert_eq!(
            rt.calls(),
            vec![
                "pull_image 127.0.0.1:5000/library/wordpress:6",
                "tag_image 127.0.0.1:5000/library/wordpress:6 wordpress:6"
            ]
        );
        pulls.fetch("ghcr.io/acme/app:1").await.unwrap();
        assert_eq!(rt.calls().last().unwrap(), "pull_image ghcr.io/acme/app:1");
    }

    #[test]
    fn a_password_file_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "secret\n").unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        let auth = RegistryAuth {
            username: "u".into(),
            password_file: f.clone(),
        };
        let reg = BTreeMap::from([("r.example:5000".to_string(), auth)]);
        let pulls = Pulls::new(
            Arc::new(FakeRuntime::new()),
            reg,
            BTreeMap::new(),
            None,
            None,
        );
        let e = pulls
            .credentials("r.example:5000/app:1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("make it 0600") && !e.contains("secret"), "{e}");
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let (user, pw) = pulls.credentials("r.example:5000/app:1").unwrap().unwrap();
        assert_eq!((user.as_str(), pw.as_str()), ("u", "secret"));
        assert!(pulls.credentials("docker.io/x").unwrap().is_none());
    }
}
