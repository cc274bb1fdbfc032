//! `wsgate bench` end to end: each mode runs for about a second against a
//! real daemon, and its `--json` summary must parse, have the expected
//! fields and show no lost or duplicated message. No timing is asserted.

mod common;

use std::process::{Command, Output};

use common::*;
use serde_json::Value;

/// Runs `wsgate bench ARGS... --json --quiet` and returns its output.
async fn bench_output(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_wsgate"))
            .arg("bench")
            .args(&args)
            .args(["--json", "--quiet", "--max-time", "60"])
            .output()
            .expect("run wsgate bench")
    })
    .await
    .expect("join")
}

/// Runs a bench that must succeed; returns its JSON summary.
async fn bench(args: &[&str]) -> Value {
    let out = bench_output(args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let v: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{stdout}"));
    assert_eq!(v["ok"], true, "{v}");
    v
}

fn assert_latency(v: &Value, count: u64) {
    assert_eq!(v["count"], count, "{v}");
    for key in ["min_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
        assert!(v[key].is_u64(), "{key}: {v}");
    }
    assert!(v["mean_us"].is_number(), "{v}");
}

#[tokio::test]
async fn idle_opens_holds_and_measures_memory() {
    let d = Daemon::start("[limits]\nmax_connections_per_ip = 1000\n").await;
    let url = d.url("/ws/echo");
    let pid = d.pid().to_string();
    let v = bench(&[
        "idle", "--url", &url, "--conns", "200", "--hold", "0.5", "--pid", &pid,
    ])
    .await;
    assert_eq!(v["mode"], "idle");
    assert_eq!(v["params"]["conns"], 200);
    assert_eq!(v["params"]["sources"], serde_json::json!(["127.0.0.1"]));
    let r = &v["results"];
    assert_eq!(r["opened"], 200, "{v}");
    assert_eq!(r["held"], 200, "{v}");
    assert_eq!(r["errors"], 0, "{v}");
    assert!(r["handshakes_per_s"].is_number(), "{v}");
    assert_latency(&r["handshake_latency"], 200);
    let mem = &r["memory"];
    assert!(mem["rss_before_kib"].is_u64(), "{v}");
    assert!(mem["rss_after_kib"].is_u64(), "{v}");
    assert!(mem["rss_per_conn_kib"].is_number(), "{v}");
    assert!(mem["pss_per_conn_kib"].is_number(), "{v}");
    // Every connection was closed again, politely.
    d.wait_metric("wsgate_connections_open{route=\"/ws/echo\"}", 0.0)
        .await;
    assert_eq!(
        d.metric("wsgate_connections_accepted_total{route=\"/ws/echo\"}")
            .await,
        200.0
    );
    d.wait_metric("wsgate_closes_total{code=\"1000\"}", 200.0)
        .await;
}

#[tokio::test]
async fn echo_round_trips_are_checked_and_timed() {
    let d = Daemon::start("[limits]\nmessages_per_second = 0\n").await;
    let url = d.url("/ws/echo");
    let v = bench(&[
        "echo", "--url", &url, "--conns", "4", "--msgs", "250", "--size", "64",
    ])
    .await;
    assert_eq!(v["mode"], "echo");
    assert_eq!(v["params"]["payload"], "binary");
    let r = &v["results"];
    assert_eq!(r["round_trips"], 1000, "{v}");
    assert_eq!(r["mismatches"], 0, "{v}");
    assert!(r["msgs_per_s"].is_number(), "{v}");
    assert_latency(&r["latency"], 1000);

    // Text payloads, spread over two source addresses.
    let v = bench(&[
        "echo",
        "--url",
        &url,
        "--conns",
        "4",
        "--msgs",
        "50",
        "--size",
        "1000",
        "--text",
        "--sources",
        "2",
    ])
    .await;
    assert_eq!(v["params"]["payload"], "text");
    assert_eq!(
        v["params"]["sources"],
        serde_json::json!(["127.0.0.1", "127.0.0.2"])
    );
    assert_latency(&v["results"]["latency"], 200);
}

#[tokio::test]
async fn fanout_delivers_every_message_once() {
    let d = Daemon::start("[api]\nkeys = [\"k\"]\n[limits]\nmessages_per_second = 0\n").await;
    let url = d.url("/ws");
    let api = format!("http://{}/api/publish", d.addr);
    let v = bench(&[
        "fanout",
        "--url",
        &url,
        "--api",
        &api,
        "--key",
        "k",
        "--subs",
        "20",
        "--msgs",
        "100",
        "--size",
        "256",
        "--rate",
        "200",
        "--topic",
        "bench.smoke",
    ])
    .await;
    assert_eq!(v["mode"], "fanout");
    assert_eq!(v["params"]["subscribe_path"], "/ws?topics=bench.smoke");
    let r = &v["results"];
    assert_eq!(r["published"], 100, "{v}");
    assert_eq!(r["expected_deliveries"], 2000, "{v}");
    assert_eq!(r["deliveries"], 2000, "{v}");
    assert_eq!(r["api_delivered"], 2000, "{v}");
    assert_eq!(r["lost"], 0, "{v}");
    assert_eq!(r["duplicated"], 0, "{v}");
    assert_eq!(r["slow_consumer_closes"], 0, "{v}");
    assert_eq!(r["frame_bytes"], 256, "{v}");
    assert!(r["deliveries_per_s"].is_number(), "{v}");
    assert!(r["publish_rate_per_s"].is_number(), "{v}");
    assert_latency(&r["latency"], 2000);
    // The subscribers closed with 1000 once they had every message.
    d.wait_metric("wsgate_closes_total{code=\"1000\"}", 20.0)
        .await;
}

#[tokio::test]
async fn churn_cycles_close_and_reset_and_reads_the_daemon() {
    let d =
        Daemon::start("[limits]\nmessages_per_second = 0\nmax_connections_per_ip = 1000\n").await;
    let url = d.url("/ws/echo");
    let pid = d.pid().to_string();
    let v = bench(&[
        "churn",
        "--url",
        &url,
        "--pid",
        &pid,
        "--rounds",
        "3",
        "--cycles",
        "50",
        "--concurrency",
        "10",
        "--tail",
        "2",
    ])
    .await;
    assert_eq!(v["mode"], "churn");
    assert_eq!(v["params"]["rounds"], 3);
    let r = &v["results"];
    assert_eq!(r["cycles"], 150, "{v}");
    assert_eq!(r["clean"], 75, "{v}");
    assert_eq!(r["reset"], 75, "{v}");
    assert_eq!(r["failed"], 0, "{v}");
    assert_eq!(r["tail_rounds"], 2, "{v}");
    let rounds = r["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 3, "{v}");
    for (i, round) in rounds.iter().enumerate() {
        assert_eq!(round["round"], i + 1, "{v}");
        assert_eq!(round["clean"], 25, "{v}");
        assert_eq!(round["reset"], 25, "{v}");
        assert!(round["rss_kib"].as_u64().is_some_and(|k| k > 0), "{v}");
        assert!(round["fds"].as_u64().is_some_and(|n| n > 0), "{v}");
    }
    let last = rounds[2]["rss_kib"].as_i64().expect("rss");
    let tail_from = rounds[0]["rss_kib"].as_i64().expect("rss");
    assert_eq!(r["tail_growth_kib"], last - tail_from, "{v}");
    assert!(r["growth_first_to_last_kib"].is_i64(), "{v}");
    // The daemon saw every cycle: half closed with 1000, none left open.
    d.wait_metric("wsgate_connections_open{route=\"/ws/echo\"}", 0.0)
        .await;
    assert_eq!(
        d.metric("wsgate_connections_accepted_total{route=\"/ws/echo\"}")
            .await,
        150.0
    );
    d.wait_metric("wsgate_closes_total{code=\"1000\"}", 75.0)
        .await;
}

#[tokio::test]
async fn churn_fails_when_the_cycles_are_refused() {
    // One connection per address and 4 in flight: most upgrades get 429.
    let d = Daemon::start("[limits]\nmax_connections_per_ip = 1\n").await;
    let url = d.url("/ws/echo");
    let pid = d.pid().to_string();
    let out = bench_output(&[
        "churn",
        "--url",
        &url,
        "--pid",
        &pid,
        "--rounds",
        "1",
        "--cycles",
        "40",
        "--concurrency",
        "4",
    ])
    .await;
    assert!(!out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON summary");
    assert_eq!(v["ok"], false, "{v}");
    let r = &v["results"];
    assert!(r["failed"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert_eq!(
        r["clean"].as_u64().unwrap_or(0)
            + r["reset"].as_u64().unwrap_or(0)
            + r["failed"].as_u64().unwrap_or(0),
        40,
        "{v}"
    );
    assert!(
        r["first_error"].as_str().is_some_and(|e| e.contains("429")),
        "{v}"
    );
}

#[tokio::test]
async fn soak_delivers_every_message_once_and_echoes() {
    let d = Daemon::start("[api]\nkeys = [\"k\"]\n[limits]\nmessages_per_second = 0\n").await;
    let url = d.url("/ws");
    let api = format!("http://{}/api/publish", d.addr);
    let pid = d.pid().to_string();
    let v = bench(&[
        "soak",
        "--url",
        &url,
        "--api",
        &api,
        "--key",
        "k",
        "--pid",
        &pid,
        "--connections",
        "50",
        "--echoing",
        "5",
        "--echo-every",
        "50ms",
        "--publish-rate",
        "20",
        "--duration",
        "2s",
        "--window",
        "1s",
        "--sample-every",
        "500ms",
    ])
    .await;
    assert_eq!(v["mode"], "soak");
    assert_eq!(v["params"]["subscribe_path"], "/ws?topics=soak");
    let r = &v["results"];
    assert_eq!(r["published"], 40, "{v}");
    assert_eq!(r["expected_deliveries"], 2000, "{v}");
    assert_eq!(r["deliveries"], 2000, "{v}");
    assert_eq!(r["api_delivered"], 2000, "{v}");
    assert_eq!(r["lost"], 0, "{v}");
    assert_eq!(r["duplicated"], 0, "{v}");
    assert_eq!(r["errors"], 0, "{v}");
    assert_eq!(r["complete_connections"], 50, "{v}");
    assert_latency(&r["latency"], 2000);
    let echo = &r["echo"];
    assert!(echo["pongs"].as_u64().is_some_and(|n| n > 0), "{v}");
    assert_eq!(echo["unanswered"], 0, "{v}");
    assert_eq!(echo["pongs"], echo["latency"]["count"], "{v}");
    let windows = r["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 2, "{v}");
    let per_window: u64 = windows
        .iter()
        .map(|w| w["delivery"]["count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(per_window, 2000, "{v}");
    assert!(r["p99_first_window_us"].is_u64(), "{v}");
    assert!(r["p99_last_window_us"].is_u64(), "{v}");
    let rss = &r["rss"];
    assert!(rss["start_kib"].as_u64().is_some_and(|k| k > 0), "{v}");
    assert!(rss["end_kib"].as_u64().is_some_and(|k| k > 0), "{v}");
    assert!(rss["change_pct"].is_number(), "{v}");
    assert!(rss["change_after_first_window_pct"].is_number(), "{v}");
    assert!(
        rss["samples"].as_array().is_some_and(|s| s.len() >= 2),
        "{v}"
    );
}

#[tokio::test]
async fn refusals_happen_before_any_connection() {
    for args in [
        &["echo", "--url", "ws://10.0.0.1:8080/ws/echo"][..],
        &["idle", "--url", "ws://example.com/ws/echo"][..],
        &["fanout", "--api", "http://10.0.0.1/api/publish"][..],
        &["echo", "--conns", "0"][..],
        &["fanout", "--size", "20"][..],
        &["idle", "--conns", "200001"][..],
        &["churn", "--pid", "4294967295"][..],
        &["churn", "--pid", "1", "--rounds", "0"][..],
        &["soak", "--connections", "5", "--echoing", "6"][..],
    ] {
        let out = bench_output(args).await;
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("wsgate bench: "), "{args:?}: {stderr}");
    }
}
