//! Headless Chromium driven over WebDriver (chromedriver), for the browser tests and the page
//! benchmark.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use super::repo_root;

pub struct Browser {
    driver: Child,
    pub client: Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn open(url: &str) -> Browser {
        assert!(
            std::path::Path::new("/usr/bin/chromium").exists()
                && std::path::Path::new("/usr/bin/chromedriver").exists(),
            "browser tests need Debian's chromium and chromium-driver (./dev test installs them)"
        );
        assert!(
            repo_root().join("dist/index.html").exists(),
            "the page is not built: run `./dev page` (./dev test does)"
        );
        let port = super::free_ports();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--window-size=1400,1300",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            let attempt = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await;
            match attempt {
                Ok(c) => break c,
                Err(e) if Instant::now() > deadline => panic!("cannot drive chromium: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        client.goto(url).await.expect("page loads");
        Browser { driver, client, _profile: profile }
    }

    pub async fn attr_all(&self, css: &str, attr: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(elements) = self.client.find_all(Locator::Css(css)).await {
            for e in elements {
                if let Ok(Some(v)) = e.attr(attr).await {
                    out.push(v);
                }
            }
        }
        out
    }

    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.map(|v| v.len()).unwrap_or(0)
    }

    /// Polls until `probe` holds, or fails with what it was waiting for and a screenshot.
    pub async fn wait<F, Fut, T>(&self, within: Duration, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + within;
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            if Instant::now() > deadline {
                self.screenshot(&format!("failed-{}", what.replace(' ', "-"))).await;
                panic!("timed out after {within:?} waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    pub async fn screenshot(&self, name: &str) {
        let dir = repo_root().join("artifacts/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        if let Ok(png) = self.client.screenshot().await {
            std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
        }
    }

    /// Clicks the element `css` selects if it is (still) there; false if it is gone.
    pub async fn try_click(&self, css: &str) -> bool {
        for _ in 0..5 {
            let Ok(element) = self.client.find(Locator::Css(css)).await else { return false };
            match element.click().await {
                Ok(()) => return true,
                Err(e) if e.to_string().contains("stale element") => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// Clicks the element `css` selects. The page redraws several times a second, so the
    /// element found may be replaced before the click lands: then it is found again.
    pub async fn click(&self, css: &str) {
        for attempt in 1.. {
            let element = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
            match element.click().await {
                Ok(()) => return,
                Err(e) if attempt < 5 && e.to_string().contains("stale element") => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{css}: {e}"),
            }
        }
    }

    /// Runs lesson `name` from the page — picked, *Start*, then *Next* at every caption, as a
    /// lecturer would — calling `each` at every caption and at the end; its outcome (`passed` or
    /// `failed`, with what the page says printed).
    pub async fn run_lesson(&self, name: &str, mut each: impl AsyncFnMut(&Browser)) -> String {
        let pick = format!(
            r#"const s = document.querySelector('[data-control="lesson"]'); s.value = '{name}'; s.dispatchEvent(new Event('change', {{bubbles: true}}));"#
        );
        self.js(&pick).await;
        self.click(r#"[data-action="lesson-start"]"#).await;
        // Everything below looks only inside this lesson's caption: until the page has the
        // new lesson, the last one's outcome may still be on screen.
        let this = format!(r#".caption[data-lesson="{name}"]"#);
        let mut shown = 0;
        // Generous: a lesson's own waits end it with a failure well before this, and a slow
        // machine (CI's, building debug code beside the browser) must not turn one into a hang.
        for _ in 0..40 {
            let step = self
                .wait(Duration::from_secs(150), &format!("{name}'s next caption or its outcome"), || async {
                    if self.count(&format!("{this} [data-lesson-outcome]")).await > 0 {
                        return Some(None);
                    }
                    let next = format!(r#"{this} [data-action="lesson-next"]:not([disabled])"#);
                    let waiting = self.count(&next).await > 0;
                    let step: usize = self.attr_all(&this, "data-step").await.first()?.parse().ok()?;
                    (waiting && step > shown).then_some(Some(step))
                })
                .await;
            each(self).await;
            let Some(step) = step else { break };
            shown = step;
            self.click(r#"[data-action="lesson-next"]"#).await;
        }
        let outcome = self
            .wait(Duration::from_secs(150), &format!("{name}'s outcome"), || async {
                self.attr_all(&format!("{this} [data-lesson-outcome]"), "data-lesson-outcome")
                    .await
                    .into_iter()
                    .next()
            })
            .await;
        if outcome != "passed" {
            // What the page says went wrong, for the test's report.
            let said = self
                .js(&format!(
                    "return document.querySelector('{this} [data-lesson-outcome]')?.textContent ?? ''"
                ))
                .await;
            eprintln!("lesson {name}: {outcome}: {}", said.as_str().unwrap_or_default());
        }
        outcome
    }

    /// The leader on screen, if exactly one node is drawn as leader.
    pub async fn leader(&self) -> Option<String> {
        let leaders = self.attr_all(r#"[data-node-id][data-role="leader"]"#, "data-node-id").await;
        (leaders.len() == 1).then(|| leaders[0].clone())
    }

    /// Runs a script in the page and returns what it returns.
    pub async fn js(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Presses a key on whatever has the focus (WebDriver key codes: "\u{E004}" is Tab,
    /// "\u{E007}" Enter, "\u{E014}" the right arrow).
    pub async fn key(&self, key: &str) {
        use fantoccini::actions::{InputSource, KeyAction, KeyActions};
        // As a person types: to the page, wherever the focus is. (Sending to the focused
        // element fails whenever the focus rests on one WebDriver deems not interactable — a
        // server's shape behind a moving message, say — and made keyboard tests flaky.)
        let mut actions = KeyActions::new("keyboard".to_string());
        for c in key.chars() {
            actions = actions.then(KeyAction::Down { value: c }).then(KeyAction::Up { value: c });
        }
        self.client.perform_actions(actions).await.expect("the key is typed");
    }

    /// Makes the page's viewport exactly `width` × `height` CSS pixels.
    pub async fn viewport(&self, width: u32, height: u32) {
        self.client.set_window_size(width, height).await.expect("window resized");
        let inner = self.js("return [window.innerWidth, window.innerHeight]").await;
        let (iw, ih) = (inner[0].as_u64().unwrap_or(0) as u32, inner[1].as_u64().unwrap_or(0) as u32);
        if (iw, ih) != (width, height) {
            let (w, h) = (width + width.saturating_sub(iw), height + height.saturating_sub(ih));
            self.client.set_window_size(w, h).await.expect("window resized");
        }
    }

    pub async fn node_attr(&self, node: &str, attr: &str) -> Option<String> {
        self.attr_all(&format!(r#"[data-node-id="{node}"]"#), attr).await.into_iter().next()
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
