//! Log streams that follow (`logs?follow=true`) hold a connection and an engine stream for as
//! long as the client keeps reading. Each principal may hold [`PER_PRINCIPAL`] at once (429
//! past that), and a stream opened with a token ends within [`RECHECK`] of the token ceasing
//! to name the tenant: revoked, expired, or its tenant purged and re-created.

use super::{AppState, error::ApiError};
use crate::api::auth::Principal;
use futures_util::{Stream, StreamExt};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

/// Following log streams one principal may hold at once (the Unix socket is not limited).
pub const PER_PRINCIPAL: usize = 4;
/// How often a following stream's token is checked again.
pub const RECHECK: Duration = Duration::from_secs(2);

/// The bearer a TCP request was authenticated with, kept in the request (never logged) so a
/// long stream can check it again.
#[derive(Clone)]
pub struct Credential(pub String);

#[derive(Default)]
pub struct Follows {
    open: Mutex<HashMap<String, usize>>,
}

/// One following stream of `owner`, given back when dropped.
pub struct Slot {
    follows: Arc<Follows>,
    owner: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.follows.open.lock().expect("follows lock");
        if let Some(n) = open.get_mut(&self.owner) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.owner);
            }
        }
    }
}

impl Follows {
    /// A slot for `who`'s next stream (None for the socket, which is not limited).
    pub fn take(self: &Arc<Self>, who: &Principal) -> Result<Option<Slot>, ApiError> {
        if who.socket {
            return Ok(None);
        }
        let owner = who.actor.prefix.clone().unwrap_or(who.actor.name.clone());
        let mut open = self.open.lock().expect("follows lock");
        let n = open.entry(owner.clone()).or_default();
        if *n >= PER_PRINCIPAL {
            return Err(ApiError::TooMany(format!(
                "this token already follows {PER_PRINCIPAL} log streams; close one first"
            )));
        }
        *n += 1;
        Ok(Some(Slot {
            follows: self.clone(),
            owner,
        }))
    }
}

/// `stream`, ended when the client goes or, for a token, when it no longer reads `tenant`.
/// The slot is held as long as the stream lives.
pub fn guarded<S: Stream + Send + 'static>(
    s: AppState,
    cred: Option<Credential>,
    tenant: String,
    slot: Option<Slot>,
    stream: S,
) -> impl Stream<Item = S::Item> + Send {
    let ended = async move {
        let _slot = slot;
        let Some(Credential(token)) = cred else {
            return std::future::pending::<()>().await;
        };
        loop {
            tokio::time::sleep(RECHECK).await;
            let still =
                crate::api::auth::principal_for(&s, &token).is_ok_and(|p| p.may_read(&tenant));
            if !still {
                tracing::info!(%tenant, "a following log stream ended: its token no longer reads the tenant");
                return;
            }
        }
    };
    stream.take_until(Box::pin(ended))
}
