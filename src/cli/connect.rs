//! A one-shot CLI command's connection to a joined mesh (the `cli` session of the member),
//! shared by the core's verbs and each capability's `cli.rs`.

use crate::client::config::Home;
use crate::client::{Client, ClientOptions};
use anyhow::{Context, Result};
use std::time::Duration;

/// Connect to `mesh` (or the only joined one) as this member's CLI session.
pub(crate) async fn connect(home: &Home, mesh: Option<&str>, push: bool) -> Result<Client> {
    let mc = home.select(mesh)?;
    let mut opts = ClientOptions::for_session(home, &mc, "cli", &mc.name);
    opts.push = push;
    opts.request_timeout = Duration::from_secs(15);
    let c = Client::connect(opts, Duration::from_secs(10))
        .await
        .with_context(|| format!("mesh '{}'", mc.mesh_name))?;
    Ok(c)
}
