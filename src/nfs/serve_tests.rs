//! The shell over real TCP connections on loopback, with the in-memory test Vfs.

use super::*;
use crate::nfs::core_tests::{call, C};
use crate::nfs::memvfs::MemVfs;
use crate::nfs::vfs::{Caller, NewObject, SetAttr, Stability, Vfs};
use crate::nfs::wire::{StateId, MAX_IO};
use std::net::{IpAddr, Ipv4Addr};
use tokio::net::TcpSocket;

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A server with one file of [`MAX_IO`] bytes; returns it and the file's handle.
fn server_with_big_file() -> (Arc<Server>, Vec<u8>) {
    let vfs = Arc::new(MemVfs::new());
    let root_caller = Caller {
        addr: LOCAL,
        uid: 0,
        gid: 0,
        gids: Vec::new(),
    };
    let root = vfs.root(&root_caller).expect("root");
    let (fh, _) = vfs
        .create(
            &root_caller,
            &root,
            b"big",
            &NewObject::File { exclusive: false },
            &SetAttr::default(),
        )
        .expect("create");
    vfs.write(
        &root_caller,
        &fh,
        0,
        &vec![7; MAX_IO as usize],
        Stability::FileSync,
    )
    .expect("write");
    let settings = super::super::core::Settings {
        limits: Default::default(),
        boot: 1,
        grace_until: None,
        reclaimers: None,
        server_owner: b"test".to_vec(),
        delegations: true,
    };
    (Arc::new(Server::new(vfs, settings)), fh.0)
}

/// Runs `server` with `settings` on a loopback port: its address, counters and shutdown.
async fn serve(
    server: Arc<Server>,
    settings: Settings,
) -> (SocketAddr, Arc<Stats>, CancellationToken) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let shutdown = CancellationToken::new();
    let stats = Arc::new(Stats::default());
    let front = Front::new(server, &settings, stats.clone(), shutdown.clone());
    tokio::spawn(run(
        front,
        vec![listener],
        settings,
        tokio::sync::watch::channel(Arc::default()).0,
    ));
    (addr, stats, shutdown)
}

/// One RPC record holding an NFSv4.0 COMPOUND that reads all of the file `fh`.
fn read_call(fh: &[u8]) -> Vec<u8> {
    let args = C::new(0)
        .op(opnum::PUTFH, |w| w.opaque(fh))
        .op(opnum::READ, |w| {
            w.u32(StateId::ANONYMOUS.seqid);
            w.fixed(&StateId::ANONYMOUS.other);
            w.u64(0);
            w.u32(MAX_IO);
        })
        .bytes();
    rpc::record(&call(rpc::PROC_COMPOUND, 0, &args))
}

/// A connection whose peer stops reading its replies (a full socket, a dead or stuck
/// client) may hold up its own calls, never every client's: the shared permits go back
/// before a reply waits for the connection's writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_holds_up_only_its_own_connection() {
    let (server, fh) = server_with_big_file();
    let settings = Settings {
        max_connections: 8,
        max_inflight: 4,
        max_blocking: 2,
        status_file: None,
        idle_timeout: IDLE_TIMEOUT,
    };
    let (addr, stats, shutdown) = serve(server, settings).await;

    // The stuck client: a small receive window, many reads of a full MAX_IO each, and
    // never a reply read. Its replies fill both sockets' buffers, then its connection's
    // reply queue, then its in-flight calls wait.
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut stuck = socket.connect(addr).await.expect("connect");
    let call = read_call(&fh);
    for _ in 0..48 {
        stuck.write_all(&call).await.expect("send a read");
    }

    // Until its calls stop completing: everything of it that can wait is waiting.
    let mut done = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = stats.calls_compound.load(Ordering::Relaxed);
        if now > 0 && now == done {
            break;
        }
        done = now;
    }
    assert!(
        done < 48,
        "the reads were all answered: the test did not fill the connection"
    );

    // Another client's call is still answered.
    let mut other = TcpStream::connect(addr).await.expect("connect");
    other
        .write_all(&rpc::record(&call_null()))
        .await
        .expect("send NULL");
    let mut reply = Vec::new();
    let answered =
        tokio::time::timeout(Duration::from_secs(30), read_record(&mut other, &mut reply)).await;
    assert!(
        matches!(answered, Ok(Ok(Some(())))),
        "a client that does not read its replies held up another client's call: {answered:?}"
    );
    assert_eq!(&reply[..4], &42u32.to_be_bytes(), "the NULL call's xid");
    shutdown.cancel();
    drop(stuck);
}

