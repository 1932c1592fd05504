//! Claude Code integration on the user's machine: its config files (`install`/`uninstall`),
//! the hook commands it runs (`claudemesh hook ...`), which session an MCP client is
//! (`session`) and proof from its transcript that a pushed message was shown
//! (`transcript`).

pub mod doctor;
pub mod hook;
pub mod install;
pub mod launch;
pub mod session;
pub mod transcript;
