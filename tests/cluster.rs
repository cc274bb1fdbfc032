//! Several real wsgate processes sharing topics through a real
//! `nats-server` (a child process on a free loopback port): delivery to
//! every node exactly once, interest, client publishes, NATS lost and back,
//! NATS down at start, and a drained node.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const API_KEY: &str = "cluster-key";

/// A `nats-server` child process; killed on drop.
struct Nats {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nats {
    /// Starts one on a free port (`-p -1`), read from its ports file.
    fn start() -> Nats {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = spawn_nats(&["-p", "-1", "--ports_file_dir"], Some(dir.path()));
        let port = read_port(dir.path(), child.id());
        Nats {
            child,
            port,
            _dir: dir,
        }
    }

    /// Starts one on `port` (to bring a killed server back where the nodes
    /// look for it).
    fn start_on(port: u16) -> Nats {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = spawn_nats(&["-p", &port.to_string()], None);
        wait_port(port);
        Nats {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn kill(mut self) -> u16 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.port
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_nats(args: &[&str], ports_dir: Option<&Path>) -> Child {
    let mut cmd = Command::new("nats-server");
    cmd.args(["-a", "127.0.0.1"]).args(args);
    if let Some(dir) = ports_dir {
        cmd.arg(dir);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server runs (.ci/deps installs it)")
}

/// The client port from `nats-server_<pid>.ports` (`{"nats": ["nats://...:PORT"]}`).
fn read_port(dir: &Path, pid: u32) -> u16 {
    let file: PathBuf = dir.join(format!("nats-server_{pid}.ports"));
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                if let Some(url) = v["nats"][0].as_str() {
                    let port = url.rsplit(':').next().and_then(|p| p.parse().ok());
                    return port.expect("a port in the ports file");
                }
            }
        }
        assert!(Instant::now() < deadline, "nats-server wrote no ports file");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server is not listening");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A node of the cluster at `nats`, with a pub/sub route whose clients may
/// publish to `chat.>`.
fn node_config(name: &str, nats: &str, extra: &str) -> String {
    format!(
        "[api]\nkeys = [\"{API_KEY}\"]\n\
         [cluster]\nnats = [\"{nats}\"]\nnode = \"{name}\"\n{extra}\n\
         [[routes]]\npath = \"/ws\"\nrouter = \"pubsub\"\n\
         [routes.options]\npublish = [\"chat.>\"]\n"
    )
}

async fn start_node(name: &str, nats: &str) -> Daemon {
    let d = Daemon::start(&node_config(name, nats, "")).await;
    d.wait_metric("wsgate_cluster_connected", 1.0).await;
    d
}

/// A client of `d` subscribed to `topics`.
async fn subscriber(d: &Daemon, topics: &[&str]) -> Ws {
    let mut ws = d.connect("/ws").await;
    assert_eq!(recv_json(&mut ws).await["type"], "welcome");
    send_json(
        &mut ws,
        json!({"type": "subscribe", "topics": topics, "id": 1}),
    )
    .await;
    assert_eq!(recv_type(&mut ws, "subscribed").await["id"], 1);
    ws
}

/// Publishes through `d`'s API; returns its whole answer.
async fn publish(d: &Daemon, topic: &str, data: Value) -> Value {
    let body = json!({"topic": topic, "data": data}).to_string();
    let resp = d
        .http(
            "POST",
            "/api/publish",
            &[
                ("Authorization", &format!("Bearer {API_KEY}")),
                ("Content-Type", "application/json"),
            ],
            &body,
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    resp.json()
}

/// Publishes warm-up messages on `topic` through `from` until each of
/// `clients` has one: the nodes' subscriptions have reached NATS. Then
/// drains what else the warm-up left.
async fn warm_up(from: &Daemon, topic: &str, clients: &mut [&mut Ws]) {
    let deadline = Instant::now() + PATIENCE;
    let mut got = vec![false; clients.len()];
    let mut n = 0;
    while got.contains(&false) {
        assert!(
            Instant::now() < deadline,
            "the cluster never delivered {topic}"
        );
        publish(from, topic, json!({"warm": n})).await;
        n += 1;
        for (i, ws) in clients.iter_mut().enumerate() {
            if let Ok(Some(m)) = next_json(ws, Duration::from_millis(100)).await {
                if m["topic"] == topic {
                    got[i] = true;
                }
            }
        }
    }
    for ws in clients.iter_mut() {
        while let Ok(Some(_)) = next_json(ws, Duration::from_millis(150)).await {}
    }
}

/// The next JSON message within `wait`: `Err` on a timeout.
async fn next_json(ws: &mut Ws, wait: Duration) -> Result<Option<Value>, ()> {
    match tokio::time::timeout(wait, recv_json(ws)).await {
        Ok(v) => Ok(Some(v)),
        Err(_) => Err(()),
    }
}

/// Every message `ws` receives within `wait`.
async fn collect(ws: &mut Ws, wait: Duration) -> Vec<Value> {
    let mut out = Vec::new();
    let deadline = Instant::now() + wait;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match next_json(ws, left).await {
            Ok(Some(v)) => out.push(v),
            _ => break,
        }
    }
    out
}

fn datas(messages: &[Value]) -> Vec<Value> {
    messages.iter().map(|m| m["data"].clone()).collect()
}

#[tokio::test]
async fn a_publish_reaches_every_node_exactly_once_and_only_where_there_is_interest() {
    let nats = Nats::start();
    let n1 = start_node("n1", &nats.url()).await;
    let n2 = start_node("n2", &nats.url()).await;
    let n3 = start_node("n3", &nats.url()).await;
    let mut s1 = subscriber(&n1, &["news", "sport"]).await;
    let mut s2 = subscriber(&n2, &["news", "sport"]).await;
    let mut s3 = subscriber(&n3, &["news"]).await;
    warm_up(&n1, "news", &mut [&mut s1, &mut s2, &mut s3]).await;
    warm_up(&n1, "sport", &mut [&mut s1, &mut s2]).await;
    let before = n3.metric("wsgate_cluster_received_total").await;

    let answer = publish(&n1, "news", json!("n-1")).await;
    assert_eq!(answer, json!({"delivered": 1, "forwarded": true}));
    let answer = publish(&n1, "sport", json!("s-1")).await;
    assert_eq!(answer["forwarded"], true);
    for ws in [&mut s1, &mut s2] {
        let mut got = collect(ws, Duration::from_millis(600)).await;
        // Order holds within a topic, not across topics.
        got.sort_by_key(|m| m["topic"].as_str().map(str::to_string));
        assert_eq!(
            got,
            vec![
                json!({"type": "message", "topic": "news", "data": "n-1"}),
                json!({"type": "message", "topic": "sport", "data": "s-1"}),
            ]
        );
    }
    let got = collect(&mut s3, Duration::from_millis(300)).await;
    assert_eq!(datas(&got), vec![json!("n-1")], "{got:?}");
    // Node 3 has no subscriber of `sport`: it is not subscribed to it on
    // NATS, so only `news` reached it.
    assert_eq!(
        n3.metric("wsgate_cluster_received_total").await,
        before + 1.0
    );
    assert_eq!(n3.metric("wsgate_cluster_subscriptions").await, 1.0);
    assert_eq!(n1.metric("wsgate_cluster_subscriptions").await, 2.0);
    assert_eq!(
        n2.metric("wsgate_publishes_total{source=\"remote\"}").await,
        n2.metric("wsgate_cluster_received_total").await
    );

    // Within a topic, the other nodes see the publishing node's order.
    for i in 0..50 {
        publish(&n1, "news", json!(i)).await;
    }
    let want: Vec<Value> = (0..50).map(|i| json!(i)).collect();
    for ws in [&mut s2, &mut s3] {
        assert_eq!(datas(&collect(ws, Duration::from_millis(600)).await), want);
    }
    assert_eq!(
        datas(&collect(&mut s1, Duration::from_millis(100)).await),
        want
    );

    // The last subscriber of `news` on node 3 goes: so does its interest.
    drop(s3);
    n3.wait_metric("wsgate_cluster_subscriptions", 0.0).await;
}

#[tokio::test]
async fn a_client_publish_on_one_node_reaches_another() {
    let nats = Nats::start();
    let n1 = start_node("n1", &nats.url()).await;
    let n2 = start_node("n2", &nats.url()).await;
    let mut s1 = subscriber(&n1, &["chat.room"]).await;
    let mut c2 = subscriber(&n2, &[]).await;
    warm_up(&n2, "chat.room", &mut [&mut s1]).await;

    send_json(
        &mut c2,
        json!({"type": "publish", "topic": "chat.room", "data": {"text": "hi"}, "id": 2}),
    )
    .await;
    let published = recv_type(&mut c2, "published").await;
    assert_eq!(published["delivered"], 0, "no subscriber on node 2");
    let got = collect(&mut s1, Duration::from_millis(500)).await;
    assert_eq!(datas(&got), vec![json!({"text": "hi"})], "{got:?}");
}

#[tokio::test]
async fn nats_lost_and_back_local_delivery_goes_on_and_nothing_is_duplicated() {
    let nats = Nats::start();
    let n1 = start_node("n1", &nats.url()).await;
    let n2 = start_node("n2", &nats.url()).await;
    let mut s1 = subscriber(&n1, &["news"]).await;
    let mut s2 = subscriber(&n2, &["news"]).await;
    warm_up(&n1, "news", &mut [&mut s1, &mut s2]).await;

    let port = nats.kill();
    n1.wait_metric("wsgate_cluster_connected", 0.0).await;
    // Local delivery never stops; the other node is not reached, and the
    // answer says so at once.
    let answer = publish(&n1, "news", json!("during")).await;
    assert_eq!(answer, json!({"delivered": 1, "forwarded": false}));
    assert_eq!(
        datas(&collect(&mut s1, Duration::from_millis(300)).await),
        vec![json!("during")]
    );
    assert!(collect(&mut s2, Duration::from_millis(300))
        .await
        .is_empty());
    assert!(
        n1.metric("wsgate_cluster_forward_dropped_total{reason=\"disconnected\"}")
            .await
            >= 1.0
    );
    n1.wait_log(&["publishes are not reaching the other nodes"])
        .await;
    // The connections on both nodes stay open and served.
    send_json(&mut s2, json!({"type": "ping", "id": 7})).await;
    assert_eq!(recv_type(&mut s2, "pong").await["id"], 7);

    let _back = Nats::start_on(port);
    n1.wait_metric("wsgate_cluster_connected", 1.0).await;
    n2.wait_metric("wsgate_cluster_connected", 1.0).await;
    assert_eq!(n1.metric("wsgate_cluster_connects_total").await, 2.0);
    // Node 2 subscribed again by itself.
    warm_up(&n1, "news", &mut [&mut s1, &mut s2]).await;
    publish(&n1, "news", json!("after")).await;
    for ws in [&mut s1, &mut s2] {
        let got = collect(ws, Duration::from_millis(500)).await;
        assert_eq!(datas(&got), vec![json!("after")], "{got:?}");
    }
}

#[tokio::test]
async fn a_node_starts_without_nats_serves_locally_and_joins_when_it_comes() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = free.local_addr().expect("addr").port();
    drop(free);
    let url = format!("nats://127.0.0.1:{port}");
    let d = Daemon::start(&node_config("lonely", &url, "ready_requires_nats = true")).await;
    d.wait_log(&["connecting to NATS"]).await;
    assert_eq!(d.metric("wsgate_cluster_connected").await, 0.0);
    let ready = d.http("GET", "/readyz", &[], "").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["status"], "nats_unavailable");
    let stats = d.admin(json!({"id": 1, "cmd": "stats"})).await;
    assert_eq!(
        stats["cluster"],
        json!({"node": "lonely", "nats_connected": false}),
        "{stats}"
    );
    // Local service goes on.
    let mut s = subscriber(&d, &["news"]).await;
    let answer = publish(&d, "news", json!(1)).await;
    assert_eq!(answer, json!({"delivered": 1, "forwarded": false}));
    assert_eq!(
        datas(&collect(&mut s, Duration::from_millis(300)).await),
        vec![json!(1)]
    );

    let _nats = Nats::start_on(port);
    d.wait_metric("wsgate_cluster_connected", 1.0).await;
    assert_eq!(d.http("GET", "/readyz", &[], "").await.status, 200);
    let stats = d.admin(json!({"id": 2, "cmd": "stats"})).await;
    assert_eq!(stats["cluster"]["nats_connected"], true);
}

#[tokio::test]
async fn a_drained_node_leaves_the_others_serving() {
    let nats = Nats::start();
    let n1 = start_node("n1", &nats.url()).await;
    let n2 = start_node("n2", &nats.url()).await;
    let mut n3 = start_node("n3", &nats.url()).await;
    let mut s1 = subscriber(&n1, &["news"]).await;
    let mut s2 = subscriber(&n2, &["news"]).await;
    let mut s3 = subscriber(&n3, &["news"]).await;
    warm_up(&n1, "news", &mut [&mut s1, &mut s2, &mut s3]).await;

    n3.signal("TERM");
    let (code, _) = expect_close(&mut s3).await;
    assert_eq!(code, 1001);
    assert_eq!(n3.wait_exit(PATIENCE).await, Some(0));

    publish(&n1, "news", json!("after")).await;
    for ws in [&mut s1, &mut s2] {
        let got = collect(ws, Duration::from_millis(500)).await;
        assert_eq!(datas(&got), vec![json!("after")], "{got:?}");
    }
}

#[tokio::test]
async fn a_bad_cluster_section_is_refused_with_its_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .args(["check", "-c"])
        .arg({
            let dir = std::env::temp_dir().join(format!("wsgate-cluster-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("dir");
            let file = dir.join("bad.toml");
            std::fs::write(
                &file,
                "[cluster]\nnats = [\"nats://127.0.0.1:4222\"]\nnode = \"a b\"\nsubject_prefix = \"x..y\"\n",
            )
            .expect("write");
            file
        })
        .output()
        .expect("run wsgate check");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cluster.node"), "{err}");
    assert!(err.contains("cluster.subject_prefix"), "{err}");
}

/// `wsgate ctl --socket <d's socket> <args...>`: exit code, stdout, stderr.
async fn ctl(d: &Daemon, args: &[&str]) -> (i32, String, String) {
    let socket = d.admin_socket().to_str().expect("UTF-8 path").to_string();
    let mut all: Vec<String> = vec!["ctl".into(), "--socket".into(), socket];
    all.extend(args.iter().map(|a| a.to_string()));
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_wsgate"))
            .args(&all)
            .stdin(Stdio::null())
            .output()
            .expect("run wsgate ctl")
    })
    .await
    .expect("join");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `ctl --cluster --json <args>` through `d`: its nodes' answers.
async fn cluster_json(d: &Daemon, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--cluster", "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = ctl(d, &all).await;
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["nodes"].as_array().expect("nodes").clone()
}

fn names(nodes: &[Value]) -> Vec<&str> {
    nodes.iter().filter_map(|n| n["node"].as_str()).collect()
}

/// Waits until `d` has heard every other node and all answer.
async fn wait_peers(d: &Daemon, n: usize) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let nodes = cluster_json(d, &["stats"]).await;
        if nodes.len() == n && nodes.iter().all(|n| n["ok"] == true) {
            return;
        }
        assert!(Instant::now() < deadline, "the cluster is {nodes:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A config whose nodes announce often, so that a silent one is gone soon.
fn quick(name: &str, nats: &str) -> String {
    node_config(
        name,
        nats,
        "announce_interval = \"200ms\"\npeer_timeout = \"1s\"\nrequest_timeout = \"500ms\"",
    )
}

#[tokio::test]
async fn ctl_cluster_ls_and_evict_span_every_node_and_name_the_silent_ones() {
    let nats = Nats::start();
    let n1 = Daemon::start(&quick("n1", &nats.url())).await;
    let n2 = Daemon::start(&quick("n2", &nats.url())).await;
    let mut n3 = Daemon::start(&quick("n3", &nats.url())).await;
    let _a = subscriber(&n1, &["x"]).await;
    let _b = subscriber(&n1, &["x"]).await;
    let mut c = subscriber(&n2, &["x"]).await;
    let mut e = subscriber(&n3, &["x"]).await;
    wait_peers(&n1, 3).await;

    let nodes = cluster_json(&n1, &["ls"]).await;
    assert_eq!(names(&nodes), vec!["n1", "n2", "n3"]);
    let rows: Vec<usize> = nodes
        .iter()
        .map(|n| n["result"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(rows, vec![2, 1, 1], "{nodes:?}");
    let stats = cluster_json(&n2, &["stats"]).await;
    assert_eq!(names(&stats), vec!["n2", "n1", "n3"]);
    assert_eq!(stats[1]["result"]["connections"]["total"], 2);
    // The text form: a section per node.
    let (code, text, _) = ctl(&n1, &["--cluster", "ls"]).await;
    assert_eq!(code, 0);
    assert!(
        text.contains("== node n2") && text.contains("3 nodes, 3 answered"),
        "{text}"
    );

    // A node that is there but does not answer is named, not hidden.
    let frozen = Command::new("kill")
        .args(["-STOP", &n3.pid().to_string()])
        .status()
        .expect("kill");
    assert!(frozen.success());
    let nodes = cluster_json(&n1, &["evict", "--route", "/ws"]).await;
    let _ = Command::new("kill")
        .args(["-CONT", &n3.pid().to_string()])
        .status();
    assert_eq!(names(&nodes), vec!["n1", "n2", "n3"]);
    assert_eq!(nodes[0]["result"]["evicted"], 2, "{nodes:?}");
    assert_eq!(nodes[1]["result"]["evicted"], 1, "{nodes:?}");
    assert_eq!(nodes[2]["ok"], false);
    assert!(
        nodes[2]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no answer")),
        "{nodes:?}"
    );
    let (code, _) = expect_close(&mut c).await;
    assert_eq!(code, 4000);
    // The request did reach node 3: it carries it out once it runs again,
    // late (the answer said only that none came in time).
    let (code, _) = expect_close(&mut e).await;
    assert_eq!(code, 4000);

    // Ids are per node: a cluster evict takes a filter.
    let (code, _, err) = ctl(&n1, &["--cluster", "evict", "--id", "7"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("filter"), "{err}");

    // A node that drains says so and then that it left; one that dies
    // goes silent and is shown as gone.
    n3.signal("TERM");
    assert_eq!(n3.wait_exit(PATIENCE).await, Some(0));
    let deadline = Instant::now() + PATIENCE;
    loop {
        let nodes = cluster_json(&n1, &["stats"]).await;
        let left = nodes.iter().find(|n| n["node"] == "n3");
        if left.is_some_and(|n| n["error"]["message"] == "left the cluster") {
            break;
        }
        assert!(Instant::now() < deadline, "{nodes:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut n2 = n2;
    let killed = Command::new("kill")
        .args(["-KILL", &n2.pid().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let _ = n2.wait_exit(PATIENCE).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let nodes = cluster_json(&n1, &["stats"]).await;
        let gone = nodes.iter().find(|n| n["node"] == "n2");
        if gone.is_some_and(|n| {
            n["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("gone"))
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "{nodes:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node whose `/ws` route knows alice and bob by token, with a per-user
/// cap of 1 counted over the cluster, `on_user` deciding.
fn capped(name: &str, nats: &str, on_user: &str) -> String {
    format!(
        "[limits]\nmax_connections_per_user = 1\nmax_connections_per_user_scope = \"cluster\"\n\
         on_user_limit = \"{on_user}\"\n\
         [auth.t]\nplugin = \"token\"\ntokens = {{ \"tok-alice\" = \"alice\", \"tok-bob\" = \"bob\" }}\n\
         {}\
         auth = \"t\"\n",
        quick(name, nats).replace(
            "[routes.options]\npublish = [\"chat.>\"]\n",
            ""
        )
    )
}

async fn as_user(d: &Daemon, token: &str) -> Result<Ws, (u16, String)> {
    let auth = format!("Bearer {token}");
    let mut ws = d.try_connect("/ws", &[("Authorization", &auth)]).await?;
    assert_eq!(recv_json(&mut ws).await["type"], "welcome");
    Ok(ws)
}

#[tokio::test]
async fn a_cluster_wide_user_cap_evicts_the_oldest_on_another_node() {
    let nats = Nats::start();
    let n1 = Daemon::start(&capped("n1", &nats.url(), "evict_oldest")).await;
    let n2 = Daemon::start(&capped("n2", &nats.url(), "evict_oldest")).await;
    wait_peers(&n1, 2).await;
    wait_peers(&n2, 2).await;

    let mut first = as_user(&n1, "tok-alice").await.expect("alice on n1");
    let mut bob = as_user(&n1, "tok-bob").await.expect("bob on n1");
    let mut second = as_user(&n2, "tok-alice").await.expect("alice on n2");
    // The cluster's oldest connection of alice, on the other node, goes.
    let (code, reason) = expect_close(&mut first).await;
    assert_eq!(code, 4001, "{reason}");
    n1.wait_metric("wsgate_closes_total{code=\"4001\"}", 1.0)
        .await;
    // The newcomer and another user are served.
    for ws in [&mut second, &mut bob] {
        send_json(ws, json!({"type": "ping", "id": 1})).await;
        assert_eq!(recv_type(ws, "pong").await["id"], 1);
    }
    assert!(
        n2.metric("wsgate_cluster_user_queries_total{result=\"complete\"}")
            .await
            >= 1.0
    );

    // NATS gone: the cap counts each node alone (documented fallback).
    let _ = nats.kill();
    n2.wait_metric("wsgate_cluster_connected", 0.0).await;
    let mut third = as_user(&n1, "tok-alice").await.expect("alice on n1 again");
    send_json(&mut second, json!({"type": "ping", "id": 2})).await;
    assert_eq!(recv_type(&mut second, "pong").await["id"], 2);
    send_json(&mut third, json!({"type": "ping", "id": 3})).await;
    assert_eq!(recv_type(&mut third, "pong").await["id"], 3);
}

#[tokio::test]
async fn a_cluster_wide_user_cap_with_reject_refuses_on_another_node() {
    let nats = Nats::start();
    let n1 = Daemon::start(&capped("n1", &nats.url(), "reject")).await;
    let n2 = Daemon::start(&capped("n2", &nats.url(), "reject")).await;
    wait_peers(&n2, 2).await;
    let mut first = as_user(&n1, "tok-alice").await.expect("alice on n1");
    let (status, body) = as_user(&n2, "tok-alice").await.expect_err("over the cap");
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("user_limit"), "{body}");
    send_json(&mut first, json!({"type": "ping", "id": 1})).await;
    assert_eq!(recv_type(&mut first, "pong").await["id"], 1);
    // Once it is gone, the user may connect elsewhere.
    drop(first);
    let deadline = Instant::now() + PATIENCE;
    loop {
        match as_user(&n2, "tok-alice").await {
            Ok(_) => break,
            Err((429, _)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[tokio::test]
async fn a_message_on_nats_that_is_not_utf8_is_dropped_and_the_next_delivered() {
    use tokio::io::AsyncWriteExt;
    let nats = Nats::start();
    let n1 = start_node("n1", &nats.url()).await;
    let mut s1 = subscriber(&n1, &["news"]).await;
    n1.wait_metric("wsgate_cluster_subscriptions", 1.0).await;

    // Another NATS client, speaking the text protocol by hand.
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", nats.port))
        .await
        .expect("connect to nats");
    raw.write_all(b"CONNECT {\"verbose\":false}\r\n")
        .await
        .expect("connect");
    // Until the node's subscription has reached the server.
    let deadline = Instant::now() + PATIENCE;
    loop {
        raw.write_all(b"PUB wsgate.t.news 2\r\n{}\r\n")
            .await
            .expect("warm up");
        if next_json(&mut s1, Duration::from_millis(100)).await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node never got a NATS message"
        );
    }
    while next_json(&mut s1, Duration::from_millis(150)).await.is_ok() {}
    let mut bytes = b"PUB wsgate.t.news 2\r\n".to_vec();
    bytes.extend_from_slice(&[0xff, 0xfe]);
    bytes.extend_from_slice(b"\r\nPUB wsgate.t.news 11\r\n{\"late\":1}\n\r\nPING\r\n");
    raw.write_all(&bytes).await.expect("publish");

    let got = collect(&mut s1, Duration::from_millis(500)).await;
    assert_eq!(got, vec![json!({"late": 1})], "{got:?}");
    n1.wait_log(&["not UTF-8"]).await;
}

#[tokio::test]
async fn a_nats_that_wants_a_password_is_joined_with_the_one_in_the_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new("nats-server")
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
            "--user",
            "wsgate",
            "--pass",
            "s3cret-pw",
        ])
        .arg("--ports_file_dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server runs");
    let port = read_port(dir.path(), child.id());

    let good = Daemon::start(&node_config(
        "n1",
        &format!("nats://wsgate:s3cret-pw@127.0.0.1:{port}"),
        "",
    ))
    .await;
    good.wait_metric("wsgate_cluster_connected", 1.0).await;
    let bad = Daemon::start(&node_config(
        "n2",
        &format!("nats://wsgate:wrong@127.0.0.1:{port}"),
        "",
    ))
    .await;
    bad.wait_log(&["cannot connect to NATS", "authorization violation"])
        .await;
    assert_eq!(bad.metric("wsgate_cluster_connected").await, 0.0);
    // The refused node still serves its own clients.
    let mut s = subscriber(&bad, &["news"]).await;
    assert_eq!(publish(&bad, "news", json!(1)).await["delivered"], 1);
    assert_eq!(
        datas(&collect(&mut s, Duration::from_millis(300)).await),
        vec![json!(1)]
    );
    // The password is not in the log.
    assert!(!good.logs().contains("s3cret-pw"), "{}", good.logs());
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn a_tls_nats_is_joined_with_the_configured_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = LocalCert::new(dir.path());
    let (ca_file, cert_file, key_file) = (&cert.ca_file, &cert.cert_file, &cert.key_file);
    let ports = dir.path().join("ports");
    std::fs::create_dir_all(&ports).expect("dir");
    let mut child = Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", "-1", "--tls"])
        .arg("--tlscert")
        .arg(cert_file)
        .arg("--tlskey")
        .arg(key_file)
        .arg("--ports_file_dir")
        .arg(&ports)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server runs");
    let port = read_port(&ports, child.id());
    let url = format!("tls://localhost:{port}");

    let trusting = Daemon::start(&node_config(
        "n1",
        &url,
        &format!("ca_file = \"{}\"", ca_file.display()),
    ))
    .await;
    trusting.wait_metric("wsgate_cluster_connected", 1.0).await;
    // Without the CA, the server's certificate is not trusted.
    let other = Daemon::start(&node_config("n2", &url, "")).await;
    other.wait_log(&["cannot connect to NATS"]).await;
    assert_eq!(other.metric("wsgate_cluster_connected").await, 0.0);
    let _ = child.kill();
    let _ = child.wait();
}
