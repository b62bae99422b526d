//! Reading a log written with [`format`](super::format): records in order,
//! a torn tail told apart from corruption.
//!
//! A crash can leave the end of the last write incomplete: a truncated header
//! or fragment, a bad checksum, a record whose last fragment never arrived.
//! If nothing valid follows the first bad spot, it is a *torn tail*: the log
//! ends at the start of the incomplete record, and the caller truncates it
//! there. If a valid fragment follows, bytes in the middle of the log were
//! damaged: that is *corruption*, reported with the offset of the first
//! record lost ([`LogCorruption::hole`] says where the damage starts and
//! where valid data resumes), never skipped silently. Whether such damage is a lost write
//! rather than damaged durable bytes is for the caller to decide, from what
//! it knows of syncs ([`salvage_from`] reads past the damage for it).
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
    /// Damage followed by a valid fragment (`None` when a record was
    /// rejected). A power loss can keep a later page of unsynced writes and
    /// lose an earlier one, so this alone does not prove that durable bytes
    /// were damaged.
    pub hole: Option<Hole>,
}

/// Damage followed by valid data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hole {
    /// Where the first fragment that could not be read starts.
    pub damaged_at: u64,
    /// Where the next valid fragment starts.
    pub resumes_at: u64,
}

/// Why a log read from a [`LogSource`] stopped early.
#[derive(Debug)]
pub enum ReadLogError {
    /// Reading the bytes failed.
    Io(std::io::Error),
    /// The log is damaged, or the callback rejected a record.
    Corrupt(LogCorruption),
}

impl From<LogCorruption> for ReadLogError {
    fn from(c: LogCorruption) -> Self {
        ReadLogError::Corrupt(c)
    }
}

/// Where a log's bytes come from. The reader asks for them a window at a
/// time, in order, so a file is never in memory whole.
pub trait LogSource {
    /// The log's length in bytes.
    fn len(&self) -> u64;

    /// Whether the log is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many bytes the reader asks for at a time (rounded up to whole
    /// blocks).
    fn window(&self) -> usize;

    /// The bytes `start..start + len` (inside the log). The slice lives
    /// until the next call.
    ///
    /// # Errors
    /// I/O errors.
    fn read(&mut self, start: u64, len: usize) -> std::io::Result<&[u8]>;
}

/// A log in memory: one window, no copy.
impl LogSource for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn window(&self) -> usize {
        <[u8]>::len(self)
    }

    fn read(&mut self, start: u64, len: usize) -> std::io::Result<&[u8]> {
        usize::try_from(start)
            .ok()
            .and_then(|s| self.get(s..s.checked_add(len)?))
            .ok_or_else(|| std::io::Error::other("read past the end of the log"))
    }
}

/// A log file read a window at a time into one reused buffer.
#[derive(Debug)]
pub struct FileSource {
    file: std::sync::Arc<dyn crate::fs::ReadableFile>,
    len: u64,
    window: usize,
    buf: Vec<u8>,
}

impl FileSource {
    /// The file at `path`, whole, in windows of `window` bytes.
    ///
    /// # Errors
    /// I/O errors opening it.
    pub fn open(
        fs: &dyn crate::fs::Fs,
        path: &std::path::Path,
        window: usize,
    ) -> std::io::Result<Self> {
        let file = fs.open_read(path)?;
        let len = file.len()?;
        Ok(Self::new(file, len, window))
    }

    /// Reads the first `len` bytes of `file` in windows of `window` bytes.
    pub fn new(file: std::sync::Arc<dyn crate::fs::ReadableFile>, len: u64, window: usize) -> Self {
        FileSource {
            file,
            len,
            window: window.max(1),
            buf: Vec::new(),
        }
    }
}

impl LogSource for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn window(&self) -> usize {
        self.window
    }

    fn read(&mut self, start: u64, len: usize) -> std::io::Result<&[u8]> {
        if start
            .checked_add(len as u64)
            .is_none_or(|end| end > self.len)
        {
            return Err(std::io::Error::other("read past the end of the log"));
        }
        self.buf.resize(len, 0);
        self.file.read_exact_at(&mut self.buf, start)?;
        Ok(&self.buf)
    }
}

