//! The shared mail relay on the real engine: two tenants send through berth's Postfix relay
//! with their own logins; the messages reach "the internet" (an aiosmtpd sink on a test host in
//! a network namespace of this test, at 198.18.121.25, the relay's smarthost) signed with DKIM
//! for each sender's own domain (checked with dkimpy against `berth mail dns`). One tenant
//! cannot send as the other, past its limits, without its login, or once suspended or purged;
//! tenants reach nothing of the relay but its submission port, and a tenant whose template does
//! not ask for mail does not reach it at all.

mod common;
use common::*;
use std::{
    io::Write,
    process::{Command, Stdio},
    time::Duration,
};

const SLOT: u16 = 121;

/// One submission from inside `container` with smtp-send (the demo image's client): whether
/// the relay accepted it, and its replies.
fn send(
    container: &str,
    login: &str,
    pw_file: &str,
    from: &str,
    to: &[&str],
    header_from: &str,
) -> (bool, String) {
    let relay = format!("bt{SLOT}-mail");
    let mut args = vec![
        "exec",
        "-i",
        container,
        "smtp-send",
        &relay,
        "587",
        login,
        pw_file,
        from,
    ];
    args.extend_from_slice(to);
    let mut child = Command::new("docker")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let msg = format!(
        "From: {header_from}\nTo: {}\nSubject: test from {login}\nMessage-ID: <{}@test>\n\nhello from {login}\n",
        to.join(", "),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    child
        .stdin
        .take()
        .unwrap()
        .write_all(msg.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), out)
}

/// A TCP connection from inside `container` to `addr` (host/port) within 3 s.
fn reaches(container: &str, addr: &str) -> bool {
    let script = format!("exec 3<>/dev/tcp/{addr}");
    docker(&["exec", container, "timeout", "3", "bash", "-c", &script])
        .status
        .success()
}

fn instance(tenant: &str, template: &str, plan: &str) -> String {
    format!(
        "tenant: {tenant}\ntemplate: {template}\nversion: \"1\"\nplan: {plan}\nparameters:\n  site_title: {tenant}\n  admin_email: ops@{tenant}.example\n"
    )
}

