//! `berth mail T` (a tenant's mail at the relay) and `berth mail dns T` (records to publish).

use super::table::{human_bytes, relative, render};
use serde_json::Value;

/// What the two positional arguments ask for: `dns T`, or `T`.
pub fn target(first: &str, second: Option<&str>) -> anyhow::Result<(bool, String)> {
    match (first, second) {
        ("dns", Some(t)) => Ok((true, t.to_string())),
        (_, Some(extra)) => anyhow::bail!(
            "unexpected argument {extra:?}: use `berth mail TENANT` or `berth mail dns TENANT`"
        ),
        (t, None) => Ok((false, t.to_string())),
    }
}

pub fn report(v: &Value) -> String {
    let n = |k: &str| v[k].as_u64().unwrap_or_default().to_string();
    let list = |k: &str| {
        v[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let mut out = format!(
        "relay:      {}:{} (login {}, password: the template's mail secret)\n\
         domains:    {}\n\
         limits:     {}/hour, {}/day, {} recipients, {} per message{}\n\
         last hour:  {} accepted ({} today)\n\n",
        v["host"].as_str().unwrap_or("-"),
        n("port"),
        v["login"].as_str().unwrap_or("-"),
        list("domains"),
        n("per_hour"),
        n("per_day"),
        n("recipients"),
        human_bytes(v["max_size"].as_u64().unwrap_or_default()),
        if v["suspended"] == true {
            " — SUSPENDED: nothing is accepted"
        } else {
            ""
        },
        n("last_hour"),
        n("last_day"),
    );
    let keys = [
        "accepted", "sent", "deferred", "bounced", "refused", "queued",
    ];
    let header: Vec<String> = keys.iter().map(|k| k.to_uppercase()).collect();
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    out += &render(&header, &[keys.iter().map(|k| n(k)).collect()]);
    if let Some(e) = v["relay_error"].as_str() {
        out += &format!("\nrelay not up: {e}\n");
    }
    let errors: Vec<Vec<String>> = v["last_errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            vec![
                e["at"].as_u64().map_or("-".into(), relative),
                e["result"].as_str().unwrap_or("").into(),
                e["text"].as_str().unwrap_or("").into(),
            ]
        })
        .collect();
    if !errors.is_empty() {
        out += "\nlast errors:\n";
        out += &render(&["WHEN", "RESULT", "REPLY"], &errors);
    }
    out
}

pub fn dns(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            vec![
                r["name"].as_str().unwrap_or("").into(),
                r["type"].as_str().unwrap_or("").into(),
                match r["value"].as_str() {
                    Some(s) => format!("\"{s}\""),
                    None => "(key not made yet: the relay makes it within a minute)".into(),
                },
            ]
        })
        .collect();
    render(&["NAME", "TYPE", "VALUE"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_dns_t_asks_for_records_and_a_third_word_is_refused() {
        assert_eq!(target("acme", None).unwrap(), (false, "acme".into()));
        assert_eq!(target("dns", Some("acme")).unwrap(), (true, "acme".into()));
        assert_eq!(target("dns", None).unwrap(), (false, "dns".into()));
        assert!(target("acme", Some("x")).is_err());
    }
}