/// Reads every record of `data` in order, handing each (with its offset) to
/// `on_record`. A record the callback rejects (`Err(reason)`) is corruption
/// at that record's offset.
///
/// # Errors
/// [`LogCorruption`] when a bad spot is followed by a valid fragment, or when
/// the callback rejects a record.
pub fn read_log(
    mut data: &[u8],
    on_record: impl FnMut(u64, &[u8]) -> Result<(), String>,
) -> Result<LogEnd, LogCorruption> {
    read_log_from(&mut data, on_record).map_err(|e| match e {
        ReadLogError::Corrupt(c) => c,
        // A slice is never read past its end; should that change, the
        // error still says what happened.
        ReadLogError::Io(e) => LogCorruption {
            offset: 0,
            reason: e.to_string(),
            hole: None,
        },
    })
}

/// Where a window's scan stopped short of the window's end.
enum Stop {
    /// Bytes at `pos` are not a valid fragment (nor a zero block trailer).
    Unparsable { pos: u64, reason: &'static str },
    /// A valid fragment out of sequence at `pos`.
    OutOfSequence { pos: u64, reason: String },
    /// A non-zero block trailer at `pos`.
    Trailer { pos: u64 },
}

/// [`read_log`] over a [`LogSource`], a window of whole blocks at a time
/// (fragments never cross a block, so each lies in one window). Only the
/// window and a record spanning blocks are in memory; payloads handed to
/// `on_record` live until it returns.
///
/// # Errors
/// As [`read_log`], and I/O errors of the source.
pub fn read_log_from<S: LogSource + ?Sized>(
    src: &mut S,
    mut on_record: impl FnMut(u64, &[u8]) -> Result<(), String>,
) -> Result<LogEnd, ReadLogError> {
    let total = src.len();
    let window = window_of(src);
    // Offset and bytes of a record whose FIRST fragment was read.
    let mut partial: Option<(u64, Vec<u8>)> = None;
    // End of the last complete record.
    let mut record_end = 0u64;
    let mut base = 0u64;
    while base < total {
        let wlen = (total - base).min(window as u64) as usize;
        let data = src.read(base, wlen).map_err(ReadLogError::Io)?;
        let stop = scan_window(data, base, &mut partial, &mut record_end, &mut on_record)?;
        let Some(stop) = stop else {
            base += wlen as u64;
            continue;
        };
        return match stop {
            Stop::Unparsable { pos, reason } => {
                if partial.is_none() && all_zero_from(src, pos)? {
                    Ok(LogEnd::ZeroTail { offset: record_end })
                } else {
                    bad(src, pos, &partial, pos + 1, reason)
                }
            }
            Stop::Trailer { pos } => bad(src, pos, &partial, pos + 1, "non-zero block trailer"),
            // The fragment itself is valid, so whatever came before it is
            // lost in the middle.
            Stop::OutOfSequence { pos, reason } => bad(src, pos, &partial, pos, &reason),
        };
    }
    Ok(match partial {
        None => LogEnd::Clean,
        Some((start, _)) => LogEnd::TornTail { offset: start },
    })
}

/// Reads the fragments of one window (`data`, at offset `base` of the log,
/// a block boundary). Returns where it stopped early, if it did.
fn scan_window(
    data: &[u8],
    base: u64,
    partial: &mut Option<(u64, Vec<u8>)>,
    record_end: &mut u64,
    on_record: &mut impl FnMut(u64, &[u8]) -> Result<(), String>,
) -> Result<Option<Stop>, LogCorruption> {
    let mut pos = 0usize;
    loop {
        let left_in_block = BLOCK_SIZE - pos % BLOCK_SIZE;
        if left_in_block < HEADER_LEN {
            let end = (pos + left_in_block).min(data.len());
            if data[pos..end].iter().any(|&b| b != 0) {
                return Ok(Some(Stop::Trailer {
                    pos: base + pos as u64,
                }));
            }
            pos = end;
        }
        if pos == data.len() {
            return Ok(None);
        }
        let at = base + pos as u64;
        let fragment = match parse_fragment(data, pos) {
            Ok(f) => f,
            Err(reason) => return Ok(Some(Stop::Unparsable { pos: at, reason })),
        };
        let next = at + (HEADER_LEN + fragment.payload.len()) as u64;
        match (fragment.kind, partial.as_mut()) {
            (FragmentType::Full, None) => {
                on_record(at, fragment.payload).map_err(|reason| LogCorruption {
                    offset: at,
                    reason,
                    hole: None,
                })?;
                *record_end = next;
            }
            (FragmentType::First, None) => *partial = Some((at, fragment.payload.to_vec())),
            (FragmentType::Middle, Some((_, buf))) => buf.extend_from_slice(fragment.payload),
            (FragmentType::Last, Some((start, buf))) => {
                buf.extend_from_slice(fragment.payload);
                let start = *start;
                on_record(start, buf).map_err(|reason| LogCorruption {
                    offset: start,
                    reason,
                    hole: None,
                })?;
                *partial = None;
                *record_end = next;
            }
            (kind, _) => {
                return Ok(Some(Stop::OutOfSequence {
                    pos: at,
                    reason: format!("unexpected {kind:?} fragment"),
                }))
            }
        }
        pos += HEADER_LEN + fragment.payload.len();
    }
}

/// The source's window in whole blocks: a fragment never crosses one, so
/// each lies in one window.
fn window_of<S: LogSource + ?Sized>(src: &S) -> usize {
    src.window().div_ceil(BLOCK_SIZE).max(1) * BLOCK_SIZE
}

/// Reads the log from `from` to its end a window at a time, handing each
/// window (with its offset) to `find` until it finds something.
fn find_after<S: LogSource + ?Sized, T>(
    src: &mut S,
    from: u64,
    mut find: impl FnMut(u64, &[u8]) -> Option<T>,
) -> std::io::Result<Option<T>> {
    let total = src.len();
    let window = window_of(src) as u64;
    let mut at = from;
    while at < total {
        let n = (total - at).min(window) as usize;
        let bytes = src.read(at, n)?;
        if let Some(found) = find(at, bytes) {
            return Ok(Some(found));
        }
        at += n as u64;
    }
    Ok(None)
}

/// Whether every byte from `from` to the end of the log is zero.
fn all_zero_from<S: LogSource + ?Sized>(src: &mut S, from: u64) -> Result<bool, ReadLogError> {
    let non_zero = find_after(src, from, |_, bytes| {
        bytes.iter().any(|&b| b != 0).then_some(())
    })
    .map_err(ReadLogError::Io)?;
    Ok(non_zero.is_none())
}

struct Fragment<'a> {
    kind: FragmentType,
    payload: &'a [u8],
}

