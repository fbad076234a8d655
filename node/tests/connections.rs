//! The edges of every listening socket, tried from outside against a real cluster, as
//! docs/protocol.md states them: deadlines, byte budgets before `hello`, the connection cap,
//! frame limits after `hello`, browsers held to their origin, and how the page is served.
//!
//! Endpoints of a `consenso cluster --port P`: the proxy at P, the supervisor at P + 9, server
//! i at P + 10 + i.

mod support;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use support::{Cluster, TOKEN, block_on, serial};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// The documented deadlines are 10 s; a little slack for a loaded machine.
const DEADLINE: Duration = Duration::from_secs(13);

fn endpoints(cluster: &Cluster) -> [(&'static str, u16); 3] {
    [("proxy", cluster.port), ("supervisor", cluster.port + 9), ("server 1", cluster.port + 11)]
}

async fn open(port: u16) -> Ws {
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let url = format!("ws://127.0.0.1:{port}/ws");
    tokio_tungstenite::connect_async_with_config(url, Some(config), true).await.unwrap().0
}

/// How a connection ended, read until it did (or `within` passed).
#[derive(Debug, PartialEq)]
enum End {
    /// An error frame, then a Close frame with this code.
    ErrorThenClose(u16),
    /// A Close frame without an error frame first.
    Close(u16),
    /// The TCP connection ended without a Close frame.
    Dropped,
    StillOpen,
}

async fn how_it_ends(ws: &mut Ws, within: Duration) -> End {
    let mut saw_error = false;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return End::StillOpen,
            Ok(None | Some(Err(_))) => return End::Dropped,
            Ok(Some(Ok(Message::Close(frame)))) => {
                let code = frame.map_or(0, |f| u16::from(f.code));
                return if saw_error { End::ErrorThenClose(code) } else { End::Close(code) };
            }
            Ok(Some(Ok(Message::Text(t)))) => saw_error |= t.as_str().contains(r#""type":"error""#),
            Ok(Some(Ok(_))) => {}
        }
    }
}

