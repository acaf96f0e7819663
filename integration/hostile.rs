//! Hostile clients against the real binary's HTTP server (issue 15): connections that never
//! finish their headers are closed, one address cannot hold every connection slot, and
//! parallel wrong logins from one address are limited before their passwords are verified.
//!
//! The server is `common::api::ApiServer` (HTTP only, on `lo`); clients pick their source
//! address in 127.0.0.0/8 to play different hosts. Needs nothing but loopback.

mod common;

use common::api::ApiServer;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::time::{Duration, Instant};

/// A TCP connection to the server from source address `from`.
fn connect_from(s: &ApiServer, from: Ipv4Addr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddrV4::new(from, 0).into())
        .expect("bind a loopback source address");
    socket
        .connect(&SocketAddrV4::new(Ipv4Addr::LOCALHOST, s.port).into())
        .expect("connect");
    socket.into()
}

/// Whether the server closed `c` (EOF, reset, or an error answer before closing) within
/// `wait`.
fn closed_within(c: &TcpStream, wait: Duration) -> bool {
    c.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 256];
    match (&*c).read(&mut buf) {
        // EOF, or an answer (e.g. 408) before the close.
        Ok(0) | Ok(1..) => true,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// `GET /health` from `from`; the status code.
fn health_from(s: &ApiServer, from: Ipv4Addr) -> u16 {
    let mut c = connect_from(s, from);
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn slowloris_connections_are_closed() {
    let s = ApiServer::start();
    // 200 connections from 8 addresses (under the per-address cap), each with half a head.
    let conns: Vec<TcpStream> = (0..200u8)
        .map(|i| {
            let mut c = connect_from(&s, Ipv4Addr::new(127, 0, 1, 1 + i % 8));
            c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
            c
        })
        .collect();
    // Meanwhile the server answers others.
    assert_eq!(health_from(&s, Ipv4Addr::new(127, 0, 2, 1)), 200);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(11));
    let open = conns
        .iter()
        .filter(|c| !closed_within(c, Duration::from_secs(2)))
        .count();
    assert_eq!(
        open,
        0,
        "{open} of 200 slow connections still open after {:?}",
        started.elapsed()
    );
}

#[test]
fn one_address_cannot_hold_every_connection() {
    let s = ApiServer::start();
    let greedy = Ipv4Addr::new(127, 0, 3, 1);
    let conns: Vec<TcpStream> = (0..48).map(|_| connect_from(&s, greedy)).collect();
    std::thread::sleep(Duration::from_millis(500));
    // The ones over the per-address cap are closed at once ...
    let closed = conns
        .iter()
        .filter(|c| closed_within(c, Duration::from_millis(200)))
        .count();
    assert!(
        closed >= 8,
        "only {closed} of 48 idle connections from one address closed"
    );
    // ... and another address is served while they hold theirs.
    assert_eq!(health_from(&s, Ipv4Addr::new(127, 0, 3, 2)), 200);
}

#[test]
fn parallel_wrong_logins_are_limited() {
    let s = ApiServer::start();
    let body = r#"{"user":"admin","password":"wrong password"}"#;
    let req = format!(
        "POST /api/v1/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let from = Ipv4Addr::new(127, 0, 4, 1);
    // 30 at once (the per-address connection cap is 32).
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(30));
    let handles: Vec<_> = (0..30)
        .map(|_| {
            let (req, barrier) = (req.clone(), barrier.clone());
            let mut c = connect_from(&s, from);
            std::thread::spawn(move || {
                barrier.wait();
                c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                c.write_all(req.as_bytes()).unwrap();
                let mut out = String::new();
                let _ = c.read_to_string(&mut out);
                out.split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0u16)
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let verified = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(
        verified <= 5,
        "{verified} of 30 wrong logins were verified (limited: {limited}): {statuses:?}"
    );
    assert_eq!(verified + limited, 30, "{statuses:?}");
}
