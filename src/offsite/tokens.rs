//! A tenant's API tokens carried with it, to another host (`berth move`) or through a
//! whole-host recovery: only tokens bound to that tenant alone, as their SHA-256 digests (the
//! secrets never leave the client that holds them), tied to the tenant's identity. The token
//! store lives in the API; it is handed to the lower layers through [`TenantTokens`].

use serde::{Deserialize, Serialize};

/// A token as it travels: everything the receiving host needs to accept the same bearer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CarriedToken {
    /// The 8 hex digits of `bth_<id>_…`.
    pub id: String,
    pub name: String,
    /// `tenant-admin` or `tenant-viewer`.
    pub role: String,
    /// Hex SHA-256 of the secret.
    pub digest: String,
    /// Unix seconds.
    pub created: u64,
    pub expires: Option<u64>,
}

impl CarriedToken {
    /// Refuses what no token of ours looks like (a receiving host checks before adopting).
    pub fn check(&self) -> Result<(), String> {
        let hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !hex(&self.id, 8) {
            return Err(format!("token id {:?} is malformed", self.id));
        }
        if !hex(&self.digest, 64) {
            return Err(format!("token {}'s digest is malformed", self.id));
        }
        if !matches!(self.role.as_str(), "tenant-admin" | "tenant-viewer") {
            return Err(format!(
                "token {} has role {:?}: only a tenant's own tokens travel",
                self.id, self.role
            ));
        }
        // The names tokens get here: 1 to 64 of A-Z a-z 0-9 . _ -
        let name_ok = (1..=64).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b));
        if !name_ok {
            return Err(format!("token {}'s name is refused", self.id));
        }
        Ok(())
    }
}

/// Tokens one tenant carries at most (more are left behind).
pub const MAX_CARRIED: usize = 1000;

/// The API's token store as the layers below it see it.
pub trait TenantTokens: Send + Sync {
    /// The live tokens bound to this tenant identity alone.
    fn carried(&self, tenant: &str, tenant_id: &str) -> Vec<CarriedToken>;
    /// Makes `tokens` the tenant's tokens here (identity `tenant_id`): the checked ones, not
    /// expired, are taken (a record of the same id replaced); any other live token of this
    /// tenant alone and identity is revoked (the carried set is the whole truth). How many
    /// were taken.
    fn adopt(&self, tenant: &str, tenant_id: &str, tokens: &[CarriedToken]) -> usize;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_tenant_token_of_our_shape_travels() {
        let good = CarriedToken {
            id: "0a1b2c3d".into(),
            name: "ci".into(),
            role: "tenant-admin".into(),
            digest: "ab".repeat(32),
            created: 1,
            expires: None,
        };
        assert_eq!(good.check(), Ok(()));
        let bad = [
            CarriedToken {
                id: "0A1B2C3D".into(),
                ..good.clone()
            },
            CarriedToken {
                id: "0a1b2c3".into(),
                ..good.clone()
            },
            CarriedToken {
                digest: "zz".repeat(32),
                ..good.clone()
            },
            CarriedToken {
                role: "operator".into(),
                ..good.clone()
            },
            CarriedToken {
                name: "a\nb".into(),
                ..good.clone()
            },
        ];
        for b in bad {
            assert!(b.check().is_err(), "{b:?}");
        }
    }
}
