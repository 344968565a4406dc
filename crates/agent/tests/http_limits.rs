//! The HTTP servers' limits against real sockets: slow clients, a flood of
//! them beyond the connection cap, an endless header and an endless body
//! cannot stop `/healthz` answering. The limits are shortened here (real
//! time: hyper's header timer and the sockets do not follow tokio's paused
//! clock); production uses `Limits::default()`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kube_ipvs::health::Health;
use kube_ipvs::http::{serve_health, Limits, MAX_HEADER_BYTES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const HEAD: &str = "GET /healthz HTTP/1.1\r\nHost: node\r\n";

async fn server(limits: Limits) -> SocketAddr {
    let health = Health::new(Duration::from_secs(60));
    health.synced();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_health(listener, health, limits));
    addr
}

/// A client that sends part of a request head and never the rest.
async fn slow_client(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(HEAD.as_bytes()).await.unwrap();
    stream
}

/// How long until the server closes `stream` (EOF or reset), reading and
/// discarding whatever it answers first; `None` if it is still open after
/// `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return start.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// Reads one response with a `Content-Length` body: its status line and
/// body; `None` if the connection closes first.
async fn read_response(stream: &mut TcpStream) -> Option<(String, String)> {
    let mut data = Vec::new();
    let mut buf = [0; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .map_or(0, |n| n.trim().parse().unwrap());
            if data.len() >= end + 4 + length {
                let body = String::from_utf8_lossy(&data[end + 4..end + 4 + length]).into_owned();
                let status = head.lines().next().unwrap().to_owned();
                return Some((status, body));
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
}

/// A whole `/healthz` request on a new connection: the status line, and
/// how long the answer took.
async fn healthz(addr: SocketAddr) -> (String, Duration) {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("{HEAD}\r\n").as_bytes())
        .await
        .unwrap();
    let (status, body) = read_response(&mut stream).await.expect("an answer");
    assert!(body.contains("lastUpdated"), "{body}");
    (status, start.elapsed())
}

#[tokio::test]
async fn slow_clients_are_closed_after_the_header_timeout() {
    let timeout = Duration::from_millis(400);
    let addr = server(Limits {
        header_read_timeout: timeout,
        ..Limits::default()
    })
    .await;
    let start = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut partial = slow_client(addr).await;
    // One byte every 50 ms: each read is quick, the head never ends. The
    // timeout bounds the whole head, not each read.
    let mut trickle = slow_client(addr).await;
    trickle.write_all(b"X-Slow: ").await.unwrap();
    let trickling = tokio::spawn(async move {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if trickle.write_all(b"a").await.is_err() {
                return Some(start.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    });

    // Meanwhile /healthz answers at once.
    let (status, took) = healthz(addr).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(took < timeout / 2, "took {took:?}");

    for stream in [&mut silent, &mut partial] {
        closed_within(stream, Duration::from_secs(3))
            .await
            .expect("closed");
        // Both opened at `start`; the second is found closed as soon as the
        // first is.
        let closed = start.elapsed();
        assert!(
            closed >= timeout - Duration::from_millis(100) && closed < timeout * 3,
            "closed after {closed:?}"
        );
    }
    // The trickling client notices when a write fails, a little later.
    let failed = trickling.await.unwrap().expect("the trickle was cut");
    assert!(failed < timeout * 4, "cut after {failed:?}");
}

#[tokio::test]
async fn a_flood_beyond_the_cap_closes_the_oldest_and_healthz_answers() {
    let cap = 4;
    // A header timeout far beyond the test: only the cap can free a place.
    let addr = server(Limits {
        header_read_timeout: Duration::from_secs(30),
        max_connections: cap,
        ..Limits::default()
    })
    .await;
    let mut flood = Vec::new();
    for _ in 0..50 {
        flood.push(slow_client(addr).await);
    }
    let (status, took) = healthz(addr).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(took < Duration::from_secs(1), "took {took:?}");

    // The server holds at most `cap` connections: the newest slow ones, and
    // the /healthz client's (kept alive).
    let mut open = Vec::new();
    for (i, stream) in flood.iter_mut().enumerate() {
        if closed_within(stream, Duration::from_millis(100))
            .await
            .is_none()
        {
            open.push(i);
        }
    }
    assert_eq!(open, [47, 48, 49], "still open");
}

#[tokio::test]
async fn an_endless_header_is_refused_and_closed() {
    let addr = server(Limits::default()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.split();
    let writing = async {
        write.write_all(HEAD.as_bytes()).await.unwrap();
        write.write_all(b"X-Endless: ").await.unwrap();
        let chunk = [b'a'; 1024];
        let mut sent = 0;
        // The server stops reading: writes fail, or block once the socket
        // buffers fill; either way the client is cut off.
        while sent < 64 * MAX_HEADER_BYTES {
            if write.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
    };
    let reading = async {
        let mut answer = Vec::new();
        let _ = read.read_to_end(&mut answer).await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        tokio::select! {
            answer = reading => answer,
            () = async { writing.await; std::future::pending::<()>().await } => unreachable!(),
        }
    })
    .await
    .expect("the connection is closed");
    assert!(
        answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large"),
        "{answer}"
    );
    let (status, _) = healthz(addr).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn a_body_beyond_the_limit_is_refused_unread_and_closed() {
    let addr = server(Limits::default()).await;
    for head in [
        "Content-Length: 1000000000000\r\n",
        "Transfer-Encoding: chunked\r\n",
    ] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("{HEAD}{head}\r\n").as_bytes())
            .await
            .unwrap();
        // The body starts, and would never end.
        stream.write_all(&[b'a'; 4096]).await.unwrap();
        let (status, body) = read_response(&mut stream).await.expect("an answer");
        assert_eq!(status, "HTTP/1.1 413 Payload Too Large", "{head}");
        assert!(body.contains("no endpoint here takes a request body"));
        let closed = closed_within(&mut stream, Duration::from_secs(2)).await;
        assert!(closed.is_some(), "{head}: still open");
    }
    // A small body is no reason to refuse.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("{HEAD}Content-Length: 5\r\n\r\nhello").as_bytes())
        .await
        .unwrap();
    let (status, _) = read_response(&mut stream).await.expect("an answer");
    assert_eq!(status, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn a_kept_alive_connection_ends_at_its_maximum_age() {
    let age = Duration::from_millis(500);
    let addr = server(Limits {
        header_read_timeout: Duration::from_secs(5),
        max_connection_age: age,
        ..Limits::default()
    })
    .await;
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut answered = 0;
    let ended = loop {
        // A busy client: a request every 50 ms, each answered.
        if stream
            .write_all(format!("{HEAD}\r\n").as_bytes())
            .await
            .is_err()
        {
            break start.elapsed();
        }
        match read_response(&mut stream).await {
            Some((status, _)) => assert_eq!(status, "HTTP/1.1 200 OK"),
            None => break start.elapsed(),
        }
        answered += 1;
        assert!(start.elapsed() < Duration::from_secs(5), "never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(answered >= 5, "answered {answered}");
    assert!(ended >= age && ended < age * 3, "ended after {ended:?}");
}
