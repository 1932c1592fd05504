//! Every table beyond the core's (which `store::migrate` creates): one line per owner, so
//! the file's whole layout can be read here. Each is created at open, so readers never see
//! "table does not exist". A capability that adds tables lists them here.

use super::StoreError;

/// Create every listed table that does not exist yet.
pub fn create_all(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
    super::log::create_tables(tx)?;
    Ok(())
}
