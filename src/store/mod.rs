//! Durable state in one redb file: typed tables listed in one place, postcard values, a
//! schema version, and a single writer thread with group commit.
//!
//! Every mutation is an [`Op`] sent to the writer. The writer drains whatever is waiting,
//! applies it all in one write transaction, commits with `Durability::Immediate` (fsync),
//! and only then runs each op's completion, in submission order. Nothing is acknowledged to
//! a client before its completion runs. The core's tables are read once, at open
//! ([`Loaded`]); after that the broker's memory is authoritative and the file is its
//! write-ahead record. Capabilities whose data is large read through redb read
//! transactions ([`Store::read`]) and add writes as [`CapOp`]s, which join the same group
//! commit; they declare their tables as typed [`Table`]s in their own folder and list them
//! in `cap::TABLES`, which [`Store::open_with`] creates beside the core's ([`schema`]).
//! [`Store::open`] alone creates only the core's and the log's tables.

pub mod log;
mod records;
pub mod schema;
pub mod table;

pub use records::*;

use crate::proto::Key;
use redb::{Database, Durability, ReadableTable};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use schema::*;
pub use schema::{CreateTables, SCHEMA_VERSION};
pub use table::Table;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open database: {0}")]
    Open(Box<redb::DatabaseError>),
    #[error("storage error: {0}")]
    Storage(Box<redb::StorageError>),
    #[error("transaction error: {0}")]
    Transaction(Box<redb::TransactionError>),
    #[error("table error: {0}")]
    Table(Box<redb::TableError>),
    #[error("commit failed: {0}")]
    Commit(Box<redb::CommitError>),
    #[error("corrupt record in table {0}: {1}")]
    Decode(&'static str, postcard::Error),
    #[error(
        "data was written by a newer claudemesh (schema {0}, this build knows {SCHEMA_VERSION})"
    )]
    SchemaTooNew(u64),
    #[error("store writer has stopped")]
    Closed,
    #[error("injected write failure (test)")]
    Injected,
    #[error("database unavailable after a write failure: {0}")]
    Unavailable(String),
    #[error("cannot create data dir {0}: {1}")]
    Io(String, std::io::Error),
}

// redb's errors are large; boxed, a `Result<_, StoreError>` stays small on the hot path.
macro_rules! boxed_from {
    ($($variant:ident($t:ty)),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::$variant(Box::new(e))
            }
        }
    )*};
}
boxed_from!(
    Open(redb::DatabaseError),
    Storage(redb::StorageError),
    Transaction(redb::TransactionError),
    Table(redb::TableError),
    Commit(redb::CommitError)
);

/// One durable mutation.
// Ops are moved once into the writer's queue; a peer record inline costs less than an
// allocation per write.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Op {
    PutMesh(MeshRecord),
    PutInvite(InviteRecord),
    PutMember(MemberRecord),
    PutPeer(PeerRecord),
    /// One accepted send: its dedupe record (under `sent_seq`) and its messages.
    InsertMessages {
        sent_seq: u64,
        id: MsgIdRecord,
        msgs: Vec<Arc<StoredMessage>>,
    },
    /// Several ops in the same transaction (all or nothing).
    Batch(Vec<Op>),
    /// Commits nothing; completes once everything submitted before it is durable.
    Flush,
    /// A recipient acknowledged message `seq`. With `delete_message` it was the last one
    /// (drop the message and its ack rows); otherwise record this recipient's ack.
    /// `multi`: the message had several recipients (so it may have ack rows).
    Ack {
        seq: u64,
        peer: Key,
        delete_message: bool,
        multi: bool,
    },
    /// Retention: drop messages (`(seq, multi)`, with their ack rows) and dedupe records.
    Expire {
        seqs: Vec<(u64, bool)>,
        sent: Vec<u64>,
    },
    /// A capability's write, on its own tables (see [`CapOp`]).
    Cap(Box<dyn CapOp>),
}

/// A write a capability adds without editing this enum: applied inside the batch's write
/// transaction (it opens its own tables, listed in [`schema`]), committed with everything
/// else, and acknowledged only after that commit.
pub trait CapOp: Send + std::fmt::Debug + 'static {
    fn apply(&self, tx: &redb::WriteTransaction) -> Result<(), StoreError>;
}

