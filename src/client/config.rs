//! The local side of identity: `~/.claudemesh` (or `$CLAUDEMESH_HOME`), holding the meshes
//! this machine joined (member keys, mesh key) and the meshes it owns (owner keys). Files
//! are written atomically with mode 0600 in a 0700 directory.

use crate::crypto::Identity;
use crate::proto::{Key, Role};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("cannot write {0}: {1}")]
    Write(String, std::io::Error),
    #[error("{0} is not valid claudemesh config: {1}")]
    Parse(String, serde_json::Error),
    #[error("{0}")]
    Select(String),
}

/// One joined mesh, as stored in `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MeshConfig {
    pub mesh_id: Key,
    pub mesh_name: String,
    /// Broker base URL, e.g. `http://127.0.0.1:7900`.
    pub broker: String,
    pub name: String,
    pub role: Role,
    pub member_secret: Key,
    pub member_xsecret: Key,
    pub mesh_key: Key,
    pub joined_ms: u64,
    /// MCP tool groups sessions offer for this mesh (`claudemesh tools`); `None`: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
}

impl MeshConfig {
    pub fn member(&self) -> Identity {
        Identity::from_secrets(self.member_secret.0, self.member_xsecret.0)
    }
    /// The peer identity for a session: the same session id always gives the same keys.
    pub fn peer(&self, session_id: &str) -> Identity {
        self.member()
            .derive(&self.mesh_id.0, &format!("session:{session_id}"))
    }
    /// `ws://host:port/ws` (or `wss://`) from the broker base URL.
    pub fn ws_url(&self) -> String {
        ws_url(&self.broker)
    }
}

