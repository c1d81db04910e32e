//! The dashboard's pages: the overview (every tenant the caller may see, and for the operator
//! the host, a running fleet upgrade and recent audit events) and a tenant's page.

use super::filter::{Filter, PHASES};
use super::{Viewer, call, render};
use crate::{api::auth::policy::Need, metrics::top::Top, services::InstanceStatus, ui::UiState};
use axum::{
    extract::{Path, Query, State, rejection::QueryRejection},
    http::{Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use minijinja::context;
use serde::{Deserialize, Serialize};
use std::{collections::HashMap, sync::Mutex};

/// The last two distinct stats sweeps, for CPU and request rates between them.
#[derive(Default)]
pub struct Rates {
    sweeps: Mutex<[Option<Sweep>; 2]>,
}

#[derive(Clone)]
struct Sweep {
    at: u64,
    per: HashMap<String, (f64, u64)>,
}

impl Rates {
    /// Per tenant: CPU in % of one core, and requests per second, since the sweep before.
    fn observe(&self, top: &Top) -> HashMap<String, (f64, f64)> {
        let now = Sweep {
            at: top.at,
            per: top
                .tenants
                .iter()
                .map(|t| (t.tenant.clone(), (t.cpu_seconds, t.requests)))
                .collect(),
        };
        let mut s = self.sweeps.lock().expect("rates lock");
        if s[1].as_ref().is_none_or(|l| l.at != now.at) {
            s[0] = s[1].take();
            s[1] = Some(now);
        }
        let (Some(a), Some(b)) = (&s[0], &s[1]) else {
            return HashMap::new();
        };
        let span = b.at.saturating_sub(a.at) as f64;
        if span <= 0.0 {
            return HashMap::new();
        }
        b.per
            .iter()
            .filter_map(|(t, (cpu, req))| {
                let (c0, r0) = a.per.get(t)?;
                let cpu = ((cpu - c0) / span * 100.0).max(0.0);
                Some((t.clone(), (cpu, req.saturating_sub(*r0) as f64 / span)))
            })
            .collect()
    }
}

/// One tenant's line on the overview.
#[derive(Debug, Serialize)]
pub(super) struct Row {
    pub(super) tenant: String,
    pub(super) app: String,
    pub(super) version: String,
    pub(super) plan: String,
    pub(super) labels: std::collections::BTreeMap<String, String>,
    pub(super) phase: String,
    pub(super) health: &'static str,
    pub(super) error: Option<String>,
    pub(super) cpu: Option<f64>,
    pub(super) cpus: Option<f64>,
    pub(super) memory: Option<u64>,
    pub(super) memory_limit: Option<u64>,
    pub(super) disk: Option<u64>,
    pub(super) quota: Option<u64>,
    pub(super) rps: Option<f64>,
    pub(super) cert: Option<u64>,
    pub(super) backup: Option<u64>,
}

/// The probes' verdict in one word: none, healthy, starting or unhealthy.
fn health(st: &InstanceStatus) -> &'static str {
    use crate::runtime::Health::*;
    let mut word = if st.probes.is_empty() { "-" } else { "healthy" };
    for p in &st.probes {
        match p.health {
            Unhealthy => return "unhealthy",
            Starting => word = "starting",
            Healthy => {}
        }
    }
    word
}

fn phase(st: &InstanceStatus) -> String {
    serde_json::to_value(st.phase)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn rows(s: &UiState, v: &Viewer) -> Vec<Row> {
    let mut board = s.cx.passes.board().instances;
    if let Some(own) = v.who.visible() {
        board.retain(|t, _| own.contains(t));
    }
    let desired = s.cx.passes.desired();
    let top = s.metrics.as_ref().map(|m| m.top()).unwrap_or_default();
    let rates = s.ui.rates.observe(&top);
    let top: HashMap<String, crate::metrics::top::TenantTop> = top
        .tenants
        .into_iter()
        .map(|r| (r.tenant.clone(), r))
        .collect();
    let certs = cert_expiry(s);
    board
        .into_values()
        .map(|st| {
            let t = top.get(&st.tenant);
            let inst = desired.instances.get(&st.tenant);
            let rate = rates.get(&st.tenant);
            Row {
                app: st.template.clone().unwrap_or_default(),
                version: st.version.clone().unwrap_or_default(),
                plan: st.plan.clone().unwrap_or_default(),
                labels: if v.who.is_operator() {
                    st.labels.clone()
                } else {
                    Default::default()
                },
                phase: phase(&st),
                health: health(&st),
                error: st.error.clone(),
                cpu: rate.map(|r| r.0),
                cpus: inst.map(|i| i.limits.cpus),
                memory: t.map(|t| t.memory),
                memory_limit: inst.map(|i| i.limits.memory),
                disk: t.and_then(|t| t.disk_used),
                quota: inst.and_then(|i| i.quota.disk),
                rps: rate.map(|r| r.1),
                cert: certs.get(&st.tenant).copied(),
                backup: s.fleet.backups.list(&st.tenant).last().map(|b| b.created),
                tenant: st.tenant,
            }
        })
        .collect()
}

/// The soonest certificate expiry per tenant.
fn cert_expiry(s: &UiState) -> HashMap<String, u64> {
    let mut out = HashMap::<String, u64>::new();
    for c in s.certs.as_ref().map(|c| c.rows()).unwrap_or_default() {
        let e = out.entry(c.tenant).or_insert(c.not_after);
        *e = (*e).min(c.not_after);
    }
    out
}

fn bad_query(e: QueryRejection) -> Response {
    render::error(StatusCode::BAD_REQUEST, &e.body_text())
}

pub async fn overview(
    v: Viewer,
    State(s): State<UiState>,
    q: Result<Query<Filter>, QueryRejection>,
) -> Response {
    let Query(filter) = match q {
        Ok(q) => q,
        Err(e) => return bad_query(e),
    };
    let sel = match filter.selector() {
        Ok(sel) if !sel.labels.is_empty() && !v.who.is_operator() => {
            return render::error(StatusCode::FORBIDDEN, "labels are the operator's");
        }
        Ok(sel) => sel,
        Err(e) => return render::error(StatusCode::BAD_REQUEST, &format!("labels: {e}")),
    };
    let (s2, v2) = (s.clone(), v.clone());
    let all = tokio::task::spawn_blocking(move || rows(&s2, &v2))
        .await
        .unwrap_or_default();
    let apps: std::collections::BTreeSet<String> = all.iter().map(|r| r.app.clone()).collect();
    let shown: Vec<&Row> = all.iter().filter(|r| filter.keeps(&sel, r)).collect();
    let plans: std::collections::BTreeSet<String> = all.iter().map(|r| r.plan.clone()).collect();
    let operator = v.who.is_operator();
    let (capacity, upgrade) = if operator {
        let u = call(&s, &v.who, Method::GET, "/v1/upgrades/current", None).await;
        (
            capacity(&s).await,
            u.status.is_success().then(|| upgrade_view(u.json())),
        )
    } else {
        (serde_json::Value::Null, None)
    };
    let audit = call(&s, &v.who, Method::GET, "/v1/audit?limit=15", None).await;
    let mut audit = audit.json().as_array().cloned().unwrap_or_default();
    audit.reverse();
    let ctx = context! {
        who => who_view(&v), csrf => v.csrf, flash => s.ui.sessions.take_flash(&v.sid),
        rows => shown, total => all.len(), apps, plans, filter => context! {
            app => filter.app, phase => filter.phase, q => filter.q, labels => filter.labels,
            plan => filter.plan },
        phases => PHASES, operator, capacity, upgrade, audit,
    };
    render::page("overview.html", ctx, StatusCode::OK)
}

/// Host capacity from the last pass's desired state: `GET /v1/capacity` reads every instance
/// file again (as admission does), which a page view need not pay for.
async fn capacity(s: &UiState) -> serde_json::Value {
    let (host, desired) = (s.cx.svc.host().clone(), s.cx.passes.desired());
    let asleep = s.cx.svc.sleep().asleep().len();
    let report = tokio::task::spawn_blocking(move || {
        let now = crate::capacity::measure(&host.state_dir);
        crate::capacity::report(&host, &desired, now)
    })
    .await;
    match report {
        Ok(mut r) => {
            r.asleep = asleep;
            serde_json::to_value(r).unwrap_or_default()
        }
        Err(_) => serde_json::Value::Null,
    }
}

/// A fleet upgrade with its waves and how far it got.
fn upgrade_view(u: serde_json::Value) -> serde_json::Value {
    let tenants = u["tenants"].as_object().cloned().unwrap_or_default();
    let done = tenants
        .values()
        .filter(|t| matches!(t["phase"].as_str(), Some("done" | "rolled_back" | "failed")))
        .count();
    let waves: Vec<serde_json::Value> = u["waves"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, w)| {
            let members: Vec<serde_json::Value> = w
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t.as_str())
                .map(|t| serde_json::json!({ "tenant": t, "phase": tenants.get(t).map(|p| p["phase"].clone()) }))
                .collect();
            serde_json::json!({ "index": i + 1, "tenants": members })
        })
        .collect();
    serde_json::json!({
        "id": u["id"], "app": u["app"], "to": u["to"], "status": u["status"],
        "wave": u["wave"].as_u64().map(|w| w + 1), "waves": waves,
        "done": done, "total": tenants.len(), "reason": u["reason"],
    })
}

