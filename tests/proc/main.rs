//! Process-level integration tests, one binary: the real `claudemesh` binary as broker, CLI
//! and MCP server, real agent CLIs (Claude Code, Codex, Gemini CLI, opencode) against local
//! stand-ins of their model APIs, crashes, a full disk, the static binary.
//!
//! Tests here run two at a time (cargo's default on two cores) except the ones that measure
//! latency or kill brokers under load: those take [`alone`], every other test takes
//! [`shared`], so a timing test never shares the machine with another test of this binary.

// The machine guard is held across awaits on purpose: it spans the whole test.
#![allow(clippy::await_holding_lock)]

#[path = "../common/mod.rs"]
mod common;
#[path = "../fake_api/mod.rs"]
mod fake_api;
#[path = "../../benches/loadtest/harness.rs"]
mod harness;

mod agents;
mod claude_code;
mod cli;
mod crash;
mod disk_full;
mod flood_1000;
mod launch;
mod loadtest_ref;
mod mcp;
mod preauth;
mod setup;
mod static_binary;

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static MACHINE: RwLock<()> = RwLock::new(());

/// Run with no other test of this binary (latency measurements, crash loops).
pub fn alone() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(|p| p.into_inner())
}

/// Run alongside other `shared` tests, never alongside an `alone` one.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(|p| p.into_inner())
}
