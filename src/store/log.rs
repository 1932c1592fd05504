//! The per-mesh append-only log: the primitive that key-value state, streams, task history,
//! the audit chain, webhook deliveries and schedules are built on.
//!
//! A log is named by (mesh, stream); it holds records `(seq, subject, at_ms, data)` with
//! sequences that only grow (a write that failed leaves a gap). Operations:
//! - [`Logs::append`]: the sequence is assigned at once, the record is durable after the
//!   group commit it joins, and only then is the append answered and watchers woken;
//! - [`Logs::read_from`]: records from a sequence on (a read transaction, never the whole
//!   log in memory);
//! - [`Logs::latest`]: the newest record of one subject (KV's "get");
//! - retention by count, bytes and age, applied by the append that goes over a limit and by
//!   [`Logs::expire`] for age;
//! - [`Logs::watch`]: the last committed sequence, so a watcher that reconnects resumes
//!   with `read_from(its last seq + 1)` and then waits for changes.
//!
//! Tables: `log_records` (stream key ‖ seq → record), `log_last` (stream key ‖ subject →
//! seq of the subject's newest record), `log_streams` (stream key → first/last seq, count,
//! bytes, retention).

use super::table::{Table, Writer};
use super::{CapOp, Store, StoreError};
use crate::proto::Key;
use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

// The log's tables (created with the core's in `store::schema`).
pub(super) const RECORDS: Table<&[u8], Record> = Table::new("log_records");
pub(super) const LAST: TableDefinition<&[u8], u64> = TableDefinition::new("log_last");
pub(super) const STREAMS: Table<&[u8], StreamInfo> = Table::new("log_streams");

/// Which log: a mesh and a stream name chosen by the capability (e.g. `kv:config`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogId {
    pub mesh: Key,
    pub stream: String,
}

impl LogId {
    pub fn new(mesh: Key, stream: impl Into<String>) -> Self {
        LogId {
            mesh,
            stream: stream.into(),
        }
    }

    /// mesh ‖ len(stream) as u16 ‖ stream: a prefix no other stream's key starts with.
    fn prefix(&self) -> Vec<u8> {
        let s = self.stream.as_bytes();
        let mut k = Vec::with_capacity(34 + s.len() + 8);
        k.extend_from_slice(&self.mesh.0);
        k.extend_from_slice(&(s.len().min(u16::MAX as usize) as u16).to_be_bytes());
        k.extend_from_slice(&s[..s.len().min(u16::MAX as usize)]);
        k
    }

    fn record_key(&self, seq: u64) -> Vec<u8> {
        let mut k = self.prefix();
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    fn subject_key(&self, subject: &str) -> Vec<u8> {
        let mut k = self.prefix();
        k.extend_from_slice(subject.as_bytes());
        k
    }
}

/// How much of a log is kept; `None` is no limit. The newest record is always kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    pub max_count: Option<u64>,
    pub max_bytes: Option<u64>,
    pub max_age_ms: Option<u64>,
}

/// An append refused before it was queued: [`Refused::run`] tells its completion (call it
/// with no lock held that the completion may take).
#[must_use = "run it once no lock is held, or the append is never answered"]
pub struct Refused(Box<dyn FnOnce() + Send>);

impl Refused {
    pub fn run(self) {
        (self.0)()
    }
}

/// How an append is kept (see [`Logs::append_with`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct AppendOpts {
    /// The log's retention if this append creates it; an existing log keeps its own
    /// ([`Logs::configure`] changes it), so an append that raced a reconfiguration cannot
    /// put the old limits back.
    pub retention: Retention,
    /// Drop the subject's previous record: the log keeps the newest record per subject
    /// (a key-value log; history depth one).
    pub replace: bool,
    /// A history log read by sequence only (streams): no per-subject index, so
    /// [`latest`] and [`subjects`] find nothing in it, and an append costs two index
    /// operations less. Ignored with `replace`, which needs the index.
    pub unindexed: bool,
}

/// One record as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub subject: String,
    pub at_ms: u64,
    pub data: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Record {
    subject: String,
    at_ms: u64,
    data: Vec<u8>,
}

