//! The MariaDB restore's DEFINER lexer against the copy it replaced: throughput over a
//! mariadb-dump-shaped stream (extended INSERT lines of escaped text with quotes and
//! backslashes, a few views and routines), so the cost of following every byte of row data is
//! known beside what the database's own client loads per second.
//! Run: cargo bench --bench definers [-- MiB]

use berth::backup::engine::definers::Definers;
use std::time::Instant;

/// About `mib` MiB of dump: DDL heads with definers every 64 lines, INSERTs between.
fn dump(mib: usize) -> Vec<Vec<u8>> {
    let mut lines = vec![b"DELIMITER ;;\n".to_vec()];
    let row =
        "(42,'How to use DEFINER=`app`@`%` in views','it''s \\'quoted\\' and \\\\ back','yes')";
    let insert = format!(
        "INSERT INTO `wp_options` VALUES {};;\n",
        vec![row; 120].join(",")
    );
    let mut size = 0;
    let mut n = 0usize;
    while size < mib << 20 {
        let l = if n.is_multiple_of(64) {
            "CREATE DEFINER=`wp`@`%` PROCEDURE `p`() BEGIN SELECT 'x;;y'; END ;;\n".to_string()
        } else {
            insert.clone()
        };
        size += l.len();
        lines.push(l.into_bytes());
        n += 1;
    }
    lines
}

/// berth's rewrite before this change, verbatim: every `DEFINER=user@host` in a line went,
/// row data included.
fn strip_definers(dump: &[u8]) -> Vec<u8> {
    let pat = b"DEFINER=";
    let mut out = Vec::with_capacity(dump.len());
    let mut i = 0;
    while i < dump.len() {
        if dump[i..].starts_with(pat) {
            let mut j = i + pat.len();
            for part in 0..2 {
                if dump.get(j) == Some(&b'`') {
                    j += 1;
                    while j < dump.len() {
                        if dump[j] == b'`' && dump.get(j + 1) == Some(&b'`') {
                            j += 2;
                        } else if dump[j] == b'`' {
                            j += 1;
                            break;
                        } else {
                            j += 1;
                        }
                    }
                } else {
                    while j < dump.len() && !matches!(dump[j], b'@' | b' ' | b'*') {
                        j += 1;
                    }
                }
                if part == 0 && dump.get(j) == Some(&b'@') {
                    j += 1;
                } else {
                    break;
                }
            }
            i = j;
            continue;
        }
        out.push(dump[i]);
        i += 1;
    }
    out
}

fn main() {
    let mib: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(256);
    let lines = dump(mib);
    let bytes: usize = lines.iter().map(Vec::len).sum();
    for round in 1..=3 {
        // What berth did before: each line holding `DEFINER=` through `strip_definers`
        // (which also cut the text out of rows).
        let t = Instant::now();
        let mut out = 0usize;
        for l in &lines {
            let hit = l.windows(8).any(|w| w == b"DEFINER=");
            out += if hit {
                strip_definers(l).len()
            } else {
                l.len()
            };
        }
        let scan = t.elapsed();
        std::hint::black_box(out);
        let t = Instant::now();
        let mut d = Definers::default();
        let mut out = 0usize;
        for l in &lines {
            out += d.line(l, true).len();
        }
        let lex = t.elapsed();
        std::hint::black_box(out);
        let mbs = |d: std::time::Duration| bytes as f64 / (1 << 20) as f64 / d.as_secs_f64();
        println!(
            "round {round}: {:.0} MiB: before (strip_definers) {:.0} MiB/s, lexer {:.0} MiB/s ({:.2}x)",
            bytes as f64 / (1 << 20) as f64,
            mbs(scan),
            mbs(lex),
            scan.as_secs_f64() / lex.as_secs_f64()
        );
    }
}
