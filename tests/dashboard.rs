//! The dashboard in a real browser: Debian's Chromium driven through chromedriver (WebDriver)
//! against a real agent with real tenants. The operator logs in and sees every tenant; acme's
//! admin sees only acme, a typed URL to globex's page is refused, and "Back up now" makes a
//! backup that appears on the page and in the audit log. Screenshots of each step are saved
//! under the target directory (`dashboard-screenshots/`).

mod common;

use common::{Harness, docker_test};
use fantoccini::{Client, ClientBuilder, Locator};
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

const SLOT: u16 = 101;
const DRIVER_PORT: u16 = 19601;

/// chromedriver on loopback, stopped when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Driver {
    let bin = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("chromedriver (Debian's chromium-driver; scripts/test.sh installs it)");
    let child = Command::new(bin)
        .arg(format!("--port={DRIVER_PORT}"))
        .arg("--allowed-ips=127.0.0.1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    common::wait_for(
        Duration::from_secs(20),
        || std::net::TcpStream::connect(("127.0.0.1", DRIVER_PORT)).is_ok(),
        "chromedriver listening",
    );
    Driver(child)
}

async fn browser() -> Client {
    // hyper-rustls under fantoccini brings a second provider; the test picks ring, as berth.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,1100", "--no-first-run", "--disable-extensions"]
        }
    });
    let caps = caps.as_object().unwrap().clone();
    ClientBuilder::rustls()
        .expect("a WebDriver client")
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{DRIVER_PORT}"))
        .await
        .expect("a Chromium session")
}

fn shots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    std::fs::write(shots().join(format!("{name}.png")), png).unwrap();
}

