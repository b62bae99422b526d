//! Reading a log written with [`format`](super::format): records in order,
//! a torn tail told apart from corruption.
//!
//! A crash can leave the end of the last write incomplete: a truncated header
//! or fragment, a bad checksum, a record whose last fragment never arrived.
//! If nothing valid follows the first bad spot, it is a *torn tail*: the log
//! ends at the start of the incomplete record, and the caller truncates it
//! there. If a valid fragment follows, bytes in the middle of the log were
//! damaged: that is *corruption*, reported with the offset of the first
//! record lost, never skipped silently.
//!
//! A log written into preallocated space ends in zeros: when everything from
//! the end of a complete record to the end of the data is zero, the log ends
//! cleanly there ([`LogEnd::ZeroTail`]).

use super::format::{fragment_crc, FragmentType, BLOCK_SIZE, HEADER_LEN};

/// How a log ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogEnd {
    /// Every byte belonged to a complete record (or block trailer).
    Clean,
    /// The log must be cut at `offset`: from there on, nothing is valid.
    TornTail {
        /// Start of the first incomplete record.
        offset: u64,
    },
    /// Every record is complete, and from `offset` (the end of the last
    /// one) to the end of the data every byte is zero: space preallocated
    /// and never written. Not a torn write: nothing was written there.
    ZeroTail {
        /// End of the last complete record.
        offset: u64,
    },
}

/// A log whose middle is damaged, or a record the caller rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCorruption {
    /// Offset of the first record that could not be read.
    pub offset: u64,
    /// What was wrong.
    pub reason: String,
}

/// Reads every record of `data` in order, handing each (with its offset) to
/// `on_record`. A record the callback rejects (`Err(reason)`) is corruption
/// at that record's offset.
///
/// # Errors
/// [`LogCorruption`] when a bad spot is followed by a valid fragment, or when
/// the callback rejects a record.
pub fn read_log(
    data: &[u8],
    mut on_record: impl FnMut(u64, &[u8]) -> Result<(), String>,
) -> Result<LogEnd, LogCorruption> {
    let mut pos = 0usize;
    // Offset and bytes of a record whose FIRST fragment was read.
    let mut partial: Option<(usize, Vec<u8>)> = None;
    // End of the last complete record.
    let mut record_end = 0usize;
    loop {
        let left_in_block = BLOCK_SIZE - pos % BLOCK_SIZE;
        if left_in_block < HEADER_LEN {
            let end = (pos + left_in_block).min(data.len());
            if data[pos..end].iter().any(|&b| b != 0) {
                return bad(data, pos, &partial, pos + 1, "non-zero block trailer");
            }
            pos = end;
            if pos < data.len() {
                continue;
            }
        }
        if pos == data.len() {
            return Ok(match partial {
                None => LogEnd::Clean,
                Some((start, _)) => LogEnd::TornTail {
                    offset: start as u64,
                },
            });
        }
        let fragment = match parse_fragment(data, pos) {
            Ok(f) => f,
            Err(_) if partial.is_none() && data[pos..].iter().all(|&b| b == 0) => {
                return Ok(LogEnd::ZeroTail {
                    offset: record_end as u64,
                });
            }
            Err(reason) => return bad(data, pos, &partial, pos + 1, reason),
        };
        let next = pos + HEADER_LEN + fragment.payload.len();
        match (fragment.kind, partial.as_mut()) {
            (FragmentType::Full, None) => {
                on_record(pos as u64, fragment.payload).map_err(|reason| LogCorruption {
                    offset: pos as u64,
                    reason,
                })?;
                record_end = next;
            }
            (FragmentType::First, None) => partial = Some((pos, fragment.payload.to_vec())),
            (FragmentType::Middle, Some((_, buf))) => buf.extend_from_slice(fragment.payload),
            (FragmentType::Last, Some((start, buf))) => {
                buf.extend_from_slice(fragment.payload);
                let start = *start;
                on_record(start as u64, buf).map_err(|reason| LogCorruption {
                    offset: start as u64,
                    reason,
                })?;
                partial = None;
                record_end = next;
            }
            (kind, _) => {
                // A fragment out of sequence: the fragment itself is valid,
                // so whatever came before it is lost in the middle.
                return bad(
                    data,
                    pos,
                    &partial,
                    pos,
                    &format!("unexpected {kind:?} fragment"),
                );
            }
        }
        pos = next;
    }
}

struct Fragment<'a> {
    kind: FragmentType,
    payload: &'a [u8],
}

