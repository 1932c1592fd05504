//! The MCP tool `mesh_info` (listed with the "peers" group: it needs `peers/2`; the other
//! parts say when their capability is missing).

use crate::mcp::{MeshParam, MeshServer};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router, ErrorData};

#[tool_router(router = mesh_tools, vis = "pub(crate)")]
impl MeshServer {
    #[tool(
        description = "One look at what the mesh holds: peers online, groups, shared state keys, tasks by status (open ones listed), streams and file leases. Use it when starting work to see what others are doing.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn mesh_info(
        &self,
        Parameters(p): Parameters<MeshParam>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let i = link.client.mesh_info().await;
            Ok((
                super::client::text(&link.mesh, &i),
                serde_json::to_value(&i).unwrap_or_default(),
            ))
        }
        .await;
        self.done_json(r).await
    }
}
