//! A TCP proxy in front of the test PostgreSQL server that a test can cut (every connection
//! dropped, new ones refused), silence (every byte swallowed, as by a network that drops
//! packets: nothing fails, nothing answers) and restore: the database going away and coming
//! back, as the client sees it, without stopping a server other tests share.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub struct Proxy {
    port: u16,
    open: Arc<AtomicBool>,
    silent: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

/// `host:port` of a `postgres://user@host:port/db` DSN.
fn address(dsn: &str) -> String {
    let rest = dsn.split_once("://").map_or(dsn, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap().to_owned()
}

impl Proxy {
    pub async fn start(admin_dsn: &str) -> Proxy {
        let target = address(admin_dsn);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let silent = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (o, q, c) = (open.clone(), silent.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !o.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let (target, q) = (target.clone(), q.clone());
                let task = tokio::spawn(async move {
                    let (from_client, to_client) = client.into_split();
                    if q.load(Ordering::SeqCst) {
                        // Accepted, and never answered.
                        return swallow(from_client).await;
                    }
                    if let Ok(server) = TcpStream::connect(&target).await {
                        let (from_server, to_server) = server.into_split();
                        tokio::join!(
                            pump(from_client, to_server, q.clone()),
                            pump(from_server, to_client, q)
                        );
                    }
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy {
            port,
            open,
            silent,
            connections,
        }
    }

    /// A fresh database on the server, and a DSN that reaches it through the proxy.
    pub async fn dsn(&self, admin_dsn: &str, database: &str) -> String {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(admin_dsn).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {database}"))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        let (scheme, rest) = admin_dsn.split_once("://").unwrap();
        let user = rest.rsplit_once('@').map(|(u, _)| format!("{u}@"));
        format!(
            "{scheme}://{}127.0.0.1:{}/{database}",
            user.unwrap_or_default(),
            self.port
        )
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for c in self.connections.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Swallows every byte from now on, both ways, on open connections and new ones.
    pub fn silence(&self) {
        self.silent.store(true, Ordering::SeqCst);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
        self.silent.store(false, Ordering::SeqCst);
    }
}

/// Copies `from` to `to`, dropping what comes while `silent` is set.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, silent: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if silent.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Reads and drops everything until the peer goes.
async fn swallow(mut from: OwnedReadHalf) {
    let mut buf = vec![0u8; 64 * 1024];
    while matches!(from.read(&mut buf).await, Ok(n) if n > 0) {}
}

#[test]
fn addresses() {
    assert_eq!(
        address("postgres://postgres@127.0.0.1:54329/postgres"),
        "127.0.0.1:54329"
    );
    assert_eq!(
        address("postgres://u:p@db:5432/x?sslmode=disable"),
        "db:5432"
    );
}