impl Record {
    fn entry(self, seq: u64) -> Entry {
        Entry {
            seq,
            subject: self.subject,
            at_ms: self.at_ms,
            data: self.data,
        }
    }
}

/// A log's bookkeeping row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// Oldest kept sequence (0 when empty).
    pub first: u64,
    /// Newest sequence ever written (0 before the first append).
    pub last: u64,
    pub count: u64,
    pub bytes: u64,
    pub retention: Retention,
}

fn size(subject: &str, data: &[u8]) -> u64 {
    (subject.len() + data.len()) as u64
}

/// The logs' in-memory side: the next sequence per log (assigned before the commit) and
/// the watchers. Everything else is read from the file.
#[derive(Default)]
pub struct Logs {
    streams: Mutex<HashMap<LogId, Live>>,
}

struct Live {
    /// Last sequence handed out.
    assigned: u64,
    /// Last committed sequence, for watchers.
    committed: watch::Sender<u64>,
}

impl Logs {
    fn live<'a>(
        &self,
        store: &Store,
        map: &'a mut HashMap<LogId, Live>,
        id: &LogId,
    ) -> Result<&'a mut Live, StoreError> {
        if !map.contains_key(id) {
            let last = info(store, id)?.last;
            map.insert(
                id.clone(),
                Live {
                    assigned: last,
                    committed: watch::channel(last).0,
                },
            );
        }
        map.get_mut(id)
            .ok_or_else(|| StoreError::Unavailable("log state".into()))
    }

    /// Append a record; `done` gets its sequence once it is durable (or the store's error).
    /// `retention` becomes the log's retention from this append on.
    pub fn append(
        self: &Arc<Self>,
        store: &Store,
        id: &LogId,
        subject: &str,
        data: Vec<u8>,
        retention: Retention,
        done: impl FnOnce(Result<u64, Arc<StoreError>>) + Send + 'static,
    ) {
        let opts = AppendOpts {
            retention,
            ..Default::default()
        };
        if let Err(refused) = self.append_with(store, id, subject, data, opts, |_| None, done) {
            refused.run();
        }
    }

    /// [`append`](Logs::append) with options: keep only the subject's newest record
    /// (`replace`, for key-value logs), and a capability write made in the same
    /// transaction (`also`, given the sequence: e.g. an index row, all or nothing with the
    /// record). Returns the sequence assigned, so a capability that calls this under its
    /// own lock can record the version before the commit: requests after it see it even
    /// while it is being written. Refused at once (the store is closed, the log's row
    /// unreadable): `done` has not run; the caller runs the returned [`Refused`] after
    /// releasing its own locks (`done` may take them).
    #[allow(clippy::too_many_arguments)]
    pub fn append_with(
        self: &Arc<Self>,
        store: &Store,
        id: &LogId,
        subject: &str,
        data: Vec<u8>,
        opts: AppendOpts,
        also: impl FnOnce(u64) -> Option<Box<dyn CapOp>>,
        done: impl FnOnce(Result<u64, Arc<StoreError>>) + Send + 'static,
    ) -> Result<u64, Refused> {
        let at_ms = crate::util::now_ms();
        let logs = self.clone();
        let key = id.clone();
        // The sequence is assigned and the write queued under one lock, so the writer
        // applies a log's appends in sequence order.
        let refused = {
            let mut map = self.streams.lock().unwrap_or_else(|p| p.into_inner());
            let seq = match self.live(store, &mut map, id) {
                Ok(l) => {
                    l.assigned += 1;
                    l.assigned
                }
                Err(e) => {
                    let e = Arc::new(e);
                    return Err(Refused(Box::new(move || done(Err(e)))));
                }
            };
            let op = Append {
                id: id.clone(),
                seq,
                subject: subject.to_string(),
                at_ms,
                data,
                retention: opts.retention,
                replace: opts.replace,
                indexed: opts.replace || !opts.unindexed,
                also: also(seq),
            };
            store
                .try_submit(
                    super::Op::Cap(Box::new(op)),
                    Box::new(move |r| {
                        if r.is_ok() {
                            logs.committed(&key, seq);
                        }
                        done(r.map(|()| seq));
                    }),
                )
                .map(|()| seq)
        };
        // A closed store hands the completion back: the caller runs it outside its locks.
        refused.map_err(|done| Refused(Box::new(move || done(Err(Arc::new(StoreError::Closed))))))
    }

    /// Set a log's retention, creating the log (empty) if it does not exist yet.
    pub async fn configure(
        store: &Store,
        id: &LogId,
        retention: Retention,
    ) -> Result<(), Arc<StoreError>> {
        store
            .commit(super::Op::Cap(Box::new(Configure {
                id: id.clone(),
                retention,
            })))
            .await
    }

    /// [`append`](Logs::append), waiting for the commit.
    pub async fn append_wait(
        self: &Arc<Self>,
        store: &Store,
        id: &LogId,
        subject: &str,
        data: Vec<u8>,
        retention: Retention,
    ) -> Result<u64, Arc<StoreError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.append(store, id, subject, data, retention, move |r| {
            let _ = tx.send(r);
        });
        rx.await.unwrap_or(Err(Arc::new(StoreError::Closed)))
    }

    fn committed(&self, id: &LogId, seq: u64) {
        let map = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = map.get(id) {
            l.committed.send_if_modified(|v| {
                let newer = seq > *v;
                if newer {
                    *v = seq;
                }
                newer
            });
        }
    }

    /// The last committed sequence of a log, changing as appends commit.
    pub fn watch(&self, store: &Store, id: &LogId) -> Result<watch::Receiver<u64>, StoreError> {
        let mut map = self.streams.lock().unwrap_or_else(|p| p.into_inner());
        Ok(self.live(store, &mut map, id)?.committed.subscribe())
    }

    /// Drop records older than the log's `max_age_ms` (the newest one stays).
    pub async fn expire(store: &Store, id: &LogId) -> Result<(), Arc<StoreError>> {
        store
            .commit(super::Op::Cap(Box::new(Expire {
                id: id.clone(),
                now_ms: crate::util::now_ms(),
            })))
            .await
    }
}

