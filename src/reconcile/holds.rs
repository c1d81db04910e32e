//! Who may change a tenant besides the pass: operations that hold it (an upgrade, a restore)
//! and a wake that claims it to start it at once. Passes leave held and claimed tenants alone,
//! and a claim waits out the pass applying steps to the tenant when it is made.

use std::collections::{BTreeMap, BTreeSet};

/// Held and claimed tenants, and when each was last held, claimed or let go: a pass that read
/// the files and the engine before that saw the tenant mid-change and must leave it alone.
#[derive(Default)]
pub(super) struct Holds {
    pub(super) held: BTreeSet<String>,
    /// Tenants a wake is starting outside the pass.
    claimed: BTreeSet<String>,
    /// Tenants a pass is applying steps to now.
    applying: BTreeSet<String>,
    pub(super) epoch: u64,
    touched: BTreeMap<String, u64>,
}

impl Holds {
    pub(super) fn hold(&mut self, t: &str) {
        self.held.insert(t.into());
        self.bump(t);
    }

    /// Holds `t` unless it is held already (by another operation): whether it now is held
    /// by the caller.
    pub(super) fn try_hold(&mut self, t: &str) -> bool {
        if self.held.contains(t) {
            return false;
        }
        self.hold(t);
        true
    }

    pub(super) fn release(&mut self, t: &str) {
        self.held.remove(t);
        self.bump(t);
    }

    /// Claims `t` for a wake unless it is held or already claimed.
    pub(super) fn claim(&mut self, t: &str) -> bool {
        if self.held.contains(t) || !self.claimed.insert(t.into()) {
            return false;
        }
        self.bump(t);
        true
    }

    pub(super) fn unclaim(&mut self, t: &str) {
        self.claimed.remove(t);
        self.bump(t);
    }

    pub(super) fn is_claimed(&self, t: &str) -> bool {
        self.claimed.contains(t)
    }

    /// Tenants claimed now, or held, claimed or let go since `epoch`: what a pass observed of
    /// them may already be out of date.
    pub(super) fn unsettled(&self, epoch: u64) -> BTreeSet<String> {
        let mut out = self.claimed.clone();
        out.extend(
            self.touched
                .iter()
                .filter(|(_, e)| **e > epoch)
                .map(|(t, _)| t.clone()),
        );
        out
    }

    /// The tenants of `due` a pass may apply to (free since `epoch`), marked as being applied.
    pub(super) fn take_due<T>(&mut self, due: Vec<(String, T)>, epoch: u64) -> Vec<(String, T)> {
        let due: Vec<_> = due
            .into_iter()
            .filter(|(t, _)| self.free_since(t, epoch))
            .collect();
        self.applying.extend(due.iter().map(|(t, _)| t.clone()));
        due
    }

    pub(super) fn applied(&mut self, t: &str) {
        self.applying.remove(t);
    }

    pub(super) fn is_applying(&self, t: &str) -> bool {
        self.applying.contains(t)
    }

    fn bump(&mut self, t: &str) {
        self.epoch += 1;
        self.touched.insert(t.into(), self.epoch);
    }

    /// Neither held nor claimed now, and not held, claimed or let go since `epoch`.
    pub(super) fn free_since(&self, t: &str, epoch: u64) -> bool {
        !self.held.contains(t)
            && !self.claimed.contains(t)
            && self.touched.get(t).is_none_or(|e| *e <= epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::Holds;

    #[test]
    fn a_pass_that_began_before_a_release_leaves_the_tenant_to_the_next_pass() {
        let mut h = Holds::default();
        let before_hold = h.epoch;
        h.hold("acme");
        assert!(!h.free_since("acme", before_hold), "held now");
        let during_hold = h.epoch;
        h.release("acme");
        assert!(
            !h.free_since("acme", during_hold),
            "the pass saw the tenant mid-change"
        );
        assert!(
            h.free_since("acme", h.epoch),
            "a pass begun after the release"
        );
        assert!(
            h.free_since("other", before_hold),
            "other tenants are untouched"
        );
    }

    #[test]
    fn of_two_operations_taking_a_tenant_in_one_step_the_second_is_refused() {
        let mut h = Holds::default();
        let e0 = h.epoch;
        assert!(h.try_hold("acme"), "a move's hold takes it");
        assert!(!h.try_hold("acme"), "an upgrade's turn is refused");
        assert!(!h.free_since("acme", e0), "and passes leave it alone");
        assert!(h.try_hold("globex"), "another tenant is free");
        h.release("acme");
        assert!(h.try_hold("acme"), "free again once released");
    }

    #[test]
    fn a_claimed_tenant_is_left_out_of_passes_and_cannot_be_claimed_twice_or_while_held() {
        let mut h = Holds::default();
        let e0 = h.epoch;
        let due = h.take_due(vec![("acme".to_string(), 1), ("globex".into(), 2)], e0);
        assert_eq!(due.len(), 2);
        assert!(h.is_applying("acme"));
        assert!(h.claim("acme"), "a claim is made while the pass applies");
        assert!(h.is_applying("acme"), "and the claimer waits for it");
        h.applied("acme");
        assert!(!h.is_applying("acme"));
        assert!(!h.claim("acme"), "claimed twice");
        let e1 = h.epoch;
        assert!(h.take_due(vec![("acme".to_string(), 1)], e1).is_empty());
        h.unclaim("acme");
        assert!(
            h.take_due(vec![("acme".to_string(), 1)], e1).is_empty(),
            "a pass that saw the claim"
        );
        assert_eq!(h.take_due(vec![("acme".to_string(), 1)], h.epoch).len(), 1);
        h.hold("globex");
        assert!(!h.claim("globex"), "an upgrade or restore holds it");
        assert_eq!(h.unsettled(e1), ["acme".into(), "globex".into()].into());
        assert!(h.unsettled(h.epoch).is_empty());
    }
}
