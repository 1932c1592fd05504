//! The client side of `context`: share this session's context, search the mesh's, list
//! them; one line per context for people and models.

use crate::client::{Client, ClientError};
use crate::proto::context::{Context, Hit, Request as Q, Response as A};
use crate::proto::Response;
use crate::util::{rfc3339, truncate};

impl Client {
    /// Share (or replace) this session's context.
    pub async fn share_context(
        &self,
        summary: &str,
        files_read: Vec<String>,
        key_findings: Vec<String>,
        tags: Vec<String>,
    ) -> Result<Context, ClientError> {
        let q = Q::Share {
            summary: summary.to_string(),
            files_read,
            key_findings,
            tags,
        };
        self.call(q, |r| match r {
            Response::Context(A::Share { context }) => Ok(*context),
            r => Err(r),
        })
        .await
    }

    /// The contexts that best match `query`, best first.
    pub async fn get_context(
        &self,
        query: &str,
        limit: Option<u32>,
    ) -> Result<Vec<Hit>, ClientError> {
        let q = Q::Get {
            query: query.to_string(),
            limit,
        };
        self.call(q, |r| match r {
            Response::Context(A::Get { hits }) => Ok(hits),
            r => Err(r),
        })
        .await
    }

    /// The mesh's contexts, most recently updated first, and how many it holds.
    pub async fn list_contexts(
        &self,
        limit: Option<u32>,
    ) -> Result<(Vec<Context>, u32), ClientError> {
        self.call(Q::List { limit }, |r| match r {
            Response::Context(A::List { contexts, total }) => Ok((contexts, total)),
            r => Err(r),
        })
        .await
    }
}

/// One line for a context: who, when, the summary (shortened).
pub fn line(c: &Context) -> String {
    format!(
        "{} by {} ({}{}), updated {}: {}",
        c.id.hex(),
        c.peer,
        c.member_name,
        if c.online { ", online" } else { "" },
        rfc3339(c.updated_at_ms),
        truncate(&c.summary, 200)
    )
}

/// A context in full, for a search hit: the summary, files read and findings.
pub fn detail(c: &Context) -> String {
    let mut s = line(c);
    if !c.files_read.is_empty() {
        s.push_str(&format!("\n  files read: {}", c.files_read.join(", ")));
    }
    for f in &c.key_findings {
        s.push_str(&format!("\n  - {}", truncate(f, 400)));
    }
    if !c.tags.is_empty() {
        s.push_str(&format!("\n  tags: {}", c.tags.join(", ")));
    }
    s
}
