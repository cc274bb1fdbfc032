//! `wsgate console` end to end: the real binary in a tmux pane (120x36)
//! against a real daemon with real WebSocket clients. Keys go in with
//! `send-keys`, the screen comes back with `capture-pane`; every wait is on
//! the screen's text, bounded by PATIENCE. tmux must be installed (`.ci/run`
//! installs it); without it these tests fail.

mod common;

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{expect_close, recv, Daemon, Ws, PATIENCE};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use futures_util::SinkExt;

const CONFIG: &str = r#"
[server]
watch_config = false
drain_spread = "0s"
trusted_proxies = ["127.0.0.1"]

[auth.tokens]
plugin = "token"
tokens = { "tok-alice" = "alice", "tok-bob" = "bob" }

[[routes]]
path = "/ws/echo"
router = "echo"

[[routes]]
path = "/ws"
router = "pubsub"
auth = "tokens"
"#;

/// A console running in its own tmux server (one per test, so tests run
/// side by side).
struct Console {
    server: String,
}

impl Console {
    /// Starts `wsgate console ARGS` in a 120x36 pane. When the console
    /// exits, the pane's shell prints its status and stays.
    fn start(args: &str) -> Console {
        static N: AtomicUsize = AtomicUsize::new(0);
        let server = format!(
            "wsgate-console-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let command = format!(
            "{} console --interval 200ms {args}; echo \"console exited $?\"; sleep 600",
            env!("CARGO_BIN_EXE_wsgate")
        );
        let console = Console { server };
        console.tmux(&[
            "new-session",
            "-d",
            "-s",
            "main",
            "-x",
            "120",
            "-y",
            "36",
            &command,
        ]);
        console
    }

    fn tmux(&self, args: &[&str]) -> Output {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.server)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("tmux is needed for these tests (apt-get install tmux): {e}")
            });
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn screen(&self) -> String {
        let out = self.tmux(&["capture-pane", "-p", "-t", "main"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types text literally.
    fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "main", "-l", text]);
    }

    /// Presses named keys (`Enter`, `Escape`, `Down`).
    fn press(&self, key: &str) {
        self.tmux(&["send-keys", "-t", "main", key]);
    }

    /// Waits until the screen shows every one of `needles`; returns it.
    async fn wait_for(&self, needles: &[&str]) -> String {
        self.wait_until(
            |s| needles.iter().all(|n| s.contains(n)),
            &format!("{needles:?}"),
        )
        .await
    }

    async fn wait_until(&self, ok: impl Fn(&str) -> bool, what: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the console never showed {what}:\n{screen}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The console's process id: the child of the pane's shell.
    fn pid(&self) -> String {
        let out = self.tmux(&["display-message", "-p", "-t", "main", "#{pane_pid}"]);
        let shell = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
            .expect("the pane's children");
        children
            .split_whitespace()
            .next()
            .expect("a console process")
            .to_string()
    }

    /// tmux's view of the pane: `alternate_on cursor_flag`.
    fn pane_state(&self) -> String {
        let out = self.tmux(&[
            "display-message",
            "-p",
            "-t",
            "main",
            "#{alternate_on} #{cursor_flag}",
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.server, "kill-server"])
            .output();
    }
}

fn socket_arg(daemon: &Daemon) -> String {
    format!("--socket {}", daemon.admin_socket().display())
}

/// A pubsub client of `user` from `ip` (through the trusted loopback proxy).
async fn user(daemon: &Daemon, user: &str, ip: &str) -> Ws {
    let bearer = format!("Bearer tok-{user}");
    daemon
        .try_connect(
            "/ws",
            &[("Authorization", &bearer), ("X-Forwarded-For", ip)],
        )
        .await
        .unwrap_or_else(|(status, body)| panic!("{user} refused {status}: {body}"))
}

async fn echo_client(daemon: &Daemon) -> Ws {
    daemon
        .try_connect("/ws/echo", &[("X-Forwarded-For", "192.0.2.7")])
        .await
        .unwrap_or_else(|(status, body)| panic!("echo refused {status}: {body}"))
}

/// The echo client still echoes: its connection is open.
async fn still_echoes(ws: &mut Ws) {
    ws.send(Message::text("still here")).await.expect("send");
    assert_eq!(recv(ws).await, Message::text("still here"));
}

