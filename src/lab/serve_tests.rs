//! A lab's datagram services answer on the segment: a second smoltcp interface (a client at
//! 198.18.0.2) joins the lab's switch in-process and talks to drover's address there through
//! the real switch, smoltcp on both ends and the real shells and cores.

use super::*;
use crate::net::datagram::Datagram;
use crate::tftp::wire::Packet as Tftp;
use hickory_proto::op::Query;
use hickory_proto::rr::{Name, RData, RecordType};
use std::time::Duration;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const CLIENT_MAC: [u8; 6] = [0x02, 0xd7, 0x0e, 0x00, 0x00, 0x02];
/// Long enough for a loaded 2-core machine; the exchanges take milliseconds.
const WAIT: Duration = Duration::from_secs(10);

struct Lab {
    client: Stack,
    shutdown: CancellationToken,
    running: Running,
    dir: PathBuf,
}

impl Lab {
    async fn start(name: &str) -> Lab {
        let dir = std::env::temp_dir().join(format!("drover-lab-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let paths = Paths::new(&dir);
        std::fs::create_dir_all(paths.state()).unwrap();
        let store = Arc::new(Store::open(&paths.state()).unwrap());
        let shutdown = CancellationToken::new();
        let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let running = start(&paths, store, admin, shutdown.clone()).await.unwrap();
        let port = running.segment.attach().await.unwrap();
        let client = Stack::start(port, CLIENT_MAC, CLIENT, PREFIX, 7, shutdown.clone());
        Lab {
            client,
            shutdown,
            running,
            dir,
        }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        while let Some(done) = self.running.tasks.join_next().await {
            done.unwrap().unwrap();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The next datagram on `socket`, or a test failure after [`WAIT`].
async fn recv(socket: &impl Datagram, buf: &mut [u8]) -> (usize, SocketAddr) {
    tokio::time::timeout(WAIT, socket.recv_from(buf))
        .await
        .expect("no answer on the lab segment")
        .unwrap()
}

#[tokio::test]
async fn dns_answers_the_appliance_name_on_the_segment() {
    let lab = Lab::start("dns").await;
    let socket = lab.client.udp_bind(40053).unwrap();
    let config = crate::config::Config::embedded();
    let name = format!("{}.{}.", config.dns.hostname, config.dns.domain);
    let q = Query::query(Name::from_ascii(&name).unwrap(), RecordType::A);
    let mut out = Vec::new();
    crate::dns::wire::encode_query(0x4242, &q, &mut out).unwrap();
    let server = SocketAddr::from((SERVER, 53));
    // The first datagram may wait for ARP on both sides; smoltcp keeps it queued meanwhile.
    socket.send_to(&out, server).await.unwrap();
    let mut buf = vec![0u8; 1500];
    let (n, from) = recv(&socket, &mut buf).await;
    assert_eq!(from, server);
    let reply = crate::dns::wire::decode_response(&buf[..n], 0x4242, &q)
        .expect("a response to our question");
    let addrs: Vec<Ipv4Addr> = reply
        .answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    assert_eq!(addrs, vec![SERVER], "{name} in {reply:?}");
    lab.stop().await;
}

#[tokio::test]
async fn ntp_answers_on_the_segment() {
    let lab = Lab::start("ntp").await;
    let socket = lab.client.udp_bind(40123).unwrap();
    let mut req = [0u8; 48];
    // LI 0, version 4, mode 3 (client); our transmit timestamp comes back as the origin.
    req[0] = 0x23;
    req[40..48].copy_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
    let server = SocketAddr::from((SERVER, 123));
    socket.send_to(&req, server).await.unwrap();
    let mut buf = vec![0u8; 100];
    let (n, from) = recv(&socket, &mut buf).await;
    assert_eq!(from, server);
    let header = crate::ntp::wire::Packet::parse(&buf[..n]).unwrap().header;
    assert_eq!(header.mode, crate::ntp::wire::Mode::Server);
    assert_eq!(header.origin_ts.to_bits(), 0x0102_0304_0506_0708);
    assert_ne!(header.stratum, 0, "a time reply, not a kiss");
    lab.stop().await;
}

#[tokio::test]
async fn tftp_sends_embedded_firmware_from_its_own_port() {
    let file = "undionly.kpxe";
    let want = crate::firmware::get(file)
        .unwrap_or_else(|| panic!("no embedded {file}: run firmware/fetch (scripts/setup)"));
    let lab = Lab::start("tftp").await;
    let socket = lab.client.udp_bind(40069).unwrap();
    let mut rrq = Vec::new();
    rrq.extend_from_slice(&1u16.to_be_bytes());
    rrq.extend_from_slice(file.as_bytes());
    rrq.extend_from_slice(b"\0octet\0");
    socket
        .send_to(&rrq, SocketAddr::from((SERVER, 69)))
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1500];
    let mut tid = None;
    let mut next: u16 = 1;
    loop {
        let (n, from) = recv(&socket, &mut buf).await;
        assert_eq!(from.ip(), SERVER);
        assert_ne!(from.port(), 69, "a transfer runs on the server's own TID");
        assert_eq!(
            *tid.get_or_insert(from),
            from,
            "one TID for the whole transfer"
        );
        let Tftp::Data { block, data } = Tftp::parse(&buf[..n]).unwrap() else {
            panic!("not DATA: {:?}", &buf[..n.min(64)]);
        };
        // A retransmitted block (our ACK crossed the server's timeout) is acknowledged again,
        // not appended again.
        if block == next {
            got.extend_from_slice(data);
            next = next.wrapping_add(1);
        }
        let last = block.wrapping_add(1) == next && data.len() < 512;
        let mut ack = [0u8; 4];
        ack[..2].copy_from_slice(&4u16.to_be_bytes());
        ack[2..].copy_from_slice(&block.to_be_bytes());
        socket.send_to(&ack, from).await.unwrap();
        if last {
            break;
        }
    }
    assert!(
        got == want.as_ref(),
        "{} bytes, want {}",
        got.len(),
        want.len()
    );
    lab.stop().await;
}
