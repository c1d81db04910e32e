//! The domain book (`<state>/domains.json`): which tenant each custom domain is bound to after
//! proof, and the claims waiting for proof. Written atomically.

use super::DomainError;
pub use crate::store::domain_book::{Binding, Pending};
use crate::store::{
    atomic,
    domain_book::{Book, read_bindings},
};
use std::{collections::BTreeMap, path::PathBuf, sync::Mutex};

pub struct DomainBook {
    path: PathBuf,
    book: Mutex<Book>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl DomainBook {
    pub fn open(path: PathBuf) -> Result<DomainBook, DomainError> {
        let book = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| DomainError::Corrupt {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Book::default(),
            Err(e) => {
                return Err(DomainError::Io {
                    path: path.display().to_string(),
                    source: e,
                });
            }
        };
        Ok(DomainBook {
            path,
            book: Mutex::new(book),
        })
    }

    fn save(&self, b: &Book) -> Result<(), DomainError> {
        let json = serde_json::to_vec_pretty(b).expect("book serializes");
        atomic::write(&self.path, &json, 0o600).map_err(|e| DomainError::Io {
            path: self.path.display().to_string(),
            source: e,
        })
    }

    /// Starts (or repeats) a claim and returns its pending record with the token to publish.
    pub fn claim(&self, domain: &str, tenant: &str) -> Result<Pending, DomainError> {
        let mut b = self.book.lock().expect("book lock");
        let key = format!("{domain} {tenant}");
        if let Some(p) = b.pending.get(&key) {
            return Ok(p.clone());
        }
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).expect("the OS CSPRNG is available");
        let p = Pending {
            domain: domain.into(),
            tenant: tenant.into(),
            token: format!("berth-verify={}", hex::encode(raw)),
            created_at: now(),
        };
        let mut next = b.clone();
        next.pending.insert(key, p.clone());
        self.save(&next)?;
        *b = next;
        Ok(p)
    }

    pub fn pending(&self, domain: &str, tenant: &str) -> Option<Pending> {
        self.book
            .lock()
            .expect("book lock")
            .pending
            .get(&format!("{domain} {tenant}"))
            .cloned()
    }

    /// Binds `domain` to `tenant` after a successful proof; any other tenant's binding ends.
    pub fn bind(&self, domain: &str, tenant: &str, method: &str) -> Result<(), DomainError> {
        let mut b = self.book.lock().expect("book lock");
        let mut next = b.clone();
        next.pending.remove(&format!("{domain} {tenant}"));
        next.bindings.insert(
            domain.into(),
            Binding {
                tenant: tenant.into(),
                method: method.into(),
                verified_at: now(),
            },
        );
        self.save(&next)?;
        *b = next;
        Ok(())
    }

    /// A recovered tenant's proven binding put back, unless `domain` is bound to another
    /// tenant now (checked and written under the book's lock): that tenant's name, if so.
    pub fn rebind(&self, domain: &str, binding: &Binding) -> Result<Option<String>, DomainError> {
        let mut b = self.book.lock().expect("book lock");
        if let Some(other) = b
            .bindings
            .get(domain)
            .filter(|o| o.tenant != binding.tenant)
        {
            return Ok(Some(other.tenant.clone()));
        }
        let mut next = b.clone();
        next.bindings.insert(domain.into(), binding.clone());
        self.save(&next)?;
        *b = next;
        Ok(None)
    }

    /// The binding of `domain` and `tenant`'s claim of it, as they are now (see `put_back`).
    pub fn entry(&self, domain: &str, tenant: &str) -> (Option<Binding>, Option<Pending>) {
        let b = self.book.lock().expect("book lock");
        (
            b.bindings.get(domain).cloned(),
            b.pending.get(&format!("{domain} {tenant}")).cloned(),
        )
    }

    /// Undoes a `bind` whose consequences were refused: the binding and the claim as `entry`
    /// returned them before.
    pub fn put_back(
        &self,
        domain: &str,
        tenant: &str,
        entry: (Option<Binding>, Option<Pending>),
    ) -> Result<(), DomainError> {
        let mut b = self.book.lock().expect("book lock");
        let mut next = b.clone();
        match entry.0 {
            Some(x) => next.bindings.insert(domain.into(), x),
            None => next.bindings.remove(domain),
        };
        if let Some(p) = entry.1 {
            next.pending.insert(format!("{domain} {tenant}"), p);
        }
        self.save(&next)?;
        *b = next;
        Ok(())
    }

    /// Domain → tenant of every proven binding in the book's file at `path` (empty when there
    /// is none or it cannot be read): what validation needs, without opening the book.
    pub fn read_bindings(path: &std::path::Path) -> BTreeMap<String, String> {
        read_bindings(path)
    }

    pub fn bound_to(&self, domain: &str) -> Option<String> {
        self.book
            .lock()
            .expect("book lock")
            .bindings
            .get(domain)
            .map(|b| b.tenant.clone())
    }

    /// Forgets every binding and claim of a purged tenant.
    pub fn forget_tenant(&self, tenant: &str) -> Result<(), DomainError> {
        let mut b = self.book.lock().expect("book lock");
        let mut next = b.clone();
        next.bindings.retain(|_, v| v.tenant != tenant);
        next.pending.retain(|_, v| v.tenant != tenant);
        self.save(&next)?;
        *b = next;
        Ok(())
    }

    pub fn list(&self) -> (BTreeMap<String, Binding>, Vec<Pending>) {
        let b = self.book.lock().expect("book lock");
        (b.bindings.clone(), b.pending.values().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bound_domain_moves_only_when_another_tenant_proves_it() {
        let dir = tempfile::tempdir().unwrap();
        let book = DomainBook::open(dir.path().join("domains.json")).unwrap();
        let a = book.claim("shop.example.org", "acme").unwrap();
        assert_eq!(
            book.claim("shop.example.org", "acme").unwrap().token,
            a.token,
            "a repeated claim keeps its token"
        );
        book.bind("shop.example.org", "acme", "dns").unwrap();
        let b = book.claim("shop.example.org", "globex").unwrap();
        assert_ne!(a.token, b.token);
        assert_eq!(
            book.bound_to("shop.example.org").as_deref(),
            Some("acme"),
            "a claim alone moves nothing"
        );
        book.bind("shop.example.org", "globex", "dns").unwrap();
        let reopened = DomainBook::open(dir.path().join("domains.json")).unwrap();
        assert_eq!(
            reopened.bound_to("shop.example.org").as_deref(),
            Some("globex")
        );
    }
}
