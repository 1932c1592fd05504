//! A tiny HTTP/1.1 client for the broker's JSON endpoints (`/join`, `/health`), over plain
//! TCP (`http://`) or TLS (`https://`, see `tls`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("unsupported broker URL '{0}' (expected http://host:port or https://host)")]
    Url(String),
    #[error("cannot reach broker at {0}: {1}")]
    Connect(String, std::io::Error),
    #[error("TLS with broker at {0} failed: {1}")]
    Tls(String, String),
    #[error("broker at {0} did not answer in time")]
    Timeout(String),
    #[error("HTTP error talking to {0}: {1}")]
    Http(String, hyper::Error),
}

/// Where to connect, from `http(s)://host[:port][/...]`.
struct Target {
    /// `host:port` for the TCP connection.
    addr: String,
    /// The Host header.
    authority: String,
    /// TLS server name, for https.
    tls_host: Option<String>,
}

fn split(base: &str) -> Result<Target, HttpError> {
    let (rest, tls, default_port) = if let Some(r) = base.strip_prefix("https://") {
        (r, true, 443)
    } else if let Some(r) = base.strip_prefix("http://") {
        (r, false, 80)
    } else {
        return Err(HttpError::Url(base.to_string()));
    };
    let authority = rest.split('/').next().unwrap_or_default().to_string();
    if authority.is_empty() {
        return Err(HttpError::Url(base.to_string()));
    }
    let bad = || HttpError::Url(base.to_string());
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, rest) = v6.split_once(']').ok_or_else(bad)?;
        let port = rest
            .strip_prefix(':')
            .map(|p| p.parse::<u16>().map_err(|_| bad()))
            .transpose()?;
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p.parse::<u16>().map_err(|_| bad())?)),
            None => (authority.clone(), None),
        }
    };
    let port = port.unwrap_or(default_port);
    let addr = if authority.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    Ok(Target {
        addr,
        authority,
        tls_host: tls.then_some(host),
    })
}

/// Send one request; returns the status code and body.
pub async fn request(
    base: &str,
    method: &str,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<(u16, Bytes), HttpError> {
    let t = split(base)?;
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", &t.authority)
        .header("content-type", "application/json")
        .header(
            "user-agent",
            concat!("claudemesh/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|_| HttpError::Url(base.to_string()))?;
    let fut = async {
        let tcp = tokio::net::TcpStream::connect(&t.addr)
            .await
            .map_err(|e| HttpError::Connect(base.to_string(), e))?;
        let _ = tcp.set_nodelay(true);
        match &t.tls_host {
            None => exchange(base, tcp, req).await,
            Some(host) => {
                let cfg = super::tls::client_config()
                    .map_err(|e| HttpError::Tls(base.to_string(), e.to_string()))?;
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|_| HttpError::Url(base.to_string()))?;
                let tls = tokio_rustls::TlsConnector::from(cfg)
                    .connect(name, tcp)
                    .await
                    .map_err(|e| HttpError::Tls(base.to_string(), e.to_string()))?;
                exchange(base, tls, req).await
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), fut)
        .await
        .map_err(|_| HttpError::Timeout(base.to_string()))?
}

async fn exchange<IO>(
    base: &str,
    io: IO,
    req: Request<Full<Bytes>>,
) -> Result<(u16, Bytes), HttpError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| HttpError::Http(base.to_string(), e))?;
    tokio::spawn(conn);
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| HttpError::Http(base.to_string(), e))?;
    let status = resp.status().as_u16();
    let b = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| HttpError::Http(base.to_string(), e))?
        .to_bytes();
    Ok((status, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_split_into_address_host_header_and_tls_name() {
        let t = split("http://127.0.0.1:7900").unwrap();
        assert_eq!(
            (t.addr.as_str(), t.authority.as_str(), t.tls_host),
            ("127.0.0.1:7900", "127.0.0.1:7900", None)
        );
        let t = split("https://mesh.example.com/").unwrap();
        assert_eq!(
            (t.addr.as_str(), t.tls_host.as_deref()),
            ("mesh.example.com:443", Some("mesh.example.com"))
        );
        let t = split("https://mesh.example.com:8443").unwrap();
        assert_eq!(
            (t.addr.as_str(), t.tls_host.as_deref()),
            ("mesh.example.com:8443", Some("mesh.example.com"))
        );
        let t = split("http://[::1]:7900").unwrap();
        assert_eq!(t.addr, "[::1]:7900");
        assert!(split("ftp://x").is_err() && split("http://").is_err());
    }
}