/// What runs after the op's batch committed (or failed).
pub type Done = Box<dyn FnOnce(Result<(), Arc<StoreError>>) + Send>;

/// Everything in the file, read at open.
#[derive(Debug, Default)]
pub struct Loaded {
    pub meshes: Vec<MeshRecord>,
    pub invites: Vec<InviteRecord>,
    pub members: Vec<MemberRecord>,
    pub peers: Vec<PeerRecord>,
    pub messages: Vec<StoredMessage>,
    /// (seq, recipient) acks of multi-recipient messages still stored.
    pub acked: Vec<(u64, Key)>,
    /// (send seq, dedupe record).
    pub sent: Vec<(u64, MsgIdRecord)>,
}

/// Counters for benchmarks and `/health`.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub commits: AtomicU64,
    pub ops: AtomicU64,
    pub failed_commits: AtomicU64,
    /// Messages (one per envelope) made durable.
    pub messages: AtomicU64,
    /// Test hook: fail every commit while set.
    fail_writes: std::sync::atomic::AtomicBool,
}

/// Handle to the writer thread and the database for reads. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: std::sync::mpsc::Sender<Msg>,
    pub stats: Arc<StoreStats>,
    /// The open database, shared by the writer and readers; empty while the writer is
    /// reopening it after a write failure.
    db: Arc<std::sync::RwLock<Option<Arc<Database>>>>,
    logs: Arc<log::Logs>,
}

#[allow(clippy::large_enum_variant)]
enum Msg {
    Op(Op, Option<Done>),
    /// Commit what is queued, close the file, and stop.
    Close(std::sync::mpsc::Sender<()>),
}

fn ack_key(seq: u64, peer: &Key) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&seq.to_be_bytes());
    k[8..].copy_from_slice(&peer.0);
    k
}

fn member_key(mesh: &Key, member: &Key) -> [u8; 64] {
    let mut k = [0u8; 64];
    k[..32].copy_from_slice(&mesh.0);
    k[32..].copy_from_slice(&member.0);
    k
}

impl Store {
    /// Open (or create) `dir/claudemesh.redb`, migrate, load everything, start the writer.
    pub fn open(dir: &Path) -> Result<(Store, Loaded), StoreError> {
        Store::open_with(dir, &[])
    }