async fn open_ids(daemon: &Daemon) -> Vec<u64> {
    let rows = daemon.admin(json!({"cmd": "list"})).await;
    let mut ids: Vec<u64> = rows
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["id"].as_u64())
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn rows_appear_a_filter_narrows_and_e_evicts_only_the_selected_one() {
    let daemon = Daemon::start(CONFIG).await;
    let _alice = user(&daemon, "alice", "10.1.2.3").await;
    let mut bob = user(&daemon, "bob", "10.4.5.6").await;
    let mut echo = echo_client(&daemon).await;
    let console = Console::start(&socket_arg(&daemon));
    console
        .wait_for(&[
            "alice",
            "bob",
            "10.4.5.6",
            "192.0.2.7",
            "3 match · rows 1-3 of 3",
        ])
        .await;

    // A filter narrows the table; Esc in the prompt clears it.
    console.type_text("/user:alice");
    console.press("Enter");
    let screen = console
        .wait_for(&["1 match · rows 1-1 of 3", "filter: user:alice"])
        .await;
    assert!(!screen.contains("10.4.5.6"), "{screen}");
    console.type_text("/");
    console.press("Escape");
    console.wait_for(&["3 match"]).await;

    // Bob (connection 2) is the second row.
    console.press("Down");
    console.wait_for(&["connection 2"]).await;
    console.type_text("e");
    console
        .wait_for(&["Evict connection 2 (user bob, ip 10.4.5.6)?"])
        .await;
    console.type_text("y");
    assert_eq!(expect_close(&mut bob).await.0, 4000);
    console.wait_for(&["evicted 1 connection(s): 2"]).await;
    console.wait_for(&["2 match"]).await;
    still_echoes(&mut echo).await;
    assert_eq!(open_ids(&daemon).await, [1, 3]);
}

#[tokio::test]
async fn r_after_a_broken_edit_shows_the_error_and_changes_nothing() {
    let daemon = Daemon::start(CONFIG).await;
    let mut echo = echo_client(&daemon).await;
    let console = Console::start(&socket_arg(&daemon));
    console.wait_for(&["192.0.2.7"]).await;
    daemon.write_config(&format!("{CONFIG}\n[limits]\nmax_connections = 0\n"));
    console.type_text("r");
    let screen = console
        .wait_for(&["reload refused, nothing changed:", "max_connections"])
        .await;
    let file = daemon.config_path.display().to_string();
    let at = screen
        .lines()
        .find(|l| l.contains("max_connections"))
        .unwrap_or_default();
    let position = at.split(&format!("{file}:")).nth(1).unwrap_or_default();
    let mut parts = position.split(':');
    let (line, column) = (parts.next(), parts.next());
    assert!(
        line.is_some_and(|l| l.parse::<u32>().is_ok())
            && column.is_some_and(|c| c.parse::<u32>().is_ok()),
        "no {file}:line:column in\n{screen}"
    );
    let stats = daemon.admin(json!({"cmd": "stats"})).await;
    assert_eq!(stats["limits"][0]["max_connections"], 10000, "{stats}");
    assert_eq!(stats["last_reload"], serde_json::Value::Null, "{stats}");
    still_echoes(&mut echo).await;
}

#[tokio::test]
async fn d_and_drain_drains_and_the_console_says_the_daemon_stopped() {
    let mut daemon = Daemon::start(CONFIG).await;
    let mut alice = user(&daemon, "alice", "10.1.2.3").await;
    let mut echo = echo_client(&daemon).await;
    let console = Console::start(&socket_arg(&daemon));
    console.wait_for(&["alice", "192.0.2.7"]).await;
    console.type_text("D");
    console.wait_for(&["type drain, then Enter"]).await;
    console.type_text("drain");
    console.press("Enter");
    assert_eq!(expect_close(&mut alice).await.0, 1001);
    assert_eq!(expect_close(&mut echo).await.0, 1001);
    assert_eq!(daemon.wait_exit(PATIENCE).await, Some(0));
    console
        .wait_for(&["daemon stopped", "DAEMON STOPPED"])
        .await;
}

