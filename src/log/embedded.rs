//! The embedded event log: Kafka's semantics (partitions, offsets, total order inside a
//! partition, durable before acknowledged) in one append-only file on local disk.
//!
//! All partitions share one file so a single `fdatasync` makes a whole group of concurrent
//! appends durable (group commit): a dedicated writer thread takes everything queued since
//! its last sync, writes it, syncs once, then acknowledges each append. Readers only ever
//! see synced records, like a Kafka consumer only sees records below the high watermark.
//!
//! Frame: `len: u32 | crc32(partition, offset, payload): u32 | partition: u32 | offset: u64 | payload`.
//! On open, a frame cut short by a crash (or failing its CRC) ends the log: it was never
//! acknowledged, so it is truncated away.
//!
//! The writer allocates the file ahead of its records ([`PREALLOCATE`] at a time, zeros to
//! a reader) and writes into that space: a sync then has no file size or block allocation
//! to commit with the data, which makes each `fdatasync` cost ext4 more CPU and latency
//! (`bench/RESULTS.md`, run T; ADR 0002). Zeros fail the frame check like a torn write
//! does, so readers stop at the last record either way; a clean close gives the unused
//! space back.

use flashrent_events::{AppendFuture, EventLog, LogError, Offset, PartitionId, StoredRecord};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{oneshot, watch};

const HEADER: usize = 20;
/// How often a read-only log looks for records another process appended.
const FOLLOW_POLL: Duration = Duration::from_millis(50);
/// How much one group commit may gather before it syncs.
const MAX_GROUP_BYTES: usize = 4 << 20;
/// File space allocated at a time ahead of the records (~10 s of saturating load).
const PREALLOCATE: u64 = 64 << 20;

struct Job {
    partition: PartitionId,
    offset: Offset,
    frame: Vec<u8>,
    done: oneshot::Sender<Result<Offset, LogError>>,
}

struct Shared {
    /// File position of every durable record, per partition (the offset is the index).
    index: RwLock<Vec<Vec<u64>>>,
    reader: File,
    /// Durable end offset per partition, for readers waiting on new records.
    ends: Vec<watch::Sender<Offset>>,
}

pub struct EmbeddedLog {
    shared: Arc<Shared>,
    /// Next offset to hand out per partition, and the writer's queue. One lock, so offsets
    /// are handed out in exactly the order jobs reach the writer.
    tail: Mutex<(Vec<Offset>, Option<mpsc::Sender<Job>>)>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Read-only mode: how far the file has been scanned, to pick up what another process
    /// (the writing `serve`) appended since.
    follow: Option<Mutex<u64>>,
}

impl EmbeddedLog {
    /// Opens (or creates) the log in `dir`. The partition count is fixed at creation;
    /// reopening with another count is refused rather than silently remapping keys.
    pub fn open(dir: &Path, partitions: u32) -> Result<EmbeddedLog, LogError> {
        let io = |e: std::io::Error| LogError::failed_by(format!("{}", dir.display()), e);
        std::fs::create_dir_all(dir).map_err(io)?;
        let meta = dir.join("partitions");
        match std::fs::read_to_string(&meta) {
            Ok(text) if text.trim() != partitions.to_string() => {
                return Err(LogError::failed(format!(
                    "the log in {} has {} partitions, {partitions} were configured",
                    dir.display(),
                    text.trim()
                )))
            }
            Ok(_) => {}
            Err(_) => std::fs::write(&meta, partitions.to_string()).map_err(io)?,
        }
        let path = dir.join("events.wal");
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        let (index, valid_len) = scan(&mut file, partitions).map_err(io)?;
        if valid_len < file.metadata().map_err(io)?.len() {
            let mut head = [0u8; HEADER];
            let torn =
                file.read_at(&mut head, valid_len).map_err(io)? > 0 && head.iter().any(|b| *b != 0);
            if torn {
                tracing::warn!(
                    valid_len,
                    "truncating an unacknowledged torn write at the end of the log"
                );
            }
            // Torn or only allocated ahead (a crash left it): nothing after it counts.
            file.set_len(valid_len).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        let next: Vec<Offset> = index.iter().map(|p| p.len() as Offset).collect();
        let ends = next.iter().map(|n| watch::channel(*n).0).collect();
        let shared = Arc::new(Shared {
            index: RwLock::new(index),
            reader: file.try_clone().map_err(io)?,
            ends,
        });
        let (tx, rx) = mpsc::channel();
        let writer_shared = shared.clone();
        let handle = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || write_loop(file, valid_len, rx, writer_shared))
            .map_err(io)?;
        Ok(EmbeddedLog {
            shared,
            tail: Mutex::new((next, Some(tx))),
            writer: Mutex::new(Some(handle)),
            follow: None,
        })
    }

