//! Admin requests with `scope: "cluster"`: run here and on every live node
//! of the cluster (request/reply over NATS, each within
//! `[cluster] request_timeout`), and the answers gathered, this node's
//! first. A node that does not answer, and one known to be gone or to have
//! left, is listed with an error: never hidden.
//!
//! The other side: [`answer_line`] runs a request line another node sent.

use std::sync::Arc;

use serde_json::Value;
use tokio::task::JoinSet;
use wsgate_cluster::{PeerState, RequestError};

use super::lines::{line, parse};
use super::protocol::{code, ClusterResult, Command, ErrorBody, NodeAnswer, Request, Response};
use super::service::{answer, Service};

/// Runs `command` on every node and gathers the answers.
pub async fn execute(service: &Service, id: Option<Value>, command: Command) -> Response {
    let Some(bus) = service.daemon.hub().bus().cloned() else {
        return Response::err(
            id,
            code::BAD_ARGUMENTS,
            "this node is not part of a cluster ([cluster] names no NATS servers)",
        );
    };
    if let Err(why) = clusterable(&command) {
        return Response::err(id, code::BAD_ARGUMENTS, why);
    }
    let request = Request {
        id: None,
        scope: Default::default(),
        command: command.clone(),
    };
    let Ok(request) = serde_json::to_vec(&request) else {
        return Response::err(id, code::BAD_REQUEST, "cannot encode the request");
    };
    let request = bytes::Bytes::from(request);

    let mut asked = JoinSet::new();
    let mut nodes = Vec::new();
    for (i, peer) in bus.peers().into_iter().enumerate() {
        let node = peer.announcement.node.clone();
        match peer.state {
            PeerState::Live => {
                let (bus, request) = (Arc::clone(&bus), request.clone());
                asked.spawn(async move { (i, bus.request(&node, request).await) });
                nodes.push(NodeAnswer {
                    node: peer.announcement.node,
                    ok: false,
                    result: None,
                    error: None,
                });
            }
            PeerState::Gone => nodes.push(failed(
                peer.announcement.node,
                format!("gone: no announcement for {}s", peer.silent_for.as_secs()),
            )),
            PeerState::Left => nodes.push(failed(
                peer.announcement.node,
                "left the cluster".to_string(),
            )),
        }
    }
    let own = service.execute(None, command).await;
    while let Some(done) = asked.join_next().await {
        let Ok((i, answer)) = done else { continue };
        let node = std::mem::take(&mut nodes[i].node);
        nodes[i] = from_answer(node, answer);
    }
    let mut all = vec![from_response(bus.node().to_string(), own)];
    all.extend(nodes);
    answer(id, &ClusterResult { nodes: all })
}

/// The commands that have a cluster scope.
fn clusterable(command: &Command) -> Result<(), String> {
    match command {
        Command::Stats {} | Command::List { .. } => Ok(()),
        Command::Evict { conn: Some(_), .. } => Err(
            "evict with a cluster scope takes a filter, not a connection id (ids are per node)"
                .to_string(),
        ),
        Command::Evict { .. } => Ok(()),
        other => Err(format!(
            "`{}` has no cluster scope (stats, list and evict do)",
            other.name()
        )),
    }
}

fn failed(node: String, message: String) -> NodeAnswer {
    NodeAnswer {
        node,
        ok: false,
        result: None,
        error: Some(ErrorBody {
            code: code::UNAVAILABLE.to_string(),
            message,
        }),
    }
}

fn from_response(node: String, response: Response) -> NodeAnswer {
    NodeAnswer {
        node,
        ok: response.ok,
        result: response.result,
        error: response.error,
    }
}

fn from_answer(node: String, answer: Result<bytes::Bytes, RequestError>) -> NodeAnswer {
    match answer {
        Err(e) => failed(node, format!("no answer: {e}")),
        Ok(line) => match serde_json::from_slice::<Response>(&line) {
            Ok(response) => from_response(node, response),
            Err(e) => failed(node, format!("an answer that is not one: {e}")),
        },
    }
}

/// Runs a request line another node sent (node scope only: a cluster
/// request is never passed on again) and returns the answer line.
pub async fn answer_line(service: &Service, request: &[u8]) -> Vec<u8> {
    let response = match std::str::from_utf8(request).map(parse) {
        Err(_) => Response::err(None, code::BAD_REQUEST, "not UTF-8"),
        Ok(Err(refused)) => refused,
        Ok(Ok(Request { id, scope, command })) => {
            if !scope.is_node() {
                Response::err(id, code::BAD_REQUEST, "a cluster request is not passed on")
            } else if clusterable(&command).is_err() {
                Response::err(id, code::BAD_REQUEST, "not a command other nodes may send")
            } else {
                service.execute(id, command).await
            }
        }
    };
    line(&response).into_bytes()
}
