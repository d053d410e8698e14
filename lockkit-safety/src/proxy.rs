//! A TCP forwarder the failover scenarios put between processes, to cut
//! them apart. The clients reach the Redis primary through one, as through
//! a virtual IP or a Sentinel-aware proxy: pointing it at the promoted
//! replica drops every open connection, so clients reconnect — to the new
//! primary. The replica replicates through another: cutting it is a
//! network partition (bytes stop, connections stay open), which SIGSTOP is
//! not (the kernel buffers what a stopped process would have read).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The running forwarder; dropping it stops it and its connections.
#[derive(Debug)]
pub struct Proxy {
    address: SocketAddr,
    target: Arc<watch::Sender<SocketAddr>>,
    cut: Arc<watch::Sender<bool>>,
    server: JoinHandle<()>,
}

impl Proxy {
    /// Starts forwarding from a free loopback port to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let target = Arc::new(watch::channel(target).0);
        let cut = Arc::new(watch::channel(false).0);
        let server = {
            let (target, cut) = (Arc::clone(&target), Arc::clone(&cut));
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    tokio::spawn(forward(client, target.subscribe(), cut.subscribe()));
                }
            })
        };
        Ok(Self {
            address,
            target,
            cut,
            server,
        })
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Sends new connections to `target`, drops the open ones, and heals a cut.
    pub fn point_to(&self, target: SocketAddr) {
        self.cut.send_replace(false);
        self.target.send_replace(target);
    }

    /// Cuts the open connections: no byte crosses either way, but both
    /// ends stay open, until [`point_to`](Self::point_to) or the drop.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.server.abort();
        // Open connections end when their receiver sees the sender gone.
    }
}

/// Forwards one connection until either side closes or the target moves;
/// a cut stops the bytes and holds both ends open until then.
async fn forward(
    mut client: TcpStream,
    mut target: watch::Receiver<SocketAddr>,
    mut cut: watch::Receiver<bool>,
) {
    let address = *target.borrow_and_update();
    let Ok(mut server) = TcpStream::connect(address).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = target.changed() => {}
        _ = async { while !*cut.borrow_and_update() && cut.changed().await.is_ok() {} } => {
            let _ = target.changed().await;
        }
    }
}
