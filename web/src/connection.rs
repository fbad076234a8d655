//! The page's WebSocket to a proxy: hello with the token, subscription to the event stream,
//! and reconnection — to the same proxy or, if it is gone, to the others it told us about.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use shared::protocol::{ClientFrame, PROTOCOL_VERSION, ProxyFrame, encode, parse};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;
use web_sys::{CloseEvent, MessageEvent, WebSocket};
use yew::Callback;

use crate::store::Link;

/// Whom to dial and when: the connection's decisions, apart from the socket (tested natively).
///
/// It dials the proxy that served the page first; the proxy's welcome names every proxy, and
/// after a lost connection it tries the next one, waiting longer after each failure (250 ms,
/// doubling, at most 4 s) until one opens. Every socket belongs to a generation: a new token
/// or another source starts a new one, and whatever an older socket says is ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct Dialer {
    candidates: Vec<String>,
    next: usize,
    attempt: u32,
    generation: u64,
}

/// The first wait before dialing again, and the longest.
const FIRST_BACKOFF_MS: u64 = 250;
const MAX_BACKOFF_MS: u64 = 4_000;

impl Dialer {
    pub fn new(own_proxy: String) -> Dialer {
        Dialer { candidates: vec![own_proxy], next: 0, attempt: 0, generation: 0 }
    }

    /// The WebSocket address to dial now.
    pub fn url(&self) -> &str {
        &self.candidates[self.next % self.candidates.len()]
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The socket opened: failures start counting afresh. Returns the link to show.
    pub fn opened(&mut self) -> Link {
        self.attempt = 0;
        let url = self.url();
        let proxy = url.split_once("://").map_or(url, |(_, rest)| rest).trim_end_matches("/ws").to_string();
        Link::Connected { proxy }
    }

    /// The welcome names every proxy: remember them for failover, the one we reached first,
    /// with its scheme (a page served over https dials wss everywhere).
    pub fn welcomed(&mut self, proxies: &[String]) {
        let current = self.url().to_string();
        let scheme = current.split_once("://").map_or("ws", |(s, _)| s).to_string();
        let mut list = vec![current.clone()];
        for url in proxies.iter().map(|p| format!("{scheme}://{p}/ws")) {
            if !list.contains(&url) {
                list.push(url);
            }
        }
        self.candidates = list;
        self.next = 0;
    }

    /// The socket closed or could not open: the next proxy, after a wait. Returns the link to
    /// show and the wait.
    pub fn lost(&mut self) -> (Link, Duration) {
        self.attempt += 1;
        self.next += 1;
        let wait = (FIRST_BACKOFF_MS << self.attempt.saturating_sub(1).min(5)).min(MAX_BACKOFF_MS);
        (Link::Reconnecting { attempt: self.attempt }, Duration::from_millis(wait))
    }

    /// Starts over on the same proxy (a new token): sockets of older generations are void.
    pub fn restart(&mut self) {
        self.generation += 1;
        self.attempt = 0;
    }

    /// Stops for good: no socket of this or an older generation is listened to again.
    pub fn stop(&mut self) {
        self.generation += 1;
    }
}

struct Inner {
    socket: Option<WebSocket>,
    /// Kept alive as long as the socket uses them.
    handlers: Vec<Closure<dyn FnMut(web_sys::Event)>>,
    dialer: Dialer,
    token: Option<String>,
    on_frame: Callback<ProxyFrame>,
    on_link: Callback<Link>,
}

/// Where the page's frames come from: a proxy, or a cluster simulated in the page.
#[derive(Clone)]
pub enum Source {
    Live(Connection),
    Simulated(crate::simulated::Simulated),
    Replay(crate::replay::Replay),
}

impl Source {
    pub fn send(&self, frame: &ClientFrame) -> bool {
        match self {
            Source::Live(c) => c.send(frame),
            Source::Simulated(s) => s.send(frame),
            // A recording is only watched.
            Source::Replay(_) => false,
        }
    }

    /// Stops this source for good (the page opened a recording instead): no frame from it
    /// reaches the store again.
    pub fn stop(&self) {
        match self {
            Source::Live(c) => {
                let mut inner = c.inner.borrow_mut();
                inner.dialer.stop();
                if let Some(s) = inner.socket.take() {
                    let _ = s.close();
                }
            }
            Source::Simulated(s) => s.stop(),
            Source::Replay(r) => r.stop(),
        }
    }

    /// Reconnects with another token; a simulated cluster has no token to change.
    pub fn set_token(&self, token: Option<String>) {
        if let Source::Live(c) = self {
            c.set_token(token);
        }
    }
}

#[derive(Clone)]
pub struct Connection {
    inner: Rc<RefCell<Inner>>,
}

impl PartialEq for Connection {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

/// The proxy that served this page.
pub fn own_proxy_url() -> String {
    let location = web_sys::window().expect("a window").location();
    let host = location.host().unwrap_or_else(|_| "127.0.0.1:8080".into());
    let secure = location.protocol().map(|p| p == "https:").unwrap_or(false);
    format!("{}://{host}/ws", if secure { "wss" } else { "ws" })
}

impl Connection {
    pub fn start(
        token: Option<String>,
        on_frame: Callback<ProxyFrame>,
        on_link: Callback<Link>,
    ) -> Connection {
        let inner = Inner {
            socket: None,
            handlers: Vec::new(),
            dialer: Dialer::new(own_proxy_url()),
            token,
            on_frame,
            on_link,
        };
        let connection = Connection { inner: Rc::new(RefCell::new(inner)) };
        open(&connection.inner);
        connection
    }

