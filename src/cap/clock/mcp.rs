//! The MCP tools of `clock`: mesh_set_clock, mesh_pause_clock, mesh_resume_clock,
//! mesh_clock (group "clock" of `--tools`).

use super::client::line;
use crate::mcp::MeshServer;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router, ErrorData};
use serde::Deserialize;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SetParams {
    /// Mesh minutes per wall minute, 1..100 (each tick is one mesh minute).
    pub speed: u32,
    /// Mesh time to start at (RFC 3339, e.g. "2027-01-04T09:00:00Z"); only forward on a
    /// clock that exists. Default when creating: now.
    pub start_at: Option<String>,
    /// Mesh name, when this session is in several.
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct MeshParams {
    /// Mesh name, when this session is in several.
    pub mesh: Option<String>,
}

#[tool_router(router = clock_tools, vis = "pub(crate)")]
impl MeshServer {
    #[tool(
        description = "Set the mesh's simulation clock running at speed 1..100 (one tick = one mesh minute, every 60/speed seconds; ticks arrive as clock_tick events). Creates the clock at start_at (default now) or changes the speed; schedules can run on mesh time (schedule_reminder with mesh_time).",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn mesh_set_clock(
        &self,
        Parameters(p): Parameters<SetParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let start = match p.start_at.as_deref() {
                None => None,
                Some(s) => Some(crate::util::parse_rfc3339(s).ok_or_else(|| {
                    format!("start_at '{s}' is not an RFC 3339 time such as 2027-01-04T09:00:00Z")
                })?),
            };
            let c = link
                .client
                .set_clock(p.speed, start)
                .await
                .map_err(|e| e.to_string())?;
            Ok((
                format!("mesh clock set: {}", line(&c)),
                serde_json::to_value(&c).unwrap_or_default(),
            ))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "Pause the mesh's simulation clock (mesh time stands still until mesh_resume_clock).",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn mesh_pause_clock(
        &self,
        Parameters(p): Parameters<MeshParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let c = link.client.pause_clock().await.map_err(|e| e.to_string())?;
            Ok((
                format!("mesh clock paused: {}", line(&c)),
                serde_json::to_value(&c).unwrap_or_default(),
            ))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "Resume the mesh's paused simulation clock.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn mesh_resume_clock(
        &self,
        Parameters(p): Parameters<MeshParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let c = link
                .client
                .resume_clock()
                .await
                .map_err(|e| e.to_string())?;
            Ok((
                format!("mesh clock resumed: {}", line(&c)),
                serde_json::to_value(&c).unwrap_or_default(),
            ))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "The mesh's simulation clock: mesh time, tick, speed, paused or running.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn mesh_clock(
        &self,
        Parameters(p): Parameters<MeshParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let c = link.client.get_clock().await.map_err(|e| e.to_string())?;
            let text = match &c {
                Some(c) => line(c),
                None => "this mesh has no clock; mesh_set_clock starts one".to_string(),
            };
            Ok((text, serde_json::json!({ "clock": c })))
        }
        .await;
        self.done_json(r).await
    }
}
