//! Images pulled by berth from a real registry on loopback: Debian's `docker-registry`
//! (distribution 2.8) with htpasswd auth and TLS from a test CA. An image is pushed there and
//! removed from the engine; a tenant of a version naming it gets it pulled before anything of
//! the tenant exists; Docker Hub's name is pulled through a mirror. An unknown tag, a refused password and a stopped registry leave their
//! tenant failing with the registry's reason, no object made, the other tenants untouched.

mod common;
use common::*;
use std::{path::Path, time::Duration};

const SLOT: u16 = 92;
const PORT: u16 = 19492;

/// The registry with TLS (a certificate of a CA made here) and one htpasswd user.
fn start_registry(dir: &Path) -> Registry {
    let ca = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.self_signed(&ca).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), ca.serialize_pem()).unwrap();
    sh_env(
        &format!(
            "htpasswd -Bbn pusher s3cret-pw > {}",
            dir.join("htpasswd").display()
        ),
        &[],
    );
    let d = dir.display();
    let config = format!(
        "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {d}/data}}}}\n\
             http: {{addr: 127.0.0.1:{PORT}, tls: {{certificate: {d}/cert.pem, key: {d}/key.pem}}}}\n\
             auth: {{htpasswd: {{realm: berth-test, path: {d}/htpasswd}}}}\n"
    );
    start_registry_with(dir, PORT, &config)
}

/// An image of its own (not on the engine under any name once this returns) in the registry.
fn push(dir: &Path, repo: &str) {
    push_labelled(dir, repo, repo);
}

/// Built and pushed under a staging tag no version names, then tagged in the registry by its
/// API: the agent, which puts a moved tag back on its pin, never sees the name mid-push.
fn push_labelled(dir: &Path, repo: &str, label: &str) {
    let conf = dir.join("docker-cli");
    std::fs::create_dir_all(&conf).unwrap();
    let env = [("DOCKER_CONFIG", conf.as_path())];
    let (path, tag) = repo.split_once(':').unwrap();
    let label_tag: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let staging = format!("127.0.0.1:{PORT}/{path}:staging-{label_tag}");
    let api = format!("https://127.0.0.1:{PORT}/v2/{path}/manifests");
    let manifest = dir.join("manifest.json");
    let (m, d) = (manifest.display(), dir.display());
    let media = "application/vnd.docker.distribution.manifest.v2+json";
    let curl = format!("curl -sSf --cacert {d}/cert.pem -u pusher:s3cret-pw");
    sh_env(
        &format!(
            "printf 'FROM berth/demo:1\\nLABEL berth.test.pushed={label}\\n' | DOCKER_BUILDKIT=0 docker build -q -t {staging} - && \
             printf s3cret-pw | docker login 127.0.0.1:{PORT} -u pusher --password-stdin && \
             docker push -q {staging} && docker rmi {staging} && \
             {curl} -H 'Accept: {media}' -o {m} {api}/staging-{label_tag} && \
             {curl} -X PUT -H 'Content-Type: {media}' --data-binary @{m} {api}/{tag}"
        ),
        &env,
    );
}

fn versions(t: String) -> String {
    let reg = format!("127.0.0.1:{PORT}");
    t.replace(
        "versions:\n",
        &format!(
            "versions:\n  \"9\":\n    images: {{ app: \"{reg}/berth/pulled:1\" }}\n  \
             \"10\":\n    images: {{ app: \"{reg}/berth/pulled:nosuchtag\" }}\n  \
             \"11\":\n    images: {{ app: \"localhost:{PORT}/berth/pulled:1\" }}\n  \
             \"12\":\n    images: {{ app: \"{reg}/berth/other:1\" }}\n  \
             \"13\":\n    images: {{ app: \"berthtest/mirrored:1\" }}\n  \
             \"14\":\n    images: {{ app: \"{reg}/berth/pulled:2\" }}\n  \
             \"15\":\n    images: {{ app: \"{reg}/berth/pulled:nosuch\" }}\n"
        ),
    )
}

