//! Claude Code integration on the user's machine: its config files (`install`/`uninstall`)
//! and the hook commands it runs (`claudemesh hook ...`).

pub mod doctor;
pub mod hook;
pub mod install;
pub mod launch;