    pub fn send(&self, frame: &ClientFrame) -> bool {
        let inner = self.inner.borrow();
        match &inner.socket {
            Some(s) if s.ready_state() == WebSocket::OPEN => s.send_with_str(&encode(frame)).is_ok(),
            _ => false,
        }
    }

    /// Reconnects with another token (or none), which changes what the proxy allows.
    pub fn set_token(&self, token: Option<String>) {
        {
            let mut inner = self.inner.borrow_mut();
            inner.token = token;
            inner.dialer.restart();
            if let Some(s) = inner.socket.take() {
                let _ = s.close();
            }
        }
        open(&self.inner);
    }
}

fn open(inner_rc: &Rc<RefCell<Inner>>) {
    let mut inner = inner_rc.borrow_mut();
    let url = inner.dialer.url().to_string();
    // The token in the upgrade request too: a proxy whose room of viewers is full turns away
    // connections without it before they say hello.
    let request = match &inner.token {
        Some(token) => format!("{url}?token={}", String::from(js_sys::encode_uri_component(token))),
        None => url.clone(),
    };
    let socket = match WebSocket::new(&request) {
        Ok(s) => s,
        Err(_) => {
            drop(inner);
            return schedule_reconnect(inner_rc);
        }
    };
    let generation = inner.dialer.generation();
    let on_open = {
        let (rc, socket) = (inner_rc.clone(), socket.clone());
        Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            let token = rc.borrow().token.clone();
            let hello = ClientFrame::Hello { version: PROTOCOL_VERSION, token, subscribe: true };
            let _ = socket.send_with_str(&encode(&hello));
            let (link, on_link) = {
                let mut inner = rc.borrow_mut();
                (inner.dialer.opened(), inner.on_link.clone())
            };
            on_link.emit(link);
        })
    };
    let on_message = {
        let rc = inner_rc.clone();
        Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
            let Some(event) = event.dyn_ref::<MessageEvent>() else { return };
            let Some(text) = event.data().as_string() else { return };
            let frame = match parse::<ProxyFrame>(&text) {
                Ok(frame) => frame,
                Err(e) => {
                    let head: String = text.chars().take(200).collect();
                    web_sys::console::warn_1(
                        &format!("Consenso: unreadable frame from the proxy: {e}: {head}").into(),
                    );
                    return;
                }
            };
            if let ProxyFrame::Welcome { proxies, .. } = &frame {
                rc.borrow_mut().dialer.welcomed(proxies);
            }
            let on_frame = rc.borrow().on_frame.clone();
            on_frame.emit(frame);
        })
    };
    let on_close = {
        let rc = inner_rc.clone();
        Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
            let _ = event.dyn_ref::<CloseEvent>();
            if rc.borrow().dialer.generation() != generation {
                return;
            }
            schedule_reconnect(&rc);
        })
    };
    socket.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    socket.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    socket.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    inner.handlers = vec![on_open, on_message, on_close];
    inner.socket = Some(socket);
}

fn schedule_reconnect(rc: &Rc<RefCell<Inner>>) {
    let (link, delay, generation, on_link) = {
        let mut inner = rc.borrow_mut();
        inner.socket = None;
        let (link, delay) = inner.dialer.lost();
        (link, delay, inner.dialer.generation(), inner.on_link.clone())
    };
    on_link.emit(link);
    let rc = rc.clone();
    yew::platform::spawn_local(async move {
        yew::platform::time::sleep(delay).await;
        if rc.borrow().dialer.generation() == generation {
            open(&rc);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_connection_waits_longer_each_time_up_to_four_seconds_and_an_open_one_starts_over() {
        let mut dialer = Dialer::new("ws://a:8080/ws".into());
        let waits: Vec<u64> = (0..7).map(|_| dialer.lost().1.as_millis() as u64).collect();
        assert_eq!(waits, [250, 500, 1_000, 2_000, 4_000, 4_000, 4_000]);
        assert_eq!(dialer.lost().0, Link::Reconnecting { attempt: 8 });
        dialer.opened();
        assert_eq!(dialer.lost().1, Duration::from_millis(250));
    }

    #[test]
    fn after_a_welcome_failover_goes_round_every_proxy_starting_with_the_one_reached() {
        let mut dialer = Dialer::new("ws://a:8080/ws".into());
        dialer.welcomed(&["b:8081".into(), "a:8080".into(), "c:8082".into()]);
        assert_eq!(dialer.url(), "ws://a:8080/ws");
        let mut tried = Vec::new();
        for _ in 0..4 {
            dialer.lost();
            tried.push(dialer.url().to_string());
        }
        assert_eq!(tried, ["ws://b:8081/ws", "ws://c:8082/ws", "ws://a:8080/ws", "ws://b:8081/ws"]);
    }

    #[test]
    fn a_page_served_over_https_dials_every_proxy_with_wss() {
        let mut dialer = Dialer::new("wss://a/ws".into());
        dialer.welcomed(&["b:443".into()]);
        dialer.lost();
        assert_eq!(dialer.url(), "wss://b:443/ws");
    }

    #[test]
    fn the_link_shown_names_the_proxy_without_scheme_or_path() {
        let mut dialer = Dialer::new("wss://class.example:8443/ws".into());
        assert_eq!(dialer.opened(), Link::Connected { proxy: "class.example:8443".into() });
    }

    #[test]
    fn a_new_token_or_a_stop_voids_every_socket_of_an_older_generation() {
        let mut dialer = Dialer::new("ws://a/ws".into());
        let first = dialer.generation();
        dialer.lost();
        dialer.lost();
        dialer.restart();
        assert_ne!(dialer.generation(), first);
        assert_eq!(dialer.lost().0, Link::Reconnecting { attempt: 1 }, "a new token starts counting afresh");
        let second = dialer.generation();
        dialer.stop();
        assert_ne!(dialer.generation(), second);
    }
}
