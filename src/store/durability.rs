//! When commits reach the disk: deferred commits (SQLite, `synchronous = NORMAL`) are
//! counted, and one flush of the write-ahead log covers every one begun before it.
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Backend, Result, Store};

/// Deferred commits counted against the syncs that covered them (SQLite).
#[derive(Default)]
pub(super) struct Syncs {
    /// Deferred commits begun, counted while the transaction holds the write lock, before
    /// its COMMIT: whoever sees a commit's rows sees it counted.
    begun: AtomicU64,
    /// Deferred commits whose COMMIT returned (whether it succeeded or not): their log
    /// frames are written.
    finished: tokio::sync::watch::Sender<u64>,
    /// How many of the begun a sync is known to cover.
    covered: AtomicU64,
    /// Flushes of the write-ahead log so far.
    flushes: AtomicU64,
}

impl Syncs {
    /// The count a sync started now would cover, when some deferred commit is uncovered.
    fn uncovered(&self) -> Option<u64> {
        let through = self.begun.load(Ordering::Acquire);
        (self.covered.load(Ordering::Acquire) < through).then_some(through)
    }

    /// Counts a deferred commit about to be sent, under the write lock: whoever sees its
    /// rows sees it counted, and a sync that reads the count waits for the commit to finish.
    pub(super) fn commit_begun(&self) {
        self.begun.fetch_add(1, Ordering::AcqRel);
    }

    /// Notes that a deferred commit returned, whether it succeeded or not.
    pub(super) fn commit_finished(&self) {
        self.finished.send_modify(|finished| *finished += 1);
    }
}

impl Store {
    /// Makes every commit so far durable, deferred ones included: once the deferred commits
    /// begun so far have written their frames to the write-ahead log, the log goes to disk.
    /// A commit with `synchronous = FULL` would flush the same log, but only after waiting
    /// for SQLite's write lock behind every writer in line; this waits for no one but the
    /// commit that may be under way.
    pub async fn sync(&self) -> Result<()> {
        let Some(through) = self.syncs.uncovered() else {
            return Ok(());
        };
        // Concurrent callers (submissions, each before its 250) share one flush: whoever
        // waited here finds its commits covered by the flush before it.
        let _one_at_a_time = self.sync_turn.lock().await;
        if self.syncs.covered.load(Ordering::Acquire) >= through {
            return Ok(());
        }
        // Writers take turns, so at most one commit is under way; its frames count too.
        let _ = self
            .syncs
            .finished
            .subscribe()
            .wait_for(|finished| *finished >= through)
            .await;
        if let Some(wal) = self.wal.clone() {
            let flushed = tokio::task::spawn_blocking(move || match std::fs::File::open(&wal) {
                Ok(log) => log.sync_data(),
                // No log: the last connection checkpointed the database, synced, and
                // removed it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e),
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|flushed| flushed);
            flushed.map_err(sqlx::Error::Io)?;
        }
        self.syncs.flushes.fetch_add(1, Ordering::Relaxed);
        self.syncs.covered.fetch_max(through, Ordering::Release);
        Ok(())
    }

    /// True when a sync covered every deferred commit: what was read from the store
    /// before this returned true is durable.
    pub fn all_synced(&self) -> bool {
        self.syncs.uncovered().is_none()
    }

    /// SQLite: copies committed pages from the write-ahead log into the database without
    /// waiting for readers or writers (`PASSIVE`) and returns the log's length in pages.
    /// PostgreSQL checkpoints by itself.
    pub async fn checkpoint(&self) -> Result<i64> {
        if self.backend != Backend::Sqlite {
            return Ok(0);
        }
        // (busy, pages in the log, pages copied)
        let (_, log, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&self.relaxed)
            .await?;
        Ok(log)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[tokio::test]
    async fn a_sync_covers_the_deferred_commits_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let syncs = || store.syncs.flushes.load(Ordering::Relaxed);
        assert!(store.all_synced());
        store.begin().await.unwrap().commit().await.unwrap();
        assert!(store.all_synced(), "a synced commit needs no sync");

        for _ in 0..2 {
            let tx = store.begin_deferred().await.unwrap();
            tx.commit().await.unwrap();
        }
        assert!(!store.all_synced());
        // A rolled-back deferred transaction leaves nothing to sync and counts nothing.
        drop(store.begin_deferred().await.unwrap());
        store.sync().await.unwrap();
        assert!(store.all_synced());
        assert_eq!(syncs(), 1, "one flush covered both");
        store.sync().await.unwrap();
        assert_eq!(syncs(), 1, "nothing left to flush: no commit");

        // Callers that sync at the same time share one flush.
        for _ in 0..3 {
            store
                .begin_deferred()
                .await
                .unwrap()
                .commit()
                .await
                .unwrap();
        }
        let (a, b, c) = tokio::join!(store.sync(), store.sync(), store.sync());
        for r in [a, b, c] {
            r.unwrap();
        }
        assert!(store.all_synced());
        assert_eq!(syncs(), 2, "one more flush for all three");
    }
}
