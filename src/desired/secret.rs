//! A declared secret's value: bytes from the OS CSPRNG, as lowercase hex or unpadded
//! base64url (no quoting needed in URLs, DSNs or shell).

use crate::spec::template::SecretEncoding;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

/// `bytes` random bytes in `encoding`.
pub fn generate(bytes: usize, encoding: SecretEncoding) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(match encoding {
        SecretEncoding::Hex => hex::encode(&buf),
        SecretEncoding::Base64 => URL_SAFE_NO_PAD.encode(&buf),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_secrets_are_unpadded_base64url() {
        assert_eq!(URL_SAFE_NO_PAD.encode(b"f"), "Zg");
        assert_eq!(URL_SAFE_NO_PAD.encode(b"foob"), "Zm9vYg");
        assert_eq!(URL_SAFE_NO_PAD.encode([0xfb, 0xff]), "-_8");
        let s = generate(32, SecretEncoding::Base64).unwrap();
        assert_eq!(s.len(), 43);
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }

    #[test]
    fn secrets_are_random_and_long_enough() {
        let a = generate(32, SecretEncoding::Hex).unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, generate(32, SecretEncoding::Hex).unwrap());
    }
}
