//! Batch operations.

use crate::Partition;

/// One write of a [`batch`](crate::StorageBackend::batch).
///
/// ```
/// use kalamdb_store::{Operation, Partition};
///
/// let p = Partition::new("users")?;
/// let ops = vec![
///     Operation::put(p.clone(), b"k1".to_vec(), b"v1".to_vec()),
///     Operation::delete(p.clone(), b"k2".to_vec()),
/// ];
/// assert_eq!(ops[0].partition(), &p);
/// assert_eq!(ops[1].key(), b"k2");
/// # Ok::<(), kalamdb_store::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// Put key-value pair.
    Put {
        /// Target partition.
        partition: Partition,
        /// Key bytes.
        key: Vec<u8>,
        /// Value bytes.
        value: Vec<u8>,
    },

    /// Delete key.
    Delete {
        /// Target partition.
        partition: Partition,
        /// Key bytes.
        key: Vec<u8>,
    },
}

impl Operation {
    /// Creates a put operation.
    pub fn put(partition: Partition, key: Vec<u8>, value: Vec<u8>) -> Self {
        Operation::Put {
            partition,
            key,
            value,
        }
    }

    /// Creates a delete operation.
    pub fn delete(partition: Partition, key: Vec<u8>) -> Self {
        Operation::Delete { partition, key }
    }

    /// The partition the operation writes to.
    pub fn partition(&self) -> &Partition {
        match self {
            Operation::Put { partition, .. } | Operation::Delete { partition, .. } => partition,
        }
    }

    /// The key the operation writes.
    pub fn key(&self) -> &[u8] {
        match self {
            Operation::Put { key, .. } | Operation::Delete { key, .. } => key,
        }
    }

    /// The value of a put; `None` for a delete.
    pub fn value(&self) -> Option<&[u8]> {
        match self {
            Operation::Put { value, .. } => Some(value),
            Operation::Delete { .. } => None,
        }
    }
}
