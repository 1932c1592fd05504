//! The broker side of `context`: every mesh's shared contexts in memory (read once at
//! start), each with its term counts for ranking, changed under one lock and written
//! through the group commit before the answer.

use super::rank::{self, Doc};
use super::tables::{self, Change, ContextRecord};
use crate::broker::ctx::{Audience, CapState, Ctx};
use crate::broker::outbox::{Refusal, Responder};
use crate::proto::context::{Context, Hit, Request as Q, Response as A};
use crate::proto::{ErrorCode, Id16, Key};
use crate::store::{Op, StoreError};
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

/// Contexts per mesh; sharing one more drops the least recently updated.
pub const MAX_PER_MESH: usize = 1000;
pub const MAX_SUMMARY: usize = 8 * 1024;
pub const MAX_FILES: usize = 200;
pub const MAX_FILE: usize = 512;
pub const MAX_FINDINGS: usize = 50;
pub const MAX_FINDING: usize = 1024;
pub const MAX_TAGS: usize = 16;
pub const MAX_TAG: usize = 64;
pub const MAX_QUERY: usize = 1024;
/// Hits per `get` by default and at most.
pub const DEFAULT_LIMIT: u32 = 10;
pub const MAX_LIMIT: u32 = 50;
/// Contexts per `list` by default and at most.
pub const DEFAULT_LIST: u32 = 50;
pub const MAX_LIST: u32 = 200;
/// An answer stops growing past about this many bytes of context text.
const ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// The bytes of text a context carries.
fn size(c: &Context) -> usize {
    let sum = |v: &[String]| v.iter().map(String::len).sum::<usize>();
    c.summary.len() + sum(&c.files_read) + sum(&c.key_findings) + sum(&c.tags)
}

/// The first of `items` whose sizes add up to at most [`ANSWER_BYTES`] (at least one).
fn within_budget<T>(items: Vec<T>, size_of: impl Fn(&T) -> usize) -> Vec<T> {
    let mut used = 0;
    let mut out = Vec::new();
    for x in items {
        used += size_of(&x);
        if used > ANSWER_BYTES && !out.is_empty() {
            break;
        }
        out.push(x);
    }
    out
}

struct Entry {
    rec: ContextRecord,
    doc: Doc,
}

impl Entry {
    fn new(rec: ContextRecord) -> Entry {
        let c = &rec.context;
        let doc = Doc::new([
            &c.tags,
            &c.files_read,
            &c.key_findings,
            std::slice::from_ref(&c.summary),
        ]);
        Entry { rec, doc }
    }
}

#[derive(Default)]
struct Inner {
    meshes: HashMap<Key, HashMap<Key, Entry>>,
}

pub struct Contexts {
    inner: Mutex<Inner>,
}

impl CapState for Contexts {
    fn open(ctx: &Ctx) -> Result<Self, StoreError> {
        let mut inner = Inner::default();
        for r in tables::load(ctx.store())? {
            inner
                .meshes
                .entry(r.mesh)
                .or_default()
                .insert(r.context.peer_key, Entry::new(r));
        }
        Ok(Contexts {
            inner: Mutex::new(inner),
        })
    }
}

impl Contexts {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Each of `items` at most `each` bytes, at most `count` of them, none empty.
fn check_list(what: &str, items: &[String], count: usize, each: usize) -> Result<(), Refusal> {
    if items.len() > count {
        return Err(Refusal::new(
            ErrorCode::TooLarge,
            format!("at most {count} {what}"),
        ));
    }
    if items.iter().any(|s| s.len() > each) {
        return Err(Refusal::new(
            ErrorCode::TooLarge,
            format!("each of {what} is at most {each} bytes"),
        ));
    }
    if items.iter().any(|s| s.trim().is_empty()) {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            format!("an empty entry in {what}"),
        ));
    }
    Ok(())
}

/// A context as answered: with whether its session is online now.
fn answer(ctx: &Ctx, c: &Context) -> Context {
    let mut c = c.clone();
    c.online = ctx.presence(&c.peer_key).is_some_and(|(on, _)| on);
    c
}