    /// Opens an existing log for reading only: no writer thread, no truncation of a torn
    /// tail, appends refused. Safe while `serve` has the same log open for writing: the scan
    /// stops at the first frame that is incomplete (still being written) or fails its CRC,
    /// so a reader sees a consistent prefix — the records as of the moment it opened.
    pub fn open_read_only(dir: &Path) -> Result<EmbeddedLog, LogError> {
        let io = |e: std::io::Error| LogError::failed_by(format!("{}", dir.display()), e);
        let partitions: u32 = std::fs::read_to_string(dir.join("partitions"))
            .map_err(io)?
            .trim()
            .parse()
            .map_err(|e| {
                LogError::failed_by(format!("{}: bad partitions file", dir.display()), e)
            })?;
        let mut file = File::open(dir.join("events.wal")).map_err(io)?;
        let (index, scanned) = scan(&mut file, partitions).map_err(io)?;
        let next: Vec<Offset> = index.iter().map(|p| p.len() as Offset).collect();
        let ends = next.iter().map(|n| watch::channel(*n).0).collect();
        Ok(EmbeddedLog {
            shared: Arc::new(Shared {
                index: RwLock::new(index),
                reader: file,
                ends,
            }),
            tail: Mutex::new((next, None)),
            writer: Mutex::new(None),
            follow: Some(Mutex::new(scanned)),
        })
    }

    /// Read-only mode: indexes the records appended to the file since the last look. A frame
    /// still being written (short, or failing its CRC) is left for the next look.
    fn refresh(&self) -> Result<(), LogError> {
        let Some(scanned) = &self.follow else {
            return Ok(());
        };
        let mut scanned = scanned.lock().expect("log follow lock");
        let io = |e: std::io::Error| LogError::failed_by("reading the event log", e);
        let len = self.shared.reader.metadata().map_err(io)?.len();
        if len <= *scanned {
            return Ok(());
        }
        let mut index = self.shared.index.write().expect("log index lock");
        let mut pos = *scanned;
        let mut header = [0u8; HEADER];
        let mut payload = Vec::new();
        while pos + HEADER as u64 <= len {
            self.shared
                .reader
                .read_exact_at(&mut header, pos)
                .map_err(io)?;
            let plen = u32::from_le_bytes(header[0..4].try_into().unwrap()) as u64;
            let crc = u32::from_le_bytes(header[4..8].try_into().unwrap());
            let partition = u32::from_le_bytes(header[8..12].try_into().unwrap());
            let offset = u64::from_le_bytes(header[12..20].try_into().unwrap());
            if pos + HEADER as u64 + plen > len {
                break;
            }
            payload.resize(plen as usize, 0);
            self.shared
                .reader
                .read_exact_at(&mut payload, pos + HEADER as u64)
                .map_err(io)?;
            let valid = (partition as usize) < index.len()
                && crc == checksum(&header[8..20], &payload)
                && index[partition as usize].len() as u64 == offset;
            if !valid {
                break;
            }
            index[partition as usize].push(pos);
            pos += HEADER as u64 + plen;
            self.shared.ends[partition as usize].send_replace(offset + 1);
        }
        *scanned = pos;
        Ok(())
    }

    /// Stops accepting appends, lets the writer finish what is queued, and waits for it.
    pub fn close(&self) {
        self.tail.lock().expect("log tail lock").1.take();
        if let Some(h) = self.writer.lock().expect("log writer lock").take() {
            let _ = h.join();
        }
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        self.close();
    }
}