    /// [`Store::open`], also creating the tables of capabilities (`cap::TABLES`).
    pub fn open_with(dir: &Path, tables: &[CreateTables]) -> Result<(Store, Loaded), StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io(dir.display().to_string(), e))?;
        let path = dir.join("claudemesh.redb");
        let db = Database::create(&path)?;
        migrate(&db, tables)?;
        let loaded = load(&db)?;
        let db = Arc::new(db);
        let slot = Arc::new(std::sync::RwLock::new(Some(db.clone())));
        let (tx, rx) = std::sync::mpsc::channel();
        let stats = Arc::new(StoreStats::default());
        let st = stats.clone();
        // Completions run on their own thread, in commit order, while the writer is already
        // committing the next batch.
        let (done_tx, done_rx) =
            std::sync::mpsc::channel::<(Result<(), Arc<StoreError>>, Vec<Done>)>();
        std::thread::Builder::new()
            .name("store-done".into())
            .spawn(move || {
                while let Ok((result, dones)) = done_rx.recv() {
                    for done in dones {
                        done(result.clone());
                    }
                }
            })
            .map_err(|e| StoreError::Io("completion thread".into(), e))?;
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn({
                let slot = slot.clone();
                move || writer(db, slot, path, rx, st, done_tx)
            })
            .map_err(|e| StoreError::Io("writer thread".into(), e))?;
        let store = Store {
            tx,
            stats,
            db: slot,
            logs: Arc::new(log::Logs::default()),
        };
        Ok((store, loaded))
    }

    /// Run `f` in a read transaction: a consistent snapshot of the last commit, read
    /// without blocking the writer.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let db = self
            .db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| StoreError::Unavailable("the store is being reopened".into()))?;
        let tx = db.begin_read()?;
        f(&tx)
    }

    /// The per-mesh append-only logs (see [`log`]).
    pub fn logs(&self) -> &Arc<log::Logs> {
        &self.logs
    }

    /// Queue an op; `done` runs after its commit.
    pub fn submit(&self, op: Op, done: Option<Done>) {
        if let Err(std::sync::mpsc::SendError(Msg::Op(_, Some(done)))) =
            self.tx.send(Msg::Op(op, done))
        {
            done(Err(Arc::new(StoreError::Closed)));
        }
    }

    /// Queue an op, or hand `done` back when the store is closed (so a caller holding a
    /// lock can run it after letting go).
    pub fn try_submit(&self, op: Op, done: Done) -> Result<(), Done> {
        match self.tx.send(Msg::Op(op, Some(done))) {
            Ok(()) => Ok(()),
            Err(std::sync::mpsc::SendError(Msg::Op(_, Some(done)))) => Err(done),
            Err(_) => Ok(()),
        }
    }

    /// Queue an op while `held` (a capability's lock) is still held, so ops decided under
    /// that lock reach the file in the order they were decided; then let go of `held`, and
    /// only then tell `done` if the store is closed (`done` may take the same lock).
    pub fn submit_holding<G>(&self, held: G, op: Op, done: Done) {
        let queued = self.try_submit(op, done);
        drop(held);
        if let Err(done) = queued {
            done(Err(Arc::new(StoreError::Closed)));
        }
    }

    /// Make every commit fail (or stop doing so): a stand-in for a failing disk in tests.
    #[doc(hidden)]
    pub fn fail_writes(&self, on: bool) {
        self.stats.fail_writes.store(on, Ordering::SeqCst);
    }

    /// Commit everything queued, close the database file and stop the writer. Later
    /// submissions fail with [`StoreError::Closed`]. Returns once the file is closed.
    pub async fn close(&self) {
        let (tx, rx) = std::sync::mpsc::channel();
        if self.tx.send(Msg::Close(tx)).is_ok() {
            let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
        }
    }

    /// Queue an op and wait for its commit.
    pub async fn commit(&self, op: Op) -> Result<(), Arc<StoreError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(
            op,
            Some(Box::new(move |r| {
                let _ = tx.send(r);
            })),
        );
        rx.await.unwrap_or(Err(Arc::new(StoreError::Closed)))
    }
}

fn load(db: &Database) -> Result<Loaded, StoreError> {
    let tx = db.begin_read()?;
    let mut l = Loaded::default();
    for row in MESHES.read(&tx)?.iter()? {
        l.meshes.push(row?.1);
    }
    for row in INVITES.read(&tx)?.iter()? {
        l.invites.push(row?.1);
    }
    for row in MEMBERS.read(&tx)?.iter()? {
        l.members.push(row?.1);
    }
    for row in PEERS.read(&tx)?.iter()? {
        l.peers.push(row?.1);
    }
    for row in MESSAGES.read(&tx)?.iter()? {
        l.messages.push(row?.1);
    }
    for row in tx.open_table(ACKED)?.iter()? {
        let k = row?.0;
        let k = k.value();
        if k.len() == 40 {
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&k[..8]);
            let mut pk = [0u8; 32];
            pk.copy_from_slice(&k[8..]);
            l.acked.push((u64::from_be_bytes(seq), Key(pk)));
        }
    }
    for row in SENT.read(&tx)?.iter()? {
        let (k, v) = row?;
        l.sent.push((k.value(), v));
    }
    Ok(l)
}

/// Every table, opened once per write transaction.
struct Tables<'t> {
    tx: &'t redb::WriteTransaction,
    meshes: table::Writer<'t, &'static [u8], MeshRecord>,
    invites: table::Writer<'t, &'static [u8], InviteRecord>,
    members: table::Writer<'t, &'static [u8], MemberRecord>,
    peers: table::Writer<'t, &'static [u8], PeerRecord>,
    messages: table::Writer<'t, u64, StoredMessage>,
    acked: redb::Table<'t, &'static [u8], ()>,
    sent: table::Writer<'t, u64, MsgIdRecord>,
}

impl<'t> Tables<'t> {
    fn open(tx: &'t redb::WriteTransaction) -> Result<Self, StoreError> {
        Ok(Tables {
            tx,
            meshes: MESHES.write(tx)?,
            invites: INVITES.write(tx)?,
            members: MEMBERS.write(tx)?,
            peers: PEERS.write(tx)?,
            messages: MESSAGES.write(tx)?,
            acked: tx.open_table(ACKED)?,
            sent: SENT.write(tx)?,
        })
    }

