//! The main job: open the embedded default backend, then put, get, batch and
//! scan, printing each step.
//!
//! ```text
//! cargo run --release --example quickstart [DATA_DIR]
//! ```
//!
//! The embedded default is the in-memory reference backend until the LSM
//! engine lands (the data directory is then where the LSM keeps its files).

use std::time::Instant;

use kalamdb_store::{MemoryBackend, Operation, Partition, Result, StorageBackend};

#[tokio::main]
async fn main() -> Result<()> {
    let data_dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./data/quickstart".into());
    let backend = MemoryBackend::new();
    println!(
        "backend: memory (in-memory reference; LSM engine pending), data dir {data_dir} unused"
    );
    run(&backend).await
}

async fn run(backend: &dyn StorageBackend) -> Result<()> {
    let messages = Partition::new("messages")?;
    let users = Partition::system("users")?;
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
