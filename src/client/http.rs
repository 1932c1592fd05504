//! A tiny HTTP/1.1 client for the broker's JSON endpoints (`/join`, `/health`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("unsupported broker URL '{0}' (expected http://host:port)")]
    Url(String),
    #[error("cannot reach broker at {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("broker at {0} did not answer in time")]
    Timeout(String),
    #[error("HTTP error talking to {0}: {1}")]
    Http(String, hyper::Error),
}

/// (host:port, authority) from `http://host[:port][/...]`.
fn split(base: &str) -> Result<(String, String), HttpError> {
    let rest = base.strip_prefix("http://").ok_or_else(|| HttpError::Url(base.to_string()))?;
    let authority = rest.split('/').next().unwrap_or_default().to_string();
    if authority.is_empty() {
        return Err(HttpError::Url(base.to_string()));
    }
    let addr = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        authority.clone()
    } else {
        format!("{authority}:80")
    };
    Ok((addr, authority))
}

/// Send one request; returns the status code and body.
pub async fn request(base: &str, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<(u16, Bytes), HttpError> {
    let (addr, authority) = split(base)?;
    let fut = async {
        let tcp = tokio::net::TcpStream::connect(&addr).await.map_err(|e| HttpError::Connect(base.to_string(), e))?;
        let _ = tcp.set_nodelay(true);
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| HttpError::Http(base.to_string(), e))?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", authority)
            .header("content-type", "application/json")
            .header("user-agent", concat!("claudemesh/", env!("CARGO_PKG_VERSION")))
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|_| HttpError::Url(base.to_string()))?;
        let resp = send.send_request(req).await.map_err(|e| HttpError::Http(base.to_string(), e))?;
        let status = resp.status().as_u16();
        let b = resp.into_body().collect().await.map_err(|e| HttpError::Http(base.to_string(), e))?.to_bytes();
        Ok((status, b))
    };
    tokio::time::timeout(Duration::from_secs(15), fut).await.map_err(|_| HttpError::Timeout(base.to_string()))?
}
