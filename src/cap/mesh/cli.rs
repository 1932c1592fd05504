//! The CLI verb of `mesh_info`: `claudemesh info`.

use crate::cli::connect::connect;
use crate::client::Home;
use anyhow::Result;
use argh::FromArgs;

/// what the mesh holds: peers, groups, state, tasks, streams, leases
#[derive(FromArgs)]
#[argh(subcommand, name = "info")]
pub struct InfoCmd {
    /// mesh name (needed when joined to several)
    #[argh(option)]
    pub mesh: Option<String>,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
}

/// Run `claudemesh info`.
pub async fn run(home: &Home, c: InfoCmd) -> Result<()> {
    let mc = home.select(c.mesh.as_deref())?;
    let client = connect(home, c.mesh.as_deref(), false).await?;
    let i = client.mesh_info().await;
    if c.json {
        println!("{}", serde_json::to_string(&i)?);
    } else {
        println!("{}", super::client::text(&mc.mesh_name, &i));
    }
    Ok(())
}
