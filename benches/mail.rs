//! The shared mail relay, for scripts/bench-mail.sh (numbers in docs/BENCHMARKS.md):
//!  1. messages per second submitted through berth's relay (SASL and policy answered by this
//!     process as the agent does, OpenDKIM signing, Postfix queueing and relaying) against the
//!     same image's Postfix alone (no SASL, no milter, no signing), both relaying to Postfix's
//!     smtp-sink, the same load generator (CONC connections at once, one message each);
//!  2. the relay's and this process's memory with 100 and 1,000 tenants' accounts and DKIM keys;
//!  3. one tenant flooding the relay (FLOOD_CONC connections looping for FLOOD_S seconds from its
//!     own network) while another sends one message after another from its network: the
//!     second's latency and refusals, against the same sends with nobody flooding.
//!
//! Part 1 exempts this process's one client address from the relay's per-client limits (they
//! would cap it at 120 connections a minute); part 3 puts them back and measures them.

use berth::{
    mail::{Mail, policy::Account},
    runtime::{Runtime, docker::DockerRuntime, labels::HOST_TENANT, spec},
};
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const NS: &str = "bmail";

/// The i-th message's login (user, password) if any, and its sender.
type Who = Arc<dyn Fn(usize) -> (Option<(String, String)>, String) + Send + Sync>;

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

fn docker(args: &[&str]) -> String {
    let o = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_default()
}

/// One message on a new connection: (AUTH PLAIN when `login`), MAIL, RCPT, DATA.
async fn submit(addr: &str, login: Option<(&str, &str)>, from: &str) -> Result<(), String> {
    let s = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut expect = async |code: &str| -> Result<(), String> {
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
                return Err("closed".into());
            }
            if !line.starts_with(code) {
                return Err(line);
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(());
            }
        }
    };
    expect("220").await?;
    let auth = login.map(|(u, p)| {
        use base64::Engine;
        let raw = format!("\0{u}\0{p}");
        base64::engine::general_purpose::STANDARD.encode(raw)
    });
    let mut steps: Vec<(String, &str)> = vec![("EHLO bench.invalid\r\n".into(), "250")];
    if let Some(a) = auth {
        steps.push((format!("AUTH PLAIN {a}\r\n"), "235"));
    }
    steps.push((format!("MAIL FROM:<{from}>\r\n"), "250"));
    steps.push(("RCPT TO:<x@dest.example>\r\n".into(), "250"));
    steps.push(("DATA\r\n".into(), "354"));
    let body = format!(
        "From: <{from}>\r\nTo: <x@dest.example>\r\nSubject: bench\r\n\r\n{}\r\n.\r\n",
        "A line of a typical notification, about sixty characters long.\r\n".repeat(30)
    );
    steps.push((body, "250"));
    for (cmd, code) in steps {
        w.write_all(cmd.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        expect(code).await?;
    }
    let _ = w.write_all(b"QUIT\r\n").await;
    Ok(())
}