fn who_view(v: &Viewer) -> serde_json::Value {
    serde_json::json!({
        "name": v.who.actor.name,
        "prefix": v.who.actor.prefix,
        "role": v.who.role,
        "tenants": v.who.tenants,
        "operator": v.who.is_operator(),
    })
}

pub async fn tenant(v: Viewer, State(s): State<UiState>, Path(t): Path<String>) -> Response {
    if let Err(e) = crate::api::params::tenant(&t) {
        return render::error(StatusCode::BAD_REQUEST, &e.to_string());
    }
    // The same check the API makes: another tenant's page answers like one that is not there.
    if let Err(e) = v.who.check(Need::Read, Some(&t)) {
        let r = axum::response::IntoResponse::into_response(e);
        return render::error(r.status(), &format!("no instance {t:?}"));
    }
    let base = format!("/v1/instances/{t}");
    let show = call(&s, &v.who, Method::GET, &base, None).await;
    if !show.status.is_success() {
        return render::error(show.status, &show.error());
    }
    let backups = call(&s, &v.who, Method::GET, &format!("{base}/backups"), None).await;
    let jobs = call(&s, &v.who, Method::GET, &format!("{base}/jobs"), None).await;
    let logs = call(
        &s,
        &v.who,
        Method::GET,
        &format!("{base}/logs?tail=100"),
        None,
    )
    .await;
    let audit = call(
        &s,
        &v.who,
        Method::GET,
        &format!("/v1/audit?tenant={t}&limit=10"),
        None,
    )
    .await;
    let inst = show.json();
    let mut backups = backups.json();
    if let Some(b) = backups["backups"].as_array_mut() {
        b.reverse();
    }
    let mut audit = audit.json().as_array().cloned().unwrap_or_default();
    audit.reverse();
    let ctx = context! {
        who => who_view(&v), csrf => v.csrf, flash => s.ui.sessions.take_flash(&v.sid),
        parameters => s.cx.passes.desired().instances.get(&t).map(|i| i.parameters.clone()),
        tenant => t, inst, domains => domains(&s, &t, &inst), backups, jobs => jobs.json(),
        logs => logs_text(&logs), audit, manage => v.who.may_manage(&t),
        operator => v.who.is_operator(),
    };
    render::page("tenant.html", ctx, StatusCode::OK)
}