    /// Drop every ack row of message `seq`.
    fn remove_acks(&mut self, seq: u64) -> Result<(), StoreError> {
        let lo = ack_key(seq, &Key([0; 32]));
        let hi = ack_key(seq, &Key([0xff; 32]));
        let keys: Vec<[u8; 40]> = self
            .acked
            .range(&lo[..]..=&hi[..])?
            .filter_map(|r| r.ok().and_then(|(k, _)| k.value().try_into().ok()))
            .collect();
        for k in keys {
            self.acked.remove(&k[..])?;
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op, stats: &StoreStats) -> Result<(), StoreError> {
        match op {
            Op::Batch(ops) => {
                for op in ops {
                    self.apply(op, stats)?;
                }
            }
            Op::Cap(c) => c.apply(self.tx)?,
            Op::PutMesh(m) => {
                self.meshes.insert(&m.mesh_id.0[..], m)?;
            }
            Op::PutInvite(i) => {
                self.invites.insert(&i.invite_id.0[..], i)?;
            }
            Op::PutMember(m) => {
                self.members
                    .insert(&member_key(&m.mesh_id, &m.member_pk)[..], m)?;
            }
            Op::PutPeer(p) => {
                self.peers.insert(&p.peer_pk.0[..], p)?;
            }
            Op::InsertMessages { sent_seq, id, msgs } => {
                self.sent.insert(*sent_seq, id)?;
                for msg in msgs {
                    self.messages.insert(msg.seq, &**msg)?;
                }
                stats
                    .messages
                    .fetch_add(msgs.len() as u64, Ordering::Relaxed);
            }
            Op::Flush => {}
            Op::Ack {
                seq,
                peer,
                delete_message,
                multi,
            } => {
                if *delete_message {
                    self.messages.remove(*seq)?;
                    if *multi {
                        self.remove_acks(*seq)?;
                    }
                } else {
                    self.acked.insert(&ack_key(*seq, peer)[..], ())?;
                }
            }
            Op::Expire { seqs, sent } => {
                for (seq, multi) in seqs {
                    self.messages.remove(*seq)?;
                    if *multi {
                        self.remove_acks(*seq)?;
                    }
                }
                for k in sent {
                    self.sent.remove(*k)?;
                }
            }
        }
        Ok(())
    }
}

const MAX_BATCH: usize = 4096;

/// A database handle the writer let go of: readers may still hold it for a moment.
struct Released(Option<std::sync::Weak<Database>>);

impl Released {
    /// Wait (up to a second) until no reader holds the file open, so it can be opened again.
    fn wait(&mut self) {
        if let Some(w) = self.0.take() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
            while w.strong_count() > 0 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
    }
}

type DoneSender = std::sync::mpsc::Sender<(Result<(), Arc<StoreError>>, Vec<Done>)>;

fn writer(
    db: Arc<Database>,
    slot: Arc<std::sync::RwLock<Option<Arc<Database>>>>,
    path: std::path::PathBuf,
    rx: std::sync::mpsc::Receiver<Msg>,
    stats: Arc<StoreStats>,
    done_tx: DoneSender,
) {
    let mut db = Some(db);
    let mut released = Released(None);
    let mut reopen_error = String::new();
    let mut batch: Vec<(Op, Option<Done>)> = Vec::with_capacity(256);
    let mut closing: Option<std::sync::mpsc::Sender<()>> = None;
    while closing.is_none() {
        match rx.recv() {
            Ok(Msg::Op(op, done)) => batch.push((op, done)),
            Ok(Msg::Close(tx)) => closing = Some(tx),
            Err(_) => break,
        }
        while batch.len() < MAX_BATCH && closing.is_none() {
            match rx.try_recv() {
                Ok(Msg::Op(op, done)) => batch.push((op, done)),
                Ok(Msg::Close(tx)) => closing = Some(tx),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        // After an I/O error redb refuses further writes on that handle; reopening recovers
        // the last committed state (e.g. once disk space returns).
        if db.is_none() {
            released.wait();
            match Database::create(&path) {
                Ok(d) => {
                    tracing::info!("store reopened after a write failure");
                    let d = Arc::new(d);
                    *slot.write().unwrap_or_else(|p| p.into_inner()) = Some(d.clone());
                    db = Some(d);
                }
                Err(e) => {
                    tracing::error!(error = %e, "store still cannot be reopened");
                    reopen_error = e.to_string();
                }
            }
        }
        let result = match &db {
            Some(d) if !stats.fail_writes.load(Ordering::SeqCst) => write_batch(d, &batch, &stats),
            Some(_) => Err(StoreError::Injected),
            None => Err(StoreError::Unavailable(reopen_error.clone())),
        }
        .map_err(Arc::new);
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats.ops.fetch_add(batch.len() as u64, Ordering::Relaxed);
        if let Err(e) = &result {
            stats.failed_commits.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, ops = batch.len(), "store commit failed");
            if !matches!(**e, StoreError::Injected) {
                // Readers let go of it too, so the file can be opened again.
                *slot.write().unwrap_or_else(|p| p.into_inner()) = None;
                released = Released(db.take().map(|d| Arc::downgrade(&d)));
            }
        }
        let dones: Vec<Done> = batch.drain(..).filter_map(|(_, d)| d).collect();
        if !dones.is_empty() {
            let _ = done_tx.send((result, dones));
        }
    }
    *slot.write().unwrap_or_else(|p| p.into_inner()) = None;
    Released(db.take().map(|d| Arc::downgrade(&d))).wait();
    // Anything sent after close is refused.
    let refused: Vec<Done> = rx
        .try_iter()
        .filter_map(|m| if let Msg::Op(_, d) = m { d } else { None })
        .collect();
    if !refused.is_empty() {
        let _ = done_tx.send((Err(Arc::new(StoreError::Closed)), refused));
    }
    // Close is reported after every earlier completion has run.
    if let Some(tx) = closing {
        let _ = done_tx.send((
            Ok(()),
            vec![Box::new(move |_| {
                let _ = tx.send(());
            })],
        ));
    }
    tracing::debug!("store writer stopped");
}

fn write_batch(
    db: &Database,
    batch: &[(Op, Option<Done>)],
    stats: &StoreStats,
) -> Result<(), StoreError> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate);
    {
        let mut t = Tables::open(&tx)?;
        for (op, _) in batch {
            t.apply(op, stats)?;
        }
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Blob, GroupRole, Id16, Priority, Role, Sealed, Status, Target};

