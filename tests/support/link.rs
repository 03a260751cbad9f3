//! A TCP link between the gateway and one of its peers that a test can cut or slow down:
//! an upstream outage (connections refused, open ones dropped) or a slow peer (every chunk
//! held back), without touching the peer itself. TLS passes through untouched.
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Link {
    port: u16,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    down: AtomicBool,
    /// Milliseconds each chunk is held back, in either direction.
    delay_ms: AtomicU64,
    /// Open connections, to drop when the link goes down.
    open: Mutex<Vec<TcpStream>>,
}

impl Link {
    /// A link from a free local port to `127.0.0.1:target`.
    pub fn to(target: u16) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind link");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let st = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if st.down.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                {
                    let mut open = st.open.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                }
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let st = st.clone();
                    std::thread::spawn(move || pump(from, to, &st));
                }
            }
        });
        Link { port, state }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The peer is unreachable: new connections are closed at once, open ones dropped.
    pub fn cut(&self) {
        self.state.down.store(true, Ordering::SeqCst);
        for s in self.state.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn restore(&self) {
        self.state.down.store(false, Ordering::SeqCst);
    }

    /// Holds back every chunk by `delay` (zero: full speed).
    pub fn slow(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, state: &State) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = state.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        if state.down.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
