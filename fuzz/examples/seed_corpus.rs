//! Writes the seed corpus of every fuzz target from the engine's own
//! encoders: whole tables written by `TableBuilder` (and the blocks, index,
//! filter, properties and footer cut out of them), WAL files framed like the
//! writer frames them, and manifest edits.
//!
//! ```sh
//! cd fuzz && cargo run --example seed_corpus            # into fuzz/corpus
//! cd fuzz && cargo run --example seed_corpus -- DIR     # elsewhere
//! ```
//!
//! Files are named `seed-*` and overwritten; other files in the corpus
//! directories (regression inputs) are left alone. The output is
//! deterministic.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use kalamdb_lsm::batch::{encode_batch, encode_previous_wal, encode_synced, BatchOp};
use kalamdb_lsm::fs::{Fs, SimFs};
use kalamdb_lsm::manifest::{Change, ManifestState, TableRecord, VersionEdit};
use kalamdb_lsm::memtable::Value;
use kalamdb_lsm::sst::bloom::BloomBuilder;
use kalamdb_lsm::sst::{Block, BlockHandle, Table, TableBuilder, TableOptions};
use kalamdb_lsm::wal::format::encode_record;
use kalamdb_store_fuzz::MemFile;

type Entry = (Vec<u8>, u64, Option<Vec<u8>>);

/// Writes one table with `TableBuilder` (through the simulated file
/// system) and returns its bytes.
fn build_table(partition: u64, opts: &TableOptions, entries: &[Entry]) -> Vec<u8> {
    let fs = SimFs::new();
    let path = Path::new("/t/1.sst");
    fs.create_dir_all(Path::new("/t")).expect("mkdir");
    let file = fs.create(path).expect("create");
    let mut b = TableBuilder::new(file, path.to_path_buf(), partition, opts);
    for (key, seq, value) in entries {
        let value = match value {
            Some(v) => Value::Put(Bytes::copy_from_slice(v)),
            None => Value::Delete,
        };
        b.add(key, *seq, &value).expect("add");
    }
    drop(b.finish().expect("finish"));
    fs.contents(path).expect("table bytes")
}

/// A block's contents (without its trailer).
fn slice(data: &[u8], h: BlockHandle) -> Vec<u8> {
    data[h.offset as usize..(h.offset + h.size) as usize].to_vec()
}

/// The pieces of a table, cut out along its own footer and index.
struct Pieces {
    data_blocks: Vec<Vec<u8>>,
    /// Data region length (u32 LE) ++ index contents: the `sst_index` input.
    index: Vec<u8>,
    index_block: Vec<u8>,
    filter: Option<Vec<u8>>,
    properties: Vec<u8>,
    footer: Vec<u8>,
}

fn pieces(table: &[u8]) -> Pieces {
    let size = table.len() as u64;
    let t = Table::open(
        Arc::new(MemFile(table.to_vec())),
        PathBuf::from("seed.sst"),
        size,
    )
    .expect("a table the builder wrote opens");
    let footer = *t.footer();
    let index_block = slice(table, footer.index);
    let block = Block::decode(Bytes::from(index_block.clone())).expect("index block");
    let mut it = block.iter();
    it.seek_to_first().expect("index");
    let mut data_blocks = Vec::new();
    while it.valid() {
        let h = BlockHandle::decode(it.value()).expect("handle");
        data_blocks.push(slice(table, h));
        it.advance().expect("index");
    }
    let data_end = footer.filter.unwrap_or(footer.properties).offset;
    let mut index = u32::try_from(data_end)
        .expect("small table")
        .to_le_bytes()
        .to_vec();
    index.extend_from_slice(&index_block);
    Pieces {
        data_blocks,
        index,
        index_block,
        filter: footer.filter.map(|h| slice(table, h)),
        properties: slice(table, footer.properties),
        footer: table[table.len() - 64..].to_vec(),
    }
}

fn put(key: &[u8], seq: u64, value: &[u8]) -> Entry {
    (key.to_vec(), seq, Some(value.to_vec()))
}

fn del(key: &[u8], seq: u64) -> Entry {
    (key.to_vec(), seq, None)
}

