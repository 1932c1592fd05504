//! The MCP tools of `leases`: reserve_files, release_files, list_reservations (group
//! "leases" of `--tools`). Paths are taken relative to the session's project root.

use super::client::{lease_path, line};
use crate::mcp::MeshServer;
use crate::proto::Id16;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router, ErrorData};
use serde::Deserialize;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ReserveParams {
    /// Files or patterns you are about to edit, e.g. ["src/parser.rs", "src/lexer/**"].
    pub paths: Vec<String>,
    /// true (default): nobody else may hold them; false: shared with other shared holders.
    pub exclusive: Option<bool>,
    /// Seconds until the lease lapses (default 3600).
    pub ttl_s: Option<u64>,
    /// What you are doing, shown to anyone who runs into your lease.
    pub reason: Option<String>,
    /// Mesh name, when this session is in several.
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ReleaseParams {
    /// Patterns to release (as reserved)...
    pub paths: Option<Vec<String>>,
    /// ...or a whole lease by id.
    pub lease_id: Option<String>,
    /// Mesh name, when this session is in several.
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ListParams {
    /// Only leases covering this path.
    pub path: Option<String>,
    /// Mesh name, when this session is in several.
    pub mesh: Option<String>,
}

#[tool_router(router = leases_tools, vis = "pub(crate)")]
impl MeshServer {
    #[tool(
        description = "Reserve files you are about to edit (advisory lease) so other sessions know; all or nothing. If another session holds an overlapping lease, the answer names it (holder, reason, expiry) and nothing is reserved: coordinate with them first.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn reserve_files(
        &self,
        Parameters(p): Parameters<ReserveParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let cwd = self.cwd();
            let paths: Vec<String> = p.paths.iter().map(|x| lease_path(&cwd, x)).collect();
            let r = link
                .client
                .reserve_files(
                    paths,
                    p.exclusive,
                    p.ttl_s,
                    p.reason.as_deref().unwrap_or_default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            let text = match &r.lease {
                Some(l) if r.granted => format!("reserved (lease id {}): {}", l.id.hex(), line(l)),
                _ => {
                    let mut s = String::from("not reserved: held by another session:");
                    for c in &r.conflicts {
                        s.push_str("\n  ");
                        s.push_str(&line(c));
                    }
                    s
                }
            };
            Ok((text, serde_json::to_value(&r).unwrap_or_default()))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "Release files you reserved (by pattern, as reserved) or a whole lease by id.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn release_files(
        &self,
        Parameters(p): Parameters<ReleaseParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let cwd = self.cwd();
            let paths: Vec<String> = p
                .paths
                .unwrap_or_default()
                .iter()
                .map(|x| lease_path(&cwd, x))
                .collect();
            let id = match p.lease_id.as_deref() {
                Some(s) => Some(Id16::parse_hex(s).ok_or("lease_id is 32 hex digits")?),
                None => None,
            };
            let released = link
                .client
                .release_files(paths, id)
                .await
                .map_err(|e| e.to_string())?;
            let ids: Vec<String> = released.iter().map(|i| i.hex()).collect();
            let text = if ids.is_empty() {
                "nothing released: no lease of yours holds those paths".to_string()
            } else {
                format!("released lease(s) {}", ids.join(", "))
            };
            Ok((text, serde_json::json!({"released": ids})))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "List the mesh's file leases (who is editing what), optionally only those covering one path.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_reservations(
        &self,
        Parameters(p): Parameters<ListParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let cwd = self.cwd();
            let path = p.path.as_deref().map(|x| lease_path(&cwd, x));
            let leases = link
                .client
                .list_reservations(path)
                .await
                .map_err(|e| e.to_string())?;
            let mut text = if leases.is_empty() {
                "no file leases".to_string()
            } else {
                format!("{} lease(s):", leases.len())
            };
            for l in &leases {
                text.push('\n');
                text.push_str(&line(l));
            }
            Ok((text, serde_json::json!({"leases": leases})))
        }
        .await;
        self.done_json(r).await
    }
}
