//! The six backends under test, opened with the pinned configuration.

use std::path::Path;
use std::sync::Arc;

use kalamdb_store::{LsmBackend, MemoryBackend, Partition, Result, SledBackend, StorageBackend};
use serde::{Deserialize, Serialize};

use crate::adapters::{FjallBackend, RedbBackend};
use crate::config::{self, BenchConfig};

/// A backend under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// kalamdb-store's `LsmBackend`.
    Lsm,
    /// kalamdb-store's `RocksDbBackend`.
    RocksDb,
    /// fjall, through the bench adapter.
    Fjall,
    /// kalamdb-store's `SledBackend`.
    Sled,
    /// redb, through the bench adapter.
    Redb,
    /// kalamdb-store's `MemoryBackend`.
    Memory,
}

impl Kind {
    /// Every backend, in report order.
    pub const ALL: [Kind; 6] = [
        Kind::Lsm,
        Kind::RocksDb,
        Kind::Fjall,
        Kind::Sled,
        Kind::Redb,
        Kind::Memory,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Lsm => "lsm",
            Kind::RocksDb => "rocksdb",
            Kind::Fjall => "fjall",
            Kind::Sled => "sled",
            Kind::Redb => "redb",
            Kind::Memory => "memory",
        }
    }

    /// The backend named `s`.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Whether it keeps data on disk.
    pub fn persistent(self) -> bool {
        self != Kind::Memory
    }

    /// Why a full `compact` cannot be measured on it, if it cannot.
    pub fn no_compaction(self) -> Option<&'static str> {
        match self {
            Kind::Sled => Some("sled 0.34 has no manual compaction: compact is a no-op"),
            Kind::Memory => Some("in memory: nothing to compact"),
            _ => None,
        }
    }

    /// Whether the file at `path` of this backend's directory is never
    /// changed in place once written (table files: they are only ever
    /// created whole and removed), so a cell may hard-link it from a base
    /// directory instead of copying it. Everything else (logs, manifests,
    /// B-tree files) is copied: a backend may append to it, truncate or
    /// rewrite it when it opens the copy.
    pub fn immutable_file(self, path: &Path) -> bool {
        let ext = |e: &str| path.extension().is_some_and(|x| x == e);
        match self {
            // The engine's and RocksDB's table files.
            Kind::Lsm | Kind::RocksDb => ext("sst"),
            // fjall (lsm-tree): `keyspaces/<id>/tables/<id>`.
            Kind::Fjall => path
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|d| d == "tables"),
            // B-trees changed in place; nothing on disk.
            Kind::Sled | Kind::Redb | Kind::Memory => false,
        }
    }

    /// Whether this build can run it.
    pub fn available(self) -> bool {
        self != Kind::RocksDb || cfg!(feature = "rocksdb")
    }
}

/// An open backend: the trait object the workloads drive, plus what a few
/// workloads need beyond the trait (sled's flush, clean closes).
pub struct Opened {
    /// The backend.
    pub store: Arc<dyn StorageBackend>,
    kind: Kind,
    sync: bool,
    specific: Specific,
}

enum Specific {
    Lsm(LsmBackend),
    Sled(Arc<SledBackend>),
    Fjall(Arc<FjallBackend>),
    Redb(Arc<RedbBackend>),
    Other,
}

/// Opens `kind` in `dir` with `cfg`. `sync`: every write is durable before it
/// returns (fillsync).
///
/// # Errors
/// The backend's open errors.
pub fn open(kind: Kind, dir: &Path, cfg: &BenchConfig, sync: bool) -> Result<Opened> {
    let (store, specific): (Arc<dyn StorageBackend>, Specific) = match kind {
        Kind::Lsm => {
            let b = LsmBackend::new(dir, config::lsm_options(cfg, sync))?;
            (Arc::new(b.clone()), Specific::Lsm(b))
        }
        #[cfg(feature = "rocksdb")]
        Kind::RocksDb => (
            Arc::new(kalamdb_store::RocksDbBackend::new(
                dir,
                config::rocksdb_options(cfg, sync),
            )?),
            Specific::Other,
        ),
        #[cfg(not(feature = "rocksdb"))]
        Kind::RocksDb => {
            return Err(kalamdb_store::Error::NotSupported(
                "built without the rocksdb feature".into(),
            ))
        }
        Kind::Fjall => {
            let b = Arc::new(FjallBackend::open(dir, cfg, sync)?);
            (b.clone(), Specific::Fjall(b))
        }
        Kind::Sled => {
            let b = Arc::new(SledBackend::with_options(dir, config::sled_options(cfg))?);
            (b.clone(), Specific::Sled(b))
        }
        Kind::Redb => {
            let b = Arc::new(RedbBackend::open(dir, cfg, sync)?);
            (b.clone(), Specific::Redb(b))
        }
        Kind::Memory => (Arc::new(MemoryBackend::new()), Specific::Other),
    };
    Ok(Opened {
        store,
        kind,
        sync,
        specific,
    })
}

impl Opened {
    /// The backend.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// A put; with `sync`, durable on return. sled has no synced write, so
    /// in sync mode each of its writes is followed by `flush()` (which is
    /// `sync_file_range`, weaker than `fdatasync`).
    ///
    /// # Errors
    /// The backend's errors.
    pub async fn put(&self, p: &Partition, key: &[u8], value: &[u8]) -> Result<()> {
        self.store.put(p, key, value).await?;
        if let (true, Specific::Sled(s)) = (self.sync, &self.specific) {
            s.flush()?;
        }
        Ok(())
    }

    /// Makes everything written so far durable and closes the backend, so
    /// that a copy of its directory reopens with all of it.
    ///
    /// # Errors
    /// The backend's errors.
    pub async fn close(self) -> Result<()> {
        match &self.specific {
            Specific::Lsm(b) => b.sync_wal().await?,
            Specific::Sled(b) => b.flush()?,
            Specific::Fjall(b) => b.persist()?,
            Specific::Redb(b) => b.persist()?,
            Specific::Other => {}
        }
        drop(self);
        Ok(())
    }

    /// Engine counters worth reporting, as text (the LSM's shape).
    pub fn engine_note(&self) -> Option<String> {
        match &self.specific {
            Specific::Lsm(b) => {
                let s = b.stats();
                let mut note = format!(
                    "{} tables, {} flushes, {} memtables",
                    s.tables, s.flushes, s.memtables
                );
                // Where compaction wrote (write amplification by level).
                let by_level: Vec<String> = s
                    .compaction_bytes_written_to
                    .iter()
                    .enumerate()
                    .filter(|(_, &b)| b > 0)
                    .map(|(l, &b)| format!("L{l} {:.0}", b as f64 / (1 << 20) as f64))
                    .collect();
                if !by_level.is_empty() {
                    note.push_str(&format!("; compaction wrote (MiB) {}", by_level.join(", ")));
                }
                // The rest of the bytes written: WAL and flushes.
                note.push_str(&format!(
                    "; WAL {:.0} MiB, flushes {:.0} MiB",
                    s.wal_bytes_written as f64 / (1 << 20) as f64,
                    s.flush_bytes_written as f64 / (1 << 20) as f64
                ));
                if s.wal_syncs > 0 {
                    // Group commit at work: sync writes per fdatasync.
                    note.push_str(&format!("; {} writes, {} WAL syncs", s.writes, s.wal_syncs));
                }
                Some(note)
            }
            _ => None,
        }
    }
}
