//! WAL reading (framing + write-batch decoding): never panics, and every
//! record delivered passes its checksum and decodes. Each input is read as
//! given and with its fragment checksums rewritten, so mutations also reach
//! the fragment reassembly and the batch decoder. Reading the same bytes a
//! block at a time (as replay reads a file) gives the same records and end.
//! Past damage, `salvage_from` (from the damage and from the start) and
//! `lost_write_shape` never panic, read windowed as whole, and salvage
//! finds every record read before the damage.
#![no_main]

use kalamdb_lsm::batch::{decode_batch, decode_previous_wal, decode_synced};
use kalamdb_lsm::wal::format::BLOCK_SIZE;
use kalamdb_lsm::wal::reader::{
    lost_write_shape, read_log, read_log_from, salvage_from, LogSource, ReadLogError,
};
use kalamdb_store_fuzz::fix_log_checksums;
use libfuzzer_sys::fuzz_target;

/// The bytes handed out a copied window at a time, as from a file.
struct Windows<'a> {
    data: &'a [u8],
    buf: Vec<u8>,
}

impl LogSource for Windows<'_> {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }

    fn window(&self) -> usize {
        BLOCK_SIZE
    }

    fn read(&mut self, start: u64, len: usize) -> std::io::Result<&[u8]> {
        let start = start as usize;
        self.buf.clear();
        self.buf.extend_from_slice(&self.data[start..start + len]);
        Ok(&self.buf)
    }
}

fn check(payload: &[u8]) -> Result<(), String> {
    if decode_previous_wal(payload)?.is_some() || decode_synced(payload)?.is_some() {
        return Ok(());
    }
    decode_batch(payload, |_| Ok(()))
}

fn read(data: &[u8]) {
    let mut whole = Vec::new();
    let end = read_log(data, |o, payload| {
        whole.push((o, payload.to_vec()));
        check(payload)
    });
    let mut windowed = Vec::new();
    let mut src = Windows {
        data,
        buf: Vec::new(),
    };
    let end2 = read_log_from(&mut src, |o, payload| {
        windowed.push((o, payload.to_vec()));
        check(payload)
    })
    .map_err(|e| match e {
        ReadLogError::Corrupt(c) => c,
        ReadLogError::Io(e) => panic!("I/O error from memory: {e}"),
    });
    assert_eq!(end, end2);
    assert_eq!(whole, windowed);

    // Salvage from the start finds at least the records read in order
    // (the log's start up to any damage), the same whole and windowed.
    let all = salvage(data, 0);
    assert!(
        all.len() >= whole.len(),
        "salvage lost records read in order"
    );
    assert_eq!(all[..whole.len()], whole[..]);
    if let Err(c) = &end {
        if let Some(hole) = c.hole {
            assert!(c.offset <= hole.damaged_at && hole.damaged_at <= hole.resumes_at);
            assert!(hole.resumes_at < data.len() as u64);
            salvage(data, hole.resumes_at);
            let mut slice: &[u8] = data;
            let a = lost_write_shape(&mut slice, hole).expect("no I/O error");
            let mut src = Windows {
                data,
                buf: Vec::new(),
            };
            let b = lost_write_shape(&mut src, hole).expect("no I/O error");
            assert_eq!(a, b);
        }
    }
}

/// `salvage_from(from)` over the whole slice and a block at a time: the
/// same records both ways.
fn salvage(data: &[u8], from: u64) -> Vec<(u64, Vec<u8>)> {
    let mut whole = Vec::new();
    let mut slice: &[u8] = data;
    salvage_from(&mut slice, from, |o, r| {
        whole.push((o, r.to_vec()));
        None::<()>
    })
    .expect("no I/O error from memory");
    let mut windowed = Vec::new();
    let mut src = Windows {
        data,
        buf: Vec::new(),
    };
    salvage_from(&mut src, from, |o, r| {
        windowed.push((o, r.to_vec()));
        None::<()>
    })
    .expect("no I/O error from memory");
    assert_eq!(whole, windowed);
    whole
}

fuzz_target!(|data: &[u8]| {
    read(data);
    let mut fixed = data.to_vec();
    fix_log_checksums(&mut fixed);
    if fixed != data {
        read(&fixed);
    }
});
