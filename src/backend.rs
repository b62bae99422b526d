//! The [`StorageBackend`] trait.

use crate::{Operation, Partition, Result};

/// Storage backend abstraction for KalamDB.
///
/// Provides a unified interface for key-value storage operations with
/// partition support. Partitions map to column families in RocksDB, trees in
/// sled, and id-numbered directories in the LSM engine.
///
/// All methods are async so that local engines and network-based stores share
/// one interface. Implementations are `Send + Sync` and are meant to be shared
/// behind an `Arc`.
///
/// # Behaviour every backend shares
///
/// The built-in backends behave identically, and the conformance suite in
/// `kalamdb_store::testing` (feature `testing`) checks it:
///
/// - `create_partition` is idempotent, also under a race; every operation on a
///   missing partition is [`Error::PartitionNotFound`](crate::Error::PartitionNotFound).
/// - Size limits (see [`limits`](crate::limits)) are checked first, with the
///   same result on every backend; a refused write writes nothing.
/// - Scans are snapshots taken at the call, stream lazily, stay valid after the
///   partition or the backend is dropped, and end after an `Err` item.
/// - Batches are atomic across partitions.
///
/// # Examples
///
/// ## Using a backend
///
/// ```
/// use kalamdb_store::{MemoryBackend, Operation, Partition, StorageBackend};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> kalamdb_store::Result<()> {
/// let backend = MemoryBackend::new();
/// let users = Partition::new("users")?;
/// backend.create_partition(&users).await?;
/// backend.put(&users, b"user:1", b"ada").await?;
/// assert_eq!(backend.get(&users, b"user:1").await?, Some(b"ada".to_vec()));
/// # Ok(())
/// # }
/// ```
///
/// ## Implementing a custom backend
///
/// Any type implementing the trait can run the public conformance suite
/// (`kalamdb_store::conformance_tests!`, feature `testing`). A skeleton:
///
/// ```
/// use kalamdb_store::{Error, Operation, Partition, Result, ScanIterator, StorageBackend};
///
/// pub struct MyCustomBackend;
///
/// #[async_trait::async_trait]
/// impl StorageBackend for MyCustomBackend {
///     async fn get(&self, partition: &Partition, _key: &[u8]) -> Result<Option<Vec<u8>>> {
///         Err(Error::PartitionNotFound(partition.name().to_string()))
///     }
///     // ... the other methods
/// #   async fn put(&self, _: &Partition, _: &[u8], _: &[u8]) -> Result<()> { unimplemented!() }
/// #   async fn delete(&self, _: &Partition, _: &[u8]) -> Result<()> { unimplemented!() }
/// #   async fn scan(&self, _: &Partition, _: Option<&[u8]>, _: Option<&[u8]>) -> Result<ScanIterator> { unimplemented!() }
/// #   async fn batch(&self, _: Vec<Operation>) -> Result<()> { unimplemented!() }
/// #   async fn create_partition(&self, _: &Partition) -> Result<()> { unimplemented!() }
/// #   async fn partition_exists(&self, _: &Partition) -> Result<bool> { unimplemented!() }
/// #   async fn list_partitions(&self) -> Result<Vec<Partition>> { unimplemented!() }
/// #   async fn drop_partition(&self, _: &Partition) -> Result<()> { unimplemented!() }
/// #   async fn partition_size(&self, _: &Partition) -> Result<u64> { unimplemented!() }
/// #   async fn compact(&self, _: &Partition) -> Result<()> { unimplemented!() }
/// }
/// ```
#[async_trait::async_trait]
pub trait StorageBackend: Send + Sync {
    /// Gets a value by key from a partition.
    ///
    /// Returns `Some(value)` if the key exists, `None` if it does not.
    ///
    /// # Errors
    /// `PartitionNotFound`, a `limit:` error for a key over 64 KiB, or a
    /// storage engine error (I/O, corruption, …).
    async fn get(&self, partition: &Partition, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Puts a key-value pair, overwriting any existing value.
    ///
    /// # Errors
    /// `PartitionNotFound`, a `limit:` error (key over 64 KiB, value over
    /// 64 MiB), or a storage engine error (I/O, disk full, `poisoned:`, …).
    async fn put(&self, partition: &Partition, key: &[u8], value: &[u8]) -> Result<()>;

    /// Deletes a key. A no-op if the key does not exist.
    ///
    /// # Errors
    /// `PartitionNotFound`, a `limit:` error, or a storage engine error.
    async fn delete(&self, partition: &Partition, key: &[u8]) -> Result<()>;

    /// Scans a range of keys in a partition, in ascending bytewise order.
    ///
    /// The range includes `start_key` and excludes `end_key`; `None` means
    /// unbounded. `start_key >= end_key` gives an empty iterator. The iterator
    /// reads a snapshot taken at the call and streams: taking the first ten
    /// items costs about ten entries, not the partition. In async code, drain
    /// large scans inside `tokio::task::spawn_blocking`.
    ///
    /// # Errors
    /// `PartitionNotFound`, or a storage engine error; errors while iterating
    /// arrive as an `Err` item, which is the last item.
    ///
    /// # Examples
    ///
    /// All keys with the prefix `user:123:` end before `user:123;`, since `;`
    /// is the byte after `:`:
    ///
    /// ```
    /// use kalamdb_store::{MemoryBackend, Partition, StorageBackend};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kalamdb_store::Result<()> {
    /// # let backend = MemoryBackend::new();
    /// # let partition = Partition::new("users")?;
    /// # backend.create_partition(&partition).await?;
    /// # for k in ["user:123:a", "user:123:b", "user:123;x", "user:124:a"] {
    /// #     backend.put(&partition, k.as_bytes(), b"v").await?;
    /// # }
    /// let iter = backend
    ///     .scan(&partition, Some(b"user:123:"), Some(b"user:123;"))
    ///     .await?;
    /// let mut keys = Vec::new();
    /// for result in iter {
    ///     let (key, _value) = result?;
    ///     keys.push(String::from_utf8(key).unwrap());
    /// }
    /// assert_eq!(keys, ["user:123:a", "user:123:b"]);
    /// # Ok(())
    /// # }
    /// ```
    async fn scan(
        &self,
        partition: &Partition,
        start_key: Option<&[u8]>,
        end_key: Option<&[u8]>,
    ) -> Result<Box<dyn Iterator<Item = Result<(Vec<u8>, Vec<u8>)>> + Send>>;

    /// Executes a batch of operations atomically, across partitions.
    ///
    /// All operations apply or none do; they apply in order, so a later
    /// operation on the same key wins. An empty batch is `Ok(())`.
    ///
    /// # Errors
    /// A `limit:` error (any key or value over its limit, or more than 256 MiB
    /// in total), `PartitionNotFound` if any operation names a missing
    /// partition, or a storage engine error. In every case nothing is applied.
    ///
    /// # Examples
    ///
    /// ```
    /// use kalamdb_store::{MemoryBackend, Operation, Partition, StorageBackend};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> kalamdb_store::Result<()> {
    /// # let backend = MemoryBackend::new();
    /// let partition = Partition::new("messages")?;
    /// backend.create_partition(&partition).await?;
    /// backend.batch(vec![
    ///     Operation::put(partition.clone(), b"key1".to_vec(), b"value1".to_vec()),
    ///     Operation::put(partition.clone(), b"key2".to_vec(), b"value2".to_vec()),
    ///     Operation::delete(partition.clone(), b"key1".to_vec()),
    /// ]).await?;
    /// assert_eq!(backend.get(&partition, b"key1").await?, None);
    /// assert_eq!(backend.get(&partition, b"key2").await?, Some(b"value2".to_vec()));
    /// # Ok(())
    /// # }
    /// ```
    async fn batch(&self, operations: Vec<Operation>) -> Result<()>;

    /// Creates a partition if it does not exist.
    ///
    /// Idempotent: creating an existing partition is `Ok(())`, also when
    /// several tasks race to create it. A partition created after a drop of
    /// the same name is empty.
    ///
    /// # Errors
    /// A storage engine error.
    async fn create_partition(&self, partition: &Partition) -> Result<()>;

    /// Whether the partition exists.
    async fn partition_exists(&self, partition: &Partition) -> Result<bool>;

    /// Lists all partitions, in ascending order of name.
    async fn list_partitions(&self) -> Result<Vec<Partition>>;

    /// Drops a partition and all its data.
    ///
    /// Iterators already open on the partition keep their snapshot.
    ///
    /// # Errors
    /// `PartitionNotFound` if it does not exist, or a storage engine error.
    async fn drop_partition(&self, partition: &Partition) -> Result<()>;

    /// Approximate size of a partition in bytes, for monitoring.
    ///
    /// Backends measure differently; compare values only within one backend.
    ///
    /// # Errors
    /// `PartitionNotFound`, or a storage engine error.
    async fn partition_size(&self, partition: &Partition) -> Result<u64>;

    /// Compacts a partition to reclaim space and speed up reads; returns when
    /// the compaction is done.
    ///
    /// # Errors
    /// `PartitionNotFound`, or a storage engine error.
    async fn compact(&self, partition: &Partition) -> Result<()>;
}