fn scan(file: &mut File, partitions: u32) -> std::io::Result<(Vec<Vec<u64>>, u64)> {
    let mut index = vec![Vec::new(); partitions as usize];
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(0))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, &*file);
    let mut pos = 0u64;
    let mut header = [0u8; HEADER];
    let mut payload = Vec::new();
    while pos + HEADER as u64 <= len {
        reader.read_exact(&mut header)?;
        let plen = u32::from_le_bytes(header[0..4].try_into().unwrap()) as u64;
        let crc = u32::from_le_bytes(header[4..8].try_into().unwrap());
        let partition = u32::from_le_bytes(header[8..12].try_into().unwrap());
        let offset = u64::from_le_bytes(header[12..20].try_into().unwrap());
        if pos + HEADER as u64 + plen > len {
            break;
        }
        payload.resize(plen as usize, 0);
        reader.read_exact(&mut payload)?;
        let valid = partition < partitions
            && crc == checksum(&header[8..20], &payload)
            && index[partition as usize].len() as u64 == offset;
        if !valid {
            break;
        }
        index[partition as usize].push(pos);
        pos += HEADER as u64 + plen;
    }
    Ok((index, pos))
}

fn checksum(head: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(head);
    h.update(payload);
    h.finalize()
}

fn frame(partition: PartitionId, offset: Offset, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(HEADER + payload.len());
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(&[0; 4]);
    f.extend_from_slice(&partition.to_le_bytes());
    f.extend_from_slice(&offset.to_le_bytes());
    f.extend_from_slice(payload);
    let crc = checksum(&f[8..20], payload);
    f[4..8].copy_from_slice(&crc.to_le_bytes());
    f
}

fn write_loop(file: File, mut pos: u64, rx: mpsc::Receiver<Job>, shared: Arc<Shared>) {
    let mut failed: Option<LogError> = None;
    let mut buf = Vec::with_capacity(MAX_GROUP_BYTES);
    // How far the file reaches; `None` once allocating ahead failed (not tried again).
    let mut allocated = Some(pos);
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        let mut bytes = group[0].frame.len();
        while bytes < MAX_GROUP_BYTES {
            match rx.try_recv() {
                Ok(job) => {
                    bytes += job.frame.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        if let Some(failure) = &failed {
            for job in group {
                let _ = job.done.send(Err(failure.clone()));
            }
            continue;
        }
        buf.clear();
        let mut positions = Vec::with_capacity(group.len());
        for job in &group {
            positions.push(pos + buf.len() as u64);
            buf.extend_from_slice(&job.frame);
        }
        let end = pos + buf.len() as u64;
        if allocated.is_some_and(|a| end > a) {
            allocated = allocate(&file, pos, end.max(pos + PREALLOCATE));
        }
        let result = file.write_all_at(&buf, pos).and_then(|_| file.sync_data());
        if let Err(e) = result {
            // After a failed write or sync the file's state is unknown; refuse everything
            // from here on (a restart re-reads what is really on disk).
            let failure = LogError::failed_by("writing to the event log", e);
            tracing::error!(error = %flashrent_events::ErrorChain(&failure), "the event log takes no more appends");
            failed = Some(failure.clone());
            for job in group {
                let _ = job.done.send(Err(failure.clone()));
            }
            continue;
        }
        pos += buf.len() as u64;
        {
            let mut index = shared.index.write().expect("log index lock");
            for (job, p) in group.iter().zip(&positions) {
                index[job.partition as usize].push(*p);
            }
        }
        for job in group {
            shared.ends[job.partition as usize].send_replace(job.offset + 1);
            let _ = job.done.send(Ok(job.offset));
        }
    }
    if failed.is_none() && allocated.is_some_and(|a| a > pos) {
        if let Err(e) = file.set_len(pos) {
            tracing::warn!(error = %e, "cannot give back the event log's unused space");
        }
    }
}

/// Allocates the file up to `to` (from `from`, where the records end); returns how far the
/// file now reaches, or `None` where that cannot be done (writes then extend the file).
fn allocate(file: &File, from: u64, to: u64) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let offset = i64::try_from(from).ok()?;
        let len = i64::try_from(to - from).ok()?;
        // SAFETY: fallocate reads its integer arguments only; the descriptor is open.
        if unsafe { libc::fallocate(file.as_raw_fd(), 0, offset, len) } == 0 {
            return Some(to);
        }
        tracing::info!(error = %std::io::Error::last_os_error(), "the event log's file system cannot allocate ahead; writes extend the file");
        None
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, from, to);
        None
    }
}