/// The page's flash once it reads `want` (or what it reads after 60 s): the page before a
/// form's answer may still show an earlier flash, and it goes stale when the answer arrives.
async fn flash_reading(c: &Client, want: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = match c.find(Locator::Css("#flash")).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text == want || std::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn login(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/ui/")).await.unwrap();
    // Not logged in: the browser lands on the login form.
    let url = c.current_url().await.unwrap();
    assert!(url.path().ends_with("/ui/login"), "{url}");
    c.find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    c.find(Locator::Css("#login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let overview = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("table#tenants"))
        .await;
    if overview.is_err() {
        let (url, page) = (c.current_url().await, c.source().await);
        panic!("no overview after login: {url:?}\n{page:?}");
    }
}

async fn tenants_listed(c: &Client) -> Vec<String> {
    let mut out = vec![];
    for row in c
        .find_all(Locator::Css("#tenants tbody tr[data-tenant]"))
        .await
        .unwrap()
    {
        out.push(row.attr("data-tenant").await.unwrap().unwrap_or_default());
    }
    out
}

async fn logout(c: &Client) {
    c.find(Locator::Css("#logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#token"))
        .await
        .expect("the login form after logout");
}

fn token(h: &Harness, args: &[&str]) -> String {
    let mut all = vec!["token", "create", "--expires", "1h"];
    all.extend_from_slice(args);
    h.cli_ok(&all).trim().to_string()
}

#[test]
fn operators_and_tenant_admins_use_the_dashboard_in_a_real_browser() {
    let Some(_g) = docker_test() else { return };
    let mut h = Harness::new(SLOT);
    let api = h.with_tcp_api(SLOT, "");
    for t in ["acme", "globex"] {
        common::write_instance(&h, t, "template: demo\nversion: \"1\"\nplan: small\n");
    }
    h.start();
    h.wait_running(&["acme", "globex"]);
    let operator = token(&h, &["--role", "operator", "--name", "ops"]);
    let acme = token(
        &h,
        &[
            "--role",
            "tenant-admin",
            "--tenant",
            "acme",
            "--name",
            "acme-admin",
        ],
    );
    let _driver = chromedriver();
    let base = format!("http://{api}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = browser().await;

        login(&c, &base, &operator).await;
        let seen = tenants_listed(&c).await;
        assert_eq!(seen, ["acme", "globex"], "the operator sees every tenant");
        let page = c.source().await.unwrap();
        assert!(page.contains("id=\"host\"") && page.contains("id=\"upgrade\""));
        shot(&c, "1-operator-overview").await;
        logout(&c).await;

        // A wrong token is refused at the door.
        c.find(Locator::Css("#token"))
            .await
            .unwrap()
            .send_keys("bth_wrong_token")
            .await
            .unwrap();
        c.find(Locator::Css("#login"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.wait()
            .for_element(Locator::Css("#login-error"))
            .await
            .expect("a refusal");
        shot(&c, "2-wrong-token").await;

        login(&c, &base, &acme).await;
        assert_eq!(
            tenants_listed(&c).await,
            ["acme"],
            "acme's admin sees only acme"
        );
        let page = c.source().await.unwrap();
        assert!(!page.contains("globex") && !page.contains("id=\"host\""));
        shot(&c, "3-acme-overview").await;

        c.goto(&format!("{base}/ui/t/globex")).await.unwrap();
        let err = c
            .find(Locator::Css("#error"))
            .await
            .expect("an error page")
            .text()
            .await
            .unwrap();
        assert!(err.contains("no instance"), "{err}");
        assert!(!c.source().await.unwrap().contains("backup-now"));
        shot(&c, "4-acme-typed-globex").await;

        c.goto(&format!("{base}/ui/t/acme")).await.unwrap();
        let before = c
            .find_all(Locator::Css("#backup-list tr.backup"))
            .await
            .unwrap()
            .len();
        c.find(Locator::Css("#backup-now"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let flash = c
            .wait()
            .at_most(Duration::from_secs(120))
            .for_element(Locator::Css("#flash"))
            .await
            .expect("the backup's outcome")
            .text()
            .await
            .unwrap();
        assert_eq!(flash, "backed up", "{flash}");
        let after = c
            .find_all(Locator::Css("#backup-list tr.backup"))
            .await
            .unwrap()
            .len();
        assert_eq!(after, before + 1, "the new backup is listed");
        let logs = c
            .find(Locator::Css("#log-tail"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!logs.starts_with("(no logs"), "{logs}");
        shot(&c, "5-acme-backed-up").await;

        // A parameter within the template, set from the page, reaches the app.
        let input = c
            .find(Locator::Css(
                "#parameters input[name=value][aria-label=site_title]",
            ))
            .await
            .unwrap();
        input.clear().await.unwrap();
        input.send_keys("Acme Shop").await.unwrap();
        let form = c
            .find(Locator::Css(
                "#parameters form:has(input[aria-label=site_title])",
            ))
            .await
            .unwrap();
        form.find(Locator::Css("button"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        // The page still shows the backup's flash until the form's answer replaces it.
        let flash = flash_reading(&c, "site_title set").await;
        assert_eq!(flash, "site_title set");
        shot(&c, "6-acme-parameter-set").await;
        c.close().await.unwrap();
    });
    let port = h.web("acme");
    common::wait_for(
        Duration::from_secs(90),
        || common::http_get(port, "/").is_some_and(|(_, b)| b.contains("Acme Shop")),
        "the new site title served by acme's app",
    );

    // The dashboard's change is in the audit log: acme's admin, from the ui.
    let audit = h.cli_ok(&["audit", "--tenant", "acme", "-o", "json"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&audit).unwrap();
    let row = rows
        .iter()
        .find(|r| r["action"] == "backup.create")
        .unwrap_or_else(|| panic!("no backup.create row: {audit}"));
    assert_eq!(row["source"], "ui", "{row}");
    assert_eq!(row["actor"]["name"], "acme-admin", "{row}");
    assert_eq!(row["result"], "ok", "{row}");
    let listed = h.cli_ok(&["backup", "acme", "--list"]);
    assert!(listed.lines().count() >= 2, "{listed}");
    for name in ["1-operator-overview", "3-acme-overview", "5-acme-backed-up"] {
        assert!(shots().join(format!("{name}.png")).exists());
    }
}
