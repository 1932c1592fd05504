//! In-process integration tests, one binary (each test binary links the whole dependency
//! tree; one binary keeps CI fast on two cores). A real broker runs inside the test process
//! (`common::Mesh`), with real sockets, redb files and clients. A module per area.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod clock;
mod context;
mod crypto_vectors;
mod fuzz_corpus;
mod hostile;
mod json_protocol;
mod leases;
mod messaging;
mod peers;
mod schedules;
mod state;
mod streams;
mod tasks;
mod tls;
mod wire;
