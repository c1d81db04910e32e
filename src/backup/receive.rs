//! A tenant arriving from another berth host (`berth move T --to <this host>`): made here as a
//! whole-host recovery makes one — its identity, secrets, instance file and proven domains,
//! then its data — from the backup the leaving host named, in a repository both hosts use.
//! The later catch-up is an ordinary restore of the leaving host's final backup.

use super::{
    BackupError, Backups,
    recover::{Recovered, Skipped},
};
use crate::{domains::DomainBook, offsite::inventory::Entry};

impl Backups {
    /// Makes tenant `e` here from its backup `backup` in repository `repo`. A tenant of that
    /// name here already is refused (nothing of it is touched); one that fails is removed
    /// whole, so the move can be tried again.
    pub async fn receive(
        &self,
        repo: &str,
        e: &Entry,
        backup: &str,
        book: &DomainBook,
    ) -> Result<Recovered, BackupError> {
        let invalid = |why: String| BackupError::Invalid {
            tenant: e.tenant.clone(),
            why,
        };
        e.check().map_err(invalid)?;
        if !crate::offsite::is_backup_id(backup) {
            return Err(invalid(format!("{backup:?} is not a backup id")));
        }
        // One at a time with recoveries: both make tenants from a repository.
        let _one = self
            .recovering
            .try_lock()
            .map_err(|_| BackupError::RecoveryRunning)?;
        let client = self.repo_client(repo)?;
        let r = self.recover_one(client, e, Some(backup), book).await;
        match r.outcome {
            Skipped::EXISTS => Err(BackupError::Exists(e.tenant.clone())),
            Skipped::FAILED => Err(BackupError::Offsite(format!(
                "tenant {} not received: {}",
                e.tenant,
                r.error.as_deref().unwrap_or("unknown error")
            ))),
            _ => Ok(r),
        }
    }
}