/// The seed tables: name, bytes.
fn tables() -> Vec<(&'static str, Vec<u8>)> {
    let default = TableOptions::default();
    // The one-entry table of docs/format/sstable.md (golden bytes).
    let tiny = build_table(3, &default, &[put(b"k", 5, b"v")]);

    // Many small blocks: several versions per key, tombstones, a key that
    // is a prefix of the next, restart points every 2 entries.
    let mut many = Vec::new();
    for i in 0..24u64 {
        let key = format!("key{:02}", i * 3);
        if i % 5 == 0 {
            many.push(put(key.as_bytes(), 100 + i, b""));
        }
        if i % 4 == 1 {
            many.push(del(key.as_bytes(), 60 + i));
        }
        many.push(put(key.as_bytes(), 10 + i, format!("value-{i}").as_bytes()));
        if i % 7 == 3 {
            many.push(put(format!("{key}x").as_bytes(), 3, b"prefix"));
        }
    }
    let small_blocks = TableOptions {
        block_size: 64,
        restart_interval: 2,
        bloom_bits_per_key: 10,
    };
    let many_blocks = build_table(7, &small_blocks, &many);

    // No filter; an empty key, binary keys, sequence 0 (bottom level).
    let no_filter = TableOptions {
        bloom_bits_per_key: 0,
        ..TableOptions::default()
    };
    let binary = build_table(
        1,
        &no_filter,
        &[
            put(b"", 0, b"empty key"),
            put(&[0x00], 0, &[0xff; 3]),
            del(&[0x00, 0x00], 0),
            put(&[0x7f, 0x80], 0, b""),
            put(&[0xff; 9], 0, &[0x00; 9]),
        ],
    );

    // One user key whose versions span several blocks; restart every entry;
    // a large-ish value; the largest sequence number.
    let mut versions = Vec::new();
    for seq in (1..=12u64).rev() {
        let value = vec![b'a' + seq as u8; (seq as usize) * 11];
        versions.push(put(b"hot", seq, &value));
    }
    versions.push(put(b"hot2", kalamdb_lsm::sst::MAX_SEQ, &[b'z'; 300]));
    let one_key = build_table(
        u64::MAX,
        &TableOptions {
            block_size: 100,
            restart_interval: 1,
            bloom_bits_per_key: 100,
        },
        &versions,
    );

    vec![
        ("tiny-golden", tiny),
        ("many-blocks", many_blocks),
        ("binary-keys-no-filter", binary),
        ("one-key-many-versions", one_key),
    ]
}

/// WAL files: name, bytes.
fn wal_files() -> Vec<(&'static str, Vec<u8>)> {
    fn log(records: &[Vec<u8>]) -> Vec<u8> {
        let (mut off, mut out) = (0, Vec::new());
        for r in records {
            encode_record(&mut off, r, &mut out);
        }
        out
    }
    fn batch(first_seq: u64, ops: &[BatchOp]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_batch(first_seq, ops.iter(), &mut out);
        out
    }
    fn op(partition: u64, key: &[u8], value: Option<&[u8]>) -> BatchOp {
        BatchOp {
            partition,
            key: key.to_vec(),
            value: value.map(<[u8]>::to_vec),
        }
    }
    // The golden batch of batch.rs: put k=v into partition 3 at sequence 7.
    let golden = log(&[batch(7, &[op(3, b"k", Some(b"v"))])]);
    let several = log(&[
        batch(
            1,
            &[
                op(1, b"a", Some(b"1")),
                op(1, b"b", None),
                op(2, b"", Some(b"")),
            ],
        ),
        batch(4, &[op(300, b"long key \x00\xff", Some(&[7; 200]))]),
        batch(5, &[]),
    ]);
    let rotated = log(&[
        encode_previous_wal(4, 12_345).to_vec(),
        batch(100, &[op(1, b"x", None)]),
        encode_synced(5, 20).to_vec(),
        batch(101, &[op(1, b"y", Some(b"z"))]),
    ]);
    // A record split across the first block boundary (FIRST + LAST).
    let spanning = log(&[
        batch(1, &[op(1, b"big", Some(&vec![b'.'; 32_000]))]),
        batch(2, &[op(1, b"across", Some(&[b'-'; 1000]))]),
        batch(3, &[op(1, b"after", Some(b"!"))]),
    ]);
    // A first block ending with 3 bytes left (too few for a header: they
    // are zero-filled), then the next record in the second block.
    let first = batch(1, &[op(1, b"t", Some(&vec![b'#'; 32 * 1024 - 30]))]);
    assert_eq!(7 + first.len(), 32 * 1024 - 3, "trailer seed layout");
    let trailer = log(&[first, batch(2, &[op(1, b"next block", Some(b"v"))])]);
    vec![
        ("golden-batch", golden),
        ("several-batches", several),
        ("rotated", rotated),
        ("spanning-record", spanning),
        ("block-trailer", trailer),
    ]
}