fn instance(h: &Harness, t: &str, version: &str) {
    write_instance(
        h,
        t,
        &format!(
            "template: demo\nversion: \"{version}\"\nplan: small\nparameters:\n  site_title: {t}\n  admin_email: ops@{t}.test\n  brand_color: \"#336699\"\n"
        ),
    );
}

/// Runs passes until the tenant's error contains one of `words`; its error.
fn wait_error(h: &Harness, t: &str, words: &[&str]) -> String {
    let mut last = serde_json::Value::Null;
    for _ in 0..120 {
        h.reconcile();
        last = h.status(t);
        let e = last["error"].as_str().unwrap_or_default().to_string();
        if words.iter().any(|w| e.contains(w)) {
            return e;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("{t}: no error with {words:?}: {last}");
}

fn objects_of(h: &Harness, t: &str) -> Vec<String> {
    let (tenant, ns) = (
        format!("label=io.berth.tenant={t}"),
        format!("label=io.berth.namespace={}", h.ns),
    );
    let mut v = vec![];
    for kind in [
        &["ps", "-aq"][..],
        &["network", "ls", "-q"],
        &["volume", "ls", "-q"],
    ] {
        let mut args = kind.to_vec();
        args.extend(["--filter", &tenant, "--filter", &ns]);
        v.extend(
            docker_ok(&args)
                .lines()
                .filter(|l| !l.is_empty())
                .map(String::from),
        );
    }
    v
}

/// Every name this test gives images, gone (also what a failed earlier run left).
fn forget_images() {
    for r in [
        "berth/pulled:1",
        "berth/pulled:2",
        "berth/other:1",
        "berthtest/mirrored:1",
    ] {
        let _ = docker(&["rmi", "-f", &format!("127.0.0.1:{PORT}/{r}")]);
    }
    let _ = docker(&["rmi", "-f", "berthtest/mirrored:1"]);
}

#[test]
fn images_are_pulled_from_a_registry_with_credentials_and_failures_make_nothing() {
    let Some(_serial) = docker_test() else { return };
    let mut h = Harness::new(SLOT);
    forget_images();
    let dir = h.path("registry");
    std::fs::create_dir_all(&dir).unwrap();
    let mut registry = Some(start_registry(&dir));
    push(&dir, "berth/pulled:1");
    push(&dir, "berth/other:1");
    push(&dir, "berthtest/mirrored:1");
    push(&dir, "berth/pulled:2");
    let _ = docker(&["rmi", &format!("127.0.0.1:{PORT}/berth/other:1")]);
    assert!(
        !docker(&[
            "image",
            "inspect",
            &format!("127.0.0.1:{PORT}/berth/pulled:1")
        ])
        .status
        .success()
    );
    // Credentials: the right password for 127.0.0.1, a wrong one for localhost (same server).
    for (name, pw) in [("good", "s3cret-pw"), ("bad", "not-the-password")] {
        let f = h.path(&format!("{name}.pw"));
        std::fs::write(&f, format!("{pw}\n")).unwrap();
        std::fs::set_permissions(&f, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    let mut cfg = std::fs::read_to_string(h.path("berth.yaml")).unwrap();
    cfg.push_str(&format!(
        "registries:\n  \"127.0.0.1:{PORT}\": {{username: pusher, password_file: good.pw}}\n  \
         \"localhost:{PORT}\": {{username: pusher, password_file: bad.pw}}\n\
         registry_mirrors: {{docker.io: \"127.0.0.1:{PORT}\"}}\n"
    ));
    std::fs::write(h.path("berth.yaml"), cfg).unwrap();
    h.own_demo_template(versions);
    instance(&h, "p1", "9");
    h.start();
    h.wait_running(&["p1"]);
    let pulled = format!("127.0.0.1:{PORT}/berth/pulled:1");
    assert!(docker(&["image", "inspect", &pulled]).status.success());
    let image = docker_ok(&[
        "inspect",
        "-f",
        "{{.Config.Image}}",
        &h.container("p1", "app"),
    ]);
    assert_eq!(image, pulled);

    // Docker Hub through a mirror (a provider's pull-through cache): pulled from the mirror
    // with its credentials, named as the template says.
    assert!(
        !docker(&["image", "inspect", "berthtest/mirrored:1"])
            .status
            .success()
    );
    instance(&h, "p5", "13");
    h.wait_running(&["p5"]);
    let image = docker_ok(&[
        "inspect",
        "-f",
        "{{.Config.Image}}",
        &h.container("p5", "app"),
    ]);
    assert_eq!(image, "berthtest/mirrored:1");

    // `berth images`: what tenants use, what berth pulled.
    let rows: serde_json::Value =
        serde_json::from_str(&h.cli_ok(&["images", "-o", "json"])).unwrap();
    let row = |r: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|x| x["reference"] == r)
            .unwrap_or_else(|| panic!("{r} not in {rows}"))
            .clone()
    };
    assert_eq!(row(&pulled)["tenants"], serde_json::json!(["p1"]));
    assert_eq!(row(&pulled)["pulled_by_berth"], true);
    assert!(
        row(&pulled)["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(
        row("berthtest/mirrored:1")["tenants"],
        serde_json::json!(["p5"])
    );
    assert_eq!(row("berth/postgres:15")["pulled_by_berth"], false);
    assert!(h.cli_ok(&["images"]).contains("PULLED BY BERTH"));

    // A fleet upgrade fetches its version's images before the first wave…
    let two = format!("127.0.0.1:{PORT}/berth/pulled:2");
    assert!(!docker(&["image", "inspect", &two]).status.success());
    h.cli_ok(&["upgrade", "demo", "--to", "14", "--tenants", "p1", "--wait"]);
    let image = docker_ok(&[
        "inspect",
        "-f",
        "{{.Config.Image}}",
        &h.container("p1", "app"),
    ]);
    assert_eq!(image, two);
    // …and halts before any wave, with the registry's reason, when they cannot be had.
    let o = h.cli(&["upgrade", "demo", "--to", "15", "--tenants", "p1", "--wait"]);
    assert!(!o.status.success());
    let up: serde_json::Value =
        serde_json::from_str(&h.cli_ok(&["upgrade", "status", "-o", "json"])).unwrap();
    assert_eq!(up["status"], "halted", "{up}");
    let reason = up["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("nosuch") && reason.contains("manifest unknown"),
        "{up}"
    );
    assert_eq!(h.status("p1")["version"], "14");
    assert_eq!(up["tenants"]["p1"]["phase"], "pending", "a wave ran: {up}");
    h.wait_running(&["p1"]);

    // An unknown tag: the registry's reason, nothing of the tenant made, p1 untouched.
    instance(&h, "p2", "10");
    let e = wait_error(&h, "p2", &["manifest unknown", "not found"]);
    assert!(e.contains("nosuchtag"), "{e}");
    assert!(
        objects_of(&h, "p2").is_empty(),
        "{:?}",
        objects_of(&h, "p2")
    );
    // A refused password: the registry says so; the password is in no error and no log.
    instance(&h, "p3", "11");
    let e = wait_error(
        &h,
        "p3",
        &["unauthorized", "authentication required", "no basic auth"],
    );
    assert!(!e.contains("not-the-password"), "{e}");
    assert!(objects_of(&h, "p3").is_empty());
    // The registry gone: connection refused, nothing made.
    drop(registry.take());
    instance(&h, "p4", "12");
    let e = wait_error(&h, "p4", &["connection refused", "dial tcp"]);
    assert!(e.contains("other"), "{e}");
    assert!(objects_of(&h, "p4").is_empty());
    assert_eq!(h.status("p1")["phase"], "running");
    let log = h.agent_log();
    assert!(!log.contains("s3cret-pw") && !log.contains("not-the-password"));
    // Prune: only what berth pulled and no tenant names any more.
    h.cli_ok(&["rm", "p5", "--purge"]);
    wait_for(
        Duration::from_secs(60),
        || {
            h.reconcile();
            !h.cli_ok(&["ls"]).contains("p5")
        },
        "p5 purged",
    );
    let out = h.cli_ok(&["images", "prune"]);
    assert!(out.contains("removed berthtest/mirrored:1"), "{out}");
    assert!(
        out.contains(&format!("removed {pulled}")),
        "p1 left it: {out}"
    );
    assert!(
        !out.contains("berth/pulled:2") && !out.contains("postgres"),
        "{out}"
    );
    assert!(
        !docker(&["image", "inspect", "berthtest/mirrored:1"])
            .status
            .success()
    );
    assert!(docker(&["image", "inspect", &two]).status.success());
    assert!(
        docker(&["image", "inspect", "berth/postgres:15"])
            .status
            .success()
    );
    pinned_images_stay_pinned(&mut h, &dir, registry);
    h.kill9();
    forget_images();
}

/// `docker pull` with the pusher's login (as an operator pulling by hand would).
fn pull_as_pusher(dir: &Path, image: &str) {
    let conf = dir.join("docker-cli");
    sh_env(
        &format!("docker pull -q {image}"),
        &[("DOCKER_CONFIG", conf.as_path())],
    );
}

fn image_id(reference: &str) -> String {
    docker_ok(&["image", "inspect", "-f", "{{.Id}}", reference])
}

fn container_image(h: &Harness, t: &str) -> String {
    docker_ok(&["inspect", "-f", "{{.Image}}", &h.container(t, "app")])
}

/// A tag moved upstream (and pulled onto the engine by someone else) never splits the fleet:
/// the name is put back on the pinned image, and pulled by digest when the engine lost it.
fn pinned_images_stay_pinned(h: &mut Harness, dir: &Path, mut registry: Option<Registry>) {
    if registry.is_none() {
        registry = Some(start_registry(dir));
    }
    let two = format!("127.0.0.1:{PORT}/berth/pulled:2");
    let pins: serde_json::Value =
        serde_json::from_slice(&std::fs::read(h.path("state/image-pins.json")).unwrap()).unwrap();
    let pinned = pins[&two]["id"].as_str().unwrap().to_string();
    assert_eq!(
        pinned,
        container_image(h, "p1"),
        "pinned before the first wave: {pins}"
    );
    let digest = pins[&two]["digest"].as_str().unwrap().to_string();
    assert!(
        digest.starts_with(&format!("127.0.0.1:{PORT}/berth/pulled@sha256:")),
        "{digest}"
    );
    assert!(h.cli_ok(&["images"]).contains("PINNED"));

    // The tag moves upstream and someone pulls it here: the name is put back on the pin.
    push_labelled(dir, "berth/pulled:2", "moved");
    pull_as_pusher(dir, &two);
    assert_ne!(image_id(&two), pinned);
    wait_for(
        Duration::from_secs(60),
        || {
            h.reconcile();
            image_id(&two) == pinned
        },
        "the name back on its pinned image",
    );
    assert_eq!(container_image(h, "p1"), pinned);

    // The engine loses the pinned image and the name points at the moved content: a new
    // tenant of that version still gets the pinned image, pulled by digest.
    h.cli_ok(&["rm", "p1", "--purge"]);
    wait_for(
        Duration::from_secs(60),
        || {
            h.reconcile();
            !h.cli_ok(&["ls"]).contains("p1")
        },
        "p1 purged",
    );
    docker_ok(&["rmi", "-f", &pinned]);
    pull_as_pusher(dir, &two);
    assert_ne!(image_id(&two), pinned);
    instance(h, "p8", "14");
    h.wait_running(&["p8"]);
    assert_eq!(
        container_image(h, "p8"),
        pinned,
        "the pinned content, pulled by digest"
    );
    assert_eq!(image_id(&two), pinned);
    drop(registry);
}
