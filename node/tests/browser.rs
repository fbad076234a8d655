//! The page in a real browser: headless Chromium driven over WebDriver against a real
//! `consenso cluster`. Screenshots of the main states land in `artifacts/screenshots/`.

mod support;

use std::process::Command;
use std::time::Duration;

use fantoccini::Locator;
use shared::protocol::{AdminCommand, ClientFrame, ProxyFrame};
use support::browser::Browser;
use support::{Cluster, TOKEN, serial};

fn run<F: std::future::Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(f);
}

const SOON: Duration = Duration::from_secs(15);

#[test]
fn the_page_connects_and_shows_three_nodes_and_one_leader() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    run(async {
        let b = Browser::open(&format!("{}?token={TOKEN}", cluster.url())).await;
        b.wait(SOON, "the WebSocket to connect", || async {
            (b.count(r#"[data-link="connected"]"#).await == 1).then_some(())
        })
        .await;
        let leader = b
            .wait(SOON, "three nodes and one leader", || async {
                let nodes = b.attr_all("[data-node-id]", "data-node-id").await;
                (nodes.len() == 3).then_some(())?;
                b.leader().await
            })
            .await;
        let terms = b.attr_all("[data-node-id]", "data-term").await;
        assert!(terms.iter().all(|t| t.parse::<u64>().unwrap() >= 1), "{terms:?}");
        assert_eq!(
            b.attr_all("[data-admin]", "data-admin").await,
            vec!["true"],
            "the token makes this page an admin"
        );
        assert!(!leader.is_empty());
        b.screenshot("connected").await;
        b.close().await;
    });
}

#[test]
fn a_write_typed_in_the_page_reaches_every_log_and_commits() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    run(async {
        let b = Browser::open(&format!("{}?token={TOKEN}", cluster.url())).await;
        b.wait(SOON, "a leader", || async { b.leader().await }).await;
        let key = b.client.find(Locator::Css(r#"input[name="key"]"#)).await.unwrap();
        key.clear().await.unwrap();
        key.send_keys("greeting").await.unwrap();
        let value = b.client.find(Locator::Css(r#"input[name="value"]"#)).await.unwrap();
        value.clear().await.unwrap();
        value.send_keys("hola").await.unwrap();
        b.click(r#"button[data-op="put"]"#).await;
        b.wait(SOON, "the write to be acknowledged", || async {
            (b.count(".results li.ok").await >= 1).then_some(())
        })
        .await;
        b.wait(SOON, "the entry committed in every log", || async {
            for node in 1..=3 {
                let titles = b
                    .attr_all(&format!(r#".log-row[data-node="{node}"] [data-committed="true"]"#), "title")
                    .await;
                titles.iter().any(|t| t.contains("put greeting=hola")).then_some(())?;
            }
            Some(())
        })
        .await;
        b.wait(SOON, "the value in every store", || async {
            let cells = b.attr_all(r#"tr[data-key="greeting"] td[data-node]"#, "title").await;
            (cells.len() == 3 && cells.iter().all(|v| v == "hola")).then_some(())
        })
        .await;
        b.screenshot("write-committed").await;
        b.close().await;
    });
}

#[test]
fn crashing_the_leader_from_the_page_elects_another_and_a_restart_catches_up() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    run(async {
        let b = Browser::open(&format!("{}?token={TOKEN}", cluster.url())).await;
        let old = b.wait(SOON, "a leader", || async { b.leader().await }).await;
        b.click(&format!(r#"[data-node-id="{old}"]"#)).await;
        b.click(r#".node-actions button[data-action="crash"]"#).await;
        let new = b
            .wait(Duration::from_secs(10), "another leader on screen", || async {
                let l = b.leader().await?;
                (l != old && b.node_attr(&old, "data-state").await.as_deref() == Some("crashed")).then_some(l)
            })
            .await;
        b.screenshot("leader-crashed").await;
        // Writes go on, then the old leader comes back and catches up.
        for i in 0..3 {
            cluster_put(&cluster, &format!("after-crash-{i}"));
        }
        b.click(&format!(r#"[data-node-id="{old}"]"#)).await;
        b.click(r#".node-actions button[data-action="restart"]"#).await;
        b.wait(Duration::from_secs(20), "the restarted node to catch up", || async {
            let state = b.node_attr(&old, "data-state").await?;
            let mine: u64 = b.node_attr(&old, "data-commit").await?.parse().ok()?;
            let leader: u64 = b.node_attr(&new, "data-commit").await?.parse().ok()?;
            (state == "up" && mine == leader && mine >= 4).then_some(())
        })
        .await;
        b.screenshot("restarted-caught-up").await;
        b.close().await;
    });
}

fn cluster_put(cluster: &Cluster, key: &str) {
    let out = Command::new(support::BIN)
        .args(["client", "--proxy", &cluster.proxy(0), "--token", TOKEN, "put", key, "v"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_partition_made_in_the_page_isolates_a_node_until_healed() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    run(async {
        let b = Browser::open(&format!("{}?token={TOKEN}", cluster.url())).await;
        let leader = b.wait(SOON, "a leader", || async { b.leader().await }).await;
        let victim = ["1", "2", "3"].into_iter().find(|n| *n != leader).unwrap().to_string();
        b.click(&format!(r#"[data-node-id="{victim}"]"#)).await;
        b.click(r#".node-actions button[data-action="isolate"]"#).await;
        b.wait(SOON, "the node shown as partitioned", || async {
            (b.node_attr(&victim, "data-partitioned").await.as_deref() == Some("true")).then_some(())
        })
        .await;
        let before: u64 = b.node_attr(&victim, "data-last-index").await.unwrap().parse().unwrap();
        for i in 0..5 {
            cluster_put(&cluster, &format!("during-partition-{i}"));
        }
        let leader_now = b.wait(SOON, "a leader", || async { b.leader().await }).await;
        b.wait(SOON, "the majority to move on", || async {
            let l: u64 = b.node_attr(&leader_now, "data-last-index").await?.parse().ok()?;
            (l >= before + 5).then_some(())
        })
        .await;
        let isolated: u64 = b.node_attr(&victim, "data-last-index").await.unwrap().parse().unwrap();
        assert_eq!(isolated, before, "the isolated node received no entries");
        b.screenshot("partitioned").await;
        b.click(r#"button[data-action="heal"]"#).await;
        b.wait(SOON, "the healed node to catch up", || async {
            let mine: u64 = b.node_attr(&victim, "data-last-index").await?.parse().ok()?;
            let l: u64 = b.node_attr(&leader_now, "data-last-index").await?.parse().ok()?;
            (b.node_attr(&victim, "data-partitioned").await.as_deref() == Some("false") && mine == l)
                .then_some(())
        })
        .await;
        b.close().await;
    });
}

#[test]
fn without_the_token_the_page_is_a_read_only_viewer() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    run(async {
        let b = Browser::open(&cluster.url()).await;
        b.wait(SOON, "a leader", || async { b.leader().await }).await;
        assert_eq!(b.attr_all("[data-admin]", "data-admin").await, vec!["false"]);
        assert_eq!(b.count(r#"[data-viewer="true"]"#).await, 1, "the viewer notice is shown");
        assert_eq!(b.count(r#"button[data-action="crash"]"#).await, 0, "no admin controls");
        // A right-click menu says view-only instead of offering actions.
        let node = b.client.find(Locator::Css(r#"[data-node-id="1"]"#)).await.unwrap();
        b.client
            .execute(
                "arguments[0].dispatchEvent(new MouseEvent('contextmenu', {bubbles: true, cancelable: true}))",
                vec![serde_json::to_value(&node).unwrap()],
            )
            .await
            .unwrap();
        b.wait(SOON, "the view-only menu", || async { (b.count(".menu").await == 1).then_some(()) }).await;
        assert_eq!(b.count(r#".menu button"#).await, 0);
        b.screenshot("viewer").await;
        // Reads work for viewers; writes wait for the lecturer.
        assert_eq!(b.count(r#"[data-writes="closed"]"#).await, 1, "the page says writing is closed");
        assert_eq!(b.count(r#"button[data-op="put"]:disabled"#).await, 1);
        b.click(r#"button[data-op="get"]"#).await;
        b.wait(SOON, "the viewer's read to succeed", || async {
            (b.count(".results li.ok").await >= 1).then_some(())
        })
        .await;
        // The lecturer opens writes: the viewer's page follows without a reload.
        let mut lecturer = support::Client::connect(&cluster.proxy(0), Some(TOKEN)).await.unwrap();
        let opened =
            lecturer.request(ClientFrame::Admin { id: 0, command: AdminCommand::OpenWrites { open: true } });
        assert!(matches!(opened.await, Some(ProxyFrame::AdminDone { .. })));
        b.wait(SOON, "the put button to open", || async {
            (b.count(r#"button[data-op="put"]:disabled"#).await == 0).then_some(())
        })
        .await;
        b.click(r#"button[data-op="put"]"#).await;
        b.wait(SOON, "the viewer's write to succeed", || async {
            (b.count(".results li.ok").await >= 2).then_some(())
        })
        .await;
        b.close().await;
    });
}

#[test]
fn when_its_proxy_dies_the_page_reconnects_to_another() {
    let _turn = serial();
    let cluster = support::HandStarted::start();
    let (a, b) = (format!("127.0.0.1:{}", cluster.base), format!("127.0.0.1:{}", cluster.base + 1));
    run(async {
        let page = Browser::open(&format!("http://{a}/?token={TOKEN}")).await;
        page.wait(SOON, "a leader through proxy A", || async { page.leader().await }).await;
        support::signal_child(&cluster.proxies[0], nix::sys::signal::Signal::SIGKILL).unwrap();
        page.wait(SOON, "the page to notice", || async {
            (page.count(r#"[data-link="reconnecting"]"#).await == 1).then_some(())
        })
        .await;
        page.wait(Duration::from_secs(20), "the page connected to proxy B", || async {
            let header = page.client.find(Locator::Css("[data-link]")).await.ok()?.text().await.ok()?;
            (page.count(r#"[data-link="connected"]"#).await == 1 && header.contains(&b)).then_some(())
        })
        .await;
        page.wait(SOON, "a leader through proxy B", || async { page.leader().await }).await;
        page.screenshot("reconnected-to-other-proxy").await;
        page.close().await;
    });
}

#[test]
fn the_lecturer_opens_writes_from_the_page_and_the_viewer_link_stays_read_only() {
    let _turn = serial();
    let cluster = Cluster::start(3, 1);
    run(async {
        let b = Browser::open(&format!("{}?token={TOKEN}", cluster.url())).await;
        b.wait(SOON, "the admin page", || async {
            (b.attr_all("[data-admin]", "data-admin").await == ["true"]).then_some(())
        })
        .await;
        b.click(r#"input[data-control="open-writes"]"#).await;
        b.wait(SOON, "the cluster to say writes are open", || async {
            let status = cluster_status_json(&cluster);
            (status["open_writes"] == true).then_some(())
        })
        .await;
        // The viewer link in the lecturer's own browser: nothing remembered makes it an admin.
        b.client.goto(&cluster.url()).await.unwrap();
        b.wait(SOON, "the viewer page", || async {
            (b.attr_all("[data-admin]", "data-admin").await == ["false"]).then_some(())
        })
        .await;
        assert_eq!(b.count(r#"button[data-action="crash"]"#).await, 0, "no admin controls");
        b.wait(SOON, "the put button open to the viewer", || async {
            (b.count(r#"button[data-op="put"]:disabled"#).await == 0).then_some(())
        })
        .await;
        b.click(r#"button[data-op="put"]"#).await;
        b.wait(SOON, "the viewer's write to succeed", || async {
            (b.count(".results li.ok").await >= 1).then_some(())
        })
        .await;
        b.close().await;
    });
}

fn cluster_status_json(cluster: &Cluster) -> serde_json::Value {
    let out = Command::new(support::BIN)
        .args(["client", "--proxy", &cluster.proxy(0), "status", "--json"])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

#[test]
fn a_server_added_from_the_page_is_drawn_as_a_learner_then_as_a_voter() {
    let _turn = serial();
    // In slow motion (×10) the new server's catching up spans several status reports.
    let cluster = Cluster::start_with(3, 1, &["--time-scale", "10"]);
    run(async {
        let b = Browser::open(&format!("{}?token={TOKEN}", cluster.url())).await;
        b.wait(Duration::from_secs(30), "a leader", || async { b.leader().await }).await;
        b.click(r#"button[data-action="add-server"]"#).await;
        b.wait(Duration::from_secs(30), "node 4 drawn as a learner", || async {
            (b.node_attr("4", "data-member").await.as_deref() == Some("learner")).then_some(())
        })
        .await;
        b.screenshot("membership-learner").await;
        b.wait(Duration::from_secs(60), "node 4 promoted to voter", || async {
            (b.node_attr("4", "data-member").await.as_deref() == Some("voter")).then_some(())
        })
        .await;
        // And removed again from the page: it leaves the drawing.
        b.click(r#"[data-node-id="4"]"#).await;
        b.click(r#".node-actions button[data-action="remove-server"]"#).await;
        b.wait(Duration::from_secs(60), "node 4 gone", || async {
            (b.count(r#"[data-node-id="4"]"#).await == 0).then_some(())
        })
        .await;
        b.screenshot("membership-removed").await;
        b.close().await;
    });
}
