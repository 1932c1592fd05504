//! Wire types of the `context` capability: what each session has learned (a summary, the
//! files it read, its findings), shared so another session does not read it all again,
//! and found again by a ranked search.

use super::{Id16, Key};
use serde::{Deserialize, Serialize};

/// Name and version in `hello_ack.caps`.
pub const CAP: &str = "context/1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Share (or replace) the calling session's context. Lists replace the previous ones.
    Share {
        summary: String,
        #[serde(default)]
        files_read: Vec<String>,
        #[serde(default)]
        key_findings: Vec<String>,
        #[serde(default)]
        tags: Vec<String>,
    },
    /// The contexts that best match `query` (words, file paths, tags), best first; at most
    /// `limit` (default 10, at most 50).
    Get {
        query: String,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// The mesh's contexts, most recently updated first: at most `limit` (default 50, at
    /// most 200).
    List {
        #[serde(default)]
        limit: Option<u32>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Share {
        context: Box<Context>,
    },
    Get {
        hits: Vec<Hit>,
    },
    /// `total`: how many the mesh holds (answers stop at about 4 MiB).
    List {
        contexts: Vec<Context>,
        total: u32,
    },
}

/// One session's shared context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// Kept across updates by the same session.
    pub id: Id16,
    /// The session (peer name and key) and its member.
    pub peer: String,
    pub peer_key: Key,
    pub member_name: String,
    pub summary: String,
    pub files_read: Vec<String>,
    pub key_findings: Vec<String>,
    pub tags: Vec<String>,
    /// How often it was shared (1 at first).
    pub version: u32,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// Whether its session is online now (filled in when answering).
    #[serde(default)]
    pub online: bool,
}

/// A context with its relevance to a query (higher is better; comparable within one
/// answer only) and the fields it matched in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub context: Context,
    pub score: f32,
    pub matched: Vec<String>,
}

// Scores are finite (the broker computes them from counts), so equality is total.
impl Eq for Hit {}
