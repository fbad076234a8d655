//! The page with no cluster at all: `dist/` from a plain static file server (no proxy, no
//! consenso process), driven in headless Chromium. `?sim` runs a simulated cluster in the page;
//! without it, the page offers one once no proxy answers.

mod support;

use std::time::Duration;

use fantoccini::Locator;
use support::browser::Browser;
use support::{repo_root, serial};

fn run<F: std::future::Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(f);
}

const SOON: Duration = Duration::from_secs(20);

/// Serves `dist/` as any static file server would: files by path, nothing else.
async fn static_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let files = tower_http::services::ServeDir::new(repo_root().join("dist"));
    let app = axum::Router::new().fallback_service(files);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{address}/")
}

#[test]
fn a_static_copy_of_the_page_simulates_a_cluster_that_elects_a_leader_and_takes_a_write() {
    let _turn = serial();
    run(async {
        let url = static_server().await;
        let b = Browser::open(&format!("{url}?sim=7&servers=5")).await;
        b.wait(SOON, "the simulated cluster", || async {
            (b.count(r#"[data-link="simulated"]"#).await == 1).then_some(())
        })
        .await;
        let leader = b
            .wait(SOON, "five servers and one leader", || async {
                (b.attr_all("[data-node-id]", "data-node-id").await.len() == 5).then_some(())?;
                b.leader().await
            })
            .await;
        let key = b.client.find(Locator::Css(r#"input[name="key"]"#)).await.unwrap();
        key.clear().await.unwrap();
        key.send_keys("greeting").await.unwrap();
        let value = b.client.find(Locator::Css(r#"input[name="value"]"#)).await.unwrap();
        value.clear().await.unwrap();
        value.send_keys("hola").await.unwrap();
        b.click(r#"button[data-op="put"]"#).await;
        b.wait(SOON, "the value in every store", || async {
            let cells = b.attr_all(r#"tr[data-key="greeting"] td[data-node]"#, "title").await;
            (cells.len() == 5 && cells.iter().all(|v| v == "hola")).then_some(())
        })
        .await;
        b.screenshot("simulated-write").await;
        // The last seconds as a space-time diagram, made in the page: catch the file it saves.
        b.js(r#"window.__saved = []; const make = URL.createObjectURL;
            URL.createObjectURL = function (blob) { blob.text().then(t => window.__saved.push(t)); return make.call(URL, blob); };"#)
            .await;
        b.click(r#".save-panel button[data-save="diagram"]"#).await;
        let svg = b
            .wait(SOON, "the diagram saved", || async {
                b.js("return window.__saved.length ? window.__saved[0] : null")
                    .await
                    .as_str()
                    .map(String::from)
            })
            .await;
        let doc = roxmltree::Document::parse(&svg).expect("valid SVG");
        let lifelines = doc
            .descendants()
            .filter(|n| n.attribute("class").is_some_and(|c| c.contains("lifeline")))
            .count();
        assert_eq!(lifelines, 5, "one lifeline per server");
        // Crash the leader from the page: another is elected, as in a live cluster.
        b.click(&format!(r#"[data-node-id="{leader}"]"#)).await;
        b.click(r#".node-actions button[data-action="crash"]"#).await;
        b.wait(SOON, "another leader", || async {
            let l = b.leader().await?;
            (l != leader && b.node_attr(&leader, "data-state").await.as_deref() == Some("crashed"))
                .then_some(())
        })
        .await;
        b.screenshot("simulated-leader-crashed").await;
        b.close().await;
    });
}

#[test]
fn with_no_proxy_the_page_offers_a_simulated_cluster() {
    let _turn = serial();
    run(async {
        let url = static_server().await;
        let b = Browser::open(&url).await;
        b.wait(SOON, "the offer to simulate", || async {
            (b.count(r#"[data-action="simulate"]"#).await == 1).then_some(())
        })
        .await;
        b.click(r#"[data-action="simulate"]"#).await;
        b.wait(SOON, "a simulated leader", || async {
            (b.count(r#"[data-link="simulated"]"#).await == 1).then_some(())?;
            b.leader().await
        })
        .await;
        let address = b.client.current_url().await.unwrap();
        let seed = address.query_pairs().find(|(k, _)| k == "sim").map(|(_, v)| v.to_string());
        assert!(seed.is_some_and(|s| s.parse::<u64>().is_ok()), "the URL carries the seed: {address}");
        b.close().await;
    });
}

#[test]
fn a_recorded_session_replays_in_the_page_to_the_state_the_live_cluster_had() {
    let _turn = serial();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("session.rec");
    let cluster = support::Cluster::start_with(3, 1, &["--record", file.to_str().unwrap()]);
    let old = cluster.wait_for_leader(Duration::from_secs(30));
    for i in 0..5 {
        let out = std::process::Command::new(support::BIN)
            .args([
                "client",
                "--proxy",
                &cluster.proxy(0),
                "--token",
                support::TOKEN,
                "put",
                &format!("k{i}"),
                "v",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    cluster.admin(shared::protocol::AdminCommand::Crash { node: old });
    let new =
        support::wait_for(Duration::from_secs(30), "a new leader", || cluster.leader().filter(|l| *l != old));
    std::thread::sleep(Duration::from_millis(1_500));
    let live = cluster.status().expect("the live status");
    drop(cluster);

    run(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route_service("/session.rec", tower_http::services::ServeFile::new(&file))
            .fallback_service(tower_http::services::ServeDir::new(repo_root().join("dist")));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let b = Browser::open(&format!("http://{address}/?replay=/session.rec&speed=8")).await;
        b.wait(SOON, "the replay to start", || async {
            (b.count(r#"[data-link="replay"]"#).await == 1).then_some(())
        })
        .await;
        b.wait(Duration::from_secs(60), "the replay to reach its end", || async {
            let playing = b.attr_all("[data-replay-playing]", "data-replay-playing").await;
            (playing == ["false"]).then_some(())
        })
        .await;
        b.screenshot("replay-ended").await;
        assert_eq!(b.leader().await, Some(new.to_string()), "the leader the live cluster had");
        for node in &live.nodes {
            let id = node.id.to_string();
            assert_eq!(
                b.node_attr(&id, "data-state").await.as_deref(),
                Some(node.state.as_str()),
                "node {id}"
            );
            if let Some(commit) = node.commit {
                assert_eq!(
                    b.node_attr(&id, "data-commit").await,
                    Some(commit.to_string()),
                    "node {id}'s commit"
                );
            }
            if let Some(term) = node.term {
                assert_eq!(b.node_attr(&id, "data-term").await, Some(term.to_string()), "node {id}'s term");
            }
        }
        // Back to the start (the proxy was up before its servers), then to the first election:
        // the leader that was later crashed.
        b.js(r#"const s = document.querySelector('.replay-bar .scrub'); s.value = 0; s.dispatchEvent(new Event('input', {bubbles: true}));"#).await;
        b.wait(SOON, "the first moment again", || async {
            let states = b.attr_all("[data-node-id]", "data-state").await;
            (!states.is_empty() && states.iter().all(|s| s != "crashed")).then_some(())
        })
        .await;
        // One step shows one more event (or status): exactly one line of the recording.
        let frame = || async {
            b.attr_all("[data-replay-frame]", "data-replay-frame").await[0].parse::<usize>().unwrap()
        };
        let before = frame().await;
        b.click(r#"[data-replay="step"]"#).await;
        b.wait(SOON, "one step", || async { (frame().await == before + 1).then_some(()) }).await;
        b.click(r#"[data-replay="next-election"]"#).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let at: f64 = b.attr_all("[data-replay-at]", "data-replay-at").await[0].parse().unwrap();
        let end: f64 = b.attr_all("[data-replay-duration]", "data-replay-duration").await[0].parse().unwrap();
        assert!(at > 0.0 && at < end, "the first election is inside the run: {at} of {end}");
        // There the page says who was elected: the leader that was crashed later.
        b.wait(SOON, "the first leader named", || async {
            let named = b.attr_all(".summary[data-leader]", "data-leader").await;
            (named == [old.to_string()]).then_some(())
        })
        .await;
        b.close().await;
    });
}

#[test]
fn a_lesson_runs_step_by_step_in_the_simulated_page() {
    let _turn = serial();
    run(async {
        let url = static_server().await;
        let b = Browser::open(&format!("{url}?sim=3&servers=5")).await;
        b.wait(SOON, "a simulated leader", || async { b.leader().await }).await;
        // Called at every caption and once at the end.
        let mut calls = 0;
        let outcome = b
            .run_lesson("leader-crash", async |b: &Browser| {
                if calls == 0 {
                    b.screenshot("simulated-lesson").await;
                }
                calls += 1;
            })
            .await;
        let shown = calls - 1;
        assert!(shown >= 3, "captions shown one by one: {shown}");
        assert_eq!(outcome, "passed", "the lesson's check held on the simulated cluster");
        b.close().await;
    });
}

/// English words that have no business on a Spanish page (names of messages, keys and values
/// a lesson writes are data, not words of the page, and are left alone).
const ENGLISH: &[&str] = &[
    "the",
    "and",
    "of",
    "is",
    "are",
    "leader",
    "leads",
    "follower",
    "candidate",
    "node",
    "term",
    "committed",
    "stopped",
    "held",
    "next",
    "waiting",
    "passed",
    "failed",
    "votes",
    "messages",
    "reached",
    "with",
    "without",
];

/// The words on screen no Spanish reader should meet, with where they were.
async fn english_on_screen(b: &Browser) -> Vec<String> {
    let text = b
        .js(r#"const out = [];
            const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
            while (walker.nextNode()) {
                const p = walker.currentNode.parentElement;
                if (!p || p.closest('.kv, script, style, select') || p.getClientRects().length === 0) continue;
                out.push(walker.currentNode.textContent);
            }
            return out.join(' | ');"#)
        .await;
    let text = text.as_str().unwrap_or_default().to_string();
    let mut found = Vec::new();
    for piece in text.split(" | ") {
        // Identifiers (`leader-crash`, `lesson=v1`) are names, not words of the page.
        let english = piece
            .split(|c: char| c.is_whitespace() || "|.,;:()«»\"!?¡¿·—…→".contains(c))
            .filter(|w| !w.contains(['-', '=', '_', '#']))
            .find(|w| ENGLISH.contains(&w.to_lowercase().as_str()));
        if let Some(word) = english {
            found.push(format!("{word}: {}", piece.chars().take(140).collect::<String>()));
        }
    }
    found
}

/// A lecturer teaching in Spanish runs every lesson back to back on one simulated page, without
/// reloading: every caption, banner and outcome on screen is in Spanish, and every lesson's
/// check holds, whatever the one before left behind. Then a defect's banner and the alarm it
/// raises, in Spanish too.
#[test]
fn every_lesson_chains_on_one_simulated_page_and_a_spanish_page_shows_no_english() {
    let _turn = serial();
    run(async {
        let url = static_server().await;
        let b = Browser::open(&format!("{url}?sim=5&servers=5&lang=es")).await;
        b.wait(SOON, "a simulated leader", || async { b.leader().await }).await;
        let (mut english, mut failed) = (Vec::new(), Vec::new());
        for lesson in shared::lesson::CATALOG {
            let on_screen = async |b: &Browser| {
                english
                    .extend(english_on_screen(b).await.into_iter().map(|w| format!("{}: {w}", lesson.name)))
            };
            let outcome = b.run_lesson(lesson.name, on_screen).await;
            if outcome != "passed" {
                failed.push(format!("{}: {outcome}", lesson.name));
            }
            b.click(r#"[data-action="lesson-close"]"#).await;
        }
        b.screenshot("simulated-lessons-chained-es").await;
        b.close().await;

        let b = Browser::open(&format!("{url}?sim=12&servers=5&lang=es&bug=commit-old-term")).await;
        b.wait(SOON, "a simulated leader", || async { b.leader().await }).await;
        let on_screen = async |b: &Browser| {
            english.extend(english_on_screen(b).await.into_iter().map(|w| format!("figure-8: {w}")))
        };
        let outcome = b.run_lesson("figure-8", on_screen).await;
        assert_eq!(outcome, "failed", "the defect makes figure-8's check fail");
        assert!(b.count("[data-alarm]").await > 0, "the alarm is on screen");
        b.screenshot("simulated-alarm-es").await;
        b.close().await;

        assert!(failed.is_empty(), "lessons that failed when chained in the page: {failed:?}");
        english.sort();
        english.dedup();
        assert!(english.is_empty(), "English on the Spanish page:\n{}", english.join("\n"));
    });
}
