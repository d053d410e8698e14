//! The harness's own parts, on loopback: the fenced resource's verdicts and
//! the failover proxy's cut. (The runs themselves are exercised by
//! `scripts/test`, against real servers.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lockkit_safety::history::Event;
use lockkit_safety::proxy::Proxy;
use lockkit_safety::resource::{Resource, WriteRequest, Writer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::test]
async fn the_resource_accepts_a_token_at_least_the_highest_and_records_every_attempt() {
    let history = Arc::new(Mutex::new(Vec::new()));
    let resource = Resource::start(Arc::clone(&history))
        .await
        .expect("resource");
    let mut first = Writer::connect(resource.address()).await.expect("connect");
    let mut second = Writer::connect(resource.address()).await.expect("connect");
    let write = |client, token, op| WriteRequest { client, token, op };
    assert!(first.write(write(1, 5, 1)).await.expect("write"));
    assert!(second.write(write(2, 7, 1)).await.expect("write"));
    assert!(
        second.write(write(2, 7, 2)).await.expect("write"),
        "an equal token is accepted"
    );
    assert!(
        !first.write(write(1, 5, 2)).await.expect("write"),
        "a lower token is refused"
    );
    let verdicts: Vec<(u32, u64, bool)> = history
        .lock()
        .expect("history")
        .iter()
        .map(|event| match event {
            Event::Write {
                client,
                op,
                accepted,
                ..
            } => (*client, *op, *accepted),
            other => panic!("the resource recorded {other:?}"),
        })
        .collect();
    assert_eq!(
        verdicts,
        [(1, 1, true), (2, 1, true), (2, 2, true), (1, 2, false)]
    );
}

/// An echo server: what it reads, it writes back.
async fn echo() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 64];
                while let Ok(read) = stream.read(&mut buffer).await {
                    if read == 0 || stream.write_all(&buffer[..read]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    address
}

#[tokio::test]
async fn a_cut_proxy_stops_the_bytes_and_pointing_it_elsewhere_drops_the_connection() {
    let proxy = Proxy::start(echo().await).await.expect("proxy");
    let mut stream = tokio::net::TcpStream::connect(proxy.address())
        .await
        .expect("connect");
    let mut buffer = [0u8; 4];
    stream.write_all(b"ping").await.expect("write");
    stream.read_exact(&mut buffer).await.expect("echo");
    assert_eq!(&buffer, b"ping");

    proxy.cut();
    // Give the forwarding task the cut before the next bytes.
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream
        .write_all(b"pong")
        .await
        .expect("a cut keeps the connection open");
    let silent = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buffer)).await;
    assert!(silent.is_err(), "no byte crosses a cut: {silent:?}");

    proxy.point_to(echo().await);
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .expect("the connection ends when the proxy moves");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");

    let mut fresh = tokio::net::TcpStream::connect(proxy.address())
        .await
        .expect("connect");
    fresh.write_all(b"next").await.expect("write");
    fresh.read_exact(&mut buffer).await.expect("echo");
    assert_eq!(&buffer, b"next", "a new connection reaches the new target");
}
