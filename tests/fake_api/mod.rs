//! A scripted stand-in for the Anthropic Messages API on 127.0.0.1, for driving the real
//! `claude -p` in tests (`ANTHROPIC_BASE_URL`). `POST /v1/messages` with `stream: true`
//! answers with the SSE event sequence Claude Code expects; the script decides, from the
//! request, whether the "model" calls a tool or answers with text. Every main request (one
//! that offers tools) is recorded for assertions. Side requests (no tools, or not
//! streaming) get a short text answer and are not recorded.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// What the "model" does on one turn.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Call a tool (full name, e.g. `mcp__claudemesh__send_message`) with this input.
    Tool(String, Value),
    /// Answer with text and end the turn.
    Text(String),
}

/// The script: `(step, request body) -> reply`, where step is the number of tool results
/// already in the conversation. It runs on a blocking thread, so it may wait.
pub type Script = Arc<dyn Fn(usize, &Value) -> Reply + Send + Sync>;

pub struct FakeApi {
    pub url: String,
    /// Main requests, in arrival order.
    pub requests: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Number of `tool_result` blocks anywhere in the conversation.
pub fn step(body: &Value) -> usize {
    body["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter_map(|m| m["content"].as_array())
                .flatten()
                .filter(|c| c["type"] == "tool_result")
                .count()
        })
        .unwrap_or(0)
}

/// All text the model was shown in this request's conversation (messages only, not the
/// system prompt or tool definitions), one string.
pub fn conversation_text(body: &Value) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::String(s) => {
                out.push_str(s);
                out.push('\n');
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = String::new();
    walk(&body["messages"], &mut out);
    out
}

fn sse(events: &[Value]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "event: {}\ndata: {}\n\n",
                e["type"].as_str().unwrap_or(""),
                e
            )
        })
        .collect()
}

fn stream_reply(model: &str, n: usize, reply: &Reply) -> String {
    let start = json!({"type":"message_start","message":{"id":format!("msg_{n}"),"type":"message","role":"assistant","model":model,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":1}}});
    let (block, delta, stop) = match reply {
        Reply::Tool(name, input) => (
            json!({"type":"tool_use","id":format!("toolu_{n:02}"),"name":name,"input":{}}),
            json!({"type":"input_json_delta","partial_json":input.to_string()}),
            "tool_use",
        ),
        Reply::Text(t) => (
            json!({"type":"text","text":""}),
            json!({"type":"text_delta","text":t}),
            "end_turn",
        ),
    };
    sse(&[
        start,
        json!({"type":"content_block_start","index":0,"content_block":block}),
        json!({"type":"content_block_delta","index":0,"delta":delta}),
        json!({"type":"content_block_stop","index":0}),
        json!({"type":"message_delta","delta":{"stop_reason":stop,"stop_sequence":null},"usage":{"output_tokens":5}}),
        json!({"type":"message_stop"}),
    ])
}

impl FakeApi {
    pub async fn start(script: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static) -> FakeApi {
        let script: Script = Arc::new(script);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (reqs, counter) = (
            requests.clone(),
            Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (script, reqs, counter) = (script.clone(), reqs.clone(), counter.clone());
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let (script, reqs, counter) =
                                (script.clone(), reqs.clone(), counter.clone());
                            async move {
                                Ok::<_, hyper::Error>(handle(req, script, reqs, counter).await)
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        FakeApi {
            url,
            requests,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    script: Script,
    reqs: Arc<Mutex<Vec<Value>>>,
    counter: Arc<std::sync::atomic::AtomicUsize>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let is_post = req.method() == hyper::Method::POST;
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let respond = |status: u16, ctype: &str, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", ctype)
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    if !is_post || !path.starts_with("/v1/messages") {
        return respond(
            404,
            "application/json",
            r#"{"type":"error","error":{"type":"not_found_error","message":"not here"}}"#.into(),
        );
    }
    if path.starts_with("/v1/messages/count_tokens") {
        return respond(200, "application/json", r#"{"input_tokens":10}"#.into());
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return respond(
            400,
            "application/json",
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"bad json"}}"#
                .into(),
        );
    };
    let model = v["model"].as_str().unwrap_or("claude-x").to_string();
    let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let main = v["stream"] == true && v["tools"].as_array().is_some_and(|t| !t.is_empty());
    if !main {
        if v["stream"] == true {
            return respond(
                200,
                "text/event-stream",
                stream_reply(&model, n, &Reply::Text("ok".into())),
            );
        }
        let m = json!({"id":format!("msg_{n}"),"type":"message","role":"assistant","model":model,"content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}});
        return respond(200, "application/json", m.to_string());
    }
    reqs.lock().unwrap().push(v.clone());
    let s = step(&v);
    let reply = tokio::task::spawn_blocking(move || script(s, &v))
        .await
        .unwrap_or(Reply::Text("script failed".into()));
    respond(200, "text/event-stream", stream_reply(&model, n, &reply))
}
