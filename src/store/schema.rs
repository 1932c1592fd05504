//! The file's layout: every table of the store (the core's and the per-mesh log's), with
//! its key and record types, the schema version and its migrations. Every table is created
//! at open, so readers never see "table does not exist".
//!
//! A capability declares its own tables in its folder (typed [`Table`]s on its own record
//! types) and lists them by one line in `cap::TABLES`; the broker hands that list to
//! [`Store::open_with`](super::Store::open_with), which creates them here, after these.
//!
//! Every key written per message grows with a sequence number, so a commit's inserts and
//! the deletes of recently delivered messages all land on the same few B-tree pages.

use super::log::{LAST as LOG_LAST, RECORDS as LOG_RECORDS, STREAMS as LOG_STREAMS};
use super::records::*;
use super::table::Table;
use super::StoreError;
use redb::{Database, ReadableTable, TableDefinition};

/// Current on-disk schema. Bump with a migration in [`migrate`].
pub const SCHEMA_VERSION: u64 = 2;

/// `schema_version` → u64
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

// ---- core: meshes, membership, peers, queued messages ----

/// mesh id (32) → MeshRecord
pub(super) const MESHES: Table<&[u8], MeshRecord> = Table::new("meshes");
/// invite id (16) → InviteRecord
pub(super) const INVITES: Table<&[u8], InviteRecord> = Table::new("invites");
/// mesh id (32) ‖ member key (32) → MemberRecord
pub(super) const MEMBERS: Table<&[u8], MemberRecord> = Table::new("members");
/// peer key (32) → PeerRecord
pub(super) const PEERS: Table<&[u8], PeerRecord> = Table::new("peers");
/// message seq → StoredMessage (sealed payload, routing metadata, recipients)
pub(super) const MESSAGES: Table<u64, StoredMessage> = Table::new("messages");
/// message seq (8, big-endian) ‖ recipient peer key (32) → (): acks of messages with several
/// recipients (a single-recipient message is simply deleted when acked)
pub(super) const ACKED: TableDefinition<&[u8], ()> = TableDefinition::new("acked");
/// send seq → MsgIdRecord: send dedupe, kept for the retention period
pub(super) const SENT: Table<u64, MsgIdRecord> = Table::new("sent");

// ---- the per-mesh append-only log, declared beside its record types in `store::log` ----
// log_records: stream key ‖ seq (8, big-endian) → Record
// log_last:    stream key ‖ subject → seq of the subject's newest record
// log_streams: stream key → StreamInfo (first/last seq, count, bytes, retention)

/// Creates a capability's tables inside the open's write transaction.
pub type CreateTables = fn(&redb::WriteTransaction) -> Result<(), StoreError>;

/// Check the version, migrate older files, create every table (the core's, then `extra`).
pub(super) fn migrate(db: &Database, extra: &[CreateTables]) -> Result<(), StoreError> {
    let tx = db.begin_write()?;
    {
        let mut meta = tx.open_table(META)?;
        let v = meta.get("schema_version")?.map(|g| g.value());
        match v {
            Some(v) if v > SCHEMA_VERSION => return Err(StoreError::SchemaTooNew(v)),
            Some(v) if v == SCHEMA_VERSION => {}
            Some(v) => {
                if v < 2 {
                    peers_v2(&tx)?;
                }
                meta.insert("schema_version", SCHEMA_VERSION)?;
                tracing::info!(from = v, to = SCHEMA_VERSION, "store schema migrated");
            }
            None => {
                meta.insert("schema_version", SCHEMA_VERSION)?;
            }
        }
        MESHES.create(&tx)?;
        INVITES.create(&tx)?;
        MEMBERS.create(&tx)?;
        PEERS.create(&tx)?;
        MESSAGES.create(&tx)?;
        tx.open_table(ACKED)?;
        SENT.create(&tx)?;
        LOG_RECORDS.create(&tx)?;
        tx.open_table(LOG_LAST)?;
        LOG_STREAMS.create(&tx)?;
        for create in extra {
            create(&tx)?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Schema 2 added a profile and visibility to peers.
fn peers_v2(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    let old: Table<&[u8], PeerRecordV1> = Table::new("peers");
    let mut rows = Vec::new();
    for row in old.write(tx)?.iter()? {
        let (k, v) = row?;
        rows.push((k.value().to_vec(), PeerRecord::from(v)));
    }
    let mut peers = PEERS.write(tx)?;
    for (k, rec) in rows {
        peers.insert(k.as_slice(), &rec)?;
    }
    Ok(())
}
