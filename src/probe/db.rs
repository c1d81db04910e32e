//! Database probes that speak each engine's wire protocol from the host to the container's
//! address on the tenant network: a port that accepts TCP but does not answer as the database
//! does (or answers "starting up") is not healthy. The caller bounds time.

use super::ProbeError;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

async fn connect(addr: SocketAddr) -> Result<TcpStream, ProbeError> {
    TcpStream::connect(addr)
        .await
        .map_err(|source| ProbeError::Connect { addr, source })
}

/// PostgreSQL: a protocol 3.0 startup for the tenant's user and database, as `pg_isready`
/// does. An authentication request (or an authentication error) means the server accepts
/// connections; "the database system is starting up" (57P03) and anything unexpected do not.
/// Nothing is authenticated and nothing is logged by the server.
pub async fn postgres(addr: SocketAddr, user: &str, database: &str) -> Result<(), ProbeError> {
    let mut s = connect(addr).await?;
    s.write_all(&startup_message(user, database))
        .await
        .map_err(ProbeError::io)?;
    let tag = s.read_u8().await.map_err(ProbeError::io)?;
    let len = s.read_u32().await.map_err(ProbeError::io)? as usize;
    if !(4..=8192).contains(&len) {
        return Err(ProbeError::Protocol(format!(
            "not a PostgreSQL answer (length {len})"
        )));
    }
    let mut body = vec![0; len - 4];
    s.read_exact(&mut body).await.map_err(ProbeError::io)?;
    let verdict = postgres_verdict(tag, &body);
    if tag == b'R' {
        let _ = s.write_all(&[b'X', 0, 0, 0, 4]).await;
    }
    verdict
}

