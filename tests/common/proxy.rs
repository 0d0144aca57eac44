//! A test-owned TCP proxy between the service and a real server, to make that server misbehave
//! the way networks do: `Pass` forwards; `Blackhole` accepts and holds connections but moves no
//! byte either way (no error, no reset: a partition); `Down` closes the listener and cuts every
//! connection (the server is gone: connection refused); `Reset` takes each new request's first
//! bytes and answers them with a TCP reset (as load balancers do to idle keep-alive connections).
//! `Pass` again heals it on the same port.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass = 0,
    Blackhole = 1,
    Down = 2,
    Reset = 3,
}

pub struct Proxy {
    pub port: u16,
    tx: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free loopback port, forwarding to `target` (`host:port`).
    pub async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = watch::channel(Mode::Pass);
        let task = tokio::spawn(serve(listener, port, target.to_string(), rx));
        Proxy { port, tx, task }
    }

    pub fn set(&self, m: Mode) {
        let _ = self.tx.send(m);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, port: u16, target: String, mut rx: watch::Receiver<Mode>) {
    let mut listener = Some(listener);
    let mut conns: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    loop {
        let mode = *rx.borrow();
        match (mode, listener.as_ref()) {
            (Mode::Down, Some(_)) => {
                listener = None;
                for c in conns.drain(..) {
                    c.abort();
                }
                continue;
            }
            (Mode::Pass | Mode::Blackhole | Mode::Reset, None) => {
                // Healed: the same port again (retried while the kernel releases it).
                for _ in 0..100 {
                    if let Ok(l) = TcpListener::bind(("127.0.0.1", port)).await {
                        listener = Some(l);
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                continue;
            }
            _ => {}
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            accepted = async {
                match listener.as_ref() {
                    Some(l) => l.accept().await,
                    None => std::future::pending().await,
                }
            } => {
                if let Ok((client, _)) = accepted {
                    conns.retain(|c| !c.is_finished());
                    conns.push(tokio::spawn(pipe(client, target.clone(), rx.clone())));
                }
            }
        }
    }
}

/// Forwards both ways while the mode is `Pass`; holds everything while it is `Blackhole`.
async fn pipe(client: TcpStream, target: String, rx: watch::Receiver<Mode>) {
    let mut rx0 = rx.clone();
    // A connection opened during a blackhole waits (as SYN-ACKed by a middlebox) until it heals.
    while *rx0.borrow() == Mode::Blackhole {
        if rx0.changed().await.is_err() {
            return;
        }
    }
    if *rx0.borrow() == Mode::Reset {
        let mut client = client;
        let mut buf = [0u8; 1024];
        let _ = client.read(&mut buf).await;
        // SO_LINGER 0: closing sends RST instead of FIN. (Deprecated because a non-zero linger
        // blocks the thread on drop; zero never does.)
        #[allow(deprecated)]
        let _ = client.set_linger(Some(std::time::Duration::ZERO));
        return;
    }
    let Ok(server) = TcpStream::connect(&target).await else {
        return;
    };
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = tokio::spawn(copy(cr, sw, rx.clone()));
    let down = tokio::spawn(copy(sr, cw, rx));
    let _ = tokio::join!(up, down);
}

async fn copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut rx: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if !passing(&mut rx).await {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
            // A blackhole starting mid-read holds the bytes already read until it heals.
            _ = rx.changed() => continue,
        };
        if !passing(&mut rx).await || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Waits out a blackhole; false when the connection is to be cut (down, or the proxy gone).
async fn passing(rx: &mut watch::Receiver<Mode>) -> bool {
    loop {
        match *rx.borrow() {
            Mode::Pass => return true,
            Mode::Down | Mode::Reset => return false,
            Mode::Blackhole => {}
        }
        if rx.changed().await.is_err() {
            return false;
        }
    }
}
