//! A TCP proxy the test controls, to cut servers off from each other.
//!
//! One proxy sits in front of each server's Raft RPC port. Cutting server X off means its
//! own proxy accepts nothing (no one reaches X) and every other proxy refuses connections
//! coming from X's address (X reaches no one); live connections are severed either way.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Shared {
    down: AtomicBool,
    blocked: Mutex<HashSet<IpAddr>>,
    conns: Mutex<Vec<(IpAddr, TcpStream)>>,
    stop: AtomicBool,
}

pub struct Proxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

impl Proxy {
    pub fn start(listen_ip: IpAddr, target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(SocketAddr::new(listen_ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = conn else { continue };
                let peer = client.peer_addr().map(|a| a.ip()).ok();
                let refused = s.down.load(Ordering::SeqCst)
                    || peer.is_some_and(|ip| s.blocked.lock().unwrap().contains(&ip));
                if refused {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(upstream) = TcpStream::connect_timeout(&target, Duration::from_secs(1))
                else {
                    continue;
                };
                let peer = peer.unwrap_or(listen_ip);
                {
                    let mut conns = s.conns.lock().unwrap();
                    conns.push((peer, client.try_clone().unwrap()));
                    conns.push((peer, upstream.try_clone().unwrap()));
                }
                let (c2, u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                std::thread::spawn(move || pipe(client, upstream));
                std::thread::spawn(move || pipe(u2, c2));
            }
        });
        Proxy { addr, shared }
    }

    /// Refuse and sever everything.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
        if down {
            for (_, c) in self.shared.conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }

    /// Refuse and sever connections from `ip`.
    pub fn block(&self, ip: IpAddr) {
        self.shared.blocked.lock().unwrap().insert(ip);
        let mut conns = self.shared.conns.lock().unwrap();
        conns.retain(|(peer, c)| {
            if *peer == ip {
                let _ = c.shutdown(Shutdown::Both);
                false
            } else {
                true
            }
        });
    }

    pub fn heal(&self) {
        self.shared.down.store(false, Ordering::SeqCst);
        self.shared.blocked.lock().unwrap().clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.set_down(true);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(100));
    }
}