fn client_hello() -> String {
    format!(r#"{{"type":"hello","version":1,"token":"{TOKEN}"}}"#)
}

/// A fresh client connection still works: nothing above cost the process its service.
async fn still_serves(port: u16) {
    let mut ws = open(port).await;
    ws.send(Message::text(client_hello())).await.unwrap();
    let welcome = ws.next().await.unwrap().unwrap();
    assert!(welcome.to_text().unwrap().contains("welcome"), "{welcome:?}");
    ws.send(Message::text(r#"{"type":"get","id":7,"key":"k"}"#)).await.unwrap();
    let answer = ws.next().await.unwrap().unwrap();
    assert!(answer.to_text().unwrap().contains(r#""type":"done""#), "{answer:?}");
}

#[test]
fn a_connection_that_says_nothing_is_closed_after_the_deadline_on_every_endpoint() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    block_on(async {
        let mut waits = Vec::new();
        for (name, port) in endpoints(&cluster) {
            // Silent before the HTTP upgrade: the TCP connection is closed.
            waits.push(tokio::spawn(async move {
                let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                let started = Instant::now();
                let mut buf = [0u8; 64];
                let read = tokio::time::timeout(DEADLINE, tcp.read(&mut buf)).await;
                assert!(
                    matches!(read, Ok(Ok(0) | Err(_))),
                    "{name}: a silent TCP connection is still open after {:?}",
                    started.elapsed()
                );
            }));
            // Upgraded but no hello: an error, then a Close frame.
            waits.push(tokio::spawn(async move {
                let mut ws = open(port).await;
                let end = how_it_ends(&mut ws, DEADLINE).await;
                assert!(
                    matches!(end, End::ErrorThenClose(1002)),
                    "{name}: silent after the upgrade: {end:?}"
                );
            }));
        }
        for wait in waits {
            wait.await.unwrap();
        }
        still_serves(cluster.port).await;
    });
}

#[test]
fn more_than_a_little_before_hello_ends_the_connection_on_every_endpoint() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    block_on(async {
        for (name, port) in endpoints(&cluster) {
            let mut ws = open(port).await;
            // 300 KiB of a frame that would be a valid hello but for its padding: over the
            // 256 KiB budget, so it is never read whole.
            let padded = format!(r#"{{"type":"hello","version":1,"pad":"{}"}}"#, "x".repeat(300 << 10));
            let _ = ws.send(Message::text(padded)).await;
            let end = how_it_ends(&mut ws, Duration::from_secs(5)).await;
            // Told why, with an error frame and a Close frame (it used to be dropped silently).
            assert_eq!(end, End::ErrorThenClose(1009), "{name}: 300 KiB before hello");
        }
        still_serves(cluster.port).await;
    });
}

async fn viewer(port: u16) -> Ws {
    let mut ws = open(port).await;
    ws.send(Message::text(r#"{"type":"hello","version":1}"#)).await.unwrap();
    let welcome = ws.next().await.unwrap().unwrap();
    assert!(welcome.to_text().unwrap().contains("welcome"), "{welcome:?}");
    ws
}

#[test]
fn a_viewer_frame_larger_than_a_viewer_may_send_is_refused_with_too_large_and_a_close_frame() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    block_on(async {
        let mut ws = viewer(cluster.port).await;
        let big = format!(r#"{{"type":"get","id":1,"key":"{}"}}"#, "k".repeat(8 << 20));
        let _ = ws.send(Message::text(big)).await;
        let end = how_it_ends(&mut ws, Duration::from_secs(10)).await;
        assert_eq!(end, End::ErrorThenClose(1009), "an 8 MiB frame from a viewer");
        // A viewer's reads of a reasonable key go on; with the token, a key that no write
        // could store is refused at once.
        let mut ws = viewer(cluster.port).await;
        ws.send(Message::text(r#"{"type":"get","id":2,"key":"k"}"#)).await.unwrap();
        let answer = ws.next().await.unwrap().unwrap();
        assert!(answer.to_text().unwrap().contains(r#""type":"done""#), "{answer:?}");
        let mut ws = open(cluster.port).await;
        ws.send(Message::text(client_hello())).await.unwrap();
        ws.next().await.unwrap().unwrap();
        let key = format!(r#"{{"type":"get","id":3,"key":"{}"}}"#, "k".repeat((8 << 20) - 4096));
        ws.send(Message::text(key)).await.unwrap();
        let answer = ws.next().await.unwrap().unwrap();
        assert!(answer.to_text().unwrap().contains("too_large"), "{answer:?}");
        still_serves(cluster.port).await;
    });
}

#[test]
fn a_full_room_turns_viewers_away_before_the_upgrade_and_always_lets_the_token_in() {
    const VIEWERS: usize = 1_024 - 64;
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    block_on(async {
        let mut room = Vec::new();
        for _ in 0..VIEWERS {
            room.push(viewer(cluster.port).await);
        }
        // One more viewer is turned away with an HTTP answer, holding nothing.
        let url = format!("ws://127.0.0.1:{}/ws", cluster.port);
        let refused = tokio_tungstenite::connect_async(url.as_str()).await;
        let said = format!("{refused:?}");
        assert!(said.contains("503"), "a viewer past the room's size: {said}");
        // The lecturer, token in the upgrade request, gets in and writes.
        let mut request = url.as_str().into_client_request().unwrap();
        request.headers_mut().insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        ws.send(Message::text(client_hello())).await.unwrap();
        ws.next().await.unwrap().unwrap();
        ws.send(Message::text(r#"{"type":"put","id":4,"key":"full-room","value":"yes"}"#)).await.unwrap();
        let answer = ws.next().await.unwrap().unwrap();
        assert!(answer.to_text().unwrap().contains(r#""type":"done""#), "{answer:?}");
        drop(room);
    });
}

#[test]
fn connections_beyond_the_cap_are_closed_at_once_and_the_rest_go_on() {
    const CAP: usize = 1_024;
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            let line = l.lines().find(|l| l.starts_with("Max open files"))?.to_string();
            line.split_whitespace().nth(3)?.parse::<usize>().ok()
        })
        .unwrap_or(0);
    assert!(limit > CAP + 100, "this test needs more than {} open files (ulimit -n is {limit})", CAP + 100);
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    let port = cluster.port + 11;
    block_on(async {
        let mut held = Vec::new();
        for _ in 0..CAP {
            held.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
        }
        // Let the server accept them all before the one too many.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut extra = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(3), extra.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0) | Err(_))),
            "connection {} was not closed at once: {read:?}",
            CAP + 1
        );
        drop(held);
    });
    // Once the held ones are gone, the server answers again (its peers reconnect too).
    support::wait_for(Duration::from_secs(20), "a leader with every server reachable", || {
        let status = cluster.status()?;
        (status.nodes.iter().all(|n| n.role.is_some()) && cluster.leader().is_some()).then_some(())
    });
}

#[test]
fn after_hello_a_frame_too_large_gets_an_error_and_broken_frames_end_only_their_connection() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    block_on(async {
        let mut ws = open(cluster.port).await;
        ws.send(Message::text(client_hello())).await.unwrap();
        ws.next().await.unwrap().unwrap();
        // Over 8 MiB: a typed error, and the connection goes on.
        let big = format!(r#"{{"type":"get","id":1,"key":"{}"}}"#, "k".repeat(9 << 20));
        ws.send(Message::text(big)).await.unwrap();
        let answer = ws.next().await.unwrap().unwrap();
        assert!(answer.to_text().unwrap().contains("frame_too_large"), "{answer:?}");
        ws.send(Message::text(r#"{"type":"get","id":2,"key":"k"}"#)).await.unwrap();
        let answer = ws.next().await.unwrap().unwrap();
        assert!(answer.to_text().unwrap().contains(r#""type":"done""#), "{answer:?}");

        // Over 16 MiB: the transport ends the connection.
        let huge = format!(r#"{{"type":"get","id":3,"key":"{}"}}"#, "k".repeat(17 << 20));
        let _ = ws.send(Message::text(huge)).await;
        let end = how_it_ends(&mut ws, Duration::from_secs(10)).await;
        assert!(end != End::StillOpen, "a 17 MiB frame left the connection open");

        // A text frame that is not UTF-8: the transport ends the connection.
        let mut ws = open(cluster.port).await;
        ws.send(Message::text(client_hello())).await.unwrap();
        ws.next().await.unwrap().unwrap();
        let bad = Frame::message(vec![b'"', 0xff, 0xfe, b'"'], OpCode::Data(Data::Text), true);
        let _ = ws.send(Message::Frame(bad)).await;
        let end = how_it_ends(&mut ws, Duration::from_secs(10)).await;
        assert!(end != End::StillOpen, "invalid UTF-8 left the connection open");

        still_serves(cluster.port).await;
    });
}

async fn open_from(port: u16, origin: &str) -> Result<Ws, String> {
    let mut request = format!("ws://127.0.0.1:{port}/ws").into_client_request().unwrap();
    request.headers_mut().insert("origin", origin.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status().to_string()),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn browsers_may_connect_only_from_the_pages_own_origin_or_an_allowed_one() {
    let _turn = serial();
    let cluster = Cluster::start_with(3, 1, &["--allow-origin=https://class.example.edu"]);
    let own = format!("http://127.0.0.1:{}", cluster.port);
    block_on(async {
        for (name, port) in endpoints(&cluster) {
            let refused = open_from(port, "http://evil.example").await;
            assert!(
                matches!(&refused, Err(status) if status.starts_with("403")),
                "{name}: a page from another origin was let in: {:?}",
                refused.as_ref().map(|_| "connected")
            );
        }
        // The proxy serves the page: its own origin, and the allowed one, may connect.
        for origin in [own.as_str(), "https://class.example.edu"] {
            let mut ws = open_from(cluster.port, origin).await.unwrap_or_else(|e| panic!("{origin}: {e}"));
            ws.send(Message::text(client_hello())).await.unwrap();
            let welcome = ws.next().await.unwrap().unwrap();
            assert!(welcome.to_text().unwrap().contains("welcome"), "{origin}: {welcome:?}");
        }
    });
}

/// A raw HTTP/1.1 GET: (status line, headers in lower case, body length).
async fn get(port: u16, path: &str) -> (String, Vec<(String, String)>, usize) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut response)).await.unwrap().unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default().to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, response.len() - split - 4)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn the_page_goes_out_compressed_with_cache_headers_and_unknown_paths_are_not_found() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    let dist = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist");
    let wasm = std::fs::read_dir(&dist)
        .expect("the page is built (./dev page)")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|n| n.ends_with("_bg.wasm"))
        .expect("a wasm file in dist/");
    let plain_size = std::fs::metadata(dist.join(&wasm)).unwrap().len() as usize;
    block_on(async {
        let (status, headers, _) = get(cluster.port, "/").await;
        assert!(status.contains("200"), "{status}");
        assert_eq!(header(&headers, "cache-control"), Some("no-cache"), "the page is checked on every visit");
        assert_eq!(header(&headers, "content-encoding"), Some("gzip"));

        let (status, headers, size) = get(cluster.port, &format!("/{wasm}")).await;
        assert!(status.contains("200"), "{status}");
        assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
        assert!(header(&headers, "cache-control").is_some_and(|c| c.contains("immutable")), "{headers:?}");
        assert!(size < plain_size / 2, "the wasm went out as {size} bytes of {plain_size}");
        assert!(size <= 400 * 1024, "the page's code is {size} bytes on the wire: over its 400 KB budget");

        // The simulator module, loaded only for ?sim and diagrams, is served the same way.
        let index = std::fs::read_to_string(dist.join("index.html")).unwrap();
        let module = index.split("name=\"consenso-sim\" content=\"").nth(1).and_then(|r| r.split('"').next());
        let module = module.expect("index.html names the simulator module (./dev page)");
        let (status, headers, _) = get(cluster.port, &module.replace(".js", "_bg.wasm")).await;
        assert!(status.contains("200"), "{module}: {status}");
        assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
        assert!(header(&headers, "cache-control").is_some_and(|c| c.contains("immutable")), "{headers:?}");

        for path in ["/favicon.ico", "/no/such/page", "/../Cargo.toml"] {
            let (status, _, _) = get(cluster.port, path).await;
            assert!(status.contains("404"), "{path}: {status}");
        }
    });
}
