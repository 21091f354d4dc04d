//! The operations endpoint: `/metrics` (Prometheus), `/healthz` (the process runs) and `/readyz`
//! (the caches are filled, or this replica is standing by for the lease).
//!
//! Three GET routes need no web framework: a request line is read, a response written, the
//! connection closed. Requests are bounded in size and time so a slow client cannot hold a task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::metrics::Metrics;

/// What the endpoint reports.
#[derive(Default)]
pub struct Health {
    /// Set once the controller can act (caches filled) or is standing by for the lease.
    pub ready: AtomicBool,
    /// The metrics.
    pub metrics: Metrics,
}

/// The response to a request line such as `GET /metrics HTTP/1.1`: status line and body.
pub fn respond(health: &Health, request_line: &str) -> (&'static str, String) {
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "GET" {
        return ("405 Method Not Allowed", "only GET\n".into());
    }
    match path.split('?').next().unwrap_or("") {
        "/metrics" => ("200 OK", health.metrics.render()),
        "/healthz" => ("200 OK", "ok\n".into()),
        "/readyz" if health.ready.load(Ordering::Relaxed) => ("200 OK", "ready\n".into()),
        "/readyz" => (
            "503 Service Unavailable",
            "not ready: caches are filling\n".into(),
        ),
        _ => ("404 Not Found", "not found\n".into()),
    }
}

/// Serves until the listener fails.
pub async fn serve(addr: SocketAddr, health: Arc<Health>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    loop {
        let (mut socket, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                continue;
            }
        };
        let health = health.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while len < buf.len() {
                    let n = socket.read(&mut buf[len..]).await?;
                    if n == 0 {
                        break;
                    }
                    len += n;
                    if buf[..len].windows(2).any(|w| w == b"\r\n") {
                        break;
                    }
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                return;
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let line = head.lines().next().unwrap_or("");
            let (status, body) = respond(&health, line);
            let content_type = if body.starts_with("# HELP") {
                "text/plain; version=0.0.4"
            } else {
                "text/plain"
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let h = Health::default();
        assert_eq!(respond(&h, "GET /healthz HTTP/1.1").0, "200 OK");
        assert_eq!(
            respond(&h, "GET /readyz HTTP/1.1").0,
            "503 Service Unavailable"
        );
        h.ready.store(true, Ordering::Relaxed);
        assert_eq!(respond(&h, "GET /readyz HTTP/1.1").0, "200 OK");
        let (status, body) = respond(&h, "GET /metrics HTTP/1.1");
        assert_eq!(status, "200 OK");
        assert!(body.contains("# TYPE suborg_leader gauge"));
        assert_eq!(respond(&h, "GET /nope HTTP/1.1").0, "404 Not Found");
        assert_eq!(
            respond(&h, "POST /metrics HTTP/1.1").0,
            "405 Method Not Allowed"
        );
    }

    #[tokio::test]
    async fn serves_over_tcp() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let health = Arc::new(Health::default());
        tokio::spawn(serve(addr, health));
        let mut stream = loop {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => break s,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with("\r\n\r\nok\n"), "{response}");
    }
}