pub fn handle(ctx: Ctx, q: Q, r: Responder) {
    let state = match ctx.state::<Contexts>() {
        Ok(s) => s,
        Err(e) => return r.err(e),
    };
    let mesh = ctx.mesh();
    match q {
        Q::Share {
            summary,
            files_read,
            key_findings,
            tags,
        } => {
            let caller = match ctx.caller() {
                Ok(c) => c,
                Err(e) => return r.err(e),
            };
            if summary.trim().is_empty() {
                return r.err(Refusal::new(
                    ErrorCode::BadRequest,
                    "a context needs a summary of what this session learned",
                ));
            }
            if summary.len() > MAX_SUMMARY {
                return r.err(Refusal::new(
                    ErrorCode::TooLarge,
                    format!("the summary is at most {MAX_SUMMARY} bytes"),
                ));
            }
            let checks = check_list("files_read", &files_read, MAX_FILES, MAX_FILE)
                .and_then(|()| check_list("key_findings", &key_findings, MAX_FINDINGS, MAX_FINDING))
                .and_then(|()| check_list("tags", &tags, MAX_TAGS, MAX_TAG));
            if let Err(e) = checks {
                return r.err(e);
            }
            let mut m = state.lock();
            let here = m.meshes.entry(mesh).or_default();
            // Strictly later than any context here, so "most recent first" is a total order
            // even for two shares within one millisecond.
            let latest = here.values().map(|e| e.rec.context.updated_at_ms).max();
            let now = crate::util::now_ms().max(latest.map_or(0, |t| t.saturating_add(1)));
            let old = here.get(&caller.peer).map(|e| e.rec.clone());
            let context = Context {
                id: old.as_ref().map_or_else(Id16::random, |o| o.context.id),
                peer: caller.peer_name.clone(),
                peer_key: caller.peer,
                member_name: caller.member_name.clone(),
                summary,
                files_read,
                key_findings,
                tags,
                version: old
                    .as_ref()
                    .map_or(1, |o| o.context.version.saturating_add(1)),
                created_at_ms: old.as_ref().map_or(now, |o| o.context.created_at_ms),
                updated_at_ms: now,
                online: false,
            };
            // Full: the least recently updated context of another session makes room.
            let mut evicted = Vec::new();
            if old.is_none() && here.len() >= MAX_PER_MESH {
                if let Some((k, _)) = here
                    .iter()
                    .min_by_key(|(_, e)| e.rec.context.updated_at_ms)
                    .map(|(k, e)| (*k, e.rec.context.updated_at_ms))
                {
                    if let Some(e) = here.remove(&k) {
                        evicted.push(e.rec);
                    }
                }
            }
            let rec = ContextRecord {
                mesh,
                context: context.clone(),
            };
            here.insert(caller.peer, Entry::new(rec.clone()));
            let change = Change {
                put: Some(rec),
                remove: evicted.iter().map(|e| (mesh, e.context.peer_key)).collect(),
            };
            let me = state.clone();
            let ctx2 = ctx.clone();
            let peer = caller.peer;
            ctx.store().submit_holding(
                m,
                Op::Cap(Box::new(change)),
                Box::new(move |res| match res {
                    Ok(()) => {
                        let text = format!(
                            "shared context {}: {}",
                            context.id.hex(),
                            crate::util::truncate(&context.summary, 160)
                        );
                        let answered = answer(&ctx2, &context);
                        r.ok(A::Share {
                            context: Box::new(answered),
                        });
                        ctx2.notify(&Audience::Mesh, "context_shared", &text);
                    }
                    Err(e) => {
                        // Put memory back as it was.
                        let mut m = me.lock();
                        let here = m.meshes.entry(mesh).or_default();
                        match old {
                            Some(o) => {
                                here.insert(peer, Entry::new(o));
                            }
                            None => {
                                here.remove(&peer);
                            }
                        }
                        for e in evicted {
                            here.insert(e.context.peer_key, Entry::new(e));
                        }
                        drop(m);
                        r.err(Refusal::from(e));
                    }
                }),
            );
        }
        Q::Get { query, limit } => {
            if query.len() > MAX_QUERY {
                return r.err(Refusal::new(
                    ErrorCode::TooLarge,
                    format!("a query is at most {MAX_QUERY} bytes"),
                ));
            }
            if rank::terms(&query).is_empty() {
                return r.err(Refusal::new(
                    ErrorCode::BadRequest,
                    "the query has no words to search for (give words, file names or tags)",
                ));
            }
            let limit = limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT) as usize;
            let found: Vec<(Context, f32, Vec<&'static str>)> = {
                let m = state.lock();
                let Some(here) = m.meshes.get(&mesh) else {
                    return r.ok(A::Get { hits: vec![] });
                };
                let entries: Vec<&Entry> = here.values().collect();
                let mut ranked = rank::rank(entries.iter().map(|e| &e.doc), &query);
                // Equal scores: the most recently updated first.
                ranked.sort_by(|a, b| {
                    b.1.total_cmp(&a.1).then_with(|| {
                        let t = |i: usize| entries[i].rec.context.updated_at_ms;
                        t(b.0).cmp(&t(a.0))
                    })
                });
                ranked
                    .into_iter()
                    .take(limit)
                    .map(|(i, s, f)| (entries[i].rec.context.clone(), s, f))
                    .collect()
            };
            let hits = within_budget(found, |(c, _, _)| size(c))
                .into_iter()
                .map(|(c, score, matched)| Hit {
                    context: answer(&ctx, &c),
                    score: (score * 1000.0).round() / 1000.0,
                    matched: matched.into_iter().map(String::from).collect(),
                })
                .collect();
            r.ok(A::Get { hits })
        }
        Q::List { limit } => {
            let limit = limit.unwrap_or(DEFAULT_LIST).clamp(1, MAX_LIST) as usize;
            let mut all: Vec<Context> = {
                let m = state.lock();
                m.meshes
                    .get(&mesh)
                    .map(|h| h.values().map(|e| e.rec.context.clone()).collect())
                    .unwrap_or_default()
            };
            all.sort_by_key(|c| std::cmp::Reverse(c.updated_at_ms));
            let total = all.len() as u32;
            all.truncate(limit);
            let contexts = within_budget(all, size)
                .iter()
                .map(|c| answer(&ctx, c))
                .collect();
            r.ok(A::List { contexts, total })
        }
    }
}