/// Manifest edits: name, encoded payload.
fn manifest_edits() -> Vec<(&'static str, Vec<u8>)> {
    let table = TableRecord {
        partition: 1,
        level: 0,
        file: 4,
        size: 4096,
        smallest: b"a".to_vec(),
        largest: b"zz".to_vec(),
        min_seq: 1,
        max_seq: 90,
        entries: 120,
        tombstones: 3,
    };
    let everything = VersionEdit {
        changes: vec![
            Change::CreatePartition {
                id: 1,
                name: "users".into(),
            },
            Change::CreatePartition {
                id: 2,
                name: "b".into(),
            },
            Change::NextPartitionId(5),
            Change::NextFileNumber(10),
            Change::AddTable(table.clone()),
            Change::AddTable(TableRecord {
                level: 2,
                file: 5,
                ..table.clone()
            }),
            Change::RemoveTable {
                partition: 1,
                level: 0,
                file: 4,
            },
            Change::LogNumber(2),
            Change::LastSequence(100),
            Change::Flushed {
                partition: 1,
                seq: 90,
            },
            Change::DropPartition { id: 2 },
        ],
    };
    let mut state = ManifestState::default();
    state.apply(&everything).expect("a consistent edit");
    let encode = |e: &VersionEdit| {
        let mut out = Vec::new();
        e.encode(&mut out);
        out
    };
    vec![
        // The golden edit of manifest/edit.rs.
        (
            "golden-create-partition",
            encode(&VersionEdit::one(Change::CreatePartition {
                id: 1,
                name: "a".into(),
            })),
        ),
        ("every-change", encode(&everything)),
        ("snapshot", encode(&state.snapshot())),
        ("empty", encode(&VersionEdit::default())),
        (
            "add-table",
            encode(&VersionEdit::one(Change::AddTable(table))),
        ),
    ]
}