/// A log's bookkeeping as of the last commit.
pub fn info(store: &Store, id: &LogId) -> Result<StreamInfo, StoreError> {
    store.read(|tx| {
        Ok(STREAMS
            .read(tx)?
            .get(id.prefix().as_slice())?
            .unwrap_or_default())
    })
}

/// Up to `limit` records from sequence `from` on (at least one when any is there, then up
/// to about `max_bytes`).
pub fn read_from(
    store: &Store,
    id: &LogId,
    from: u64,
    limit: usize,
    max_bytes: usize,
) -> Result<Vec<Entry>, StoreError> {
    store.read(|tx| {
        let t = RECORDS.read(tx)?;
        let lo = id.record_key(from);
        let hi = id.record_key(u64::MAX);
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let mut bytes = 0usize;
        // Checked after each record, so no record past the window is decoded.
        for row in t.range(lo.as_slice()..=hi.as_slice())? {
            let (k, r) = row?;
            let k = k.value();
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&k[k.len() - 8..]);
            bytes += r.data.len() + r.subject.len();
            out.push(r.entry(u64::from_be_bytes(seq)));
            if out.len() >= limit || bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    })
}

/// The newest record of `subject`, if any is kept.
pub fn latest(store: &Store, id: &LogId, subject: &str) -> Result<Option<Entry>, StoreError> {
    store.read(|tx| {
        let last = tx.open_table(LAST)?;
        let Some(seq) = last
            .get(id.subject_key(subject).as_slice())?
            .map(|g| g.value())
        else {
            return Ok(None);
        };
        let r = RECORDS.read(tx)?.get(id.record_key(seq).as_slice())?;
        Ok(r.map(|r| r.entry(seq)))
    })
}

