//! The operations endpoint (axum): `/metrics` (Prometheus), `/healthz` (the process runs) and
//! `/readyz` (the caches are filled, or this replica is standing by for the lease).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::metrics::{self, Metrics};

/// What the endpoint reports.
#[derive(Default)]
pub struct Health {
    /// Set once the controller can act (caches filled) or is standing by for the lease.
    pub ready: AtomicBool,
    /// The metrics.
    pub metrics: Metrics,
}

/// The routes: GET only (anything else is `405`), unknown paths `404`.
pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(health)
}

async fn render_metrics(State(health): State<Arc<Health>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        health.metrics.render(),
    )
}

async fn ready(State(health): State<Arc<Health>>) -> (StatusCode, &'static str) {
    if health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: caches are filling\n",
        )
    }
}

/// Serves until the listener fails.
pub async fn serve(addr: SocketAddr, health: Arc<Health>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, router(health)).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Sends `request` to a fresh server and returns the whole response.
    async fn exchange(health: Arc<Health>, request: &str) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(health)).await });
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
            .await
            .expect("the server answers and closes")
            .unwrap();
        response
    }

    fn get(path: &str) -> String {
        format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    }

    #[tokio::test]
    async fn routes() {
        let h = Arc::new(Health::default());
        let r = exchange(h.clone(), &get("/healthz")).await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.ends_with("\r\n\r\nok\n"), "{r}");
        let r = exchange(h.clone(), &get("/readyz")).await;
        assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{r}");
        h.ready.store(true, Ordering::Relaxed);
        let r = exchange(h.clone(), &get("/readyz")).await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        let r = exchange(h.clone(), &get("/metrics")).await;
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(
            r.contains("content-type: application/openmetrics-text"),
            "{r}"
        );
        assert!(r.contains("# TYPE suborg_leader gauge"), "{r}");
        let r = exchange(h.clone(), &get("/nope")).await;
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"), "{r}");
        let r = exchange(
            h,
            "POST /metrics HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
    }
}
