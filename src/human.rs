//! Figures as people read them, in the CLI's tables and the dashboard alike.

/// Bytes in binary units with one decimal: `512 B`, `23.5 GiB`.
pub fn human_bytes(b: u64) -> String {
    bytesize::ByteSize::b(b).display().iec().to_string()
}

/// A Unix time relative to now in the largest whole unit: `42s ago`, `3m ago`, `in 29d`.
pub fn relative(unix_s: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    let d = unix_s as i64 - now;
    let a = d.unsigned_abs();
    let span = match a {
        0..60 => format!("{a}s"),
        60..3600 => format!("{}m", a / 60),
        3600..86400 => format!("{}h", a / 3600),
        _ => format!("{}d", a / 86400),
    };
    if d > 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}