    fn msg(seq: u64, recipients: Vec<Key>) -> StoredMessage {
        StoredMessage {
            seq,
            msg_id: Id16([seq as u8; 16]),
            mesh_id: Key([1; 32]),
            from: Key([2; 32]),
            from_xpk: Key([3; 32]),
            from_name: "a".into(),
            to_label: "*".into(),
            target: Target::Broadcast,
            priority: Priority::Next,
            reply_to: None,
            sealed: Sealed {
                nonce: Blob(vec![0; 24].into()),
                ct: Blob(vec![9; 40].into()),
            },
            sent_at_ms: 1,
            expires_at_ms: 2,
            recipients,
        }
    }

    fn idrec(n: u8) -> MsgIdRecord {
        MsgIdRecord {
            from: Key([2; 32]),
            msg_id: Id16([n; 16]),
            expires_ms: 9,
            recipients: 3,
        }
    }

    #[tokio::test]
    async fn committed_ops_are_there_after_reopen_and_acks_are_recorded() {
        let d = tempfile::tempdir().unwrap();
        let (p1, p2) = (Key([7; 32]), Key([8; 32]));
        {
            let (s, l) = Store::open(d.path()).unwrap();
            assert!(l.messages.is_empty());
            s.commit(Op::PutMember(MemberRecord {
                mesh_id: Key([1; 32]),
                member_pk: Key([4; 32]),
                member_xpk: Key([5; 32]),
                name: "alice".into(),
                role: Role::Member,
                joined_ms: 1,
                revoked: false,
            }))
            .await
            .unwrap();
            s.commit(Op::InsertMessages {
                sent_seq: 1,
                id: idrec(1),
                msgs: vec![Arc::new(msg(2, vec![p1, p2])), Arc::new(msg(3, vec![p1]))],
            })
            .await
            .unwrap();
            s.commit(Op::Ack {
                seq: 3,
                peer: p1,
                delete_message: true,
                multi: false,
            })
            .await
            .unwrap();
            s.commit(Op::Ack {
                seq: 2,
                peer: p1,
                delete_message: false,
                multi: true,
            })
            .await
            .unwrap();
            s.close().await;
        }
        let (s, l) = Store::open(d.path()).unwrap();
        assert_eq!(l.members.len(), 1);
        assert_eq!(l.messages, vec![msg(2, vec![p1, p2])]);
        assert_eq!(l.acked, vec![(2, p1)]);
        assert_eq!(
            l.sent,
            vec![(1, idrec(1))],
            "dedupe records outlive delivery"
        );
        // The last ack drops the message and its ack rows.
        s.commit(Op::Ack {
            seq: 2,
            peer: p2,
            delete_message: true,
            multi: true,
        })
        .await
        .unwrap();
        s.close().await;
        let (s, l) = Store::open(d.path()).unwrap();
        assert!(l.messages.is_empty() && l.acked.is_empty());
        s.close().await;
        assert!(
            matches!(s.commit(Op::Flush).await.map_err(|e| e.to_string()), Err(m) if m.contains("stopped"))
        );
    }

