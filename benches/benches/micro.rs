//! Criterion micro-benchmarks of the engine's hot paths:
//! `cargo bench -p kalamdb-bench --bench micro`.
//!
//! Block build and seek, bloom probe, memtable insert and get, WAL append and
//! the merge iterator, on the harness's 16-byte keys and 100-byte values.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use kalamdb_bench::keys::{key, missing_key, Rng, Values};
use kalamdb_lsm::fs::{Fs, RealFs};
use kalamdb_lsm::memtable::Memtable;
use kalamdb_lsm::merge::{MergeIter, Source};
use kalamdb_lsm::sst::block::{Block, BlockBuilder};
use kalamdb_lsm::sst::bloom::{BloomBuilder, BloomFilter};
use kalamdb_lsm::sst::internal_key::{encode_internal_key, seek_key, ValueKind};
use kalamdb_lsm::sst::MAX_SEQ;
use kalamdb_lsm::wal::writer::WalWriter;

/// Entries that fill one 4 KiB data block (16 + 8 + 100 bytes plus headers).
const BLOCK_ENTRIES: u64 = 30;

fn internal_key(i: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(24);
    encode_internal_key(&mut k, &key(i), 1, ValueKind::Put);
    k
}

fn block(c: &mut Criterion) {
    let values = Values::default();
    let keys: Vec<Vec<u8>> = (0..BLOCK_ENTRIES).map(internal_key).collect();
    let mut g = c.benchmark_group("block");
    g.throughput(Throughput::Elements(BLOCK_ENTRIES));
    g.bench_function("build 4KiB", |b| {
        b.iter(|| {
            let mut builder = BlockBuilder::new(16);
            for (i, k) in keys.iter().enumerate() {
                builder.add(k, values.get(i as u64));
            }
            black_box(builder.finish())
        });
    });
    let mut builder = BlockBuilder::new(16);
    for (i, k) in keys.iter().enumerate() {
        builder.add(k, values.get(i as u64));
    }
    let Ok(block) = Block::decode(builder.finish().into()) else {
        panic!("the block just built does not decode");
    };
    let targets: Vec<Vec<u8>> = (0..BLOCK_ENTRIES).map(|i| seek_key(&key(i), 1)).collect();
    g.throughput(Throughput::Elements(1));
    let mut rng = Rng::new(1);
    g.bench_function("seek", |b| {
        b.iter(|| {
            let mut it = block.iter();
            let t = &targets[rng.below(BLOCK_ENTRIES) as usize];
            let _ = it.seek(t);
            black_box(it.valid())
        });
    });
    g.finish();
}

fn bloom(c: &mut Criterion) {
    const KEYS: u64 = 100_000;
    let mut builder = BloomBuilder::new(10);
    for i in 0..KEYS {
        builder.add_key(&key(i));
    }
    let Ok(filter) = BloomFilter::decode(&builder.finish()) else {
        panic!("the filter just built does not decode");
    };
    let mut g = c.benchmark_group("bloom");
    g.throughput(Throughput::Elements(1));
    let mut rng = Rng::new(2);
    g.bench_function("probe hit", |b| {
        b.iter(|| black_box(filter.may_contain(&key(rng.below(KEYS)))));
    });
    g.bench_function("probe miss", |b| {
        b.iter(|| black_box(filter.may_contain(&missing_key(rng.below(KEYS)))));
    });
    g.finish();
}

fn memtable(c: &mut Criterion) {
    const KEYS: u64 = 100_000;
    let values = Values::default();
    let mut g = c.benchmark_group("memtable");
    g.throughput(Throughput::Elements(KEYS));
    g.bench_function("insert 100k random", |b| {
        b.iter_batched(
            Memtable::new,
            |m| {
                let mut rng = Rng::new(3);
                for seq in 1..=KEYS {
                    let k = rng.below(KEYS);
                    m.insert(&key(k), seq, Some(values.get(k)));
                }
                m
            },
            BatchSize::LargeInput,
        );
    });
    let m = Memtable::new();
    for i in 0..KEYS {
        m.insert(&key(i), i + 1, Some(values.get(i)));
    }
    g.throughput(Throughput::Elements(1));
    let mut rng = Rng::new(4);
    g.bench_function("get", |b| {
        b.iter(|| black_box(m.get(&key(rng.below(KEYS)), MAX_SEQ)));
    });
    g.finish();
}

fn wal(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("kalamdb-micro-wal-{}", std::process::id()));
    let fs: Arc<dyn Fs> = Arc::new(RealFs::new());
    if fs.create_dir_all(&dir).is_err() {
        return;
    }
    let record = vec![0x5au8; 16 + 100 + 16];
    let mut g = c.benchmark_group("wal");
    g.throughput(Throughput::Bytes(record.len() as u64));
    let mut number = 1;
    let mut writer = WalWriter::create(&fs, &dir, number, 1 << 20).ok();
    g.bench_function("append 132B (no sync)", |b| {
        b.iter(|| {
            let Some(w) = writer.as_mut() else { return };
            if w.len() > 64 << 20 {
                number += 1;
                let _ = std::fs::remove_file(w.path());
                *w = match WalWriter::create(&fs, &dir, number, 1 << 20) {
                    Ok(w) => w,
                    Err(_) => return,
                };
            }
            let _ = black_box(w.append([record.as_slice()]));
        });
    });
    g.finish();
    drop(writer);
    let _ = std::fs::remove_dir_all(&dir);
}

fn merge(c: &mut Criterion) {
    const PER_SOURCE: u64 = 10_000;
    const SOURCES: u64 = 4;
    let values = Values::default();
    // Four memtables with interleaved keys: the merge must switch sources at
    // every step.
    let tables: Vec<Arc<Memtable>> = (0..SOURCES)
        .map(|s| {
            let m = Memtable::new();
            for i in 0..PER_SOURCE {
                let k = i * SOURCES + s;
                m.insert(&key(k), k + 1, Some(values.get(k)));
            }
            Arc::new(m)
        })
        .collect();
    let mut g = c.benchmark_group("merge");
    g.throughput(Throughput::Elements(PER_SOURCE * SOURCES));
    g.bench_function("4 sources x 10k", |b| {
        b.iter(|| {
            let sources: Vec<Box<dyn Source>> = tables
                .iter()
                .map(|t| Box::new(t.iter(None)) as Box<dyn Source>)
                .collect();
            black_box(MergeIter::new(sources).count())
        });
    });
    g.finish();
}

criterion_group!(benches, block, bloom, memtable, wal, merge);
criterion_main!(benches);
