//! Order budgets: a global token bucket for the ACME account and a per-tenant daily quota, so
//! one tenant's domains cannot exhaust the account's rate limits at the CA.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, SystemTime},
};

const DAY: Duration = Duration::from_secs(86400);

pub struct OrderBudget {
    per_minute: u32,
    per_tenant_per_day: u32,
    tokens: f64,
    refilled: SystemTime,
    by_tenant: HashMap<String, VecDeque<SystemTime>>,
}

impl OrderBudget {
    pub fn new(per_minute: u32, per_tenant_per_day: u32, now: SystemTime) -> OrderBudget {
        OrderBudget {
            per_minute,
            per_tenant_per_day,
            tokens: f64::from(per_minute),
            refilled: now,
            by_tenant: HashMap::new(),
        }
    }

    /// Takes one order from both budgets, or says which one is empty.
    pub fn take(&mut self, tenant: &str, now: SystemTime) -> Result<(), Spent> {
        let elapsed = now
            .duration_since(self.refilled)
            .unwrap_or_default()
            .as_secs_f64();
        let cap = f64::from(self.per_minute);
        self.tokens = (self.tokens + elapsed * cap / 60.0).min(cap);
        self.refilled = now;
        let recent = self.by_tenant.entry(tenant.to_string()).or_default();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t).unwrap_or_default() >= DAY)
        {
            recent.pop_front();
        }
        if recent.len() >= self.per_tenant_per_day as usize {
            return Err(Spent::TenantDay {
                tenant: tenant.into(),
                per_day: self.per_tenant_per_day,
            });
        }
        if self.tokens < 1.0 {
            return Err(Spent::AccountMinute(self.per_minute));
        }
        self.tokens -= 1.0;
        recent.push_back(now);
        Ok(())
    }
}

/// Which order budget is empty.
#[derive(Debug, thiserror::Error)]
pub enum Spent {
    #[error("tenant {tenant} reached its quota of {per_day} certificate orders per day")]
    TenantDay { tenant: String, per_day: u32 },
    #[error("account order rate limit ({0} per minute) reached")]
    AccountMinute(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tenant_cannot_spend_more_than_its_daily_quota() {
        let t0 = SystemTime::UNIX_EPOCH + DAY;
        let mut b = OrderBudget::new(100, 2, t0);
        assert!(b.take("a", t0).is_ok());
        assert!(b.take("a", t0).is_ok());
        assert!(b.take("a", t0).unwrap_err().to_string().contains("quota"));
        assert!(b.take("b", t0).is_ok(), "other tenants are unaffected");
        assert!(b.take("a", t0 + DAY).is_ok(), "the quota is a rolling day");
    }

    #[test]
    fn the_account_budget_refills_over_a_minute() {
        let t0 = SystemTime::UNIX_EPOCH + DAY;
        let mut b = OrderBudget::new(2, 100, t0);
        assert!(b.take("a", t0).is_ok());
        assert!(b.take("b", t0).is_ok());
        assert!(
            b.take("c", t0)
                .unwrap_err()
                .to_string()
                .contains("per minute")
        );
        assert!(b.take("c", t0 + Duration::from_secs(30)).is_ok());
    }
}