/// Parses the fragment at `pos` of `data`, which starts at a block boundary
/// (`pos` has room for a header in its block). On failure says why.
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

/// Whether the bytes at `pos` of `data` (which starts at a block boundary)
/// could start a valid fragment: room for a header in its block, a known
/// type byte, and a length that fits in the block. Cheap, before the
/// checksum.
fn plausible_fragment(data: &[u8], pos: usize) -> bool {
    if BLOCK_SIZE - pos % BLOCK_SIZE < HEADER_LEN {
        return false;
    }
    let Some(header) = data.get(pos..pos + HEADER_LEN) else {
        return false;
    };
    let len = usize::from(u16::from_le_bytes([header[4], header[5]]));
    (1..=4).contains(&header[6]) && pos % BLOCK_SIZE + HEADER_LEN + len <= BLOCK_SIZE
}

/// Decides between a torn tail and corruption after a bad spot at `pos`:
/// corruption if a valid fragment starts anywhere from `from` to the end of
/// that block, or at any later block start.
fn bad<S: LogSource + ?Sized>(
    src: &mut S,
    pos: u64,
    partial: &Option<(u64, Vec<u8>)>,
    from: u64,
    reason: &str,
) -> Result<LogEnd, ReadLogError> {
    let total = src.len();
    let block = BLOCK_SIZE as u64;
    let record_start = partial.as_ref().map_or(pos, |(start, _)| *start);
    let corrupt = |candidate: u64| {
        ReadLogError::Corrupt(LogCorruption {
            offset: record_start,
            reason: format!(
                "{reason} at offset {pos}, followed by valid data at offset {candidate}"
            ),
            hole: Some(Hole {
                damaged_at: pos,
                resumes_at: candidate,
            }),
        })
    };
    // The rest of the bad spot's block (read whole, so that a fragment is
    // parsed against its own block).
    let block_start = pos - pos % block;
    let block_end = block_start + block;
    let bytes = src
        .read(block_start, (total.min(block_end) - block_start) as usize)
        .map_err(ReadLogError::Io)?;
    let in_block = (from..block_end.min(total))
        .map(|c| (c - block_start) as usize)
        .filter(|&c| plausible_fragment(bytes, c));
    for c in in_block {
        if parse_fragment(bytes, c).is_ok() {
            return Err(corrupt(block_start + c as u64));
        }
    }
    // Every later block start (windows are whole blocks from a block end).
    let later = find_after(src, block_end, |at, bytes| {
        (0..bytes.len())
            .step_by(BLOCK_SIZE)
            .find(|&c| parse_fragment(bytes, c).is_ok())
            .map(|c| at + c as u64)
    })
    .map_err(ReadLogError::Io)?;
    if let Some(candidate) = later {
        return Err(corrupt(candidate));
    }
    Ok(LogEnd::TornTail {
        offset: record_start,
    })
}