/// Inputs of `op_sequence`: a few written by hand (each aimed at one
/// feature), and a few drawn from a fixed-seed generator.
fn op_sequences() -> Vec<(String, Vec<u8>)> {
    use kalamdb_store_fuzz::op_sequence::{encode, Op};
    let put = |p: usize, k: u8, v: u8, sync: bool| Op::Write {
        ops: vec![(p, k, Some(v))],
        sync,
    };
    let del = |p: usize, k: u8| Op::Write {
        ops: vec![(p, k, None)],
        sync: false,
    };
    let crash = |mode: u8, quiesce: bool, recovery_fault: u8| Op::Crash {
        mode,
        seed: 7,
        quiesce,
        recovery_fault,
    };
    // Large values (byte >= 0xe0) fill the tiny memtables: flushes.
    let fill = |p: usize, from: u8| -> Vec<Op> {
        (0..12u8)
            .map(|i| put(p, from.wrapping_add(i * 5), 0xe0 + i, false))
            .collect()
    };
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut basic = vec![put(0, 1, 1, false), put(0, 2, 2, false), del(0, 1)];
    basic.extend([
        Op::Get(0, 1),
        Op::Get(0, 2),
        Op::Scan(0, 0xff, 0xff),
        Op::PrefixScan(0, 0x2c, 1),
        Op::Flush,
        Op::Scan(0, 1, 0x3f),
        Op::Compact(0),
        Op::Reopen,
        Op::Get(0, 2),
    ]);
    out.push(("basic".into(), encode((0, 0), &basic)));

    let mut durable = vec![put(0, 3, 3, true), put(1, 4, 4, false), Op::SyncWal];
    durable.extend(fill(1, 9));
    durable.extend([
        put(0, 5, 5, false),
        crash(1, false, 0),
        Op::Scan(1, 0xff, 0xff),
    ]);
    durable.extend([put(0, 6, 6, true), put(0, 7, 7, false), crash(2, true, 0)]);
    out.push(("crash".into(), encode((0x01, 0x01), &durable)));

    let mut iters = vec![put(0, 1, 1, false), put(0, 2, 2, false)];
    iters.extend([Op::OpenIter(0, 0xff, 0xff), Op::StepIter(0, 1)]);
    iters.extend(fill(0, 3));
    iters.extend([Op::Compact(0), Op::OpenIter(0, 2, 0xff), Op::Drop(0)]);
    iters.extend(fill(1, 7));
    iters.extend([
        Op::StepIter(0, 5),
        Op::Reopen,
        Op::StepIter(1, 50),
        Op::StepIter(0, 50),
    ]);
    out.push(("iterators".into(), encode((0x04, 0x22), &iters)));

    let mut parts = vec![
        Op::Create(2),
        put(2, 1, 1, false),
        Op::Get(2, 1),
        Op::Drop(2),
    ];
    parts.extend([Op::Get(2, 1), Op::Create(2), Op::Scan(2, 0xff, 0xff)]);
    parts.extend([
        put(2, 2, 2, false),
        Op::Write {
            ops: vec![(0, 1, Some(3)), (1, 1, Some(4)), (2, 1, None)],
            sync: true,
        },
    ]);
    parts.extend([Op::Drop(1), crash(0, true, 0), Op::Get(1, 1), Op::Create(1)]);
    out.push(("partitions".into(), encode((0x20, 0x04), &parts)));

    let mut faults = fill(0, 1);
    faults.extend([Op::SyncWal, Op::FaultCrash(20), put(0, 2, 2, true)]);
    faults.extend(fill(1, 2));
    faults.extend([
        Op::Flush,
        Op::Create(2),
        crash(1, false, 40),
        Op::Scan(0, 0xff, 0xff),
    ]);
    out.push(("faults".into(), encode((0x01, 0x09), &faults)));

    // Random sequences, weighted towards writes.
    let mut state = 0x5eed_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as u8
    };
    for n in 0..4 {
        let mut ops = Vec::new();
        for _ in 0..150 {
            let p = usize::from(next() % 3);
            let op = match next() % 20 {
                0..=7 => put(p, next(), next(), next() % 8 == 0),
                8 => del(p, next()),
                9 => Op::Get(p, next()),
                10 => Op::Scan(p, next(), next()),
                11 => Op::OpenIter(p, next(), 0xff),
                12 => Op::StepIter(next(), next() % 8),
                13 => [Op::Flush, Op::Compact(p), Op::CompactDue][usize::from(next() % 3)].clone(),
                14 => [Op::Create(p), Op::Drop(p)][usize::from(next() % 2)].clone(),
                15 => Op::SyncWal,
                16 if next() % 4 == 0 => crash(next() % 3, next() % 2 == 0, 0),
                17 if next() % 4 == 0 => Op::Reopen,
                _ => put(p, next(), 0xe0 | next(), false),
            };
            ops.push(op);
        }
        out.push((format!("random-{n}"), encode((next(), next()), &ops)));
    }
    out
}

