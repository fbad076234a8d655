//! The page as a lecture tool, in a real browser against real processes: stopping and stepping
//! time, clicking a held message and dropping it, a lesson with its caption, the invariant
//! monitor's alarm, the keyboard alone, and the projector sizes (screenshots in
//! `artifacts/screenshots/`).

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::Locator;
use support::browser::Browser;
use support::{BIN, Cluster, TOKEN, serial};

fn run<F: std::future::Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(f);
}

const SOON: Duration = Duration::from_secs(15);
const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";
const ESCAPE: &str = "\u{E00C}";
const ARROW_RIGHT: &str = "\u{E014}";

async fn admin_page(cluster: &Cluster, query: &str) -> Browser {
    let b = Browser::open(&format!("{}?token={TOKEN}{query}", cluster.url())).await;
    b.wait(SOON, "a leader", || async { b.leader().await }).await;
    b
}

async fn time_state(b: &Browser) -> Option<String> {
    b.attr_all("[data-time]", "data-time").await.into_iter().next()
}

#[test]
fn time_stops_and_steps_from_the_page_and_a_clicked_message_can_be_dropped() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    run(async {
        let b = admin_page(&cluster, "").await;
        let leader = b.leader().await.unwrap();
        b.click(r#"button[data-action="pause"]"#).await;
        b.wait(SOON, "time shown stopped", || async {
            (time_state(&b).await.as_deref() == Some("stopped")).then_some(())
        })
        .await;
        // Crash the leader from its menu, then step until a message is held on screen.
        b.click(&format!(r#"[data-node-id="{leader}"]"#)).await;
        b.click(r#".node-actions button[data-action="crash"]"#).await;
        b.wait(SOON, "the leader crashed", || async {
            (b.node_attr(&leader, "data-state").await.as_deref() == Some("crashed")).then_some(())
        })
        .await;
        // Step until a message is held on screen, and click it: the inspector shows its fields.
        // (A held message can leave the screen between being seen and being clicked — one to
        // the crashed leader is dropped — so the next one is tried.)
        let mut clicked = None;
        for _ in 0..10 {
            b.click(r#"button[data-action="step"]"#).await;
            tokio::time::sleep(Duration::from_millis(900)).await;
            // Not one to the crashed leader: it is lost on arrival and leaves the screen.
            let held = b
                .attr_all(
                    &format!(r#".flight[data-held="true"]:not([data-to="{leader}"])"#),
                    "data-message-id",
                )
                .await;
            if !held.is_empty() && clicked.is_none() {
                b.screenshot("lecture-held-message").await;
            }
            for id in held {
                // Its kind now: the message may leave the screen once clicked (see above).
                let kind = b.attr_all(&format!(r#".flight[data-message-id="{id}"]"#), "data-kind").await;
                if b.try_click(&format!(r#".flight[data-message-id="{id}"]"#)).await
                    && let Some(kind) = kind.into_iter().next()
                {
                    clicked = Some((id, kind));
                    break;
                }
            }
            if clicked.is_some() {
                break;
            }
        }
        let (id, kind) = clicked.expect("a step produced a held message on screen, and it could be clicked");
        b.wait(SOON, "the inspector", || async {
            (b.count(&format!(r#"[data-inspector="{id}"] [data-field="term"]"#)).await == 1).then_some(())
        })
        .await;
        let title = b.client.find(Locator::Css(".inspector h2")).await.unwrap().text().await.unwrap();
        assert!(title.to_lowercase().contains(&kind.to_lowercase()), "{title} names the kind {kind}");
        b.screenshot("lecture-inspector").await;
        // Drop it: the servers no longer hold it.
        b.click(r#"button[data-action="drop-message"]"#).await;
        b.wait(SOON, "the message dropped", || async {
            let s = tokio::task::block_in_place(|| cluster.status())?;
            (!s.time.messages.iter().any(|m| m.id.to_string() == id)).then_some(())
        })
        .await;
        // Space runs time again, from the keyboard.
        b.client.find(Locator::Css("body")).await.unwrap().click().await.unwrap();
        b.key(" ").await;
        b.wait(SOON, "time shown running", || async {
            (time_state(&b).await.as_deref() == Some("running")).then_some(())
        })
        .await;
        b.wait(Duration::from_secs(20), "a new leader", || async {
            b.leader().await.filter(|l| *l != leader)
        })
        .await;
        b.close().await;
    });
}

#[test]
fn a_lesson_started_in_the_page_shows_its_captions_and_advances_with_next() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    run(async {
        let b = admin_page(&cluster, "").await;
        let select = b.client.find(Locator::Css(r#"select[data-control="lesson"]"#)).await.unwrap();
        select.select_by_value("replication").await.unwrap();
        b.click(r#"button[data-action="lesson-start"]"#).await;
        let mut seen = Vec::new();
        for _ in 0..12 {
            let caption = b
                .wait(Duration::from_secs(40), "a caption waiting for Next, or the outcome", || async {
                    let outcome = b.count("[data-lesson-outcome]").await > 0;
                    let waiting = b.count(r#".caption button[data-action="lesson-next"]"#).await > 0;
                    let text = b.client.find(Locator::Css("[data-caption]")).await.ok()?.text().await.ok()?;
                    (outcome || (waiting && !seen.contains(&text))).then_some(text)
                })
                .await;
            if b.count("[data-lesson-outcome]").await > 0 {
                break;
            }
            if seen.is_empty() {
                b.screenshot("lecture-lesson-caption").await;
            }
            seen.push(caption);
            b.click(r#".caption button[data-action="lesson-next"]"#).await;
        }
        assert!(seen.len() >= 3, "the lesson showed its captions one by one: {seen:?}");
        assert!(seen[0].contains("greeting"), "{seen:?}");
        let outcome = b.attr_all("[data-lesson-outcome]", "data-lesson-outcome").await;
        assert_eq!(outcome, vec!["passed"]);
        b.screenshot("lecture-lesson-passed").await;
        // Escape closes the finished lesson: its caption leaves the page.
        b.client.find(Locator::Css("body")).await.unwrap().click().await.unwrap();
        b.key(ESCAPE).await;
        b.wait(SOON, "the finished lesson closed", || async {
            (b.count("[data-lesson-outcome]").await == 0 && b.count("[data-caption]").await == 0)
                .then_some(())
        })
        .await;
        b.close().await;
    });
}

/// A lecturer runs every lesson back to back from the page on real processes, without
/// reloading: each starts from whatever the one before left (sessions, stopped time, a server
/// added and the leader removed) and its check holds.
#[test]
fn every_lesson_chains_in_the_page_on_real_processes() {
    let _turn = serial();
    let cluster = Cluster::start(5, 1);
    run(async {
        let b = admin_page(&cluster, "").await;
        let mut failed = Vec::new();
        for lesson in shared::lesson::CATALOG {
            let outcome = b.run_lesson(lesson.name, async |_: &Browser| {}).await;
            if outcome != "passed" {
                failed.push(format!("{}: {outcome}", lesson.name));
            }
            b.click(r#"[data-action="lesson-close"]"#).await;
        }
        b.screenshot("lecture-lessons-chained").await;
        b.close().await;
        assert!(failed.is_empty(), "lessons that failed when chained in the page: {failed:?}");
    });
}

#[test]
fn the_invariant_monitor_raises_a_red_alarm_in_the_page_when_a_defect_bites() {
    let _turn = serial();
    let cluster = Cluster::start_with(5, 1, &["--bug", "commit-old-term"]);
    run(async {
        let b = admin_page(&cluster, "").await;
        assert_eq!(b.attr_all("[data-bugs]", "data-bugs").await, vec!["commit-old-term"]);
        let mut lesson = Command::new(BIN)
            .args(["scenario", "run", "figure-8", "--proxy", &cluster.proxy(0), "--token", TOKEN])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let property = b
            .wait(Duration::from_secs(120), "the alarm banner", || async {
                b.attr_all("[data-alarm]", "data-alarm").await.into_iter().next()
            })
            .await;
        assert!(
            property == "state_machine_safety" || property == "leader_completeness",
            "the banner names the property: {property}"
        );
        b.screenshot("lecture-alarm").await;
        let status = lesson.wait().unwrap();
        assert!(!status.success(), "the lesson fails under the defect");
        b.close().await;
    });
}

#[test]
fn the_keyboard_alone_crashes_the_leader() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    run(async {
        let b = admin_page(&cluster, "").await;
        let leader = b.leader().await.unwrap();
        b.client.find(Locator::Css("body")).await.unwrap().click().await.unwrap();
        let mut focused = String::new();
        for _ in 0..80 {
            b.key(TAB).await;
            focused = b
                .js("return document.activeElement.getAttribute('data-node-id') || ''")
                .await
                .as_str()
                .unwrap_or_default()
                .to_string();
            if focused == leader {
                break;
            }
        }
        assert_eq!(focused, leader, "Tab reaches the leader");
        b.key(ENTER).await;
        b.wait(SOON, "its menu, focused", || async {
            let action = b.js("return document.activeElement.getAttribute('data-action') || ''").await;
            (action.as_str() == Some("crash")).then_some(())
        })
        .await;
        b.screenshot("lecture-keyboard-menu").await;
        b.key(ENTER).await;
        b.wait(SOON, "the leader crashed", || async {
            (b.node_attr(&leader, "data-state").await.as_deref() == Some("crashed")).then_some(())
        })
        .await;
        // The help lists the shortcuts.
        b.key("?").await;
        b.wait(SOON, "the shortcuts", || async {
            (b.count(r#"[data-help="open"]"#).await == 1).then_some(())
        })
        .await;
        b.close().await;
    });
}

/// Checks, in the page, that the first screen needs no scrolling and nothing of the cluster,
/// the logs, the caption or the controls is cut off; returns what is wrong.
const FITS: &str = r#"
const problems = [];
const vw = window.innerWidth, vh = window.innerHeight;
const screen = document.querySelector('.screen');
if (screen.scrollHeight > screen.clientHeight + 1) problems.push('the first screen overflows by ' + (screen.scrollHeight - screen.clientHeight) + ' px');
for (const sel of ['.cluster-canvas', '.logs-area', '.time-bar', '.caption', '[data-node-id]', '.log-row .cells']) {
  for (const el of document.querySelectorAll(sel)) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;
    if (r.left < -1 || r.top < -1 || r.right > vw + 1 || r.bottom > vh + 1) problems.push(sel + ' is cut off: ' + JSON.stringify([r.left, r.top, r.right, r.bottom]));
  }
}
// The newest entry of every log is drawn.
for (const row of document.querySelectorAll('.log-row')) {
  const cells = row.querySelectorAll('.cell[data-index]');
  const box = row.querySelector('.cells').getBoundingClientRect();
  if (cells.length && cells[cells.length - 1].getBoundingClientRect().right > box.right + 1) problems.push('the newest entry of ' + row.dataset.node + ' is clipped');
}
return problems;
"#;

/// Relative luminance contrast of every text the check lists against its background.
const CONTRAST: &str = r#"
function rgb(c) {
  const m = (c.match(/[\d.]+/g) || []).map(Number);
  // color-mix() computes to color(srgb r g b / a) with channels from 0 to 1.
  if (c.startsWith('color(srgb')) return [m[0] * 255, m[1] * 255, m[2] * 255, m.length > 3 ? m[3] : 1];
  return m.length ? m.slice(0, 4) : [0, 0, 0, 0];
}
function lum([r, g, b]) { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); }
function background(el) { for (let e = el; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor); if (c[3] === undefined || c[3] > 0.5) { if (!(c[0] === 0 && c[1] === 0 && c[2] === 0 && c[3] === 0)) return c; } } return rgb(getComputedStyle(document.querySelector('.app')).backgroundColor); }
const worst = [];
for (const el of document.querySelectorAll('.cell[data-term], .time-state, .row-label strong, .caption-text, header .summary, .note, .rate, h2, .node text.name, .node text.role, .node text.term')) {
  const style = getComputedStyle(el);
  const fg = rgb(el instanceof SVGElement ? style.fill : style.color);
  const bg = el instanceof SVGElement ? rgb(getComputedStyle(el.closest('.app')).backgroundColor) : background(el);
  const [a, b] = [lum(fg), lum(bg)];
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < 4.5) worst.push(el.className.baseVal !== undefined ? el.className.baseVal : el.className + ': ' + ratio.toFixed(2));
}
return worst;
"#;

#[test]
fn one_projector_screen_holds_the_cluster_the_logs_the_caption_and_the_controls() {
    let _turn = serial();
    let cluster = Cluster::start(5, 1);
    // A lesson's caption on screen, and some entries in the logs.
    for i in 0..30 {
        let out = Command::new(BIN)
            .args(["client", "--proxy", &cluster.proxy(0), "--token", TOKEN, "put", &format!("k{i}"), "v"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    run(async {
        for (present, suffix) in [(false, ""), (true, "&present")] {
            let b = admin_page(&cluster, suffix).await;
            if !present {
                let select = b.client.find(Locator::Css(r#"select[data-control="lesson"]"#)).await.unwrap();
                select.select_by_value("leader-crash").await.unwrap();
                b.click(r#"button[data-action="lesson-start"]"#).await;
            }
            b.wait(Duration::from_secs(40), "a caption", || async {
                (b.count("[data-caption]").await == 1).then_some(())
            })
            .await;
            // A page opened during a lesson (here the second, in presentation mode) names it in
            // the picker: Start must not start another lesson than the one on screen.
            let picked =
                b.js(r#"return document.querySelector('select[data-control="lesson"]').value"#).await;
            assert_eq!(picked, serde_json::json!("leader-crash"), "the picker names the running lesson");
            for (w, h) in [(1600, 900), (1280, 720)] {
                b.viewport(w, h).await;
                tokio::time::sleep(Duration::from_millis(700)).await;
                let mode = if present { "presentation" } else { "normal" };
                b.screenshot(&format!("projector-{w}x{h}-{mode}")).await;
                let problems = b.js(FITS).await;
                assert_eq!(problems, serde_json::json!([]), "{w}×{h} {mode}");
                let low = b.js(CONTRAST).await;
                assert_eq!(low, serde_json::json!([]), "text below 4.5:1 at {w}×{h} {mode}");
                if present {
                    let label = b
                        .js("return Math.min(...[...document.querySelectorAll('.node text.name')].map(t => parseFloat(getComputedStyle(t).fontSize) * t.getScreenCTM().a))")
                        .await;
                    assert!(
                        label.as_f64().unwrap_or(0.0) >= 18.0,
                        "server labels ≥ 18 px at {w}×{h}: {label}"
                    );
                }
            }
            b.close().await;
        }
    });
}

/// A projector shows the address bar and the links: the token leaves both on load, and a
/// reload keeps the lecturer's controls. Space is time's, whatever has the focus: a focused
/// button is not pressed again, a focused server does not open its menu.
#[test]
fn the_token_leaves_the_address_bar_and_space_always_stops_and_runs_time() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    run(async {
        let b = admin_page(&cluster, "").await;
        let href = b.js("return location.href").await;
        assert!(
            !href.as_str().unwrap_or_default().contains(TOKEN),
            "the address still shows the token: {href}"
        );
        let links = b
            .js("return [...document.querySelectorAll('[href],[src]')].map(e => e.getAttribute('href') || e.getAttribute('src')).join(' ')")
            .await;
        assert!(!links.as_str().unwrap_or_default().contains(TOKEN), "a link carries the token: {links}");
        let text = b.js("return document.body.innerText").await;
        assert!(!text.as_str().unwrap_or_default().contains(TOKEN), "the page shows the token");
        b.client.refresh().await.unwrap();
        b.wait(SOON, "the lecturer's controls after a reload", || async {
            (b.attr_all("[data-admin]", "data-admin").await == ["true"]).then_some(())
        })
        .await;
        // The last seconds in words, fetched with the token in a header (no link carries it).
        b.js(r#"window.__saved = []; const make = URL.createObjectURL;
            URL.createObjectURL = function (blob) { blob.text().then(t => window.__saved.push(t)); return make.call(URL, blob); };"#)
            .await;
        b.click(r#".save-panel button[data-save="words"]"#).await;
        let words = b
            .wait(SOON, "the words saved", || async {
                b.js("return window.__saved.length ? window.__saved[0] : null")
                    .await
                    .as_str()
                    .map(String::from)
            })
            .await;
        assert!(words.contains("node") || words.contains("Node"), "the diagram in words: {words:.200}");
        // Heal, then Space with the Heal button still focused: time stops, Heal is not pressed.
        b.click(r#"button[data-action="heal"]"#).await;
        let heals = || async {
            b.js("return [...document.querySelectorAll('.results li code')].filter(c => c.textContent.toLowerCase().includes('heal')).length")
                .await
                .as_u64()
        };
        b.wait(SOON, "one heal sent", || async { (heals().await == Some(1)).then_some(()) }).await;
        b.key(" ").await;
        b.wait(SOON, "time stopped by Space", || async {
            (time_state(&b).await.as_deref() == Some("stopped")).then_some(())
        })
        .await;
        assert_eq!(heals().await, Some(1), "Space pressed the focused Heal button");
        // → steps (the Heal button still focused): a timer fires, and its messages wait on
        // screen, each a keyboard stop; Enter on one opens the inspector.
        b.wait(SOON, "a held message, reachable by keyboard", || async {
            if b.count(r#".flight[data-held="true"][tabindex="0"]"#).await > 0 {
                return Some(());
            }
            b.key(ARROW_RIGHT).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            None
        })
        .await;
        b.js(r#"document.querySelector('.flight[data-held="true"][tabindex="0"]').focus()"#).await;
        b.key(ENTER).await;
        b.wait(SOON, "the inspector, opened from the keyboard", || async {
            (b.count("[data-inspector]").await == 1).then_some(())
        })
        .await;
        // A server with the focus: Space runs time, its menu stays closed.
        b.js(r#"document.querySelector('[data-node-id="1"]').focus()"#).await;
        b.key(" ").await;
        b.wait(SOON, "time running again", || async {
            (time_state(&b).await.as_deref() == Some("running")).then_some(())
        })
        .await;
        assert_eq!(b.count(".menu").await, 0, "Space opened the server's menu");
        // Reset asks first: dismissed, nothing is sent; accepted, the reset goes.
        let resets = || async {
            b.js("return [...document.querySelectorAll('.results li code')].filter(c => c.textContent.toLowerCase().includes('reset')).length")
                .await
                .as_u64()
        };
        b.click(r#"button[data-action="reset"]"#).await;
        b.client.dismiss_alert().await.expect("a confirmation was asked");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(resets().await, Some(0), "a dismissed reset was sent");
        b.click(r#"button[data-action="reset"]"#).await;
        b.client.accept_alert().await.expect("a confirmation was asked");
        b.wait(SOON, "the reset sent", || async { (resets().await == Some(1)).then_some(()) }).await;
        b.close().await;
    });
}
