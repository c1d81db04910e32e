//! Readable tables for the read commands.

use serde_json::Value;

/// Left-aligned columns, two spaces apart, header first.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        s.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out += &line(r.clone());
    }
    out
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(x) => x.clone(),
        other => other.to_string(),
    }
}

/// A JSON list of strings joined with `sep`, or `-` when it is empty or absent.
fn joined(v: &Value, sep: &str) -> String {
    let items: Vec<String> = v.as_array().into_iter().flatten().map(s).collect();
    if items.is_empty() {
        "-".into()
    } else {
        items.join(sep)
    }
}

/// Where the tenant's web app answers: its address on its own network, or on its swarm node
/// (`node/10.0.0.3:20001`, `DOWN` if the swarm says so).
fn web_at(i: &Value) -> String {
    let Some(addr) = i["address"].as_str() else {
        return "-".into();
    };
    let web = &i["web_service"];
    let node = i["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["service"] == *web)
        .map(|c| &c["node"])
        .filter(|n| n.is_object());
    match node {
        Some(n) if n["ready"] == false => format!("{} DOWN {addr}", s(&n["name"])),
        Some(n) => format!("{}/{addr}", s(&n["name"])),
        None => addr.into(),
    }
}

pub fn instances(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            vec![
                s(&i["tenant"]),
                s(&i["template"]),
                s(&i["version"]),
                s(&i["desired"]),
                s(&i["phase"]),
                web_at(i),
                joined(&i["domains"], ","),
            ]
        })
        .collect();
    render(
        &[
            "TENANT", "TEMPLATE", "VERSION", "DESIRED", "PHASE", "ADDRESS", "DOMAINS",
        ],
        &rows,
    )
}

/// `egress: own network and the internet; also 10.1.2.3/32:587 (in force)`, or why not.
fn egress_line(e: &Value) -> String {
    if e.is_null() {
        return String::new();
    }
    let also = match joined(&e["allowed"], ", ") {
        none if none == "-" => String::new(),
        list => format!("; also {list}"),
    };
    let state = match (e["enforced"].as_bool(), e["error"].as_str()) {
        (Some(true), _) => "in force".to_string(),
        (_, Some(why)) => format!("NOT enforced: {why}"),
        _ => "not enforced yet".to_string(),
    };
    format!(
        "egress: own network and the internet{also}; private, shared, link-local ranges and the host dropped ({state})\n"
    )
}

pub fn status(v: &Value) -> String {
    let mut out = instances(&Value::Array(vec![v.clone()]));
    if let Some(e) = v["error"].as_str() {
        out += &format!("\nerror: {e}\n");
    }
    if let Some(q) = v["disk"]["quota"].as_u64() {
        let used = v["disk"]["usage"]["used"]
            .as_u64()
            .map_or("-".to_string(), human_bytes);
        out += &format!(
            "\ndisk: {} quota, {used} used ({})\n",
            human_bytes(q),
            s(&v["disk"]["state"])
        );
    }
    out += &egress_line(&v["egress"]);
    if let Some(p) = v["pull"].as_object() {
        let b = |k: &str| human_bytes(p.get(k).and_then(|x| x.as_u64()).unwrap_or(0));
        out += &format!(
            "pulling: {} — {}/{} layers, {} of {}\n",
            s(&p["image"]),
            p["layers_done"],
            p["layers"],
            b("bytes"),
            b("bytes_total")
        );
    }
    let rows: Vec<Vec<String>> = v["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            vec![
                s(&c["service"]),
                s(&c["name"]),
                s(&c["status"]),
                s(&c["health"]),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out += "\n";
        out += &render(&["SERVICE", "CONTAINER", "STATUS", "HEALTH"], &rows);
    }
    out
}

/// `berth images`.
pub fn images(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            vec![
                s(&r["reference"]),
                s(&r["id"]),
                r["size"].as_u64().map_or("-".into(), human_bytes),
                r["digest"]
                    .as_str()
                    .map_or("-".into(), |d| d.chars().take(19).collect()),
                joined(&r["tenants"], ","),
                if r["pulled_by_berth"] == true {
                    "yes"
                } else {
                    "no"
                }
                .into(),
                if r["pinned"].is_string() { "yes" } else { "-" }.into(),
            ]
        })
        .collect();
    render(
        &[
            "REFERENCE",
            "ID",
            "SIZE",
            "DIGEST",
            "TENANTS",
            "PULLED BY BERTH",
            "PINNED",
        ],
        &rows,
    )
}

/// `berth images prune`.
pub fn pruned(v: &Value) -> String {
    let mut out = String::new();
    for r in v["removed"].as_array().into_iter().flatten() {
        out += &format!("removed {}\n", s(r));
    }
    for k in v["kept"].as_array().into_iter().flatten() {
        out += &format!("kept {}: {}\n", s(&k["reference"]), s(&k["reason"]));
    }
    if out.is_empty() {
        out = "nothing to prune\n".into();
    }
    out
}

pub use crate::human::{human_bytes, relative};

/// `berth token ls`.
pub fn tokens(v: &Value) -> String {
    let when = |x: &Value| x.as_u64().map_or("-".to_string(), relative);
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let state = if !t["revoked"].is_null() {
                "revoked"
            } else if t["expires"]
                .as_u64()
                .is_some_and(|e| relative(e).ends_with("ago"))
            {
                "expired"
            } else {
                "active"
            };
            vec![
                format!("bth_{}", s(&t["id"])),
                s(&t["name"]),
                s(&t["role"]),
                joined(&t["tenants"], ","),
                if t["expires"].is_null() {
                    "never".into()
                } else {
                    when(&t["expires"])
                },
                when(&t["last_used"]),
                state.into(),
            ]
        })
        .collect();
    render(
        &[
            "PREFIX",
            "NAME",
            "ROLE",
            "TENANTS",
            "EXPIRES",
            "LAST USED",
            "STATE",
        ],
        &rows,
    )
}

/// `berth audit`.
pub fn audit(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let actor = match e["actor"]["prefix"].as_str() {
                Some(p) => format!("{} ({p})", s(&e["actor"]["name"])),
                None => format!("{}:{}", s(&e["actor"]["kind"]), s(&e["actor"]["name"])),
            };
            let result = match e["error"].as_str() {
                Some(err) => format!("{}: {err}", s(&e["result"])),
                None => s(&e["result"]),
            };
            vec![
                e["time"]
                    .as_u64()
                    .map_or("-".into(), |ms| relative(ms / 1000)),
                actor,
                s(&e["source"]),
                s(&e["tenant"]),
                s(&e["action"]),
                s(&e["target"]),
                result,
            ]
        })
        .collect();
    render(
        &[
            "WHEN", "ACTOR", "SOURCE", "TENANT", "ACTION", "TARGET", "RESULT",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_read_in_human_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(25_232_932_864), "23.5 GiB");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(relative(now - 180), "3m ago");
        assert!(relative(now).ends_with("s ago"), "now is no future");
        assert_eq!(relative(now - 7200), "2h ago");
        assert!(relative(now + 30 * 86400 + 5).starts_with("in 30d"));
        assert_eq!(relative(0).chars().last(), Some('o'), "the epoch, long ago");
    }

    #[test]
    fn columns_line_up() {
        let t = render(&["A", "BB"], &[vec!["long".into(), "x".into()]]);
        assert_eq!(t, "A     BB\nlong  x\n");
    }
}