fn startup_message(user: &str, database: &str) -> Vec<u8> {
    let mut body = 196608u32.to_be_bytes().to_vec();
    for (k, v) in [("user", user), ("database", database)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut msg = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    msg.extend(body);
    msg
}

fn postgres_verdict(tag: u8, body: &[u8]) -> Result<(), ProbeError> {
    match tag {
        b'R' | b'v' => Ok(()),
        b'E' => {
            let field = |f: u8| {
                body.split(|b| *b == 0)
                    .find(|x| x.first() == Some(&f))
                    .map(|x| String::from_utf8_lossy(&x[1..]).to_string())
                    .unwrap_or_default()
            };
            let (code, msg) = (field(b'C'), field(b'M'));
            // Class 28 (authorization) and 3D000 (no such database) come from a server that
            // accepts connections: the probe's own credentials are not the app's business.
            if code.starts_with("28") || code == "3D000" {
                Ok(())
            } else {
                Err(ProbeError::Postgres { code, message: msg })
            }
        }
        t => Err(ProbeError::Protocol(format!(
            "not a PostgreSQL answer (message {:?})",
            t as char
        ))),
    }
}

/// MariaDB/MySQL: reads the server greeting and logs in as the tenant's user (so the server
/// counts no aborted handshake against `max_connect_errors` and logs no denied access), then
/// quits. An error greeting (too many connections, host blocked) is unhealthy; a refused login
/// still proves the server answers its protocol, as `healthcheck.sh --connect` would.
pub async fn mariadb(addr: SocketAddr, user: &str, password: &[u8]) -> Result<(), ProbeError> {
    let mut s = connect(addr).await?;
    let (_, greeting) = read_packet(&mut s).await?;
    let hello = Greeting::parse(&greeting)?;
    let auth = scramble(&hello.plugin, password, &hello.nonce);
    write_packet(&mut s, 1, &login(user, &auth, &hello.plugin)).await?;
    let verdict = after_login(&mut s, password).await;
    let _ = write_packet(&mut s, 0, &[0x01]).await;
    verdict
}

async fn after_login(s: &mut TcpStream, password: &[u8]) -> Result<(), ProbeError> {
    let (seq, p) = read_packet(s).await?;
    match p.first() {
        Some(0x00) => Ok(()),
        Some(0xff) => refused_login(&p),
        // Auth switch: answer once with the plugin the server asks for.
        Some(0xfe) if p.len() > 1 => {
            let rest = &p[1..];
            let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            let plugin = String::from_utf8_lossy(&rest[..end]).to_string();
            let nonce = rest.get(end + 1..).unwrap_or_default();
            let nonce = nonce.strip_suffix(&[0]).unwrap_or(nonce);
            write_packet(s, seq.wrapping_add(1), &scramble(&plugin, password, nonce)).await?;
            let (_, p) = read_packet(s).await?;
            match p.first() {
                Some(0xff) => refused_login(&p),
                _ => Ok(()),
            }
        }
        // caching_sha2 "fast auth ok" or "full auth needed": the server speaks the protocol;
        // berth does not send a password in clear to find out more.
        Some(0x01) => Ok(()),
        _ => Err(ProbeError::Protocol(
            "not a MariaDB/MySQL answer after the login".into(),
        )),
    }
}

/// An ERR packet after the login: 1045 (access denied) means the server is up.
fn refused_login(p: &[u8]) -> Result<(), ProbeError> {
    match mariadb_error(p) {
        ProbeError::Mariadb { code: 1045, .. } => Ok(()),
        e => Err(e),
    }
}

/// An ERR packet's code and message.
fn mariadb_error(p: &[u8]) -> ProbeError {
    let code = p.get(1..3).map_or(0, |c| u16::from_le_bytes([c[0], c[1]]));
    let msg = p.get(3..).unwrap_or_default();
    let msg = msg
        .strip_prefix(b"#")
        .map_or(msg, |m| m.get(5..).unwrap_or_default());
    ProbeError::Mariadb {
        code,
        message: String::from_utf8_lossy(msg).to_string(),
    }
}

struct Greeting {
    nonce: Vec<u8>,
    plugin: String,
}

impl Greeting {
    fn parse(p: &[u8]) -> Result<Greeting, ProbeError> {
        match p.first() {
            Some(0x0a) => {}
            Some(0xff) => return Err(mariadb_error(p)),
            _ => return Err(ProbeError::Protocol("not a MariaDB/MySQL greeting".into())),
        }
        let bad = || ProbeError::Protocol("a truncated MariaDB/MySQL greeting".into());
        let version_end = 1 + p[1..].iter().position(|b| *b == 0).ok_or_else(bad)?;
        let at = version_end + 1 + 4;
        let mut nonce = p.get(at..at + 8).ok_or_else(bad)?.to_vec();
        // filler, caps (2), charset, status (2), caps (2), auth data length, 10 reserved.
        let len_at = at + 8 + 1 + 2 + 1 + 2 + 2;
        let data_len = *p.get(len_at).ok_or_else(bad)? as usize;
        let second = len_at + 1 + 10;
        let take = data_len.saturating_sub(9).max(12);
        nonce.extend_from_slice(p.get(second..second + take).ok_or_else(bad)?);
        let rest = p.get(second + take + 1..).unwrap_or_default();
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        let plugin = String::from_utf8_lossy(&rest[..end]).to_string();
        Ok(Greeting { nonce, plugin })
    }
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// The login proof for `plugin` (the password itself never crosses the wire).
fn scramble(plugin: &str, password: &[u8], nonce: &[u8]) -> Vec<u8> {
    if password.is_empty() {
        return vec![];
    }
    if plugin == "caching_sha2_password" {
        let p1 = Sha256::digest(password);
        let p2 = Sha256::digest(Sha256::digest(p1));
        let mix = Sha256::new()
            .chain_update(p2)
            .chain_update(nonce)
            .finalize();
        return xor(&p1, &mix);
    }
    let p1 = Sha1::digest(password);
    let p2 = Sha1::digest(p1);
    let mix = Sha1::new().chain_update(nonce).chain_update(p2).finalize();
    xor(&p1, &mix)
}

fn login(user: &str, auth: &[u8], plugin: &str) -> Vec<u8> {
    // LONG_PASSWORD | PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH
    let caps: u32 = 0x1 | 0x200 | 0x8000 | 0x80000;
    let mut p = caps.to_le_bytes().to_vec();
    p.extend_from_slice(&(16u32 << 20).to_le_bytes());
    p.push(45);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    p.push(auth.len() as u8);
    p.extend_from_slice(auth);
    let plugin = if plugin.is_empty() {
        "mysql_native_password"
    } else {
        plugin
    };
    p.extend_from_slice(plugin.as_bytes());
    p.push(0);
    p
}

async fn read_packet(s: &mut TcpStream) -> Result<(u8, Vec<u8>), ProbeError> {
    let mut head = [0; 4];
    s.read_exact(&mut head).await.map_err(ProbeError::io)?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], 0]) as usize;
    if len > 64 * 1024 {
        return Err(ProbeError::Protocol(format!(
            "not a MariaDB/MySQL answer (packet of {len} bytes)"
        )));
    }
    let mut p = vec![0; len];
    s.read_exact(&mut p).await.map_err(ProbeError::io)?;
    Ok((head[3], p))
}