#[test]
fn tenants_send_signed_mail_through_the_relay_only_as_themselves_and_within_their_limits() {
    let Some(_serial) = docker_test() else { return };
    let mut h = Harness::new(SLOT);
    // The edge too: its per-tenant families are in the scrape the shipped rules are held to.
    h.with_proxy(SLOT);
    let sink = common::mail::MailSink::start(&h.path("sink"), SLOT);
    // A template like demo that asks for no mail.
    h.own_demo_template(|t| t);
    let demo = h.path("templates/demo");
    copy_dir(&demo, &h.path("templates/nomail"));
    let t = std::fs::read_to_string(demo.join("template.yaml")).unwrap();
    let nomail = t
        .replace("name: demo\n", "name: nomail\n")
        .replace("mail:\n  password_secret: mail_password\n", "");
    assert_ne!(nomail, t.replace("name: demo\n", "name: nomail\n"));
    std::fs::write(h.path("templates/nomail/template.yaml"), nomail).unwrap();
    // A tenant on the shared PostgreSQL server too: that server and the relay share the host's
    // network, whichever of them makes it first.
    let repo = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    copy_dir(
        &repo.join("templates/demo-shared"),
        &h.path("templates/demo-shared"),
    );
    let cfg = std::fs::read_to_string(h.path("berth.yaml")).unwrap().replace(
        "plans:\n",
        "plans:\n  limited: {memory: 256m, cpus: 0.5, pids: 200, mail: {per_hour: 2, recipients: 2}}\n",
    ) + &format!("mail:\n  smarthost: \"{}\"\n", sink.addr);
    std::fs::write(h.path("berth.yaml"), cfg).unwrap();
    for (t, tpl, plan) in [
        ("ms", "demo-shared", "small"),
        ("ma", "demo", "limited"),
        ("1mb", "demo", "small"),
        ("mq", "nomail", "small"),
    ] {
        std::fs::write(
            h.path(&format!("instances/{t}.yaml")),
            instance(t, tpl, plan),
        )
        .unwrap();
    }
    h.start();
    h.wait_running(&["ms", "ma", "1mb", "mq"]);
    wait_for(
        Duration::from_secs(90),
        || {
            let o = h.cli(&["mail", "dns", "1mb", "-o", "json"]);
            String::from_utf8_lossy(&o.stdout).contains("p=")
        },
        "the relay up and 1mb's DKIM key made",
    );
    // The key is made before the signing table names it and OpenDKIM is told to read it again
    // (every tenant's key first, then the tables, then SIGUSR1): wait until the table has
    // named 1mb's domain for a second, so the first message is signed.
    let signing = h.path("state/host/mail/dkim/SigningTable");
    wait_for(
        Duration::from_secs(60),
        || {
            let named =
                std::fs::read_to_string(&signing).is_ok_and(|t| t.contains("*@1mb.apps.test "));
            let settled = std::fs::metadata(&signing)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|e| e >= Duration::from_secs(1)));
            named && settled
        },
        "1mb's domain in the relay's signing table, read again by OpenDKIM",
    );
    // The relay joined 1mb's network, whose name sorts before the host network's (Docker
    // 20.10 would route the relay through it): its way out stays the host network.
    let host_gw = docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Gateway}}",
        &format!("bt{SLOT}-_host"),
    ]);
    wait_for(
        Duration::from_secs(30),
        || {
            let pid = docker_ok(&[
                "inspect",
                "-f",
                "{{.State.Pid}}",
                &format!("bt{SLOT}-_host-mail"),
            ]);
            let o = Command::new("nsenter")
                .args(["-t", &pid, "-n", "ip", "-4", "route", "show", "default"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).contains(&format!("via {host_gw} "))
        },
        "the relay's default route through the host network",
    );
    let (a, b, q) = (
        h.container("ma", "app"),
        h.container("1mb", "app"),
        h.container("mq", "app"),
    );
    let pw = "/run/secrets/mail_password";

    // The demo's page sends its admin a message (1mb, through the relay, to the sink).
    let page = Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            &format!("http://{}/cgi-bin/mail", h.web("1mb")),
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&page.stdout).contains("sent to ops@1mb.example"),
        "{page:?}"
    );
    let (ok, log) = send(
        &a,
        "ma",
        pw,
        "news@ma.apps.test",
        &["x@dest.example"],
        "Ma <news@ma.apps.test>",
    );
    assert!(ok, "{log}");
    wait_for(
        Duration::from_secs(60),
        || sink.received().len() == 2,
        "two messages at the sink",
    );
    for (from, eml) in sink.received() {
        let tenant = if from.ends_with("@ma.apps.test") {
            "ma"
        } else {
            "1mb"
        };
        assert_eq!(
            common::mail::dkim_check(&h, tenant, &eml),
            format!("ok {tenant}.apps.test"),
            "{from}"
        );
    }

    // Not as the other tenant: envelope, header, or the other's login.
    let (ok, log) = send(
        &a,
        "ma",
        pw,
        "ceo@1mb.apps.test",
        &["x@dest.example"],
        "ceo@1mb.apps.test",
    );
    assert!(!ok && log.contains("553 5.7.1"), "{log}");
    let (ok, log) = send(
        &a,
        "ma",
        pw,
        "news@ma.apps.test",
        &["x@dest.example"],
        "CEO <ceo@1mb.apps.test>",
    );
    assert!(
        !ok && log.contains("550 5.7.1 From: domain 1mb.apps.test"),
        "{log}"
    );
    // Nor behind an RFC 2047 encoded display name, nor in Sender:.
    let (ok, log) = send(
        &a,
        "ma",
        pw,
        "news@ma.apps.test",
        &["x@dest.example"],
        "=?utf-8?q?ceo=401mb.apps.test?= <news@ma.apps.test>",
    );
    assert!(
        !ok && log.contains("550 5.7.1 From: domain 1mb.apps.test"),
        "{log}"
    );
    let (ok, log) = send(
        &a,
        "1mb",
        pw,
        "news@1mb.apps.test",
        &["x@dest.example"],
        "news@1mb.apps.test",
    );
    assert!(
        !ok && log.contains("535"),
        "ma's password is not 1mb's: {log}"
    );
    let (ok, log) = send(
        &a,
        "",
        pw,
        "news@ma.apps.test",
        &["x@dest.example"],
        "news@ma.apps.test",
    );
    assert!(!ok, "no login, no relay: {log}");

    // Limits: 2 recipients, 2 messages an hour for ma; 1mb goes on.
    let (ok, log) = send(
        &a,
        "ma",
        pw,
        "news@ma.apps.test",
        &["1@d.example", "2@d.example", "3@d.example"],
        "news@ma.apps.test",
    );
    assert!(!ok && log.contains("452 4.5.3"), "{log}");
    let (ok, log) = send(
        &a,
        "ma",
        pw,
        "news@ma.apps.test",
        &["x@dest.example"],
        "news@ma.apps.test",
    );
    assert!(ok, "the second message of the hour: {log}");
    let (ok, log) = send(
        &a,
        "ma",
        pw,
        "news@ma.apps.test",
        &["x@dest.example"],
        "news@ma.apps.test",
    );
    assert!(
        !ok && log.contains("451 4.7.1 tenant ma reached its limit of 2 messages per hour"),
        "{log}"
    );
    let (ok, log) = send(
        &b,
        "1mb",
        pw,
        "news@1mb.apps.test",
        &["x@dest.example"],
        "news@1mb.apps.test",
    );
    assert!(ok, "1mb keeps sending: {log}");
    wait_for(
        Duration::from_secs(60),
        || sink.received().len() == 4,
        "four messages at the sink",
    );

    // ma holds every connection it can: ten, the eleventh on is refused; 1mb still sends.
    let relay = format!("bt{SLOT}-mail");
    let hold = format!(
        "for i in $(seq 15); do exec {{fd}}<>/dev/tcp/{relay}/587 && read -r -t 10 l <&$fd; \
         echo \"${{l%% *}}\"; done; sleep 30"
    );
    let mut holder = Command::new("docker")
        .args(["exec", &a, "bash", "-c", &hold])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let banners: Vec<String> = {
        use std::io::BufRead;
        let out = std::io::BufReader::new(holder.stdout.take().unwrap());
        out.lines().take(15).map(|l| l.unwrap()).collect()
    };
    let count = |code: &str| banners.iter().filter(|b| b.as_str() == code).count();
    assert_eq!((count("220"), count("421")), (10, 5), "{banners:?}");
    let (ok, log) = send(
        &b,
        "1mb",
        pw,
        "news@1mb.apps.test",
        &["x@dest.example"],
        "news@1mb.apps.test",
    );
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        ok,
        "1mb could not send while ma held its connections: {log}"
    );

    // Only the relay's submission port, only for tenants that asked for mail, never the sink.
    assert!(reaches(&a, &format!("{relay}/587")));
    for port in [25, 465, 8891, 10025] {
        assert!(
            !reaches(&a, &format!("{relay}/{port}")),
            "relay port {port} reached"
        );
    }
    assert!(
        !reaches(&a, &sink.addr.replace(':', "/")),
        "a tenant reached the smarthost itself"
    );
    let relay_ip = docker_ok(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"bt{SLOT}-_host\").IPAddress}}}}"),
        &format!("bt{SLOT}-_host-mail"),
    ]);
    assert!(
        !reaches(&q, &format!("{relay}/587")),
        "mq asked for no mail"
    );
    assert!(
        !reaches(&q, &format!("{relay_ip}/587")),
        "mq reached the relay on the host network"
    );

    // The tenant's view, and the metrics.
    let v: serde_json::Value =
        serde_json::from_str(&h.cli_ok(&["mail", "ma", "-o", "json"])).unwrap();
    assert_eq!(v["accepted"], 2, "{v}");
    assert!(v["refused"].as_u64().unwrap() >= 4, "{v}");
    assert_eq!(v["last_hour"], 2, "{v}");
    assert!(
        v["last_errors"].to_string().contains("messages per hour"),
        "{v}"
    );
    wait_for(
        Duration::from_secs(30),
        || {
            let v: serde_json::Value =
                serde_json::from_str(&h.cli_ok(&["mail", "ma", "-o", "json"])).unwrap();
            v["sent"] == 2 && v["queued"] == 0
        },
        "ma's two deliveries seen in the relay's log",
    );
    let table = h.cli_ok(&["mail", "ma"]);
    assert!(
        table.contains("ACCEPTED") && table.contains("last errors:"),
        "{table}"
    );
    let m = h.metrics();
    // The shipped alert rules and dashboard name only what this agent (with the relay) exports.
    common::alerts::check_against(&m);
    common::alerts::promtool_passes();
    assert_eq!(
        sample(
            &m,
            "berth_mail_messages_total{tenant=\"ma\",result=\"sent\"}"
        ),
        Some(2.0),
        "{m}"
    );
    assert!(
        sample(
            &m,
            "berth_mail_messages_total{tenant=\"ma\",result=\"refused\"}"
        )
        .unwrap()
            >= 4.0
    );
    let o = h.cli(&["mail", "mq"]);
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("asks for no mail"),
        "{o:?}"
    );

    // Suspended: 1mb's login sends nothing (tried from ma's container: 1mb's are stopped).
    let mb_pw = std::fs::read_to_string(h.path("state/tenants/1mb/secrets/mail_password")).unwrap();
    docker_ok(&[
        "exec",
        &a,
        "sh",
        "-c",
        &format!("printf %s '{}' > /tmp/mbpw", mb_pw.trim()),
    ]);
    h.cli_ok(&["suspend", "1mb"]);
    wait_for(
        Duration::from_secs(30),
        || {
            send(
                &a,
                "1mb",
                "/tmp/mbpw",
                "news@1mb.apps.test",
                &["x@d.example"],
                "news@1mb.apps.test",
            )
            .1
            .contains("451 4.7.1 sending is suspended")
        },
        "1mb's mail refused while suspended",
    );
    // What 1mb sent before the suspension took hold has been delivered by now.
    std::thread::sleep(Duration::from_secs(3));
    let delivered = sink.received().len();
    // Purged: its login and keys are gone.
    h.cli_ok(&["rm", "1mb", "--purge"]);
    wait_for(
        Duration::from_secs(60),
        || !h.path("state/host/mail/dkim/keys/1mb").exists(),
        "1mb's DKIM keys removed",
    );
    let (ok, log) = send(
        &a,
        "1mb",
        "/tmp/mbpw",
        "news@1mb.apps.test",
        &["x@d.example"],
        "news@1mb.apps.test",
    );
    assert!(
        !ok && log.contains("535"),
        "a purged login still works: {log}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        sink.received().len(),
        delivered,
        "nothing more reached the sink"
    );
}
