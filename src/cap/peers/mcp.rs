//! The MCP tools of `peers`: list_peers, set_summary, set_profile, set_visible,
//! join_group, leave_group, list_groups (group "peers" of `--tools`).

use crate::client::format;
use crate::mcp::{MeshParam, MeshServer};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router, ErrorData};
use serde::Deserialize;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SummaryParams {
    /// One or two sentences on what this session is doing, shown to other peers.
    pub summary: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct GroupParams {
    /// Group name, e.g. "eng" or "eng/web".
    pub group: String,
    /// Your role in it (join only): lead, member, observer, or free text.
    pub role: Option<String>,
    /// Mesh name, when this session is in several.
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ProfileParams {
    /// A short avatar: an emoji or a few characters.
    pub avatar: Option<String>,
    /// Your title in the team, e.g. "backend reviewer".
    pub title: Option<String>,
    /// A few sentences about what this session is good for.
    pub bio: Option<String>,
    /// What you can do for others, e.g. ["rust", "code review"].
    pub capabilities: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct VisibleParams {
    /// false hides this session from peer lists, broadcasts and join/leave events (DMs and
    /// group messages still arrive); true shows it again.
    pub visible: bool,
}

#[tool_router(router = peers_tools, vis = "pub(crate)")]
impl MeshServer {
    #[tool(
        description = "List the peers (other agent sessions: Claude Code, Codex, Gemini CLI, ...) in the mesh with their status, summary, groups and host, and where a message to a member name goes.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_peers(
        &self,
        Parameters(p): Parameters<MeshParam>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let peers = link.client.list_peers().await.map_err(|e| e.to_string())?;
            Ok(format::peers(&link.mesh, &peers, &link.client.peer_key()))
        }
        .await;
        self.done(r).await
    }

    #[tool(
        description = "Tell other peers what this session is working on (one or two sentences).",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn set_summary(
        &self,
        Parameters(p): Parameters<SummaryParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            for l in self.links() {
                l.client
                    .set_summary(&p.summary)
                    .await
                    .map_err(|e| format!("mesh '{}': {e}", l.mesh))?;
            }
            Ok("summary updated".to_string())
        }
        .await;
        self.done(r).await
    }

    #[tool(
        description = "Join a group (messages to \"@group\" then reach you), with a role such as lead, member or observer.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn join_group(
        &self,
        Parameters(p): Parameters<GroupParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let role = p.role.unwrap_or_else(|| "member".into());
            link.client
                .join_group(&p.group, &role)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("joined @{} as {role}", p.group))
        }
        .await;
        self.done(r).await
    }

    #[tool(
        description = "List the mesh's groups with their members (peer name, member, role, online). A message to \"@eng\" also reaches members of \"@eng/web\".",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_groups(
        &self,
        Parameters(p): Parameters<MeshParam>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let groups = link.client.list_groups().await.map_err(|e| e.to_string())?;
            Ok(if groups.is_empty() {
                format!(
                    "no groups in mesh \"{}\" yet (join_group makes one)",
                    link.mesh
                )
            } else {
                format!(
                    "{} group(s) in mesh \"{}\":\n{}",
                    groups.len(),
                    link.mesh,
                    format::groups(&groups)
                )
            })
        }
        .await;
        self.done(r).await
    }

    #[tool(
        description = "Leave a group.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn leave_group(
        &self,
        Parameters(p): Parameters<GroupParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            link.client
                .leave_group(&p.group)
                .await
                .map_err(|e| e.to_string())?;
            Ok(format!("left @{}", p.group))
        }
        .await;
        self.done(r).await
    }

    #[tool(
        description = "Set this session's profile shown to peers in list_peers: avatar, title, bio, capabilities. Fields you leave out keep their current value; an empty string or list clears one.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn set_profile(
        &self,
        Parameters(p): Parameters<ProfileParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            for l in self.links() {
                let me = l.client.peer_key();
                let current = l
                    .client
                    .resolve(&[me.hex()])
                    .await
                    .map_err(|e| format!("mesh '{}': {e}", l.mesh))?;
                let mut profile = current
                    .into_iter()
                    .next()
                    .map(|i| i.profile)
                    .unwrap_or_default();
                if let Some(v) = &p.avatar {
                    profile.avatar = v.clone();
                }
                if let Some(v) = &p.title {
                    profile.title = v.clone();
                }
                if let Some(v) = &p.bio {
                    profile.bio = v.clone();
                }
                if let Some(v) = &p.capabilities {
                    profile.capabilities = v.clone();
                }
                l.client
                    .set_profile(&profile)
                    .await
                    .map_err(|e| format!("mesh '{}': {e}", l.mesh))?;
            }
            Ok("profile updated".to_string())
        }
        .await;
        self.done(r).await
    }

    #[tool(
        description = "Hide this session (visible=false) from peer lists, broadcasts and join/leave events, or show it again. Hidden sessions still receive direct and group messages.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn set_visible(
        &self,
        Parameters(p): Parameters<VisibleParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            for l in self.links() {
                l.client
                    .set_visible(p.visible)
                    .await
                    .map_err(|e| format!("mesh '{}': {e}", l.mesh))?;
            }
            Ok(if p.visible {
                "visible to peers"
            } else {
                "hidden from peer lists and broadcasts"
            }
            .to_string())
        }
        .await;
        self.done(r).await
    }
}