#[async_trait::async_trait]
impl EventLog for EmbeddedLog {
    fn partition_count(&self) -> u32 {
        self.shared.ends.len() as u32
    }

    fn close(&self) {
        EmbeddedLog::close(self)
    }

    fn append(&self, partition: PartitionId, record: Vec<u8>) -> AppendFuture {
        let (done, rx) = oneshot::channel();
        let queued = (|| {
            let mut tail = self.tail.lock().expect("log tail lock");
            let (next, sender) = &mut *tail;
            let slot = next
                .get_mut(partition as usize)
                .ok_or(LogError::NoSuchPartition(partition))?;
            let sender = sender
                .as_ref()
                .ok_or_else(|| LogError::unavailable("the log is closed"))?;
            let offset = *slot;
            sender
                .send(Job {
                    partition,
                    offset,
                    frame: frame(partition, offset, &record),
                    done,
                })
                .map_err(|_| LogError::failed("the log writer stopped"))?;
            *slot += 1;
            Ok(())
        })();
        Box::pin(async move {
            queued?;
            rx.await
                .map_err(|_| LogError::failed("the log writer stopped"))?
        })
    }

    async fn read(
        &self,
        partition: PartitionId,
        from: Offset,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<StoredRecord>, LogError> {
        let end = self
            .shared
            .ends
            .get(partition as usize)
            .ok_or(LogError::NoSuchPartition(partition))?;
        if self.follow.is_some() && *end.borrow() <= from {
            // Another process writes: look at the file until a record comes or time is up.
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                self.refresh()?;
                if *end.borrow() > from || tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(FOLLOW_POLL.min(wait)).await;
            }
        } else if *end.borrow() <= from && !wait.is_zero() {
            let mut rx = end.subscribe();
            let _ = tokio::time::timeout(wait, rx.wait_for(|e| *e > from)).await;
        }
        let shared = self.shared.clone();
        let read = move || -> Result<Vec<StoredRecord>, LogError> {
            let positions: Vec<u64> = {
                let index = shared.index.read().expect("log index lock");
                let p = &index[partition as usize];
                let start = (from as usize).min(p.len());
                p[start..(start + max).min(p.len())].to_vec()
            };
            let mut out = Vec::with_capacity(positions.len());
            let mut header = [0u8; HEADER];
            for (i, pos) in positions.into_iter().enumerate() {
                let io = |e: std::io::Error| LogError::failed_by("reading the event log", e);
                shared.reader.read_exact_at(&mut header, pos).map_err(io)?;
                let len = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
                let mut bytes = vec![0u8; len];
                shared
                    .reader
                    .read_exact_at(&mut bytes, pos + HEADER as u64)
                    .map_err(io)?;
                out.push(StoredRecord {
                    partition,
                    offset: from + i as u64,
                    bytes,
                });
            }
            Ok(out)
        };
        // Reads are page-cache hits almost always; a blocking-pool hop costs more than it saves.
        read()
    }

