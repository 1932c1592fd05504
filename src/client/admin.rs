//! The operator's side of the broker's admin socket: one request, one reply.

use crate::proto::admin::{AdminReply, AdminRequest, SOCKET_NAME};
use std::path::Path;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Errors talking to the admin socket (the operator's CLI side).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot reach the broker's admin socket at {0} ({1}); is `claudemesh serve` running with this --data-dir?")]
    Connect(String, std::io::Error),
    #[error("admin socket I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed admin reply: {0}")]
    Reply(#[from] serde_json::Error),
    #[error("{0}")]
    Refused(String),
}

/// Send one request to a running broker's admin socket.
pub async fn call(data_dir: &Path, req: &AdminRequest) -> Result<serde_json::Value, AdminError> {
    let path = data_dir.join(SOCKET_NAME);
    let stream = tokio::net::UnixStream::connect(&path)
        .await
        .map_err(|e| AdminError::Connect(path.display().to_string(), e))?;
    let (r, mut w) = stream.into_split();
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    w.write_all(&line).await?;
    let mut lines = BufReader::new(r).lines();
    let reply = lines.next_line().await?.unwrap_or_default();
    let reply: AdminReply = serde_json::from_str(&reply)?;
    if reply.ok {
        Ok(reply.data)
    } else {
        Err(AdminError::Refused(
            reply.error.unwrap_or_else(|| "refused".into()),
        ))
    }
}