/// The unit a storage device writes whole or not at all (a sector).
pub const SECTOR: u64 = 512;

/// Whether `hole` has the shape of writes a power loss lost: zeros from
/// where the damage starts to the end of that sector, or a whole aligned
/// sector of zeros in the damaged fragment's block before valid data
/// resumes. A write lost from a new or preallocated file reads back as
/// zeros (file systems do not expose stale blocks), a sector at a time; the
/// sector it shares with earlier durable bytes keeps those and loses the
/// rest; and the lost sector is in the fragment it made unreadable. A
/// flipped bit or garbage leaves no such zeros (unless the damaged fragment
/// itself holds a sector of zero bytes).
///
/// # Errors
/// I/O errors of the source.
pub fn lost_write_shape<S: LogSource + ?Sized>(src: &mut S, hole: Hole) -> std::io::Result<bool> {
    let from = hole.damaged_at;
    let block_end = from - from % BLOCK_SIZE as u64 + BLOCK_SIZE as u64;
    let to = hole.resumes_at.min(block_end).min(src.len());
    let aligned = from.div_ceil(SECTOR) * SECTOR;
    if from < aligned && aligned <= to {
        let head = src.read(from, (aligned - from) as usize)?;
        if head.iter().all(|&b| b == 0) {
            return Ok(true);
        }
    }
    if aligned + SECTOR > to {
        return Ok(false);
    }
    let n = ((to - aligned) / SECTOR * SECTOR) as usize;
    let bytes = src.read(aligned, n)?;
    Ok(bytes
        .chunks_exact(SECTOR as usize)
        .any(|sector| sector.iter().all(|&b| b == 0)))
}

