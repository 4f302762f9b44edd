//! A far git host on loopback: a TCP proxy that delays every byte by a
//! fixed time in each direction, so that each round trip through it costs
//! at least twice that, as a hosted forge's does. Bandwidth is not limited;
//! order is kept. Used by the benchmarks (`Scale-out`) and by tests that
//! need a remote whose answers take a while. It can also hold new
//! connections unanswered (`hold`): a remote that hangs, not one that is
//! gone, which is what a client waits on until its own timeout.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

pub struct DelayProxy {
    pub port: u16,
    stop: Arc<AtomicBool>,
    hold: Arc<AtomicBool>,
    held: Arc<AtomicUsize>,
}

impl DelayProxy {
    /// Listen on a free loopback port and forward to `127.0.0.1:upstream`,
    /// delaying each direction by `one_way`.
    pub fn start(upstream: u16, one_way: Duration) -> DelayProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let hold = Arc::new(AtomicBool::new(false));
        let held = Arc::new(AtomicUsize::new(0));
        let (stopping, holding, counted) = (stop.clone(), hold.clone(), held.clone());
        std::thread::spawn(move || {
            let forward = |client: TcpStream| {
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                pipe(&client, &server, one_way);
                pipe(&server, &client, one_way);
            };
            let mut parked = Vec::new();
            while !stopping.load(Ordering::SeqCst) {
                if !holding.load(Ordering::SeqCst) {
                    parked.drain(..).for_each(forward);
                }
                match listener.accept() {
                    Ok((client, _)) if holding.load(Ordering::SeqCst) => {
                        counted.fetch_add(1, Ordering::SeqCst);
                        parked.push(client);
                    }
                    Ok((client, _)) => forward(client),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => break,
                }
            }
        });
        DelayProxy {
            port,
            stop,
            hold,
            held,
        }
    }

    /// Hold each new connection open and unanswered until `hold(false)`,
    /// which forwards them, late, as if the remote had been slow.
    pub fn hold(&self, on: bool) {
        self.hold.store(on, Ordering::SeqCst);
    }

    /// Connections that arrived while held, so far.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::SeqCst)
    }

    pub fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Copy `from` to `to`, each chunk held until `delay` after it was read.
/// Two threads: one reads and stamps, one waits and writes, so a slow
/// write never delays the next read's stamp.
fn pipe(from: &TcpStream, to: &TcpStream, delay: Duration) {
    let mut reader = from.try_clone().unwrap();
    let mut writer = to.try_clone().unwrap();
    let (tx, rx) = channel::<(Instant, Vec<u8>)>();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => {
                    // The end of the stream, delayed like the data: an empty chunk.
                    let _ = tx.send((Instant::now() + delay, Vec::new()));
                    break;
                }
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    });
    std::thread::spawn(move || deliver(rx, &mut writer));
}

fn deliver(rx: Receiver<(Instant, Vec<u8>)>, writer: &mut TcpStream) {
    for (due, chunk) in rx.iter() {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        if chunk.is_empty() {
            break;
        }
        if writer.write_all(&chunk).is_err() {
            return;
        }
    }
    let _ = writer.shutdown(Shutdown::Write);
}
