//! A tenant's API tokens travel with it: written into each inventory entry (so a whole-host
//! recovery brings them back) and into a move's entry (so the other host takes them), and
//! adopted where the tenant is made again. The token store is the API's; the daemon hands it
//! here (`set_tokens`).

use super::Backups;
use crate::offsite::tokens::{CarriedToken, TenantTokens};
use std::sync::Arc;

impl Backups {
    /// The API's token store; set once, at start.
    pub fn set_tokens(&self, tokens: Arc<dyn TenantTokens>) {
        let _ = self.tokens.set(tokens);
    }

    /// The live tokens bound to this tenant identity alone (none without a token store).
    pub fn carried_tokens(&self, tenant: &str, tenant_id: &str) -> Vec<CarriedToken> {
        self.tokens
            .get()
            .map(|s| s.carried(tenant, tenant_id))
            .unwrap_or_default()
    }

    /// Takes a made-again tenant's carried tokens into this host's store.
    pub(super) fn adopt_tokens(&self, tenant: &str, tenant_id: &str, tokens: &[CarriedToken]) {
        if tokens.is_empty() {
            return;
        }
        let Some(store) = self.tokens.get() else {
            tracing::warn!(
                tenant,
                "no token store here: the tenant's tokens are not taken"
            );
            return;
        };
        let n = store.adopt(tenant, tenant_id, tokens);
        tracing::info!(
            tenant,
            taken = n,
            carried = tokens.len(),
            "tenant's tokens taken"
        );
    }
}
