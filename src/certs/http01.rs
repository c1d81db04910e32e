//! HTTP-01 answers the proxy serves at `/.well-known/acme-challenge/<token>` while an order runs.

use std::{collections::HashMap, sync::Mutex};

#[derive(Default)]
pub struct Http01Tokens {
    tokens: Mutex<HashMap<String, String>>,
}

impl Http01Tokens {
    pub fn insert(&self, token: &str, key_authorization: &str) {
        self.tokens
            .lock()
            .expect("tokens lock")
            .insert(token.into(), key_authorization.into());
    }

    pub fn remove(&self, token: &str) {
        self.tokens.lock().expect("tokens lock").remove(token);
    }

    pub fn answer(&self, token: &str) -> Option<String> {
        self.tokens.lock().expect("tokens lock").get(token).cloned()
    }
}
