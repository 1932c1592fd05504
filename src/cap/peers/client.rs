//! The client side of `peers`: typed calls on [`Client`].

use crate::client::{Client, ClientError, ConnState};
use crate::proto::peers;
use crate::proto::{ErrorCode, PeerInfo, Profile, Response};

impl Client {
    /// Look peers up by name or key (offline peers included): every name must be held,
    /// else `UnknownTarget` naming the ones nobody holds.
    pub async fn resolve(&self, names: &[String]) -> Result<Vec<PeerInfo>, ClientError> {
        let results = self
            .call(
                peers::Request::Resolve {
                    names: names.to_vec(),
                },
                |r| match r {
                    Response::Peers(peers::Response::Resolve { results }) => Ok(results),
                    r => Err(r),
                },
            )
            .await?;
        let missing: Vec<String> = results
            .iter()
            .filter(|r| r.peer.is_none())
            .map(|r| format!("'{}'", r.name.chars().take(64).collect::<String>()))
            .collect();
        if !missing.is_empty() {
            let mesh = match self.state() {
                ConnState::Connected { mesh_name, .. } => mesh_name,
                _ => String::new(),
            };
            return Err(ClientError::Refused {
                code: ErrorCode::UnknownTarget,
                message: format!("unknown peer {} in mesh '{mesh}'", missing.join(", ")),
            });
        }
        Ok(results.into_iter().filter_map(|r| r.peer).collect())
    }

    pub async fn list_peers(&self) -> Result<Vec<PeerInfo>, ClientError> {
        self.call(peers::Request::List {}, |r| match r {
            Response::Peers(peers::Response::List { peers }) => Ok(peers),
            r => Err(r),
        })
        .await
    }

    /// Every group of the mesh's listed peers with its members and roles.
    pub async fn list_groups(&self) -> Result<Vec<peers::GroupInfo>, ClientError> {
        self.call(peers::Request::ListGroups {}, |r| match r {
            Response::Peers(peers::Response::ListGroups { groups }) => Ok(groups),
            r => Err(r),
        })
        .await
    }

    /// A `peers` change whose answer carries nothing.
    async fn peers_change(&self, q: peers::Request) -> Result<(), ClientError> {
        self.call(q, |r| match r {
            Response::Peers(
                peers::Response::SetSummary {}
                | peers::Response::SetProfile {}
                | peers::Response::SetVisible {}
                | peers::Response::JoinGroup {}
                | peers::Response::LeaveGroup {},
            ) => Ok(()),
            r => Err(r),
        })
        .await
    }

    pub async fn set_summary(&self, summary: &str) -> Result<(), ClientError> {
        self.peers_change(peers::Request::SetSummary {
            summary: summary.to_string(),
        })
        .await
    }

    pub async fn join_group(&self, group: &str, role: &str) -> Result<(), ClientError> {
        self.peers_change(peers::Request::JoinGroup {
            group: group.to_string(),
            role: role.to_string(),
        })
        .await
    }

    pub async fn leave_group(&self, group: &str) -> Result<(), ClientError> {
        self.peers_change(peers::Request::LeaveGroup {
            group: group.to_string(),
        })
        .await
    }

    pub async fn set_profile(&self, profile: &Profile) -> Result<(), ClientError> {
        self.peers_change(peers::Request::SetProfile {
            profile: profile.clone(),
        })
        .await
    }

    pub async fn set_visible(&self, visible: bool) -> Result<(), ClientError> {
        self.peers_change(peers::Request::SetVisible { visible })
            .await
    }
}
