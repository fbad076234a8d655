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