/// Parses the fragment at `pos` (which has room for a header in its block).
/// On failure says why.
fn parse_fragment(data: &[u8], pos: usize) -> Result<Fragment<'_>, &'static str> {
    let Some(header) = data.get(pos..pos + HEADER_LEN) else {
        return Err("truncated fragment header");
    };
    let crc = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let len = usize::from(u16::from_le_bytes([header[4], header[5]]));
    let kind = header[6];
    if crc == 0 && len == 0 && kind == 0 {
        return Err("zeroed space");
    }
    let block_end = pos - pos % BLOCK_SIZE + BLOCK_SIZE;
    let end = pos + HEADER_LEN + len;
    if end > block_end {
        return Err("fragment length crosses its block");
    }
    let Some(payload) = data.get(pos + HEADER_LEN..end) else {
        return Err("truncated fragment");
    };
    if fragment_crc(kind, payload) != crc {
        return Err("checksum mismatch");
    }
    let kind = FragmentType::try_from(kind).map_err(|_| "unknown fragment type")?;
    Ok(Fragment { kind, payload })
}

/// Decides between a torn tail and corruption after a bad spot at `pos`:
/// corruption if a valid fragment starts anywhere from `from` to the end of
/// that block, or at any later block start.
fn bad(
    data: &[u8],
    pos: usize,
    partial: &Option<(usize, Vec<u8>)>,
    from: usize,
    reason: &str,
) -> Result<LogEnd, LogCorruption> {
    let record_start = partial.as_ref().map_or(pos, |(start, _)| *start);
    let block_end = (pos / BLOCK_SIZE + 1) * BLOCK_SIZE;
    let in_block = (from..block_end.min(data.len()))
        .filter(|&c| BLOCK_SIZE - c % BLOCK_SIZE >= HEADER_LEN)
        // Cheap filter before the checksum: a valid fragment type byte.
        .filter(|&c| {
            data.get(c + HEADER_LEN - 1)
                .is_some_and(|t| (1..=4).contains(t))
        });
    let later_blocks = (block_end..data.len()).step_by(BLOCK_SIZE);
    for candidate in in_block.chain(later_blocks) {
        if parse_fragment(data, candidate).is_ok() {
            return Err(LogCorruption {
                offset: record_start as u64,
                reason: format!(
                    "{reason} at offset {pos}, followed by valid data at offset {candidate}"
                ),
            });
        }
    }
    Ok(LogEnd::TornTail {
        offset: record_start as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::super::format::encode_record;
    use super::*;

    fn write(records: &[Vec<u8>]) -> Vec<u8> {
        let (mut off, mut out) = (0, Vec::new());
        for r in records {
            encode_record(&mut off, r, &mut out);
        }
        out
    }

    fn read(data: &[u8]) -> Result<(Vec<Vec<u8>>, LogEnd), LogCorruption> {
        let mut got = Vec::new();
        let end = read_log(data, |_, r| {
            got.push(r.to_vec());
            Ok(())
        })?;
        Ok((got, end))
    }

    fn sample() -> Vec<Vec<u8>> {
        vec![
            b"first".to_vec(),
            vec![],
            vec![0xab; BLOCK_SIZE * 2 + 100], // FIRST, MIDDLE, LAST
            b"after the big one".to_vec(),
            vec![0x5a; BLOCK_SIZE - 2 * HEADER_LEN - 20],
            b"last".to_vec(),
        ]
    }

    #[test]
    fn round_trips_records_of_every_shape() {
        let records = sample();
        let data = write(&records);
        assert_eq!(read(&data).unwrap(), (records, LogEnd::Clean));
        assert_eq!(read(&[]).unwrap(), (vec![], LogEnd::Clean));
    }

    #[test]
    fn offsets_are_record_starts() {
        let data = write(&[b"a".to_vec(), b"bb".to_vec()]);
        let mut offsets = Vec::new();
        read_log(&data, |o, _| {
            offsets.push(o);
            Ok(())
        })
        .unwrap();
        assert_eq!(offsets, [0, 8]);
    }

    #[test]
    fn truncated_trailing_record_is_a_torn_tail() {
        let records = sample();
        let full = write(&records);
        let last_start = write(&records[..5]).len();
        for cut in [
            full.len() - 1,
            full.len() - 4,
            last_start + 3,
            last_start + 1,
        ] {
            let (got, end) = read(&full[..cut]).unwrap();
            assert_eq!(got, records[..5].to_vec(), "cut at {cut}");
            assert_eq!(
                end,
                LogEnd::TornTail {
                    offset: last_start as u64
                }
            );
        }
    }

    #[test]
    fn multi_fragment_record_missing_its_end_is_torn() {
        let records = sample();
        let big_start = write(&records[..2]).len();
        let data = write(&records[..3]);
        let cut = &data[..big_start + BLOCK_SIZE + 50];
        let (got, end) = read(cut).unwrap();
        assert_eq!(got, records[..2].to_vec());
        assert_eq!(
            end,
            LogEnd::TornTail {
                offset: big_start as u64
            }
        );
    }

    #[test]
    fn checksum_mismatch_at_the_tail_is_torn() {
        let records = sample();
        let mut data = write(&records);
        let last = data.len() - 1;
        data[last] ^= 0x40;
        let (got, end) = read(&data).unwrap();
        assert_eq!(got, records[..5].to_vec());
        assert!(matches!(end, LogEnd::TornTail { .. }));
    }

    #[test]
    fn checksum_mismatch_followed_by_valid_records_is_corruption() {
        let records = sample();
        let mut data = write(&records);
        data[HEADER_LEN + 1] ^= 1; // inside "first"
        let err = read(&data).unwrap_err();
        assert_eq!(err.offset, 0);
        assert!(err.reason.contains("checksum mismatch"), "{}", err.reason);
    }

    #[test]
    fn damaged_length_in_a_single_block_log_is_corruption() {
        let records = vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()];
        let mut data = write(&records);
        data[4] = 0xff; // length of "one": the later records must not vanish
        let err = read(&data).unwrap_err();
        assert_eq!(err.offset, 0);
    }

    #[test]
    fn bad_length_followed_by_valid_blocks_is_corruption() {
        let records = sample();
        let mut data = write(&records);
        let at = write(&records[..1]).len() + 4; // length of the empty record
        data[at] = 0xff;
        data[at + 1] = 0xff;
        assert!(read(&data).is_err());
    }

    #[test]
    fn zeroed_tail_ends_the_log_and_zeroed_middle_is_corruption() {
        let records = sample();
        let mut data = write(&records);
        data.extend_from_slice(&[0; 100]);
        let (got, end) = read(&data).unwrap();
        assert_eq!(got, records);
        assert!(matches!(end, LogEnd::ZeroTail { .. }));
        let mut data = write(&records);
        data[..HEADER_LEN + 5].fill(0);
        assert!(read(&data).is_err());
    }

    #[test]
    fn unexpected_fragment_type_is_corruption() {
        let mut data = Vec::new();
        let mut off = 0;
        encode_record(&mut off, &vec![5; BLOCK_SIZE], &mut data); // FIRST + LAST
        let first_len = BLOCK_SIZE;
        let mut tail = Vec::new();
        let mut off2 = 0;
        encode_record(&mut off2, b"x", &mut tail); // a FULL
                                                   // Replace the LAST fragment by a FULL one: FIRST then FULL.
        data.truncate(first_len);
        data.extend_from_slice(&tail);
        let err = read(&data).unwrap_err();
        assert_eq!(err.offset, 0);
        assert!(err.reason.contains("unexpected Full"), "{}", err.reason);
    }

    #[test]
    fn rejected_record_is_corruption_at_its_offset() {
        let data = write(&[b"ok".to_vec(), b"bad".to_vec()]);
        let err = read_log(&data, |_, r| {
            if r == b"bad" {
                Err("nope".into())
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert_eq!(
            err,
            LogCorruption {
                offset: 9,
                reason: "nope".into()
            }
        );
    }

    #[test]
    fn never_panics_on_any_single_byte_damage() {
        let records = sample();
        let data = write(&records);
        for i in (0..data.len())
            .step_by(97)
            .chain(data.len() - 40..data.len())
        {
            for v in [0x00, 0xff, data[i] ^ 0x01] {
                let mut d = data.clone();
                d[i] = v;
                if let Ok((got, _)) = read(&d) {
                    // Whatever is returned is a prefix of what was written.
                    assert_eq!(got[..], records[..got.len()], "byte {i} = {v}");
                }
            }
        }
    }

    // Named shapes of damage (one each), with the exact outcome.

    /// One fragment with a correct checksum, of any type byte.
    fn fragment(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = fragment_crc(kind, payload).to_le_bytes().to_vec();
        out.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        out.push(kind);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn truncated_header_at_the_tail_is_torn_at_its_record() {
        let records = vec![b"one".to_vec(), b"two".to_vec()];
        let data = write(&records);
        let second = write(&records[..1]).len();
        for keep in 1..HEADER_LEN {
            let (got, end) = read(&data[..second + keep]).unwrap();
            assert_eq!(got, records[..1].to_vec(), "header cut to {keep} bytes");
            assert_eq!(
                end,
                LogEnd::TornTail {
                    offset: second as u64
                }
            );
        }
    }

    #[test]
    fn truncated_payload_at_the_tail_is_torn_at_its_record() {
        let records = vec![b"one".to_vec(), b"a longer second record".to_vec()];
        let data = write(&records);
        let second = write(&records[..1]).len();
        let (got, end) = read(&data[..data.len() - 5]).unwrap();
        assert_eq!(got, records[..1].to_vec());
        assert_eq!(
            end,
            LogEnd::TornTail {
                offset: second as u64
            }
        );
    }

    #[test]
    fn zero_length_records_are_records() {
        let records = vec![vec![], b"x".to_vec(), vec![]];
        let data = write(&records);
        assert_eq!(data.len(), 3 * HEADER_LEN + 1);
        assert_eq!(read(&data).unwrap(), (records, LogEnd::Clean));
    }

    #[test]
    fn oversized_length_in_the_last_record_is_torn() {
        let records = vec![b"one".to_vec(), b"two".to_vec()];
        let mut data = write(&records);
        let second = write(&records[..1]).len();
        data[second + 4] = 0xff;
        data[second + 5] = 0xff;
        let (got, end) = read(&data).unwrap();
        assert_eq!(got, records[..1].to_vec());
        assert_eq!(
            end,
            LogEnd::TornTail {
                offset: second as u64
            }
        );
    }

    #[test]
    fn bit_flip_in_the_first_record_is_corruption_at_offset_zero() {
        let records = vec![b"one".to_vec(), b"two".to_vec()];
        for at in 0..write(&records[..1]).len() {
            let mut data = write(&records);
            data[at] ^= 1 << (at % 8);
            let err = read(&data).unwrap_err();
            assert_eq!(err.offset, 0, "bit flip at {at}: {}", err.reason);
            assert!(
                err.reason.contains("followed by valid data at offset"),
                "{}",
                err.reason
            );
        }
    }

    #[test]
    fn middle_fragment_without_a_first_is_corruption() {
        let mut data = fragment(FragmentType::Middle as u8, b"orphan");
        data.extend(write(&[b"next".to_vec()]));
        let err = read(&data).unwrap_err();
        assert_eq!(err.offset, 0);
        assert!(
            err.reason.starts_with("unexpected Middle fragment"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn last_fragment_without_a_first_is_corruption() {
        let mut data = fragment(FragmentType::Last as u8, b"orphan");
        data.extend(write(&[b"next".to_vec()]));
        let err = read(&data).unwrap_err();
        assert_eq!(err.offset, 0);
        assert!(
            err.reason.starts_with("unexpected Last fragment"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn first_fragment_inside_a_record_is_corruption_at_the_record() {
        let mut data = write(&[b"ok".to_vec()]);
        let start = data.len();
        data.extend(fragment(FragmentType::First as u8, b"begun"));
        data.extend(fragment(FragmentType::First as u8, b"begun again"));
        data.extend(fragment(FragmentType::Last as u8, b"end"));
        let mut got = Vec::new();
        let err = read_log(&data, |_, r| {
            got.push(r.to_vec());
            Ok(())
        })
        .unwrap_err();
        assert_eq!(got, vec![b"ok".to_vec()]);
        assert_eq!(err.offset, start as u64);
        assert!(
            err.reason.starts_with("unexpected First fragment"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn unknown_fragment_type_with_a_valid_checksum_is_corruption() {
        let mut data = fragment(5, b"future");
        data.extend(write(&[b"next".to_vec()]));
        let err = read(&data).unwrap_err();
        assert_eq!(err.offset, 0);
        assert!(
            err.reason.starts_with("unknown fragment type"),
            "{}",
            err.reason
        );
        // At the tail, nothing follows: torn.
        let data = fragment(5, b"future");
        assert_eq!(
            read(&data).unwrap(),
            (vec![], LogEnd::TornTail { offset: 0 })
        );
    }

    #[test]
    fn record_spanning_blocks_with_a_corrupt_middle_block_is_corruption() {
        let records = sample();
        let big_start = write(&records[..2]).len();
        let mut data = write(&records);
        // A byte of the MIDDLE fragment's payload (the whole second block).
        data[BLOCK_SIZE + BLOCK_SIZE / 2] ^= 0x04;
        let mut got = Vec::new();
        let err = read_log(&data, |_, r| {
            got.push(r.to_vec());
            Ok(())
        })
        .unwrap_err();
        assert_eq!(got, records[..2].to_vec(), "nothing of the damaged record");
        assert_eq!(err.offset, big_start as u64);
        assert!(
            err.reason.starts_with("checksum mismatch at offset 32768"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn garbage_after_a_valid_tail_is_torn_at_the_garbage() {
        let records = vec![b"one".to_vec(), b"two".to_vec()];
        let clean = write(&records);
        let mut data = clean.clone();
        data.extend((0..200u32).map(|i| (i * 37 % 251) as u8 | 0x80));
        let (got, end) = read(&data).unwrap();
        assert_eq!(got, records);
        assert_eq!(
            end,
            LogEnd::TornTail {
                offset: clean.len() as u64
            }
        );
    }

    #[test]
    fn all_zero_tail_after_a_record_ends_the_log_there() {
        let records = vec![b"one".to_vec(), b"two".to_vec()];
        let clean = write(&records);
        for len in [clean.len() + 1, clean.len() + HEADER_LEN, BLOCK_SIZE + 100] {
            let mut data = clean.clone();
            data.resize(len, 0); // preallocated space, across a block too
            let (got, end) = read(&data).unwrap();
            assert_eq!(got, records, "zeros to {len}");
            assert_eq!(
                end,
                LogEnd::ZeroTail {
                    offset: clean.len() as u64
                },
                "zeros to {len}"
            );
        }
        // Only zeros: an empty log in preallocated space.
        assert_eq!(
            read(&[0; 100]).unwrap(),
            (vec![], LogEnd::ZeroTail { offset: 0 })
        );
    }

    #[test]
    fn zero_tail_after_a_block_trailer_ends_at_the_last_record() {
        // The first record leaves 3 bytes of block 0: a trailer, then zeros.
        let records = vec![vec![1u8; BLOCK_SIZE - HEADER_LEN - 3]];
        let clean = write(&records);
        assert_eq!(clean.len(), BLOCK_SIZE - 3);
        let mut data = clean.clone();
        data.resize(2 * BLOCK_SIZE, 0);
        assert_eq!(
            read(&data).unwrap(),
            (
                records,
                LogEnd::ZeroTail {
                    offset: clean.len() as u64
                }
            )
        );
    }

    #[test]
    fn zeros_inside_a_record_or_before_junk_are_still_torn() {
        // A record whose LAST fragment never landed, then preallocated zeros.
        let records = sample();
        let big_start = write(&records[..2]).len();
        let mut data = write(&records[..3]);
        data.truncate(big_start + BLOCK_SIZE + 50);
        data.resize(4 * BLOCK_SIZE, 0);
        assert_eq!(
            read(&data).unwrap(),
            (
                records[..2].to_vec(),
                LogEnd::TornTail {
                    offset: big_start as u64
                }
            )
        );
        // Zeros, then bytes that are not a fragment: torn at the zeros.
        let records = vec![b"one".to_vec()];
        let clean = write(&records);
        let mut data = clean.clone();
        data.resize(1000, 0);
        data[900] = 0x33;
        assert_eq!(
            read(&data).unwrap(),
            (
                records,
                LogEnd::TornTail {
                    offset: clean.len() as u64
                }
            )
        );
    }

    #[test]
    fn non_zero_block_trailer_followed_by_a_record_is_corruption() {
        // A first record that leaves 3 bytes (too few for a header) at the
        // end of block 0, then a record in block 1.
        let first = vec![1u8; BLOCK_SIZE - HEADER_LEN - 3];
        let records = vec![first, b"next".to_vec()];
        let mut data = write(&records);
        assert_eq!(&data[BLOCK_SIZE - 3..BLOCK_SIZE], &[0, 0, 0]);
        data[BLOCK_SIZE - 2] = 7;
        let mut got = Vec::new();
        let err = read_log(&data, |_, r| {
            got.push(r.to_vec());
            Ok(())
        })
        .unwrap_err();
        assert_eq!(got, records[..1].to_vec());
        assert_eq!(err.offset, (BLOCK_SIZE - 3) as u64);
        assert!(
            err.reason.starts_with("non-zero block trailer"),
            "{}",
            err.reason
        );
    }
}