/// Turn an http(s) base URL into the broker's WebSocket URL.
pub fn ws_url(base: &str) -> String {
    let b = base.trim_end_matches('/');
    let b = if let Some(r) = b.strip_prefix("https://") {
        format!("wss://{r}")
    } else if let Some(r) = b.strip_prefix("http://") {
        format!("ws://{r}")
    } else {
        b.to_string()
    };
    format!("{b}/ws")
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientConfig {
    pub version: u32,
    pub meshes: Vec<MeshConfig>,
}

/// A mesh this machine created: the owner's keys and the mesh key (never sent to the broker).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OwnedMesh {
    pub name: String,
    pub mesh_id: Key,
    pub owner_secret: Key,
    pub owner_xsecret: Key,
    pub mesh_key: Key,
    pub broker: String,
    pub created_ms: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Owned {
    pub meshes: Vec<OwnedMesh>,
}

/// The client's home directory.
#[derive(Debug, Clone)]
pub struct Home {
    pub dir: PathBuf,
}

impl Home {
    /// `$CLAUDEMESH_HOME`, else `~/.claudemesh`.
    pub fn from_env() -> Home {
        if let Some(d) = std::env::var_os("CLAUDEMESH_HOME").filter(|d| !d.is_empty()) {
            return Home {
                dir: PathBuf::from(d),
            };
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        Home {
            dir: home.join(".claudemesh"),
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    pub fn owned_path(&self) -> PathBuf {
        self.dir.join("owned.json")
    }

    /// Where a session's seen-message ids live (client-side dedupe across restarts).
    pub fn seen_path(&self, mesh_id: &Key, session_id: &str) -> PathBuf {
        let safe: String = session_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(64)
            .collect();
        self.dir
            .join("seen")
            .join(format!("{}-{}.ids", &mesh_id.hex()[..16], safe))
    }

    /// Note that a Claude Code session ran as a peer of this mesh (for `status`). The
    /// file's modification time is when it last started.
    pub fn record_session(
        &self,
        mesh_id: &Key,
        session_id: &str,
        name: &str,
    ) -> Result<(), ConfigError> {
        let dir = self.dir.join("sessions");
        std::fs::create_dir_all(&dir)
            .map_err(|e| ConfigError::Write(dir.display().to_string(), e))?;
        let safe: String = session_id
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .take(64)
            .collect();
        let p = dir.join(format!("{}-{}", &mesh_id.hex()[..16], safe));
        let body = serde_json::json!({"session_id": session_id, "name": name}).to_string();
        std::fs::write(&p, body).map_err(|e| ConfigError::Write(p.display().to_string(), e))?;
        // Sessions not started for 30 days are forgotten (their peers stay reachable).
        let month = std::time::Duration::from_secs(30 * 24 * 3600);
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > month);
            if old {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }

    /// Sessions recorded for a mesh, newest first: `(session_id, name)`.
    pub fn sessions(&self, mesh_id: &Key, limit: usize) -> Vec<(String, String)> {
        let prefix = format!("{}-", &mesh_id.hex()[..16]);
        let Ok(rd) = std::fs::read_dir(self.dir.join("sessions")) else {
            return vec![];
        };
        let mut v: Vec<(std::time::SystemTime, String, String)> = rd
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .filter_map(|e| {
                let t = e.metadata().and_then(|m| m.modified()).ok()?;
                let j: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
                Some((
                    t,
                    j["session_id"].as_str()?.to_string(),
                    j["name"].as_str().unwrap_or_default().to_string(),
                ))
            })
            .collect();
        v.sort_by_key(|x| std::cmp::Reverse(x.0));
        v.into_iter().take(limit).map(|(_, s, n)| (s, n)).collect()
    }

    pub fn load(&self) -> Result<ClientConfig, ConfigError> {
        read_json(&self.config_path()).map(|c| {
            c.unwrap_or(ClientConfig {
                version: 1,
                meshes: vec![],
            })
        })
    }

    pub fn save(&self, c: &ClientConfig) -> Result<(), ConfigError> {
        write_private(
            &self.config_path(),
            &serde_json::to_vec_pretty(c).unwrap_or_default(),
        )
    }

    pub fn load_owned(&self) -> Result<Owned, ConfigError> {
        read_json(&self.owned_path()).map(Option::unwrap_or_default)
    }

    pub fn save_owned(&self, o: &Owned) -> Result<(), ConfigError> {
        write_private(
            &self.owned_path(),
            &serde_json::to_vec_pretty(o).unwrap_or_default(),
        )
    }

    /// Pick a joined mesh: by name or id when given, else the only one.
    pub fn select(&self, mesh: Option<&str>) -> Result<MeshConfig, ConfigError> {
        let c = self.load()?;
        match mesh {
            Some(m) => c
                .meshes
                .iter()
                .find(|x| x.mesh_name == m || x.mesh_id.hex() == m)
                .cloned()
                .ok_or_else(|| {
                    ConfigError::Select(format!(
                        "not joined to a mesh named '{m}' (see `claudemesh whoami`)"
                    ))
                }),
            None => match c.meshes.len() {
                0 => Err(ConfigError::Select(
                    "not joined to any mesh yet: run `claudemesh join <invite>`".into(),
                )),
                1 => Ok(c.meshes[0].clone()),
                _ => Err(ConfigError::Select(format!(
                    "joined to several meshes ({}); pick one with --mesh",
                    c.meshes
                        .iter()
                        .map(|m| m.mesh_name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            },
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Result<Option<T>, ConfigError> {
    match std::fs::read(p) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| ConfigError::Parse(p.display().to_string(), e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::Read(p.display().to_string(), e)),
    }
}

/// Write a file atomically (temp + rename) with mode 0600, creating its directory 0700.
pub fn write_private(p: &Path, data: &[u8]) -> Result<(), ConfigError> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |e| ConfigError::Write(p.display().to_string(), e);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let tmp = p.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, p).map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_url_is_derived_from_the_broker_base() {
        assert_eq!(ws_url("http://127.0.0.1:7900"), "ws://127.0.0.1:7900/ws");
        assert_eq!(
            ws_url("https://mesh.example.com/"),
            "wss://mesh.example.com/ws"
        );
    }

    #[test]
    fn config_files_are_private_and_round_trip() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let home = Home {
            dir: d.path().join("h"),
        };
        let mut c = home.load().unwrap();
        assert!(c.meshes.is_empty());
        c.meshes.push(MeshConfig {
            mesh_id: Key([1; 32]),
            mesh_name: "m".into(),
            broker: "http://x".into(),
            name: "alice".into(),
            role: Role::Member,
            member_secret: Key([2; 32]),
            member_xsecret: Key([3; 32]),
            mesh_key: Key([4; 32]),
            joined_ms: 5,
            tools: Some(vec!["msg".into()]),
        });
        home.save(&c).unwrap();
        let mode = std::fs::metadata(home.config_path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(home.load().unwrap().meshes, c.meshes);
        assert_eq!(home.select(None).unwrap().name, "alice");
        assert!(home.select(Some("nope")).is_err());
    }

    #[test]
    fn corrupt_config_is_a_clear_error() {
        let d = tempfile::tempdir().unwrap();
        let home = Home {
            dir: d.path().to_path_buf(),
        };
        std::fs::write(home.config_path(), b"{not json").unwrap();
        let e = home.load().unwrap_err().to_string();
        assert!(e.contains("not valid claudemesh config"), "{e}");
    }
}
