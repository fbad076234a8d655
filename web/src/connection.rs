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

struct Inner {
    socket: Option<WebSocket>,
    /// Kept alive as long as the socket uses them.
    handlers: Vec<Closure<dyn FnMut(web_sys::Event)>>,
    candidates: Vec<String>,
    next: usize,
    attempt: u32,
    token: Option<String>,
    on_frame: Callback<ProxyFrame>,
    on_link: Callback<Link>,
    generation: u64,
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

    /// Stops talking to the proxy for good (the page opened a recording instead).
    /// Stops this source for good (the page opened a recording instead): no frame from it
    /// reaches the store again.
    pub fn stop(&self) {
        match self {
            Source::Live(c) => {
                let mut inner = c.inner.borrow_mut();
                inner.generation += 1;
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
            candidates: vec![own_proxy_url()],
            next: 0,
            attempt: 0,
            token,
            on_frame,
            on_link,
            generation: 0,
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
            inner.generation += 1;
            if let Some(s) = inner.socket.take() {
                let _ = s.close();
            }
            inner.attempt = 0;
        }
        open(&self.inner);
    }
}

fn open(inner_rc: &Rc<RefCell<Inner>>) {
    let mut inner = inner_rc.borrow_mut();
    let url = inner.candidates[inner.next % inner.candidates.len()].clone();
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
    let generation = inner.generation;
    let on_open = {
        let (rc, socket, url) = (inner_rc.clone(), socket.clone(), url.clone());
        Closure::<dyn FnMut(web_sys::Event)>::new(move |_| {
            let token = rc.borrow().token.clone();
            let hello = ClientFrame::Hello { version: PROTOCOL_VERSION, token, subscribe: true };
            let _ = socket.send_with_str(&encode(&hello));
            let on_link = {
                let mut inner = rc.borrow_mut();
                inner.attempt = 0;
                inner.on_link.clone()
            };
            let proxy = url
                .trim_start_matches("ws://")
                .trim_start_matches("wss://")
                .trim_end_matches("/ws")
                .to_string();
            on_link.emit(Link::Connected { proxy });
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
                // Remember every proxy, this one first, for failover.
                let mut inner = rc.borrow_mut();
                let current = inner.candidates[inner.next % inner.candidates.len()].clone();
                let mut list = vec![current.clone()];
                list.extend(proxies.iter().map(|p| format!("ws://{p}/ws")).filter(|u| *u != current));
                inner.candidates = list;
                inner.next = 0;
            }
            let on_frame = rc.borrow().on_frame.clone();
            on_frame.emit(frame);
        })
    };
    let on_close = {
        let rc = inner_rc.clone();
        Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
            let _ = event.dyn_ref::<CloseEvent>();
            if rc.borrow().generation != generation {
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
    let (attempt, generation, on_link) = {
        let mut inner = rc.borrow_mut();
        inner.socket = None;
        inner.attempt += 1;
        inner.next += 1;
        (inner.attempt, inner.generation, inner.on_link.clone())
    };
    on_link.emit(Link::Reconnecting { attempt });
    let delay = Duration::from_millis((250u64 << attempt.min(5)).min(4_000));
    let rc = rc.clone();
    yew::platform::spawn_local(async move {
        yew::platform::time::sleep(delay).await;
        if rc.borrow().generation == generation {
            open(&rc);
        }
    });
}