/// Subjects starting with `prefix` from `after` on (exclusive; `None`: from the first), in
/// byte order, with the sequence of each one's newest record; at most `limit`.
pub fn subjects(
    store: &Store,
    id: &LogId,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(String, u64)>, StoreError> {
    store.read(|tx| {
        let last = tx.open_table(LAST)?;
        let base = id.prefix();
        let lo = match after {
            Some(a) => id.subject_key(a),
            None => id.subject_key(prefix),
        };
        let mut out = Vec::new();
        for row in last.range(lo.as_slice()..)? {
            let (k, v) = row?;
            let k = k.value();
            let Some(subject) = k.strip_prefix(base.as_slice()) else {
                break;
            };
            let subject = String::from_utf8_lossy(subject).into_owned();
            if !subject.starts_with(prefix) {
                break;
            }
            if after == Some(subject.as_str()) {
                continue;
            }
            out.push((subject, v.value()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    })
}

/// One record by sequence, if kept.
pub fn get(store: &Store, id: &LogId, seq: u64) -> Result<Option<Entry>, StoreError> {
    store.read(|tx| {
        Ok(RECORDS
            .read(tx)?
            .get(id.record_key(seq).as_slice())?
            .map(|r| r.entry(seq)))
    })
}

/// The logs of `mesh` whose stream name starts with `prefix`, with their bookkeeping.
pub fn streams_of(
    store: &Store,
    mesh: Key,
    prefix: &str,
) -> Result<Vec<(String, StreamInfo)>, StoreError> {
    store.read(|tx| {
        let t = STREAMS.read(tx)?;
        let mut out = Vec::new();
        for row in t.range(&mesh.0[..]..)? {
            let (k, info) = row?;
            let k = k.value();
            let Some(rest) = k.strip_prefix(&mesh.0[..]) else {
                break;
            };
            let name = String::from_utf8_lossy(rest.get(2..).unwrap_or_default()).into_owned();
            if name.starts_with(prefix) {
                out.push((name, info));
            }
        }
        Ok(out)
    })
}

/// Every log of every mesh whose stream name starts with `prefix`.
pub fn all_streams(store: &Store, prefix: &str) -> Result<Vec<(LogId, StreamInfo)>, StoreError> {
    store.read(|tx| {
        let t = STREAMS.read(tx)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, info) = row?;
            let k = k.value();
            let (Some(mesh), Some(name)) = (k.get(..32), k.get(34..)) else {
                continue;
            };
            let name = String::from_utf8_lossy(name);
            if let (true, Ok(mesh)) = (name.starts_with(prefix), <[u8; 32]>::try_from(mesh)) {
                out.push((LogId::new(Key(mesh), name.into_owned()), info));
            }
        }
        Ok(out)
    })
}

#[derive(Debug)]
struct Append {
    id: LogId,
    seq: u64,
    subject: String,
    at_ms: u64,
    data: Vec<u8>,
    retention: Retention,
    replace: bool,
    /// Keep the subject index (`log_last`).
    indexed: bool,
    also: Option<Box<dyn CapOp>>,
}

#[derive(Debug)]
struct Configure {
    id: LogId,
    retention: Retention,
}

impl CapOp for Configure {
    fn apply(&self, tx: &redb::WriteTransaction) -> Result<(), StoreError> {
        let mut t = Tables::open(tx)?;
        let key = self.id.prefix();
        let mut info = t.info(&key)?.unwrap_or_default();
        info.retention = self.retention;
        trim(
            &self.id,
            &mut info,
            &mut t,
            Some(crate::util::now_ms()),
            true,
        )?;
        t.streams.insert(key.as_slice(), &info)?;
        Ok(())
    }
}

/// The three log tables, open in one write transaction.
struct Tables<'t> {
    streams: Writer<'t, &'static [u8], StreamInfo>,
    records: Writer<'t, &'static [u8], Record>,
    last: redb::Table<'t, &'static [u8], u64>,
}

impl<'t> Tables<'t> {
    fn open(tx: &'t redb::WriteTransaction) -> Result<Self, StoreError> {
        Ok(Tables {
            streams: STREAMS.write(tx)?,
            records: RECORDS.write(tx)?,
            last: tx.open_table(LAST)?,
        })
    }

    /// The log's bookkeeping row, if it has one.
    fn info(&self, key: &[u8]) -> Result<Option<StreamInfo>, StoreError> {
        self.streams.get(key)
    }
}

impl CapOp for Append {
    fn apply(&self, tx: &redb::WriteTransaction) -> Result<(), StoreError> {
        let mut t = Tables::open(tx)?;
        let key = self.id.prefix();
        let existing = t.info(&key)?;
        let fresh = existing.is_none();
        let mut info = existing.unwrap_or_default();
        let rec = Record {
            subject: self.subject.clone(),
            at_ms: self.at_ms,
            data: self.data.clone(),
        };
        t.records
            .insert(self.id.record_key(self.seq).as_slice(), &rec)?;
        let prev = if self.indexed {
            let sk = self.id.subject_key(&self.subject);
            let prev = t.last.get(sk.as_slice())?.map(|g| g.value());
            if prev.is_none_or(|p| p < self.seq) {
                t.last.insert(sk.as_slice(), self.seq)?;
            }
            prev
        } else {
            None
        };
        let newer = prev.is_none_or(|p| p < self.seq);
        if info.count == 0 || self.seq < info.first {
            info.first = self.seq;
        }
        info.last = info.last.max(self.seq);
        info.count += 1;
        info.bytes += size(&self.subject, &self.data);
        if self.replace {
            // Keep one record per subject: drop whichever of the two is older.
            let old = match prev {
                Some(p) if newer => Some(p),
                Some(_) => Some(self.seq),
                None => None,
            };
            if let Some(old) = old {
                let ok = self.id.record_key(old);
                if let Some(r) = t.records.get(ok.as_slice())? {
                    t.records.remove(ok.as_slice())?;
                    info.count = info.count.saturating_sub(1);
                    info.bytes = info.bytes.saturating_sub(size(&r.subject, &r.data));
                    if old == info.first {
                        let next = t
                            .records
                            .range(ok.as_slice()..=self.id.record_key(u64::MAX).as_slice())?
                            .next()
                            .transpose()?
                            .map(|(k, _)| {
                                let k = k.value();
                                let mut b = [0u8; 8];
                                b.copy_from_slice(&k[k.len() - 8..]);
                                u64::from_be_bytes(b)
                            });
                        info.first = next.unwrap_or(self.seq);
                    }
                }
            }
        }
        if let Some(also) = &self.also {
            also.apply(tx)?;
        }
        if fresh {
            info.retention = self.retention;
        }
        trim(&self.id, &mut info, &mut t, None, self.indexed)?;
        t.streams.insert(key.as_slice(), &info)?;
        Ok(())
    }
}

#[derive(Debug)]
struct Expire {
    id: LogId,
    now_ms: u64,
}

impl CapOp for Expire {
    fn apply(&self, tx: &redb::WriteTransaction) -> Result<(), StoreError> {
        let mut t = Tables::open(tx)?;
        let key = self.id.prefix();
        let Some(mut info) = t.info(&key)? else {
            return Ok(());
        };
        trim(&self.id, &mut info, &mut t, Some(self.now_ms), true)?;
        t.streams.insert(key.as_slice(), &info)?;
        Ok(())
    }
}

/// Drop the oldest records while the log is over a limit (age only with `now`); the newest
/// record always stays. A subject whose newest record goes loses its `log_last` row
/// (looked up only when the log may be `indexed`).
fn trim(
    id: &LogId,
    info: &mut StreamInfo,
    t: &mut Tables,
    now: Option<u64>,
    indexed: bool,
) -> Result<(), StoreError> {
    let Tables { records, last, .. } = t;
    let r = info.retention;
    while info.count > 1 && info.first < info.last {
        let over_count = r.max_count.is_some_and(|m| info.count > m.max(1));
        let over_bytes = r.max_bytes.is_some_and(|m| info.bytes > m);
        let key = id.record_key(info.first);
        let Some(rec) = records.get(key.as_slice())? else {
            // A gap left by a failed write: move on to the next sequence.
            info.first += 1;
            continue;
        };
        let too_old = match (now, r.max_age_ms) {
            (Some(now), Some(age)) => now.saturating_sub(rec.at_ms) > age,
            _ => false,
        };
        if !(over_count || over_bytes || too_old) {
            break;
        }
        records.remove(key.as_slice())?;
        if indexed {
            let sk = id.subject_key(&rec.subject);
            if last.get(sk.as_slice())?.map(|g| g.value()) == Some(info.first) {
                last.remove(sk.as_slice())?;
            }
        }
        info.count -= 1;
        info.bytes = info.bytes.saturating_sub(size(&rec.subject, &rec.data));
        info.first += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Store, Arc<Logs>) {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        let logs = store.logs.clone();
        (dir, store, logs)
    }

    const KEEP_ALL: Retention = Retention {
        max_count: None,
        max_bytes: None,
        max_age_ms: None,
    };

    #[tokio::test]
    async fn appends_get_growing_sequences_and_read_back_from_any_sequence_per_stream() {
        let (_d, store, logs) = open();
        let a = LogId::new(Key([1; 32]), "kv:config");
        let b = LogId::new(Key([1; 32]), "kv:config2");
        for i in 0..5u8 {
            let seq = logs
                .append_wait(&store, &a, &format!("k{}", i % 2), vec![i], KEEP_ALL)
                .await
                .unwrap();
            assert_eq!(seq, i as u64 + 1);
        }
        logs.append_wait(&store, &b, "k0", vec![9], KEEP_ALL)
            .await
            .unwrap();
        let all = read_from(&store, &a, 1, 100, usize::MAX).unwrap();
        assert_eq!(
            all.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        let tail = read_from(&store, &a, 4, 100, usize::MAX).unwrap();
        assert_eq!(tail.iter().map(|e| e.data[0]).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(latest(&store, &a, "k1").unwrap().unwrap().data, vec![3]);
        assert_eq!(latest(&store, &a, "k0").unwrap().unwrap().seq, 5);
        assert!(latest(&store, &a, "nope").unwrap().is_none());
        assert_eq!(read_from(&store, &b, 1, 100, usize::MAX).unwrap().len(), 1);
        let i = info(&store, &a).unwrap();
        assert_eq!((i.first, i.last, i.count), (1, 5, 5));
    }

    #[tokio::test]
    async fn an_unindexed_log_keeps_its_records_and_retention_but_no_subject_index() {
        let (_d, store, logs) = open();
        let id = LogId::new(Key([4; 32]), "s");
        let opts = AppendOpts {
            retention: Retention {
                max_count: Some(3),
                ..KEEP_ALL
            },
            unindexed: true,
            ..Default::default()
        };
        for i in 0..5u8 {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let q = logs.append_with(
                &store,
                &id,
                "alice",
                vec![i],
                opts,
                |_| None,
                move |r| {
                    let _ = tx.send(r);
                },
            );
            assert!(q.is_ok());
            assert_eq!(rx.await.unwrap().unwrap(), u64::from(i) + 1);
        }
        let kept = read_from(&store, &id, 0, 100, usize::MAX).unwrap();
        assert_eq!(kept.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!(kept[0].subject, "alice");
        assert!(latest(&store, &id, "alice").unwrap().is_none());
        assert!(subjects(&store, &id, "", None, 10).unwrap().is_empty());
        let i = info(&store, &id).unwrap();
        assert_eq!((i.first, i.last, i.count), (3, 5, 3));
    }

    #[tokio::test]
    async fn retention_by_count_and_bytes_drops_the_oldest_and_keeps_the_newest() {
        let (_d, store, logs) = open();
        let id = LogId::new(Key([2; 32]), "s");
        let by_count = Retention {
            max_count: Some(3),
            ..KEEP_ALL
        };
        for i in 0..10u8 {
            logs.append_wait(&store, &id, &format!("k{i}"), vec![i; 10], by_count)
                .await
                .unwrap();
        }
        let kept = read_from(&store, &id, 0, 100, usize::MAX).unwrap();
        assert_eq!(kept.iter().map(|e| e.seq).collect::<Vec<_>>(), [8, 9, 10]);
        assert!(
            latest(&store, &id, "k0").unwrap().is_none(),
            "dropped subject"
        );
        let by_bytes = Retention {
            max_bytes: Some(1),
            ..KEEP_ALL
        };
        // New limits are set by configure; appends keep the log's own.
        Logs::configure(&store, &id, by_bytes).await.unwrap();
        logs.append_wait(&store, &id, "big", vec![0; 100], by_bytes)
            .await
            .unwrap();
        let kept = read_from(&store, &id, 0, 100, usize::MAX).unwrap();
        assert_eq!(kept.len(), 1, "the newest record always stays");
        let i = info(&store, &id).unwrap();
        assert_eq!((i.first, i.last, i.count, i.bytes), (11, 11, 1, 103));
    }

    #[tokio::test]
    async fn age_retention_expires_old_records() {
        let (_d, store, logs) = open();
        let id = LogId::new(Key([3; 32]), "s");
        let r = Retention {
            max_age_ms: Some(50),
            ..KEEP_ALL
        };
        logs.append_wait(&store, &id, "a", vec![1], r)
            .await
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(120)).await;
        logs.append_wait(&store, &id, "b", vec![2], r)
            .await
            .unwrap();
        Logs::expire(&store, &id).await.unwrap();
        let kept = read_from(&store, &id, 0, 100, usize::MAX).unwrap();
        assert_eq!(kept.iter().map(|e| e.seq).collect::<Vec<_>>(), [2]);
    }

    #[tokio::test]
    async fn a_watcher_resumes_from_its_last_sequence_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let id = LogId::new(Key([4; 32]), "events");
        {
            let (store, _) = Store::open(dir.path()).unwrap();
            let logs = store.logs.clone();
            let mut w = logs.watch(&store, &id).unwrap();
            for i in 0..3u8 {
                logs.append_wait(&store, &id, "e", vec![i], KEEP_ALL)
                    .await
                    .unwrap();
            }
            w.changed().await.unwrap();
            assert_eq!(*w.borrow(), 3);
            store.close().await;
        }
        // Reopened: sequences continue, and a watcher that saw up to 2 reads 3 onwards.
        let (store, _) = Store::open(dir.path()).unwrap();
        let logs = store.logs.clone();
        let w = logs.watch(&store, &id).unwrap();
        assert_eq!(*w.borrow(), 3);
        let seq = logs
            .append_wait(&store, &id, "e", vec![3], KEEP_ALL)
            .await
            .unwrap();
        assert_eq!(seq, 4);
        let missed = read_from(&store, &id, 3, 100, usize::MAX).unwrap();
        assert_eq!(missed.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
    }

    #[tokio::test]
    async fn an_append_that_fails_to_commit_is_not_acknowledged_and_leaves_a_gap() {
        let (_d, store, logs) = open();
        let id = LogId::new(Key([5; 32]), "s");
        logs.append_wait(&store, &id, "a", vec![1], KEEP_ALL)
            .await
            .unwrap();
        store.fail_writes(true);
        assert!(logs
            .append_wait(&store, &id, "a", vec![2], KEEP_ALL)
            .await
            .is_err());
        store.fail_writes(false);
        let seq = logs
            .append_wait(&store, &id, "a", vec![3], KEEP_ALL)
            .await
            .unwrap();
        assert_eq!(seq, 3);
        let all = read_from(&store, &id, 0, 100, usize::MAX).unwrap();
        assert_eq!(all.iter().map(|e| e.data[0]).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(latest(&store, &id, "a").unwrap().unwrap().data, vec![3]);
    }

    #[tokio::test]
    async fn appends_applied_out_of_order_keep_the_newest_and_trimming_terminates() {
        let (_d, store, _logs) = open();
        let id = LogId::new(Key([6; 32]), "s");
        let one = Retention {
            max_count: Some(1),
            ..KEEP_ALL
        };
        for seq in [7u64, 5, 6] {
            let op = Append {
                id: id.clone(),
                seq,
                subject: "k".into(),
                at_ms: 1,
                data: vec![seq as u8],
                retention: one,
                replace: false,
                indexed: true,
                also: None,
            };
            store
                .commit(super::super::Op::Cap(Box::new(op)))
                .await
                .unwrap();
        }
        assert_eq!(latest(&store, &id, "k").unwrap().unwrap().seq, 7);
        let i = info(&store, &id).unwrap();
        assert_eq!(i.last, 7);
        assert!(i.count >= 1);
    }
}
