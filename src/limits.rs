//! Size limits shared by every backend.
//!
//! Every adapter calls these checks before touching its engine, so all
//! backends accept and refuse exactly the same inputs. A refused write is an
//! [`Error::Backend`] starting with `limit: ` and writes nothing.
//!
//! Order of checks, the same everywhere: first these limits, then whether the
//! partition(s) exist.

use crate::{BackendErrorKind, Error, Operation, Result};

/// Largest key, in bytes (64 KiB). Empty keys are allowed.
pub const MAX_KEY_LEN: usize = 64 * 1024;
/// Largest value, in bytes (64 MiB). Empty values are allowed.
pub const MAX_VALUE_LEN: usize = 64 * 1024 * 1024;
/// Largest batch: the sum of every operation's key and value lengths (256 MiB).
pub const MAX_BATCH_BYTES: usize = 256 * 1024 * 1024;

fn limit(what: &str, len: usize, max: usize) -> Error {
    BackendErrorKind::Limit.error(format_args!(
        "{what} of {len} bytes exceeds the maximum of {max}"
    ))
}

/// Checks a key used by `get`, `put`, `delete` or a batch.
pub fn check_key(key: &[u8]) -> Result<()> {
    if key.len() > MAX_KEY_LEN {
        return Err(limit("key", key.len(), MAX_KEY_LEN));
    }
    Ok(())
}

/// Checks the key and value of a `put`.
pub fn check_put(key: &[u8], value: &[u8]) -> Result<()> {
    check_key(key)?;
    if value.len() > MAX_VALUE_LEN {
        return Err(limit("value", value.len(), MAX_VALUE_LEN));
    }
    Ok(())
}

/// Checks every operation of a batch and the batch's total size.
pub fn check_batch(operations: &[Operation]) -> Result<()> {
    let mut total: usize = 0;
    for op in operations {
        match op {
            Operation::Put { key, value, .. } => check_put(key, value)?,
            Operation::Delete { key, .. } => check_key(key)?,
        }
        total = total.saturating_add(op.key().len() + op.value().map_or(0, <[u8]>::len));
    }
    if total > MAX_BATCH_BYTES {
        return Err(limit("batch", total, MAX_BATCH_BYTES));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Partition;

    fn is_limit(r: Result<()>) -> bool {
        matches!(&r, Err(e) if e.backend_kind() == Some(BackendErrorKind::Limit))
    }

    #[test]
    fn bounds_are_inclusive() {
        assert!(check_key(&[]).is_ok());
        assert!(check_key(&vec![0; MAX_KEY_LEN]).is_ok());
        assert!(is_limit(check_key(&vec![0; MAX_KEY_LEN + 1])));
        assert!(check_put(b"k", &vec![0; MAX_VALUE_LEN]).is_ok());
        assert!(is_limit(check_put(b"k", &vec![0; MAX_VALUE_LEN + 1])));
    }

    #[test]
    fn batch_total_counts_keys_and_values() {
        let p = Partition::new("p").unwrap();
        let big = vec![0u8; MAX_VALUE_LEN];
        let ops: Vec<Operation> = (0..4u8)
            .map(|i| Operation::put(p.clone(), vec![i], big.clone()))
            .collect();
        // 4 values of 64 MiB plus 4 one-byte keys: 4 bytes over the limit.
        let err = check_batch(&ops).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "Backend error: limit: batch of {} bytes exceeds the maximum of {}",
                MAX_BATCH_BYTES + 4,
                MAX_BATCH_BYTES
            )
        );
        assert!(check_batch(&ops[..3]).is_ok());
        let del = [Operation::delete(p, vec![0; MAX_KEY_LEN + 1])];
        assert!(is_limit(check_batch(&del)));
    }
}