/// `n` messages, `conc` at once; `who(i)` is the i-th message's login and sender.
async fn load(addr: &str, n: usize, conc: usize, who: Who) -> f64 {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conc {
        let (next, who, addr) = (next.clone(), who.clone(), addr.to_string());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let (login, from) = who(i);
                let l = login.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
                if let Err(e) = submit(&addr, l, &from).await {
                    panic!("message {i} refused: {e}");
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    n as f64 / start.elapsed().as_secs_f64()
}

/// Waits until the container's queue is empty; the seconds it took.
async fn drain(rt: &dyn Runtime, name: &str) -> f64 {
    let start = Instant::now();
    loop {
        let o = rt
            .exec(name, &["sh", "-c", "postqueue -p | tail -n1"], None)
            .await
            .unwrap();
        if o.output.contains("Mail queue is empty") {
            return start.elapsed().as_secs_f64();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ip_on(container: &str, net: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
        container,
    ])
}

fn accounts(dir: &Path, n: usize) -> BTreeMap<String, (Account, PathBuf)> {
    (1..=n)
        .map(|i| {
            let t = format!("t{i:04}");
            let pw = dir.join(format!("{t}.pw"));
            std::fs::write(&pw, format!("pw-{t}")).unwrap();
            let mut acct = Account {
                tenant: t.clone(),
                domains: vec![format!("{t}.bench.test")],
                limits: Default::default(),
                suspended: false,
            };
            acct.limits.per_hour = 10_000_000;
            acct.limits.per_day = 10_000_000;
            (t, (acct, pw))
        })
        .collect()
}

fn cleanup() {
    for c in [
        format!("{NS}-sink"),
        format!("{NS}-plain"),
        format!("{NS}-dkim"),
        format!("{NS}-sasl"),
    ] {
        docker(&["rm", "-f", &c]);
    }
    let ids = docker(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=io.berth.namespace={NS}"),
    ]);
    for id in ids.split_whitespace() {
        docker(&["rm", "-f", id]);
    }
    for t in ["_host", "t0001", "t0002"] {
        docker(&["network", "rm", &format!("{NS}-{t}")]);
    }
    docker(&["volume", "rm", &format!("{NS}-_host-mail-queue")]);
}

#[tokio::main]
async fn main() {
    if std::env::var("BERTH_BENCH_MAIL").is_err() {
        return; // `cargo bench` without scripts/bench-mail.sh
    }
    let n: usize = env("MESSAGES", "2000").parse().unwrap();
    let conc: usize = env("CONC", "8").parse().unwrap();
    cleanup();
    let work = PathBuf::from(env("OUT_DIR", "/tmp/berth-bench-mail"));
    // KEEP_KEYS=1 keeps the DKIM keys of an earlier run (they take ~0.25 s each to make).
    if std::env::var("KEEP_KEYS").is_err() {
        let _ = std::fs::remove_dir_all(&work);
    }
    std::fs::create_dir_all(work.join("pw")).unwrap();
    let cfg = format!(
        "state_dir: {w}/state\ntemplates_dir: {w}\ninstances_dir: {w}\nnamespace: {NS}\n\
         network: {{subnet_pool: 10.252.0.0/16, subnet_prefix: 28}}\n\
         mail: {{smarthost: \"{NS}-sink:2525\", memory: 512m}}\n",
        w = work.display()
    );
    std::fs::write(work.join("berth.yaml"), cfg).unwrap();
    let host = berth::desired::host::load(&work.join("berth.yaml")).unwrap();
    let layout = berth::store::Layout::new(host.state_dir.clone());
    let rt: Arc<dyn Runtime> = Arc::new(DockerRuntime::connect().await.unwrap());
    let pool = host.subnet_pool;
    let (subnet, gateway) = pool.subnet(pool.capacity() - 1);
    let subnet_of_host = subnet.clone();
    let net = spec::network_name(NS, HOST_TENANT);
    rt.create_network(&spec::NetworkSpec {
        name: net.clone(),
        subnet,
        gateway,
        ip_range: None,
        labels: spec::owner_labels(NS, HOST_TENANT),
    })
    .await
    .unwrap();
    let img = "berth/mailrelay:bookworm";
    let sink = format!("{NS}-sink");
    docker(&[
        "run",
        "-d",
        "--name",
        &sink,
        "--network",
        &net,
        "--entrypoint",
        "smtp-sink",
        img,
        "-u",
        "postfix",
        "-c",
        "0.0.0.0:2525",
        "1000",
    ]);
    let plain = format!("{NS}-plain");
    let script = format!(
        "cp -a /etc/postfix.dist/. /etc/postfix/ && postconf -e 'smtpd_milters=' \
         'smtpd_sasl_auth_enable=no' 'mynetworks=0.0.0.0/0' \
         'smtpd_relay_restrictions=permit_mynetworks, reject' \
         'smtpd_recipient_restrictions=permit_mynetworks, reject' \
         'relayhost=[{sink}]:2525' && exec postfix start-fg"
    );
    docker(&[
        "run",
        "-d",
        "--name",
        &plain,
        "--network",
        &net,
        "--memory",
        "512m",
        "--entrypoint",
        "sh",
        img,
        "-c",
        &script,
    ]);

    let mail = Arc::new(Mail::open(host.mail.clone().unwrap(), NS, &layout));
    let (_stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    mail.listen(&mut servers, &stop_rx).unwrap();
    if std::env::var("FLOOD_ONLY").is_ok() {
        // Part 3 alone, with the two tenants' accounts only.
        let relay = berth::mail::relay::container_name(NS);
        let accts = accounts(&work.join("pw"), 2);
        let rows = flood(rt.as_ref(), &mail, &host, accts, &relay).await;
        std::fs::write(work.join("results.txt"), rows.join("\n") + "\n").unwrap();
        cleanup();
        return;
    }
    let mut rows = Vec::new();
    for tenants in [100usize, 1000] {
        let before = rss_kib();
        let accts = accounts(&work.join("pw"), tenants);
        let start = Instant::now();
        mail.sync(rt.as_ref(), &host, accts).await.unwrap();
        let sync_s = start.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let relay = berth::mail::relay::container_name(NS);
        let stats = rt.stats(&relay).await.unwrap();
        rows.push(format!(
            "tenants {tenants}: sync (relay up, DKIM keys made) {sync_s:.1} s; relay memory {:.1} MiB; \
             this process RSS +{} KiB for the accounts (now {} KiB)",
            stats.memory_bytes as f64 / 1048576.0,
            rss_kib().saturating_sub(before),
            rss_kib()
        ));
        println!("{}", rows.last().unwrap());
    }
    // Postfix + OpenDKIM without berth: the same signing (the keys just made), no SASL, no
    // berth milter; it separates the signature's cost from berth's logins and policy.
    let dkim_only = format!("{NS}-dkim");
    let dkim_dir = layout.root().join("host/mail/dkim");
    let script = format!(
        "cp -a /etc/postfix.dist/. /etc/postfix/ && postconf -e \
         'smtpd_milters=local:/run/opendkim/opendkim.sock' \
         'smtpd_sasl_auth_enable=no' 'mynetworks=0.0.0.0/0' \
         'smtpd_relay_restrictions=permit_mynetworks, reject' \
         'smtpd_recipient_restrictions=permit_mynetworks, reject' \
         'relayhost=[{sink}]:2525' && mkdir -p /run/opendkim && \
         chown opendkim:opendkim /run/opendkim && opendkim -x /etc/opendkim.conf && sleep 1 && \
         exec postfix start-fg"
    );
    docker(&[
        "run",
        "-d",
        "--name",
        &dkim_only,
        "--network",
        &net,
        "--memory",
        "512m",
        "-v",
        &format!("{}:/etc/berth-mail/dkim:ro", dkim_dir.display()),
        "--entrypoint",
        "sh",
        img,
        "-c",
        &script,
    ]);
    // The same plus berth's SASL logins (its auth socket), without berth's policy milter:
    // separates the login's cost from the policy's.
    let sasl_only = format!("{NS}-sasl");
    let run_dir = layout.root().join("host/mail/run");
    let script = format!(
        "cp -a /etc/postfix.dist/. /etc/postfix/ && postconf -e \
         'smtpd_milters=local:/run/opendkim/opendkim.sock' 'mynetworks=127.0.0.0/8' \
         'relayhost=[{sink}]:2525' && mkdir -p /run/opendkim && \
         chown opendkim:opendkim /run/opendkim && opendkim -x /etc/opendkim.conf && sleep 1 && \
         exec postfix start-fg"
    );
    docker(&[
        "run",
        "-d",
        "--name",
        &sasl_only,
        "--network",
        &net,
        "--memory",
        "512m",
        "-v",
        &format!("{}:/etc/berth-mail/dkim:ro", dkim_dir.display()),
        "-v",
        &format!("{}:/run/berth-mail:ro", run_dir.display()),
        "--entrypoint",
        "sh",
        img,
        "-c",
        &script,
    ]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let relay = berth::mail::relay::container_name(NS);
    let sasl_addr = format!("{}:587", ip_on(&sasl_only, &net));
    let relay_addr = format!("{}:587", ip_on(&relay, &net));
    let dkim_addr = format!("{}:587", ip_on(&dkim_only, &net));
    let plain_addr = format!("{}:587", ip_on(&plain, &net));
    let berth_who: Who = Arc::new(|i| {
        let t = format!("t{:04}", i % 100 + 1);
        (
            Some((t.clone(), format!("pw-{t}"))),
            format!("app@{t}.bench.test"),
        )
    });
    let plain_who: Who = Arc::new(|i| (None, format!("app@t{:04}.bench.test", i % 100 + 1)));
    // Part 1 measures throughput from this one client: exempt it from the per-client limits.
    set_limits(rt.as_ref(), &relay, &subnet_of_host).await;
    // Warm both (first connections, queue directories), then two rounds, interleaved.
    load(&plain_addr, 50, conc, plain_who.clone()).await;
    load(&dkim_addr, 50, conc, plain_who.clone()).await;
    load(&relay_addr, 50, conc, berth_who.clone()).await;
    load(&sasl_addr, 50, conc, berth_who.clone()).await;
    drain(rt.as_ref(), &plain).await;
    drain(rt.as_ref(), &sasl_only).await;
    drain(rt.as_ref(), &dkim_only).await;
    drain(rt.as_ref(), &relay).await;
    for round in 1..=2 {
        for (name, addr, who, container) in [
            ("postfix alone", &plain_addr, plain_who.clone(), &plain),
            (
                "postfix + opendkim",
                &dkim_addr,
                plain_who.clone(),
                &dkim_only,
            ),
            (
                "postfix + opendkim + berth's SASL",
                &sasl_addr,
                berth_who.clone(),
                &sasl_only,
            ),
            ("berth relay", &relay_addr, berth_who.clone(), &relay),
        ] {
            let start = Instant::now();
            let rate = load(addr, n, conc, who).await;
            let drained = drain(rt.as_ref(), container).await;
            let total = start.elapsed().as_secs_f64();
            let row = format!(
                "round {round} {name}: {n} messages, {conc} at once: submitted {rate:.0} msg/s; \
                 all relayed to the sink after {total:.1} s ({:.0} msg/s end to end; queue drained {drained:.1} s after the last)",
                n as f64 / total
            );
            println!("{row}");
            rows.push(row);
        }
    }
    for (name, c) in [
        ("berth relay", &relay),
        ("postfix + opendkim", &dkim_only),
        ("postfix alone", &plain),
    ] {
        let stats = rt.stats(c).await.unwrap();
        let row = format!(
            "after the load, 1000 tenants' keys: {name} memory {:.1} MiB",
            stats.memory_bytes as f64 / 1048576.0
        );
        println!("{row}");
        rows.push(row);
    }
    set_limits(rt.as_ref(), &relay, "").await;
    let accts = accounts(&work.join("pw"), 1000);
    rows.extend(flood(rt.as_ref(), &mail, &host, accts, &relay).await);
    std::fs::write(work.join("results.txt"), rows.join("\n") + "\n").unwrap();
    cleanup();
}

/// The relay's per-client limits exempt `exceptions` (Postfix syntax; empty: nobody).
async fn set_limits(rt: &dyn Runtime, relay: &str, exceptions: &str) {
    let cmd =
        format!("postconf -e 'smtpd_client_event_limit_exceptions={exceptions}' && postfix reload");
    let o = rt.exec(relay, &["sh", "-c", &cmd], None).await.unwrap();
    assert_eq!(o.exit_code, 0, "{}", o.output);
    tokio::time::sleep(Duration::from_secs(2)).await;
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

/// `n` messages one after another as `t`: (sent, refused, latencies in ms).
async fn steady(addr: &str, t: &str, n: usize) -> (usize, usize, Vec<f64>) {
    let (mut ok, mut refused, mut ms) = (0, 0, vec![]);
    for _ in 0..n {
        let start = Instant::now();
        let r = submit(
            addr,
            Some((t, &format!("pw-{t}"))),
            &format!("app@{t}.bench.test"),
        )
        .await;
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
        match r {
            Ok(()) => ok += 1,
            Err(_) => refused += 1,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    (ok, refused, ms)
}

/// Part 3: t0001 floods from its network while t0002 sends from its own.
async fn flood(
    rt: &dyn Runtime,
    mail: &Mail,
    host: &berth::desired::HostConfig,
    accts: BTreeMap<String, (Account, PathBuf)>,
    relay: &str,
) -> Vec<String> {
    // As the agent does: the relay's per-client limits in its namespace, its route pinned.
    rt.seal_with(berth::runtime::netns::Sealing {
        resolvers: vec![],
        host_network: spec::network_name(NS, HOST_TENANT),
    });
    let pool = host.subnet_pool;
    for (i, t) in ["t0001", "t0002"].iter().enumerate() {
        let n = i as u32 + 1;
        let net = spec::network_spec(NS, t, pool.subnet(n), Some(pool.dynamic_range(n)));
        rt.create_network(&net).await.unwrap();
    }
    mail.sync(rt, host, accts).await.unwrap();
    let a = format!("{}:587", ip_on(relay, &spec::network_name(NS, "t0001")));
    let b = format!("{}:587", ip_on(relay, &spec::network_name(NS, "t0002")));
    let n: usize = env("STEADY", "50").parse().unwrap();
    let conc: usize = env("FLOOD_CONC", "64").parse().unwrap();
    let secs: u64 = env("FLOOD_S", "20").parse().unwrap();
    let mut rows = vec![];
    let (ok, refused, mut ms) = steady(&b, "t0002", n).await;
    rows.push(format!(
        "relay, nobody flooding: t0002 sent {ok}/{n} (refused {refused}), one at a time: p50 {:.0} ms, p99 {:.0} ms",
        percentile(&mut ms, 0.5),
        percentile(&mut ms, 0.99)
    ));
    println!("{}", rows.last().unwrap());
    // Wait out the minute of the idle run's connections (anvil's window).
    tokio::time::sleep(Duration::from_secs(61)).await;
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let turned = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let until = Instant::now() + Duration::from_secs(secs);
    let mut flooders = tokio::task::JoinSet::new();
    for _ in 0..conc {
        let (a, sent, turned) = (a.clone(), sent.clone(), turned.clone());
        flooders.spawn(async move {
            while Instant::now() < until {
                let r = submit(&a, Some(("t0001", "pw-t0001")), "app@t0001.bench.test").await;
                let c = if r.is_ok() { &sent } else { &turned };
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ok, refused, mut ms) = steady(&b, "t0002", n).await;
    while flooders.join_next().await.is_some() {}
    let peak = rt.stats(relay).await.map(|s| s.memory_bytes).unwrap_or(0);
    rows.push(format!(
        "relay, t0001 flooding ({conc} connections looping for {secs} s: {} messages accepted, {} connections refused or cut): \
         t0002 sent {ok}/{n} (refused {refused}), one at a time: p50 {:.0} ms, p99 {:.0} ms; relay memory after {:.1} MiB",
        sent.load(std::sync::atomic::Ordering::Relaxed),
        turned.load(std::sync::atomic::Ordering::Relaxed),
        percentile(&mut ms, 0.5),
        percentile(&mut ms, 0.99),
        peak as f64 / 1048576.0
    ));
    println!("{}", rows.last().unwrap());
    rows
}