/// Reads every complete record that can still be parsed from `from` to the
/// end of the log, going past damage: after a bad spot it tries every later
/// offset (only those with a valid type byte and a length that fits cost a
/// checksum), and a fragment out of sequence drops the record it would have
/// continued. For looking beyond damage (for sync marks), never for replay:
/// records after damage are not a prefix of the log. Returns the first
/// thing `find` finds in a record (given with its offset).
///
/// # Errors
/// I/O errors of the source.
pub fn salvage_from<S: LogSource + ?Sized, T>(
    src: &mut S,
    from: u64,
    mut find: impl FnMut(u64, &[u8]) -> Option<T>,
) -> std::io::Result<Option<T>> {
    let mut partial: Option<(u64, Vec<u8>)> = None;
    // Whole blocks from `from`'s block: a fragment is parsed against its
    // own block.
    find_after(src, from - from % BLOCK_SIZE as u64, |base, data| {
        let mut pos = from.saturating_sub(base) as usize;
        while pos < data.len() {
            let left_in_block = BLOCK_SIZE - pos % BLOCK_SIZE;
            if left_in_block < HEADER_LEN {
                pos += left_in_block; // a block trailer: a record may go on
                continue;
            }
            let fragment = plausible_fragment(data, pos)
                .then(|| parse_fragment(data, pos).ok())
                .flatten();
            let Some(fragment) = fragment else {
                partial = None;
                pos += 1;
                continue;
            };
            let at = base + pos as u64;
            pos += HEADER_LEN + fragment.payload.len();
            let found = match (fragment.kind, partial.take()) {
                (FragmentType::Full, _) => find(at, fragment.payload),
                (FragmentType::First, _) => {
                    partial = Some((at, fragment.payload.to_vec()));
                    None
                }
                (FragmentType::Middle, Some((start, mut buf))) => {
                    buf.extend_from_slice(fragment.payload);
                    partial = Some((start, buf));
                    None
                }
                (FragmentType::Last, Some((start, mut buf))) => {
                    buf.extend_from_slice(fragment.payload);
                    find(start, &buf)
                }
                (FragmentType::Middle | FragmentType::Last, None) => None,
            };
            if found.is_some() {
                return found;
            }
        }
        None
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

    /// Reads `data` whole, and checks that reading it from a source a
    /// window at a time (one block, three blocks) gives the same records,
    /// offsets and end.
    fn read(data: &[u8]) -> Result<(Vec<Vec<u8>>, LogEnd), LogCorruption> {
        let mut got = Vec::new();
        let whole = read_log(data, |o, r| {
            got.push((o, r.to_vec()));
            Ok(())
        });
        for window in [BLOCK_SIZE, 3 * BLOCK_SIZE] {
            let mut src = Copied::new(data, window);
            let mut windowed = Vec::new();
            let end = read_log_from(&mut src, |o, r| {
                windowed.push((o, r.to_vec()));
                Ok(())
            })
            .map_err(|e| match e {
                ReadLogError::Corrupt(c) => c,
                ReadLogError::Io(e) => panic!("I/O error from memory: {e}"),
            });
            assert_eq!(end, whole, "window {window}");
            if whole.is_ok() {
                assert_eq!(windowed, got, "window {window}");
            }
        }
        Ok((got.into_iter().map(|(_, r)| r).collect(), whole?))
    }

    /// A source that copies each window, as a file does.
    struct Copied<'a> {
        data: &'a [u8],
        window: usize,
        buf: Vec<u8>,
    }

    impl<'a> Copied<'a> {
        fn new(data: &'a [u8], window: usize) -> Self {
            Copied {
                data,
                window,
                buf: Vec::new(),
            }
        }
    }

    impl LogSource for Copied<'_> {
        fn len(&self) -> u64 {
            self.data.len() as u64
        }

        fn window(&self) -> usize {
            self.window
        }

        fn read(&mut self, start: u64, len: usize) -> std::io::Result<&[u8]> {
            let start = start as usize;
            self.buf.clear();
            self.buf.extend_from_slice(&self.data[start..start + len]);
            Ok(&self.buf)
        }
    }

    #[test]
    fn a_file_source_reads_windows_of_the_file() {
        let records = sample();
        let data = write(&records);
        use crate::fs::Fs;
        let fs = crate::fs::SimFs::new();
        let path = std::path::Path::new("/log");
        let mut f = fs.create(path).unwrap();
        f.append(&data).unwrap();
        drop(f);
        let mut src = FileSource::new(fs.open_read(path).unwrap(), data.len() as u64, 100);
        let mut got = Vec::new();
        let end = read_log_from(&mut src, |_, r| {
            got.push(r.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!((got, end), (records, LogEnd::Clean));
        assert!(
            src.read(data.len() as u64 - 1, 2).is_err(),
            "read past the end"
        );
        // A length beyond the file is an I/O error, not a panic.
        let mut long = FileSource::new(fs.open_read(path).unwrap(), data.len() as u64 + 10, 100);
        let err = read_log_from(&mut long, |_, _| Ok(())).unwrap_err();
        assert!(matches!(err, ReadLogError::Io(_)), "{err:?}");
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

    /// Record offsets of `records` written in order.
    fn offsets(records: &[Vec<u8>]) -> Vec<u64> {
        let data = write(records);
        let mut got = Vec::new();
        read_log(&data, |o, _| {
            got.push(o);
            Ok(())
        })
        .unwrap();
        got
    }

    #[test]
    fn corruption_says_where_valid_data_resumes() {
        let records = sample();
        let at = offsets(&records);
        // The first record zeroed (a lost page): the empty record after it
        // is the next valid fragment.
        let mut data = write(&records);
        data[..HEADER_LEN + 5].fill(0);
        let err = read(&data).unwrap_err();
        let hole = |damaged_at, resumes_at| {
            Some(Hole {
                damaged_at,
                resumes_at,
            })
        };
        assert_eq!((err.offset, err.hole), (0, hole(0, at[1])));
        // The big record's middle block zeroed: its LAST fragment, at the
        // start of the block after, is valid data (out of sequence).
        let mut data = write(&records);
        data[BLOCK_SIZE..2 * BLOCK_SIZE].fill(0);
        let err = read(&data).unwrap_err();
        assert_eq!(err.offset, at[2]);
        let block = BLOCK_SIZE as u64;
        assert_eq!(err.hole, hole(block, 2 * block));
        // A torn tail has nothing to resume at.
        let data = write(&records);
        let end = read(&data[..data.len() - 2]).unwrap().1;
        assert_eq!(end, LogEnd::TornTail { offset: at[5] });
    }

    /// What [`salvage_from`] finds from `from`, with windows of one and
    /// three blocks (the same both times).
    fn salvage(data: &[u8], from: u64) -> Vec<(u64, Vec<u8>)> {
        let mut results = Vec::new();
        for window in [BLOCK_SIZE, 3 * BLOCK_SIZE] {
            let mut src = Copied::new(data, window);
            let mut got = Vec::new();
            let found = salvage_from(&mut src, from, |o, r| {
                got.push((o, r.to_vec()));
                None::<()>
            })
            .unwrap();
            assert!(found.is_none());
            results.push(got);
        }
        assert_eq!(results[0], results[1]);
        results.swap_remove(0)
    }

    #[test]
    fn salvage_reads_the_records_left_around_damage() {
        let records = sample();
        let at = offsets(&records);
        let all: Vec<(u64, Vec<u8>)> = at.iter().copied().zip(records.clone()).collect();
        let data = write(&records);
        assert_eq!(salvage(&data, 0), all);
        assert_eq!(salvage(&data, at[3]), all[3..]);
        // The big record's middle block lost: that record is gone, the
        // rest of its block too (it is all the record's), and the records
        // after it are found again.
        let mut damaged = data.clone();
        damaged[BLOCK_SIZE..2 * BLOCK_SIZE].fill(0);
        let mut expected = all.clone();
        expected.remove(2);
        assert_eq!(salvage(&damaged, 0), expected);
        // The first record garbled: it is lost, and reading resumes at the
        // next valid fragment, the record right after it.
        let mut damaged = data.clone();
        damaged[HEADER_LEN + 1] ^= 1;
        assert_eq!(salvage(&damaged, 0), all[1..]);
        // Starting inside the big record: its MIDDLE and LAST fragments
        // (without their FIRST) are dropped, the records after it found.
        assert_eq!(salvage(&data, at[2] + 100), all[3..]);
        // Stopping early.
        let mut src: &[u8] = &data;
        let mut seen = 0;
        let found = salvage_from(&mut src, 0, |_, _| {
            seen += 1;
            (seen == 2).then_some(seen)
        })
        .unwrap();
        assert_eq!((found, seen), (Some(2), 2));
        // Starting past the end finds nothing.
        assert_eq!(salvage(&data, data.len() as u64), []);
    }

    #[test]
    fn lost_writes_are_zeros_to_a_sector_end_or_a_whole_sector() {
        let s = SECTOR as usize;
        let shape = |data: &[u8], damaged_at: u64, resumes_at: u64| {
            let hole = Hole {
                damaged_at,
                resumes_at,
            };
            let mut whole: &[u8] = data;
            let a = lost_write_shape(&mut whole, hole).unwrap();
            let mut src = Copied::new(data, BLOCK_SIZE);
            assert_eq!(a, lost_write_shape(&mut src, hole).unwrap());
            a
        };
        let mut data = vec![1u8; 4 * s];
        let n = data.len() as u64;
        let s64 = SECTOR;
        // Zeros across two sectors, neither whole, and not from the damage
        // to a sector end.
        data[s + 10..3 * s - 10].fill(0);
        assert!(!shape(&data, 0, n));
        assert!(!shape(&data, s64 + 5, n));
        // From where the damage starts to the end of that sector.
        assert!(shape(&data, s64 + 10, n));
        assert!(shape(&data, 2 * s64 - 1, n));
        // ... but the sector end must come before valid data resumes.
        assert!(!shape(&data, s64 + 10, 2 * s64 - 1));
        // A whole aligned sector.
        data[2 * s..3 * s].fill(0);
        assert!(shape(&data, 0, n));
        assert!(!shape(&data, 0, 3 * s64 - 1));
        assert!(shape(&data, 0, 3 * s64));
        assert!(!shape(&data, 3 * s64, n));
        // Past the end: nothing.
        assert!(!shape(&data, n, n + 4096));
        // A zero sector in a later block than the damage is not the
        // damaged fragment's.
        let block = BLOCK_SIZE as u64;
        let mut data = vec![1u8; 2 * BLOCK_SIZE];
        data[BLOCK_SIZE + s..BLOCK_SIZE + 2 * s].fill(0);
        assert!(!shape(&data, 100, 2 * block));
        assert!(shape(&data, block + 100, 2 * block));
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
                reason: "nope".into(),
                hole: None,
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
                // Salvage returns only records that were written, in order.
                let mut left = records.iter();
                for (_, r) in salvage(&d, 0) {
                    assert!(left.any(|w| *w == r), "byte {i} = {v}");
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