#[tokio::test]
async fn a_daemon_restart_is_survived_and_q_restores_the_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("admin.sock");
    let config = CONFIG.replace(
        "[server]",
        &format!("[server]\nadmin_socket = \"{}\"", socket.display()),
    );
    let first = Daemon::start(&config).await;
    let _echo = echo_client(&first).await;
    let console = Console::start(&format!("--socket {}", socket.display()));
    console.wait_for(&["192.0.2.7", "1 match"]).await;
    drop(first);
    console.wait_for(&["daemon unreachable"]).await;
    let second = Daemon::start(&config).await;
    let _alice = user(&second, "alice", "10.1.2.3").await;
    let screen = console.wait_for(&["alice", "1 match"]).await;
    assert!(!screen.contains("unreachable"), "{screen}");
    assert_eq!(console.pane_state(), "1 0", "alternate screen, no cursor");
    console.type_text("q");
    console.wait_for(&["console exited 0"]).await;
    assert_eq!(console.pane_state(), "0 1", "main screen, cursor shown");
}

#[tokio::test]
async fn without_a_daemon_it_says_so_in_one_line_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("none.sock");
    let console = Console::start(&format!("--socket {}", socket.display()));
    let screen = console.wait_for(&["console exited 1"]).await;
    let lines: Vec<&str> = screen.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines,
        [
            format!(
                "wsgate console: cannot reach the admin socket {}: No such file or directory (os error 2)",
                socket.display()
            )
            .as_str(),
            "console exited 1"
        ]
    );
    assert_eq!(console.pane_state(), "0 1");
}

#[tokio::test]
async fn without_a_terminal_it_points_to_ctl_watch_and_exits_1() {
    let daemon = Daemon::start(CONFIG).await;
    // Found through the config file, as `ctl` finds it: the daemon's
    // default socket, relative to the same directory.
    let out = Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .args(["console", "-c", "wsgate.toml"])
        .current_dir(daemon.dir.path())
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run wsgate console");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "wsgate console: not a terminal: the console needs one (for a stream of text, use `wsgate ctl watch`)\n"
    );
}

#[tokio::test]
async fn sigterm_and_sighup_to_the_console_restore_the_terminal() {
    let daemon = Daemon::start(CONFIG).await;
    let _echo = echo_client(&daemon).await;
    for signal in ["TERM", "HUP"] {
        let console = Console::start(&socket_arg(&daemon));
        console.wait_for(&["192.0.2.7"]).await;
        assert_eq!(console.pane_state(), "1 0", "alternate screen, no cursor");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(console.pid())
            .status()
            .expect("kill");
        assert!(status.success());
        console.wait_for(&["console exited 0"]).await;
        assert_eq!(
            console.pane_state(),
            "0 1",
            "SIG{signal}: main screen, cursor shown"
        );
    }
}

#[tokio::test]
async fn sorting_by_rate_puts_the_busiest_connection_first_from_any_page() {
    let daemon = Daemon::start(CONFIG).await;
    let mut quiet = Vec::new();
    for _ in 0..29 {
        quiet.push(echo_client(&daemon).await);
    }
    let mut busy = echo_client(&daemon).await;
    let console = Console::start(&socket_arg(&daemon));
    console.wait_for(&["30 match · rows 1-18 of 30"]).await;
    // The busy client (connection 30) is not on the first page by id.
    console.press("End");
    console.wait_for(&["rows 13-30"]).await;
    // IN/s, the seventh column, largest first: the table starts again at
    // the top.
    console.type_text("ssssss");
    console.type_text("o");
    console.wait_for(&["IN/s▼"]).await;
    let sender = tokio::spawn(async move {
        loop {
            if busy.send(Message::text("x")).await.is_err() {
                return;
            }
            // Read the echoes so that the send queue never fills.
            let _ = tokio::time::timeout(Duration::from_millis(20), recv(&mut busy)).await;
        }
    });
    console
        .wait_until(
            |s| {
                let first = s.lines().skip_while(|l| !l.contains("IN/s▼")).nth(1);
                // ID ROUTE USER IP AGE IDLE IN/s ...
                let cells: Vec<&str> = first.unwrap_or_default().split_whitespace().collect();
                let rate = cells.get(6).and_then(|r| r.parse::<f64>().ok());
                cells.first() == Some(&"30") && rate.is_some_and(|r| r > 0.0)
            },
            "connection 30 first, with a rate",
        )
        .await;
    sender.abort();
}

