//! RFC 2047 encoded words (`=?charset?Q|B?text?=`) in header values, decoded so the policy sees
//! the addresses a mail client would show. The charset is not converted: the bytes are read as
//! UTF-8 (lossy), and what matters here (`@`, `.`, letters of a domain) is ASCII in every
//! charset a display name may be written in.

use base64::Engine;

/// `value` with every well-formed encoded word decoded; other text as it is.
pub fn decode_words(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("=?") {
        out.push_str(&rest[..start]);
        let word = &rest[start..];
        match decode_one(word) {
            Some((text, used)) => {
                out.push_str(&text);
                rest = &word[used..];
            }
            None => {
                out.push_str("=?");
                rest = &word[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The encoded word at the start of `w` decoded, and its length.
fn decode_one(w: &str) -> Option<(String, usize)> {
    let body = w.strip_prefix("=?")?;
    let (_charset, body) = body.split_once('?')?;
    let (enc, body) = body.split_once('?')?;
    let end = body.find("?=")?;
    let text = &body[..end];
    let bytes = match enc {
        "Q" | "q" => q_decode(text)?,
        "B" | "b" => base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?,
        _ => return None,
    };
    let used = w.len() - body.len() + end + 2;
    Some((String::from_utf8_lossy(&bytes).into_owned(), used))
}

fn q_decode(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_words_decode_and_anything_else_stays() {
        assert_eq!(
            decode_words("=?utf-8?q?ceo=40globex.example?="),
            "ceo@globex.example"
        );
        assert_eq!(
            decode_words("=?UTF-8?B?Y2VvQGdsb2JleC5leGFtcGxl?= <a@b>"),
            "ceo@globex.example <a@b>"
        );
        assert_eq!(decode_words("a =?x?q?b_c?= d"), "a b c d");
        for odd in [
            "=?",
            "=?utf-8?",
            "=?utf-8?q?=4?=",
            "=?utf-8?x?y?=",
            "=?u?b?!!?=",
            "x=?y",
        ] {
            let _ = decode_words(odd);
        }
        assert_eq!(decode_words("=?utf-8?q?=4?="), "=?utf-8?q?=4?=");
        assert_eq!(
            decode_words("plain <a@acme.example>"),
            "plain <a@acme.example>"
        );
    }
}
