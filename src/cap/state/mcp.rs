//! The MCP tools of `state`: set_state, get_state, delete_state, list_state, watch_state,
//! unwatch_state (group "state" of `--tools`).

use crate::mcp::MeshServer;
use crate::proto::state::Entry;
use crate::proto::Json;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{tool, tool_router, ErrorData};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SetParams {
    /// Key, e.g. "deploy/status" (1 to 256 bytes).
    pub key: String,
    /// Any JSON value: object, array, string, number, bool or null (at most 64 KiB).
    pub value: serde_json::Value,
    /// Write only if the key is at this version now (0: only if it does not exist). A lost
    /// race is answered with the current version and value, nothing written.
    pub if_version: Option<u64>,
    /// The key vanishes this many seconds after this write.
    pub ttl_s: Option<u64>,
    /// Mesh name, when this session is in several.
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct KeyParams {
    pub key: String,
    /// Delete only: only if the key is at this version now.
    pub if_version: Option<u64>,
    /// Mesh name, when this session is in several.
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ListParams {
    /// Only keys starting with this.
    pub prefix: Option<String>,
    /// Mesh name, when this session is in several.
    pub mesh: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct WatchParams {
    /// Watch this key...
    pub key: Option<String>,
    /// ...or every key starting with this ("" for all keys).
    pub prefix: Option<String>,
    /// Mesh name, when this session is in several.
    pub mesh: Option<String>,
}

fn entry_json(e: &Entry) -> serde_json::Value {
    json!({
        "key": e.key,
        "value": e.value.value(),
        "version": e.version,
        "updated_by": e.updated_by,
        "updated_at": crate::util::rfc3339(e.updated_at_ms),
        "expires_at": e.expires_at_ms.map(crate::util::rfc3339),
    })
}

fn entry_line(e: &Entry) -> String {
    let exp = e
        .expires_at_ms
        .map(|t| format!(", expires {}", crate::util::rfc3339(t)))
        .unwrap_or_default();
    format!(
        "{} = {} (version {}, by {} at {}{exp})",
        e.key,
        crate::util::truncate(e.value.as_str(), 2000),
        e.version,
        e.updated_by,
        crate::util::rfc3339(e.updated_at_ms)
    )
}

fn watch_label(key: &Option<String>, prefix: &Option<String>) -> Result<String, String> {
    match (key, prefix) {
        (Some(k), None) => Ok(format!("state key:{k}")),
        (None, Some(p)) => Ok(format!("state prefix:{p}")),
        _ => Err("give exactly one of key or prefix (\"\" watches every key)".into()),
    }
}

#[tool_router(router = state_tools, vis = "pub(crate)")]
impl MeshServer {
    #[tool(
        description = "Set a shared key in the mesh's state to any JSON value. Other sessions read it with get_state and watchers are told. With if_version it is a compare-and-set: it writes only if the key is still at that version (0 = only if absent), else it answers with the current value and version.",
        annotations(
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = false,
            open_world_hint = false
        )
    )]
    async fn set_state(
        &self,
        Parameters(p): Parameters<SetParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let w = link
                .client
                .state_set(&p.key, Json::from_value(&p.value), p.if_version, p.ttl_s)
                .await
                .map_err(|e| e.to_string())?;
            let data = json!({
                "applied": w.applied,
                "version": w.version,
                "current": w.current.as_ref().map(entry_json),
            });
            let text = if w.applied {
                format!("set {} (version {})", p.key, w.version)
            } else {
                match &w.current {
                    Some(c) => format!(
                        "not set: {} is at version {}, not {} — current value: {}",
                        p.key,
                        w.version,
                        p.if_version.unwrap_or_default(),
                        entry_line(c)
                    ),
                    None => format!(
                        "not set: {} does not exist (use if_version 0, or leave if_version out)",
                        p.key
                    ),
                }
            };
            Ok((text, data))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "Read a key of the mesh's shared state: its JSON value, version, who set it and when.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_state(
        &self,
        Parameters(p): Parameters<KeyParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let e = link
                .client
                .state_get(&p.key)
                .await
                .map_err(|e| e.to_string())?;
            Ok(match e {
                Some(e) => (entry_line(&e), entry_json(&e)),
                None => (
                    format!("{} is not set in mesh \"{}\"", p.key, link.mesh),
                    serde_json::Value::Null,
                ),
            })
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "Delete a key of the mesh's shared state (with if_version: only if it is still at that version).",
        annotations(
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn delete_state(
        &self,
        Parameters(p): Parameters<KeyParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let (applied, existed, version) = link
                .client
                .state_delete(&p.key, p.if_version)
                .await
                .map_err(|e| e.to_string())?;
            let text = match (applied, existed) {
                (true, _) => format!("deleted {} (version {version})", p.key),
                (false, false) => format!("{} was not set; nothing deleted", p.key),
                (false, true) => format!(
                    "not deleted: {} is at version {version}, not {}",
                    p.key,
                    p.if_version.unwrap_or_default()
                ),
            };
            Ok((
                text,
                json!({"applied": applied, "existed": existed, "version": version}),
            ))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "List the keys of the mesh's shared state (optionally under a prefix) with their values and versions.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_state(
        &self,
        Parameters(p): Parameters<ListParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let link = self.link(p.mesh.as_deref())?;
            let prefix = p.prefix.unwrap_or_default();
            let (entries, truncated) = link
                .client
                .state_list(&prefix)
                .await
                .map_err(|e| e.to_string())?;
            let mut text = if entries.is_empty() {
                format!("no state keys{} in mesh \"{}\"", under(&prefix), link.mesh)
            } else {
                format!("{} key(s){}:\n", entries.len(), under(&prefix))
            };
            for e in &entries {
                text.push_str(&entry_line(e));
                text.push('\n');
            }
            if truncated {
                text.push_str("(more keys: narrow the prefix)\n");
            }
            let list: Vec<_> = entries.iter().map(entry_json).collect();
            Ok((text, json!({"entries": list, "truncated": truncated})))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "Watch a key (or every key under a prefix) of the mesh's shared state: each change arrives as a claudemesh event, also the ones made while this session was disconnected.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn watch_state(
        &self,
        Parameters(p): Parameters<WatchParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let label = watch_label(&p.key, &p.prefix)?;
            let link = self.link(p.mesh.as_deref())?;
            let (sub, next) = link
                .client
                .state_watch(p.key.as_deref(), p.prefix.as_deref(), None)
                .await
                .map_err(|e| e.to_string())?;
            if let Some((mesh, old)) = self.remember_sub(&label, &link.mesh, sub) {
                if let Some(l) = self.links().iter().find(|l| l.mesh == mesh) {
                    let _ = l.client.state_unwatch(old).await;
                }
            }
            Ok((
                format!("watching {} (changes from version {next} on)", &label[6..]),
                json!({"watch_id": sub, "next_version": next}),
            ))
        }
        .await;
        self.done_json(r).await
    }

    #[tool(
        description = "Stop watching a key or prefix of the mesh's shared state.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn unwatch_state(
        &self,
        Parameters(p): Parameters<WatchParams>,
    ) -> Result<CallToolResult, ErrorData> {
        let r = async {
            let label = watch_label(&p.key, &p.prefix)?;
            let Some((mesh, sub)) = self.forget_sub(&label) else {
                return Err(format!("not watching {}", &label[6..]));
            };
            if let Some(l) = self.links().iter().find(|l| l.mesh == mesh) {
                l.client
                    .state_unwatch(sub)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok((
                format!("stopped watching {}", &label[6..]),
                json!({"watch_id": sub}),
            ))
        }
        .await;
        self.done_json(r).await
    }
}

fn under(prefix: &str) -> String {
    if prefix.is_empty() {
        String::new()
    } else {
        format!(" under \"{prefix}\"")
    }
}