    async fn end_offset(&self, partition: PartitionId) -> Result<Offset, LogError> {
        self.refresh()?;
        let end = self
            .shared
            .ends
            .get(partition as usize)
            .ok_or(LogError::NoSuchPartition(partition))?;
        Ok(*end.borrow())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn appends_survive_a_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = EmbeddedLog::open(dir.path(), 4).unwrap();
            let futs: Vec<_> = (0..100u32)
                .map(|i| log.append(i % 4, format!("r{i}").into_bytes()))
                .collect();
            for (i, f) in futs.into_iter().enumerate() {
                assert_eq!(f.await.unwrap(), (i / 4) as u64);
            }
        }
        // A crash in the middle of a write leaves half a frame behind.
        let wal = dir.path().join("events.wal");
        let mut f = OpenOptions::new().append(true).open(&wal).unwrap();
        f.write_all(&frame(1, 25, b"never acknowledged")[..30])
            .unwrap();
        drop(f);
        let log = EmbeddedLog::open(dir.path(), 4).unwrap();
        assert_eq!(log.end_offset(1).await.unwrap(), 25);
        let recs = log.read(1, 0, 1000, Duration::ZERO).await.unwrap();
        assert_eq!(recs.len(), 25);
        assert_eq!(recs[3].bytes, b"r13");
        assert_eq!(log.append(1, b"next".to_vec()).await.unwrap(), 25);
        assert!(EmbeddedLog::open(&dir.path().join("other"), 4).is_ok());
    }

    #[tokio::test]
    async fn a_reader_waits_for_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(EmbeddedLog::open(dir.path(), 1).unwrap());
        let reader = {
            let log = log.clone();
            tokio::spawn(async move { log.read(0, 0, 10, Duration::from_secs(5)).await.unwrap() })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        log.append(0, b"x".to_vec()).await.unwrap();
        assert_eq!(reader.await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_read_only_log_reads_a_log_being_written_and_refuses_appends() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path(), 2).unwrap();
        for i in 0..10u32 {
            log.append(i % 2, format!("r{i}").into_bytes())
                .await
                .unwrap();
        }
        // A write in progress: half a frame at the end, which the reader must leave alone.
        let wal = dir.path().join("events.wal");
        let mut f = OpenOptions::new().append(true).open(&wal).unwrap();
        f.write_all(&frame(0, 5, b"in flight")[..25]).unwrap();
        drop(f);
        let len_before = std::fs::metadata(&wal).unwrap().len();
        let ro = EmbeddedLog::open_read_only(dir.path()).unwrap();
        assert_eq!(ro.partition_count(), 2);
        assert_eq!(ro.end_offset(0).await.unwrap(), 5);
        let recs = ro.read(1, 0, 100, Duration::ZERO).await.unwrap();
        assert_eq!(recs.len(), 5);
        assert_eq!(recs[4].bytes, b"r9");
        assert!(ro.append(0, b"x".to_vec()).await.is_err());
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), len_before);
    }

    #[tokio::test]
    async fn a_read_only_log_follows_what_the_writer_appends_later() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(EmbeddedLog::open(dir.path(), 2).unwrap());
        log.append(1, b"first".to_vec()).await.unwrap();
        let ro = EmbeddedLog::open_read_only(dir.path()).unwrap();
        assert_eq!(ro.read(1, 0, 10, Duration::ZERO).await.unwrap().len(), 1);
        let writer = {
            let log = log.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                log.append(1, b"second".to_vec()).await.unwrap();
            })
        };
        let recs = ro.read(1, 1, 10, Duration::from_secs(5)).await.unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(
            (recs[0].offset, recs[0].bytes.as_slice()),
            (1, &b"second"[..])
        );
        assert_eq!(ro.end_offset(1).await.unwrap(), 2);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn space_allocated_ahead_is_cut_after_a_crash_and_given_back_at_a_clean_close() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("events.wal");
        let record = |i: u32| format!("r{i}").into_bytes();
        let written = |n: u32| -> u64 {
            (0..n)
                .map(|i| frame(i % 2, u64::from(i / 2), &record(i)).len() as u64)
                .sum()
        };
        let crashed = EmbeddedLog::open(dir.path(), 2).unwrap();
        for i in 0..10 {
            crashed.append(i % 2, record(i)).await.unwrap();
        }
        if cfg!(target_os = "linux") {
            assert!(std::fs::metadata(&wal).unwrap().len() > written(10));
        }
        // A crash: the process ends with the space still allocated (nothing closes the log).
        std::mem::forget(crashed);
        let log = EmbeddedLog::open(dir.path(), 2).unwrap();
        assert_eq!(log.end_offset(0).await.unwrap(), 5);
        assert_eq!(log.end_offset(1).await.unwrap(), 5);
        assert_eq!(log.append(0, record(10)).await.unwrap(), 5);
        let recs = log.read(0, 0, 100, Duration::ZERO).await.unwrap();
        assert_eq!(recs.len(), 6);
        assert_eq!(recs[5].bytes, b"r10");
        log.close();
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), written(11));
        let reopened = EmbeddedLog::open(dir.path(), 2).unwrap();
        assert_eq!(reopened.end_offset(0).await.unwrap(), 6);
    }

    #[test]
    fn reopening_with_another_partition_count_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(EmbeddedLog::open(dir.path(), 4).unwrap());
        assert!(EmbeddedLog::open(dir.path(), 8).is_err());
    }
}
