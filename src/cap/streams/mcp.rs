//! The MCP tools of `streams`: create_stream, publish, subscribe, unsubscribe, read_stream,
//! list_streams (group "streams" of `--tools`).

use super::client::{info_line, Limits};
use crate::mcp::MeshServer;
use crate::proto::Json;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router, ErrorData};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateParams {
    /// Stream name, e.g. "build/events".
    pub name: String,
    /// Keep at most this many messages.
    pub max_msgs: Option<u64>,
    /// Keep at most this many bytes.
    pub max_bytes: Option<u64>,
    /// Drop messages older than this many seconds.
    pub max_age_s: Option<u64>,
    /// Mesh name, when this session is in several.
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct PublishParams {
    pub stream: String,
    /// Any JSON value (at most 64 KiB).
    pub data: serde_json::Value,
    /// Mesh name, when this session is in several.
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SubscribeParams {
    pub stream: String,
    /// Start at this sequence (replay)...
    pub from_seq: Option<u64>,
    /// ...or with the last n messages; neither: from now on.
    pub last: Option<u64>,
    /// Mesh name, when this session is in several.
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ReadParams {
    pub stream: String,
    /// First sequence to read (1 = the beginning).
    pub from_seq: Option<u64>,
    /// At most this many (default 50, at most 1000).
    pub limit: Option<u32>,
    /// Mesh name, when this session is in several.
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct NameParams {
    pub stream: String,
    /// Mesh name, when this session is in several.
    pub mesh: Option<String>,
}

#[tool_router(router = streams_tools, vis = "pub(crate)")]
impl MeshServer {
    #[tool(
        description = "Create a named message stream in the mesh (or change its limits): bounded history that sessions publish to, read from any offset and subscribe to.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn create_stream(
        &self,
        Parameters(p): Parameters<CreateParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let l = Limits {
                max_msgs: p.max_msgs,
                max_bytes: p.max_bytes,
                max_age_s: p.max_age_s,
            };
            let s = link
                .client
                .stream_create(&p.name, l)
                .await
                .map_err(|e| e.to_string())?;
            Ok((
                format!("stream ready: {}", info_line(&s)),
                serde_json::to_value(&s).unwrap_or_default(),
            ))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "Publish a JSON message to a stream of the mesh; subscribers get it.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn publish(
        &self,
        Parameters(p): Parameters<PublishParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let seq = link
                .client
                .publish(&p.stream, Json::from_value(&p.data))
                .await
                .map_err(|e| e.to_string())?;
            Ok((
                format!("published to {} (seq {seq})", p.stream),
                json!({"seq": seq}),
            ))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "Subscribe to a stream: its messages arrive as claudemesh events, from a sequence, the last n, or from now on; also the ones published while this session was disconnected.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn subscribe(
        &self,
        Parameters(p): Parameters<SubscribeParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let (sub, next, first) = link
                .client
                .stream_subscribe(&p.stream, p.from_seq, p.last)
                .await
                .map_err(|e| e.to_string())?;
            let label = format!("stream {}", p.stream);
            if let Some((mesh, old)) = self.remember_sub(&label, &link.mesh, sub) {
                if let Some(l) = self.links().iter().find(|l| l.mesh == mesh) {
                    let _ = l.client.stream_unsubscribe(old).await;
                }
            }
            Ok((
                format!(
                    "subscribed to {} from seq {next} (oldest kept {first})",
                    p.stream
                ),
                json!({"subscription_id": sub, "next_seq": next, "first_seq": first}),
            ))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "Stop a stream subscription.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn unsubscribe(
        &self,
        Parameters(p): Parameters<NameParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let Some((mesh, sub)) = self.forget_sub(&format!("stream {}", p.stream)) else {
                return Err(format!("not subscribed to {}", p.stream));
            };
            if let Some(l) = self.links().iter().find(|l| l.mesh == mesh) {
                l.client
                    .stream_unsubscribe(sub)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok((
                format!("unsubscribed from {}", p.stream),
                json!({"subscription_id": sub}),
            ))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "Read messages of a stream from a sequence on (replay its history).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn read_stream(
        &self,
        Parameters(p): Parameters<ReadParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let (msgs, first, last) = link
                .client
                .read_stream(&p.stream, p.from_seq.unwrap_or(1), p.limit.unwrap_or(50))
                .await
                .map_err(|e| e.to_string())?;
            let mut text = format!(
                "{} message(s) of {} (kept seq {first}..{last}):",
                msgs.len(),
                p.stream
            );
            for m in &msgs {
                text.push_str(&format!(
                    "\n#{} {} at {}: {}",
                    m.seq,
                    m.by,
                    crate::util::rfc3339(m.at_ms),
                    crate::util::truncate(m.data.as_str(), 2000)
                ));
            }
            let list: Vec<_> = msgs
                .iter()
                .map(|m| json!({"seq": m.seq, "by": m.by, "at": crate::util::rfc3339(m.at_ms), "data": m.data.value()}))
                .collect();
            Ok((text, json!({"messages": list, "first_seq": first, "last_seq": last})))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "List the mesh's streams with their sizes and limits.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_streams(
        &self,
        Parameters(p): Parameters<crate::mcp::MeshParam>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let s = link
                .client
                .list_streams()
                .await
                .map_err(|e| e.to_string())?;
            let mut text = if s.is_empty() {
                "no streams (create_stream makes one)".to_string()
            } else {
                format!("{} stream(s):", s.len())
            };
            for x in &s {
                text.push('\n');
                text.push_str(&info_line(x));
            }
            Ok((text, json!({"streams": s})))
        }
        .await;
        self.done_json(r).await
    }
}