async fn write_packet(s: &mut TcpStream, seq: u8, p: &[u8]) -> Result<(), ProbeError> {
    let mut msg = (p.len() as u32).to_le_bytes();
    msg[3] = seq;
    s.write_all(&msg).await.map_err(ProbeError::io)?;
    s.write_all(p).await.map_err(ProbeError::io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_that_is_starting_up_is_not_ready_but_one_refusing_the_probe_is() {
        let err = |code: &str| {
            let mut b = vec![b'S'];
            b.extend_from_slice(b"FATAL\0C");
            b.extend_from_slice(code.as_bytes());
            b.extend_from_slice(b"\0Mwhy\0\0");
            b
        };
        assert!(postgres_verdict(b'E', &err("57P03")).is_err());
        assert!(postgres_verdict(b'E', &err("28P01")).is_ok());
        assert!(postgres_verdict(b'R', &[0, 0, 0, 10]).is_ok());
        assert!(postgres_verdict(b'H', &[]).is_err());
    }

    #[test]
    fn the_native_password_scramble_matches_the_servers_formula() {
        // SHA1(pw) XOR SHA1(nonce + SHA1(SHA1(pw))): XOR again with the mix gives SHA1(pw).
        let nonce = b"abcdefghijklmnopqrst";
        let s = scramble("mysql_native_password", b"secret", nonce);
        let p2 = Sha1::digest(Sha1::digest(b"secret"));
        let mix = Sha1::new().chain_update(nonce).chain_update(p2).finalize();
        assert_eq!(xor(&s, &mix), Sha1::digest(b"secret").to_vec());
        assert!(scramble("mysql_native_password", b"", nonce).is_empty());
    }

    #[test]
    fn greetings_are_parsed_and_garbage_is_refused_without_panic() {
        let mut g = vec![0x0a];
        g.extend_from_slice(b"10.11.6-MariaDB\0");
        g.extend_from_slice(&[1, 0, 0, 0]);
        g.extend_from_slice(b"12345678\0");
        g.extend_from_slice(&[0xff, 0xf7, 45, 2, 0, 0xff, 0x81, 21]);
        g.extend_from_slice(&[0; 10]);
        g.extend_from_slice(b"9abcdefghijk\0mysql_native_password\0");
        let h = Greeting::parse(&g).unwrap();
        assert_eq!(h.nonce, b"123456789abcdefghijk");
        assert_eq!(h.plugin, "mysql_native_password");
        for n in 0..g.len() {
            let _ = Greeting::parse(&g[..n]);
        }
        let blocked = b"\xff\x69\x04#HY000Host '10.0.0.1' is blocked";
        let e = Greeting::parse(blocked).err().unwrap().to_string();
        assert!(e.contains("1129") && e.contains("blocked"), "{e}");
    }
}