/// Databases for `db_open`: built by the engine on a simulated file
/// system, then cut down to the current manifest, the newest WAL and the
/// tables.
fn db_open_inputs() -> Vec<(&'static str, Vec<u8>)> {
    use kalamdb_lsm::manifest::parse_manifest_file_name;
    use kalamdb_lsm::table_file::parse_table_file_name;
    use kalamdb_lsm::wal::writer::parse_wal_file_name;
    use kalamdb_lsm::{Db, Options, WriteOp};
    use kalamdb_store_fuzz::db_open::{encode, DIR};

    let put = |p: &'static str, k: &str, v: &str| WriteOp {
        partition: p,
        key: k.as_bytes().to_vec(),
        value: Some(v.as_bytes().to_vec()),
    };
    let del = |p: &'static str, k: &str| WriteOp {
        partition: p,
        key: k.as_bytes().to_vec(),
        value: None,
    };
    let mut out = Vec::new();
    for (name, flush, drop_b) in [
        ("writes", false, false),
        ("writes-flushed", true, false),
        ("writes-dropped-partition", false, true),
    ] {
        let sim = SimFs::new();
        let options = || Options {
            fs: Arc::new(sim.clone()),
            wal_preallocate: 0,
            disable_auto_compactions: true,
            ..Options::default()
        };
        let db = Db::open(DIR, options()).expect("open");
        db.create_partition("a").expect("create a");
        db.create_partition("b").expect("create b");
        db.write([put("a", "k1", "v1"), put("b", "k1", "w1")], None)
            .expect("write");
        db.write([put("a", "k2", "v2"), del("a", "k1")], Some(true))
            .expect("write");
        if flush {
            // One at a time: `Db::flush` takes them in hash order, and the
            // seeds must not change from run to run.
            db.flush_partition("a").expect("flush a");
            db.flush_partition("b").expect("flush b");
        }
        if drop_b {
            db.drop_partition("b").expect("drop b");
        }
        db.write([put("a", "k3", "v3")], Some(true)).expect("write");
        drop(db);
        let names = sim.read_dir(Path::new(DIR)).expect("list");
        let manifest = names
            .iter()
            .filter_map(|n| parse_manifest_file_name(n).map(|m| (m, n)))
            .max()
            .and_then(|(_, n)| sim.contents(&Path::new(DIR).join(n)))
            .expect("a manifest");
        let (number, wal) = names
            .iter()
            .filter_map(|n| parse_wal_file_name(n).map(|w| (w, n)))
            .max()
            .and_then(|(w, n)| Some((w, sim.contents(&Path::new(DIR).join(n))?)))
            .expect("a WAL");
        let number = u8::try_from(number).expect("a WAL number below 256");
        let mut tables = Vec::new();
        for dir in &names {
            let Ok(partition) = dir.parse::<u8>() else {
                continue;
            };
            let pdir = Path::new(DIR).join(dir);
            for file in sim.read_dir(&pdir).expect("list a partition") {
                let n = parse_table_file_name(&file).expect("a table file");
                let n = u8::try_from(n).expect("a table number below 256");
                let bytes = sim.contents(&pdir.join(&file)).expect("a table");
                tables.push((partition, n, bytes));
            }
        }
        let tables: Vec<_> = tables.iter().map(|(p, n, b)| (*p, *n, &b[..])).collect();
        let input = encode(number, &manifest, &wal, &tables);
        assert!(
            kalamdb_store_fuzz::db_open::run(&input),
            "seed {name} does not open"
        );
        out.push((name, input));
    }
    out
}

fn main() {
    let root = std::env::args_os().nth(1).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"),
        PathBuf::from,
    );
    let mut files: Vec<(String, String, Vec<u8>)> = Vec::new();
    let mut add = |target: &str, name: String, bytes: Vec<u8>| {
        files.push((target.to_string(), name, bytes));
    };

    for (name, table) in tables() {
        let p = pieces(&table);
        for (i, b) in p.data_blocks.iter().enumerate().take(3) {
            add("sst_block", format!("{name}-data{i}"), b.clone());
        }
        add("sst_block", format!("{name}-index"), p.index_block);
        add("sst_index", name.to_string(), p.index);
        if let Some(f) = p.filter {
            add("sst_filter", name.to_string(), f);
        }
        add("sst_properties", name.to_string(), p.properties);
        add("sst_footer", name.to_string(), p.footer);
        add("sst_table", name.to_string(), table);
    }
    for (keys, bits) in [(1usize, 1u32), (3, 10), (50, 100)] {
        let mut b = BloomBuilder::new(bits);
        for i in 0..keys {
            b.add_key(format!("k{i}").as_bytes());
        }
        add(
            "sst_filter",
            format!("{keys}-keys-{bits}-bits"),
            b.finish().to_vec(),
        );
    }
    for (name, bytes) in wal_files() {
        add("wal_reader", name.to_string(), bytes);
    }
    for (name, bytes) in manifest_edits() {
        add("manifest_edit", name.to_string(), bytes);
    }
    for (name, s) in [
        ("max-length", "x".repeat(64)),
        ("too-long", "y".repeat(65)),
        ("empty", String::new()),
    ] {
        add("partition_name", name.to_string(), s.into_bytes());
    }

    for (name, bytes) in db_open_inputs() {
        add("db_open", name.to_string(), bytes);
    }
    for (name, bytes) in op_sequences() {
        add("op_sequence", name, bytes);
    }

    let mut total = 0;
    for (target, name, bytes) in &files {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).expect("corpus directory");
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write seed");
        total += bytes.len();
    }
    println!(
        "{} seed files, {total} bytes, under {}",
        files.len(),
        root.display()
    );
}
