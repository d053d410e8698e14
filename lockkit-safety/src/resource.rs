//! The fenced resource: a small server of the harness that every client
//! writes to. It accepts a write only if its fencing token is at least the
//! highest it has accepted, and records every attempt as an
//! [`Event::Write`].
//!
//! The protocol is one JSON line per write, `{"client":1,"token":7,"op":3}`,
//! answered by one line, `1` (accepted) or `0` (refused).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::clock::now_ns;
use crate::history::Event;

/// One write, as a client sends it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteRequest {
    /// The writing client.
    pub client: u32,
    /// The fencing token it holds (or believes it holds).
    pub token: u64,
    /// Its operation number.
    pub op: u64,
}

/// The running resource; dropping it stops the server.
#[derive(Debug)]
pub struct Resource {
    address: SocketAddr,
    server: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Fence {
    highest: u64,
}

impl Resource {
    /// Starts the resource on a free loopback port; its verdicts go to `history`.
    pub async fn start(history: Arc<Mutex<Vec<Event>>>) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let fence = Arc::new(Mutex::new(Fence::default()));
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (fence, history) = (Arc::clone(&fence), Arc::clone(&history));
                tokio::spawn(serve(stream, fence, history));
            }
        });
        Ok(Self { address, server })
    }

    /// Where clients write.
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Resource {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Serves one client's connection until it closes or sends a bad line.
async fn serve(stream: TcpStream, fence: Arc<Mutex<Fence>>, history: Arc<Mutex<Vec<Event>>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(request) = serde_json::from_str::<WriteRequest>(&line) else {
            eprintln!("lockkit-safety: the resource refused a malformed write: {line}");
            return;
        };
        let accepted = {
            // One verdict at a time: the check and the record are one step.
            let mut fence = fence
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let at_ns = now_ns();
            let accepted = request.token >= fence.highest;
            if accepted {
                fence.highest = request.token;
            }
            history
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(Event::Write {
                    at_ns,
                    client: request.client,
                    token: request.token,
                    op: request.op,
                    accepted,
                });
            accepted
        };
        let reply: &[u8] = if accepted { b"1\n" } else { b"0\n" };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}

/// A client's connection to the resource.
#[derive(Debug)]
pub struct Writer {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl Writer {
    /// Connects to the resource at `address`.
    pub async fn connect(address: SocketAddr) -> std::io::Result<Self> {
        let (read, write) = TcpStream::connect(address).await?.into_split();
        Ok(Self {
            lines: BufReader::new(read).lines(),
            write,
        })
    }

    /// Writes once; whether the resource accepted it.
    pub async fn write(&mut self, request: WriteRequest) -> std::io::Result<bool> {
        let mut line = serde_json::to_vec(&request).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.write.write_all(&line).await?;
        match self.lines.next_line().await?.as_deref() {
            Some("1") => Ok(true),
            Some("0") => Ok(false),
            other => Err(std::io::Error::other(format!(
                "the resource answered {other:?}"
            ))),
        }
    }
}
