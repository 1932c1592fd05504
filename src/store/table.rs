//! Typed tables: a redb table declared once with its key type and its record type
//! ([`Table<K, V>`]); records are stored as postcard bytes, encoded and decoded here and
//! nowhere else, and a record that does not decode is a [`StoreError::Decode`] naming the
//! table, never a panic. Declarations live in [`super::schema`].

use super::StoreError;
use redb::{AccessGuard, Key, ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};
use serde::{de::DeserializeOwned, Serialize};
use std::borrow::Borrow;
use std::marker::PhantomData;
use std::ops::RangeBounds;

/// Bytes as stored.
type Raw = &'static [u8];

/// A typed table open for writing.
pub type Writer<'t, K, V> = Open<K, V, redb::Table<'t, K, Raw>>;
/// A typed table open for reading.
pub type Reader<K, V> = Open<K, V, redb::ReadOnlyTable<K, Raw>>;

/// A table of `V` records under keys `K`.
pub struct Table<K: Key + 'static, V> {
    name: &'static str,
    _p: PhantomData<fn() -> (K, V)>,
}

impl<K: Key + 'static, V> Clone for Table<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K: Key + 'static, V> Copy for Table<K, V> {}

impl<K: Key + 'static, V: Serialize + DeserializeOwned> Table<K, V> {
    pub const fn new(name: &'static str) -> Self {
        Table {
            name,
            _p: PhantomData,
        }
    }

    pub const fn name(&self) -> &'static str {
        self.name
    }

    fn def(&self) -> TableDefinition<'static, K, Raw> {
        TableDefinition::new(self.name)
    }

    /// Create the table if it does not exist (at open, so readers always find it).
    pub fn create(&self, tx: &WriteTransaction) -> Result<(), StoreError> {
        tx.open_table(self.def())?;
        Ok(())
    }

    /// Open for writing inside a write transaction.
    pub fn write<'t>(&self, tx: &'t WriteTransaction) -> Result<Writer<'t, K, V>, StoreError> {
        Ok(Open::new(tx.open_table(self.def())?, self.name))
    }

    /// Open for reading inside a read transaction.
    pub fn read(&self, tx: &ReadTransaction) -> Result<Reader<K, V>, StoreError> {
        Ok(Open::new(tx.open_table(self.def())?, self.name))
    }

    /// Every record, in key order, in one read transaction (for capabilities that keep
    /// their table in memory and read it whole when they open).
    pub fn load_all(&self, store: &super::Store) -> Result<Vec<V>, StoreError> {
        store.read(|tx| {
            let mut out = Vec::new();
            for row in self.read(tx)?.iter()? {
                out.push(row?.1);
            }
            Ok(out)
        })
    }
}

/// An opened typed table: a read-only table, or a writable one inside a write transaction.
pub struct Open<K: Key + 'static, V, T> {
    t: T,
    name: &'static str,
    _p: PhantomData<fn() -> (K, V)>,
}

/// Encode a record (postcard of an in-memory value cannot fail short of allocation).
pub(crate) fn encode<V: Serialize>(v: &V) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap_or_default()
}

/// Decode a record of table `name`.
pub(crate) fn decode<V: DeserializeOwned>(name: &'static str, b: &[u8]) -> Result<V, StoreError> {
    postcard::from_bytes(b).map_err(|e| StoreError::Decode(name, e))
}

impl<K, V, T> Open<K, V, T>
where
    K: Key + 'static,
    V: Serialize + DeserializeOwned,
    T: ReadableTable<K, Raw>,
{
    fn new(t: T, name: &'static str) -> Self {
        Open {
            t,
            name,
            _p: PhantomData,
        }
    }

    pub fn get<'k>(&self, key: impl Borrow<K::SelfType<'k>>) -> Result<Option<V>, StoreError> {
        match self.t.get(key)? {
            Some(v) => decode(self.name, v.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Records in key order within `range` (`..` for all), each with its key.
    #[allow(clippy::type_complexity)]
    pub fn range<'a, KR>(
        &self,
        range: impl RangeBounds<KR> + 'a,
    ) -> Result<
        impl DoubleEndedIterator<Item = Result<(AccessGuard<'_, K>, V), StoreError>> + '_,
        StoreError,
    >
    where
        KR: Borrow<K::SelfType<'a>> + 'a,
    {
        let name = self.name;
        Ok(self.t.range(range)?.map(move |row| {
            let (k, v) = row?;
            Ok((k, decode(name, v.value())?))
        }))
    }

    /// Every record, in key order.
    #[allow(clippy::type_complexity)]
    pub fn iter(
        &self,
    ) -> Result<
        impl DoubleEndedIterator<Item = Result<(AccessGuard<'_, K>, V), StoreError>> + '_,
        StoreError,
    > {
        let name = self.name;
        Ok(self.t.iter()?.map(move |row| {
            let (k, v) = row?;
            Ok((k, decode(name, v.value())?))
        }))
    }

    pub fn len(&self) -> Result<u64, StoreError> {
        Ok(self.t.len()?)
    }

    pub fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len()? == 0)
    }
}

impl<'t, K, V> Writer<'t, K, V>
where
    K: Key + 'static,
    V: Serialize + DeserializeOwned,
{
    pub fn insert<'k>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        v: &V,
    ) -> Result<(), StoreError> {
        self.t.insert(key, encode(v).as_slice())?;
        Ok(())
    }

    /// Remove a record; true if there was one.
    pub fn remove<'k>(&mut self, key: impl Borrow<K::SelfType<'k>>) -> Result<bool, StoreError> {
        Ok(self.t.remove(key)?.is_some())
    }

    /// The redb table underneath, for bulk operations (`retain`, `extract_if`) on keys.
    pub fn raw(&mut self) -> &mut redb::Table<'t, K, Raw> {
        &mut self.t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Rec {
        name: String,
        n: u64,
    }

    const RECS: Table<u64, Rec> = Table::new("recs");

    #[test]
    fn records_round_trip_in_key_order_and_a_corrupt_one_is_an_error_naming_its_table() {
        let d = tempfile::tempdir().unwrap();
        let db = redb::Database::create(d.path().join("t.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = RECS.write(&tx).unwrap();
            for n in [3u64, 1, 2] {
                t.insert(
                    n,
                    &Rec {
                        name: format!("r{n}"),
                        n,
                    },
                )
                .unwrap();
            }
            assert!(t.remove(2).unwrap());
            assert!(!t.remove(2).unwrap());
            // Bytes that are no Rec, written underneath.
            t.raw().insert(9, [0xffu8; 3].as_slice()).unwrap();
        }
        tx.commit().unwrap();
        let tx = db.begin_read().unwrap();
        let t = RECS.read(&tx).unwrap();
        assert_eq!(t.get(1).unwrap().unwrap().name, "r1");
        assert_eq!(t.get(7).unwrap(), None);
        let ns: Vec<u64> = t.range(0..9).unwrap().map(|r| r.unwrap().1.n).collect();
        assert_eq!(ns, [1, 3]);
        assert_eq!(t.len().unwrap(), 3);
        match t.get(9) {
            Err(StoreError::Decode(name, _)) => assert_eq!(name, "recs"),
            other => panic!("expected a decode error, got {other:?}"),
        }
    }
}