fn call_null() -> Vec<u8> {
    call(rpc::PROC_NULL, 0, &[])
}

/// A fragment header announcing 1 MiB makes the buffer grow with the bytes that arrive,
/// not to the announced size before any data is there.
#[tokio::test]
async fn record_buffers_grow_as_data_arrives() {
    let (mut client, mut server) = tokio::io::duplex(64 * 1024);
    let mark = (1u32 << 20).to_be_bytes();
    client.write_all(&mark).await.expect("header");
    client.write_all(&[1; 100]).await.expect("some data");
    let mut buf = Vec::new();
    let r = tokio::time::timeout(
        Duration::from_millis(200),
        read_record(&mut server, &mut buf),
    )
    .await;
    assert!(r.is_err(), "the record is incomplete: still reading");
    assert_eq!(buf.len(), 100);
    assert!(
        buf.capacity() < 64 * 1024,
        "{} bytes reserved for 100 received",
        buf.capacity()
    );
}

/// A connection that says nothing is closed after the idle timeout; one that keeps
/// talking is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let (server, _) = server_with_big_file();
    let settings = Settings {
        idle_timeout: Duration::from_millis(300),
        ..Settings::default()
    };
    let (addr, stats, shutdown) = serve(server, settings).await;
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let mut talker = TcpStream::connect(addr).await.expect("connect");
    // Half a record, then nothing: a stalled sender is idle too.
    silent
        .write_all(&[0x80, 0, 0, 40, 0, 0])
        .await
        .expect("half");
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        talker
            .write_all(&rpc::record(&call_null()))
            .await
            .expect("NULL");
        let mut reply = Vec::new();
        read_record(&mut talker, &mut reply)
            .await
            .expect("a reply")
            .expect("not closed");
    }
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "the silent connection was closed: {closed:?}"
    );
    assert_eq!(stats.connections_idle.load(Ordering::Relaxed), 1);
    shutdown.cancel();
}

/// A listener added while the server runs (an interface added to the appliance) serves
/// calls; stopped (the interface gone), it takes no more connections, while its own go on
/// and the server goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_come_and_go_while_the_server_runs() {
    let (server, _) = server_with_big_file();
    let (settings, shutdown) = (Settings::default(), CancellationToken::new());
    let stats = Arc::new(Stats::default());
    let front = Front::new(server, &settings, stats.clone(), shutdown.clone());
    let clients = tokio::sync::watch::channel(Arc::default()).0;
    let running = tokio::spawn(run(front.clone(), Vec::new(), settings, clients));
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let stop = CancellationToken::new();
    let added = tokio::spawn({
        let (front, stop) = (front.clone(), stop.clone());
        async move { front.accept(listener, stop).await }
    });
    let mut conn = TcpStream::connect(addr).await.expect("connect");
    let null = async |conn: &mut TcpStream| {
        conn.write_all(&rpc::record(&call_null()))
            .await
            .expect("NULL");
        let mut reply = Vec::new();
        read_record(conn, &mut reply)
            .await
            .expect("a reply")
            .expect("not closed");
    };
    null(&mut conn).await;
    stop.cancel();
    added.await.expect("join").expect("accept loop");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "a stopped listener takes no connection"
    );
    null(&mut conn).await;
    assert!(!running.is_finished(), "the server goes on");
    assert_eq!(stats.connections.load(Ordering::Relaxed), 1);
    shutdown.cancel();
    running.await.expect("join").expect("server");
}