/// The tenant's domains, each with its proof (what to publish) until it is verified.
fn domains(s: &UiState, t: &str, inst: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut names: Vec<String> = inst["domains"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(str::to_string))
        .collect();
    if let Some(i) = s.cx.passes.desired().instances.get(t) {
        names.extend(i.domains.iter().cloned());
    }
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|d| {
            let (bound, pending) = s.domains.entry(&d, t);
            serde_json::json!({
                "domain": d,
                "verified": bound.is_some(),
                "custom": pending.is_some() || bound.is_some(),
                "proof": pending.map(|p| serde_json::json!({
                    "dns_name": format!("_berth.{d}"), "value": p.token,
                    "http": format!("http://{d}{}", crate::domains::verify::HTTP_PATH),
                })),
            })
        })
        .collect()
}

fn logs_text(a: &super::Answer) -> String {
    if a.status.is_success() {
        String::from_utf8_lossy(&a.body).into_owned()
    } else {
        format!("(no logs: {})", a.error())
    }
}

/// The log tail as text, for the page's script to refresh it.
pub async fn logs(v: Viewer, State(s): State<UiState>, Path(t): Path<String>) -> Response {
    if crate::api::params::tenant(&t).is_err() {
        return render::error(StatusCode::BAD_REQUEST, "not a tenant name");
    }
    let uri = format!("/v1/instances/{t}/logs?tail=100");
    let a = call(&s, &v.who, Method::GET, &uri, None).await;
    if !a.status.is_success() {
        return (a.status, a.error()).into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        a.body,
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmQuery {
    id: String,
}

/// A restore replaces data: the page that asks first (a link, so it works without script).
pub async fn confirm_restore(
    v: Viewer,
    Path(t): Path<String>,
    q: Result<Query<ConfirmQuery>, QueryRejection>,
) -> Response {
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return bad_query(e),
    };
    let checked =
        crate::api::params::tenant(&t).and_then(|()| crate::api::params::backup_ref(&q.id));
    if let Err(e) = checked {
        return render::error(StatusCode::BAD_REQUEST, &e.to_string());
    }
    if let Err(e) = v.who.check(Need::Manage, Some(&t)) {
        let status = axum::response::IntoResponse::into_response(e).status();
        return render::error(status, &format!("no instance {t:?}"));
    }
    let ctx = context! { who => who_view(&v), csrf => v.csrf, tenant => t, id => q.id };
    render::page("confirm.html", ctx, StatusCode::OK)
}
