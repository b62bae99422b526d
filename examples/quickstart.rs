//! The main job: open the embedded default backend, then put, get, batch and
//! scan, printing each step.
//!
//! ```text
//! cargo run --release --example quickstart [DATA_DIR]
//! ```
//!
//! It runs on the embedded default, the pure-Rust LSM engine (`LsmBackend`),
//! in `DATA_DIR` (default `./data/quickstart`), then reopens the directory to
//! show the data survived.

use std::time::Instant;

use kalamdb_store::{LsmBackend, LsmOptions, Operation, Partition, Result, StorageBackend};

#[tokio::main]
async fn main() -> Result<()> {
    let data_dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./data/quickstart".into());
    let started = Instant::now();
    let backend = LsmBackend::new(&data_dir, LsmOptions::default())?;
    println!(
        "backend: lsm in {data_dir} (opened in {:?})",
        started.elapsed()
    );
    run(&backend).await?;
    backend.sync_wal().await?;
    let stats = backend.stats();
    println!(
        "engine: {} writes in {} group commits, {} WAL bytes, {} memtable bytes",
        stats.writes, stats.write_groups, stats.wal_bytes_written, stats.memtable_bytes
    );
    drop(backend);

    let started = Instant::now();
    let backend = LsmBackend::new(&data_dir, LsmOptions::default())?;
    let messages = Partition::new("messages")?;
    let count = backend.scan(&messages, None, None).await?.count();
    println!(
        "reopened in {:?}: {messages} holds {count} keys",
        started.elapsed()
    );
    Ok(())
}

async fn run(backend: &dyn StorageBackend) -> Result<()> {
    let messages = Partition::new("messages")?;
    let users = Partition::system("users")?;
    // Start from scratch on every run.
    for p in [&messages, &users] {
        if backend.partition_exists(p).await? {
            backend.drop_partition(p).await?;
        }
    }
    backend.create_partition(&messages).await?;
    backend.create_partition(&users).await?;
    println!("partitions: {:?}", names(&backend.list_partitions().await?));

    backend.put(&messages, b"msg:123", b"Hello, world!").await?;
    let value = backend.get(&messages, b"msg:123").await?;
    println!(
        "put msg:123, get -> {:?}",
        value.as_deref().map(String::from_utf8_lossy)
    );

    let started = Instant::now();
    let n = 10_000u32;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let ops = chunk
            .iter()
            .flat_map(|i| {
                [
                    Operation::put(
                        messages.clone(),
                        format!("user:{}:{i:05}", i % 10).into_bytes(),
                        format!("message {i}").into_bytes(),
                    ),
                    Operation::put(
                        users.clone(),
                        format!("{}", i % 10).into_bytes(),
                        format!("user {}", i % 10).into_bytes(),
                    ),
                ]
            })
            .collect();
        backend.batch(ops).await?;
    }
    println!(
        "batched {} writes across 2 partitions in {:?}",
        2 * n,
        started.elapsed()
    );

    backend.delete(&messages, b"msg:123").await?;
    println!(
        "deleted msg:123, get -> {:?}",
        backend.get(&messages, b"msg:123").await?
    );

    // All keys with the prefix "user:3:" end before "user:3;".
    let started = Instant::now();
    let mut count = 0;
    let mut first = None;
    for item in backend
        .scan(&messages, Some(b"user:3:"), Some(b"user:3;"))
        .await?
    {
        let (key, value) = item?;
        first.get_or_insert((
            String::from_utf8_lossy(&key).into_owned(),
            String::from_utf8_lossy(&value).into_owned(),
        ));
        count += 1;
    }
    println!(
        "scan prefix user:3: -> {count} keys in {:?}, first {first:?}",
        started.elapsed()
    );

    let top: Vec<_> = backend
        .scan(&users, None, None)
        .await?
        .take(3)
        .collect::<Result<_>>()?;
    println!(
        "first 3 of {users}: {:?}",
        top.iter()
            .map(|(k, v)| (String::from_utf8_lossy(k), String::from_utf8_lossy(v)))
            .collect::<Vec<_>>()
    );

    backend.compact(&messages).await?;
    println!(
        "size of {messages}: {} bytes",
        backend.partition_size(&messages).await?
    );
    backend.drop_partition(&users).await?;
    println!(
        "dropped {users}; partitions: {:?}",
        names(&backend.list_partitions().await?)
    );
    Ok(())
}

fn names(partitions: &[Partition]) -> Vec<&str> {
    partitions.iter().map(Partition::name).collect()
}
