//! The `streams` capability (`streams/1`): named per-mesh message streams (`create_stream`,
//! `publish`, `subscribe`, `unsubscribe`, `read_stream`, `list_streams`).
//!
//! - Semantics: a stream is a log of JSON messages with growing sequences. History is
//!   bounded by the stream's limits (messages, bytes, age; the newest message always
//!   stays); `read_stream` reads from any kept sequence; a subscription pushes messages
//!   from a sequence (or the last n, or from now) and, after a reconnect, the client
//!   subscribes again from the sequence after the last one it got, so nothing is missed
//!   that the stream still holds and nothing arrives twice.
//! - Not end-to-end encrypted: the broker stores the messages as given (like `state`).
//! - Limits: name up to 128 bytes of `A-Z a-z 0-9 . _ -` segments joined by `/`; message
//!   64 KiB of compact JSON; reads of at most 1,000; 256 streams per mesh.
//! - Durability: a publish is answered after its commit; subscribers see only committed
//!   messages.
//! - Who: every member creates, publishes and subscribes.
//!
//! Data: the mesh's log `stream:<name>` (subject = publisher's member name, data = the
//! JSON text), its retention in the log's bookkeeping row.

pub mod broker;
pub mod cli;
pub mod client;
pub mod mcp;