    #[tokio::test]
    async fn many_concurrent_ops_share_commits() {
        let d = tempfile::tempdir().unwrap();
        let (s, _) = Store::open(d.path()).unwrap();
        let mut waits = Vec::new();
        for i in 0..500u64 {
            let s = s.clone();
            waits.push(tokio::spawn(async move {
                s.commit(Op::InsertMessages {
                    sent_seq: 2 * i + 1,
                    id: idrec(i as u8),
                    msgs: vec![Arc::new(msg(2 * i + 2, vec![Key([1; 32])]))],
                })
                .await
            }));
        }
        for w in waits {
            w.await.unwrap().unwrap();
        }
        let commits = s.stats.commits.load(Ordering::Relaxed);
        assert!(
            commits < 500,
            "group commit batches ops ({commits} commits for 500 ops)"
        );
        s.close().await;
    }

    #[tokio::test]
    async fn a_newer_schema_is_refused_with_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        {
            let db = Database::create(d.path().join("claudemesh.redb")).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META)
                .unwrap()
                .insert("schema_version", SCHEMA_VERSION + 1)
                .unwrap();
            tx.commit().unwrap();
        }
        let e = Store::open(d.path()).err().unwrap().to_string();
        assert!(e.contains("newer claudemesh"), "{e}");
        let _ = Status::Idle;
    }

    #[tokio::test]
    async fn schema_1_peers_are_migrated_with_an_empty_profile_and_visible() {
        let d = tempfile::tempdir().unwrap();
        let old = PeerRecordV1 {
            peer_pk: Key([7; 32]),
            peer_xpk: Key([8; 32]),
            mesh_id: Key([1; 32]),
            member_pk: Key([9; 32]),
            name: "bob".into(),
            session_id: "s1".into(),
            groups: vec![GroupRole {
                group: "eng".into(),
                role: "lead".into(),
            }],
            summary: "tests".into(),
            hostname: "h".into(),
            cwd: "/w".into(),
            status: Status::Working,
            last_seen_ms: 5,
        };
        {
            let db = Database::create(d.path().join("claudemesh.redb")).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(META)
                .unwrap()
                .insert("schema_version", 1u64)
                .unwrap();
            Table::<&[u8], PeerRecordV1>::new("peers")
                .write(&tx)
                .unwrap()
                .insert(old.peer_pk.0.as_slice(), &old)
                .unwrap();
            tx.commit().unwrap();
        }
        let (s, l) = Store::open(d.path()).unwrap();
        assert_eq!(l.peers, vec![PeerRecord::from(old.clone())]);
        assert!(
            l.peers[0].visible && l.peers[0].profile.is_empty() && l.peers[0].summary == "tests"
        );
        s.close().await;
        // Reopening reads the migrated rows as they are.
        let (s, l) = Store::open(d.path()).unwrap();
        assert_eq!(l.peers.len(), 1);
        s.close().await;
    }
}