#[tokio::test]
async fn c_on_a_daemon_outside_a_cluster_says_it_is_not_part_of_one() {
    let daemon = Daemon::start(CONFIG).await;
    let _echo = echo_client(&daemon).await;
    let console = Console::start(&socket_arg(&daemon));
    let screen = console.wait_for(&["192.0.2.7", "1 match"]).await;
    assert!(!screen.contains("NATS"), "no cluster, no node:\n{screen}");
    console.type_text("c");
    console
        .wait_for(&[
            "Cluster: every node",
            "bad_arguments: this node is not part of a cluster",
        ])
        .await;
    console.wait_for(&["cluster of 1"]).await;
    // `c` again: back to the table.
    console.type_text("c");
    let screen = console.wait_for(&["1 match · rows 1-1 of 1"]).await;
    assert!(!screen.contains("not part of a cluster"), "{screen}");
}

/// A `nats-server` child process on a free loopback port; killed on drop
/// (as in tests/cluster.rs).
struct Nats {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nats {
    fn start() -> Nats {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir"])
            .arg(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server runs (.ci/deps installs it)");
        // `nats-server_<pid>.ports`: `{"nats": ["nats://...:PORT"]}`.
        let file = dir.path().join(format!("nats-server_{}.ports", child.id()));
        let deadline = Instant::now() + PATIENCE;
        let port = loop {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let ports = serde_json::from_str::<serde_json::Value>(&text).ok();
            let url = ports.as_ref().and_then(|v| v["nats"][0].as_str());
            if let Some(port) = url.and_then(|u| u.rsplit(':').next()?.parse().ok()) {
                break port;
            }
            assert!(Instant::now() < deadline, "nats-server wrote no ports file");
            std::thread::sleep(Duration::from_millis(20));
        };
        Nats {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node of a cluster at `nats` that announces itself often and is soon
/// taken as gone.
async fn cluster_node(name: &str, nats: &Nats) -> Daemon {
    let config = format!(
        "[server]\nwatch_config = false\ndrain_spread = \"0s\"\n\
         [cluster]\nnats = [\"nats://127.0.0.1:{}\"]\nnode = \"{name}\"\n\
         announce_interval = \"200ms\"\npeer_timeout = \"1s\"\nrequest_timeout = \"500ms\"\n\
         [[routes]]\npath = \"/ws/echo\"\nrouter = \"echo\"\n",
        nats.port
    );
    let daemon = Daemon::start(&config).await;
    daemon.wait_metric("wsgate_cluster_connected", 1.0).await;
    daemon
}

#[tokio::test]
async fn c_shows_every_node_of_a_cluster_and_one_that_is_gone() {
    let nats = Nats::start();
    let a = cluster_node("ws-a", &nats).await;
    let b = cluster_node("ws-b", &nats).await;
    let _echo = echo_client(&b).await;
    let console = Console::start(&socket_arg(&a));
    console.wait_for(&["node ws-a NATS connected"]).await;
    console.type_text("c");
    let screen = console.wait_for(&["2 nodes, 2 answered"]).await;
    let row = |screen: &str, name: &str| -> Vec<String> {
        let line = screen
            .lines()
            .find(|l| l.contains(name) && !l.contains("node ws-a NATS") && !l.contains("answered"));
        let line = line.unwrap_or_else(|| panic!("no row of {name} in\n{screen}"));
        line.split_whitespace().map(str::to_string).collect()
    };
    // NODE STATE CONNS TOPICS MSGS NATS DRAINING VERSION.
    assert_eq!(row(&screen, "ws-a")[..5], ["*", "ws-a", "ok", "0", "0"]);
    assert_eq!(row(&screen, "ws-b")[..3], ["ws-b", "ok", "1"]);
    drop(b);
    let screen = console
        .wait_for(&["2 nodes, 1 answered; not: ws-b", "gone"])
        .await;
    assert_eq!(row(&screen, "ws-b")[1], "gone", "{screen}");
}
