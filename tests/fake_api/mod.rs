//! Scripted stand-ins for model APIs on 127.0.0.1, for driving real agent CLIs in tests:
//! the Anthropic Messages API (`claude -p`, `ANTHROPIC_BASE_URL`), the OpenAI Responses API
//! (Codex), the Gemini API (Gemini CLI) and OpenAI chat completions (opencode). Each
//! answers with the streamed (SSE) sequence its client expects; the script decides, from
//! the request, whether the "model" calls a tool or answers with text. Every main request
//! (one that offers tools) is recorded for assertions. Side requests (titles, routing: no
//! tools) get a short text answer and are not recorded. The wire formats are written down
//! in ../shared/research/other-agents.md and were checked against the real clients.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// Which model API is spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `POST /v1/messages` (Claude Code).
    Anthropic,
    /// `POST /v1/responses` (Codex).
    Responses,
    /// `POST /v1beta/models/M:streamGenerateContent?alt=sse` (Gemini CLI).
    Gemini,
    /// `POST /v1/chat/completions` (opencode).
    Chat,
}

/// What the "model" does on one turn.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Call a tool with this input. For Anthropic the full name
    /// (`mcp__claudemesh__send_message`); for the others the claudemesh tool's own name
    /// (`send_message`), which the wire turns into the client's naming.
    Tool(String, Value),
    /// Answer with text and end the turn.
    Text(String),
}

/// The script: `(step, request body) -> reply`, where step is the number of tool results
/// already in the conversation. It runs on a blocking thread, so it may wait.
pub type Script = Arc<dyn Fn(usize, &Value) -> Reply + Send + Sync>;

pub struct FakeApi {
    pub url: String,
    pub wire: Wire,
    /// Main requests, in arrival order.
    pub requests: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Number of tool results in the conversation.
pub fn step_of(wire: Wire, body: &Value) -> usize {
    let count = |list: &Value, f: &dyn Fn(&Value) -> bool| {
        list.as_array()
            .map_or(0, |a| a.iter().filter(|x| f(x)).count())
    };
    match wire {
        Wire::Anthropic => step(body),
        Wire::Responses => count(&body["input"], &|i| i["type"] == "function_call_output"),
        Wire::Chat => count(&body["messages"], &|m| m["role"] == "tool"),
        Wire::Gemini => body["contents"].as_array().map_or(0, |cs| {
            cs.iter()
                .filter_map(|c| c["parts"].as_array())
                .flatten()
                .filter(|p| p.get("functionResponse").is_some())
                .count()
        }),
    }
}

/// Number of `tool_result` blocks anywhere in the conversation (Anthropic).
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
    for k in ["messages", "input", "contents"] {
        walk(&body[k], &mut out);
    }
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

fn data_events(events: &[Value]) -> String {
    events.iter().map(|e| format!("data: {e}\n\n")).collect()
}

/// The Responses API stream for one reply (tools are in the `mcp__claudemesh` namespace).
fn responses_reply(n: usize, reply: &Reply) -> String {
    let item = match reply {
        Reply::Tool(name, input) => {
            json!({"type":"function_call","id":format!("fc_{n}"),"call_id":format!("call_{n}"),
            "namespace":"mcp__claudemesh","name":name,"arguments":input.to_string(),"status":"completed"})
        }
        Reply::Text(t) => {
            json!({"type":"message","id":format!("msg_{n}"),"role":"assistant","status":"completed",
            "content":[{"type":"output_text","text":t,"annotations":[]}]})
        }
    };
    let events = [
        json!({"type":"response.created","response":{"id":format!("resp_{n}")}}),
        json!({"type":"response.output_item.done","output_index":0,"item":item}),
        json!({"type":"response.completed","response":{"id":format!("resp_{n}"),
            "usage":{"input_tokens":5,"output_tokens":5,"total_tokens":10}}}),
    ];
    events
        .iter()
        .map(|e| format!("event: {}\ndata: {e}\n\n", e["type"].as_str().unwrap_or("")))
        .collect()
}

/// One Gemini candidate (tools are `mcp_claudemesh_<name>`).
fn gemini_reply(reply: &Reply) -> Value {
    let part = match reply {
        Reply::Tool(name, input) => {
            json!({"functionCall":{"name":format!("mcp_claudemesh_{name}"),"args":input}})
        }
        Reply::Text(t) => json!({"text":t}),
    };
    json!({"candidates":[{"content":{"role":"model","parts":[part]},"finishReason":"STOP","index":0}],
        "usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":5,"totalTokenCount":10}})
}

/// The chat-completions stream for one reply (tools are `claudemesh_<name>`).
fn chat_reply(n: usize, reply: &Reply) -> String {
    let chunk = |delta: Value, finish: Value| {
        json!({"id":format!("chatcmpl-{n}"),"object":"chat.completion.chunk","created":0,"model":"m",
            "choices":[{"index":0,"delta":delta,"finish_reason":finish}]})
    };
    let (delta, finish) = match reply {
        Reply::Tool(name, input) => (
            json!({"role":"assistant","tool_calls":[{"index":0,"id":format!("call_{n}"),"type":"function",
                "function":{"name":format!("claudemesh_{name}"),"arguments":input.to_string()}}]}),
            "tool_calls",
        ),
        Reply::Text(t) => (json!({"role":"assistant","content":t}), "stop"),
    };
    let mut out = data_events(&[chunk(delta, Value::Null), chunk(json!({}), json!(finish))]);
    out.push_str("data: [DONE]\n\n");
    out
}

impl FakeApi {
    pub async fn start(script: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static) -> FakeApi {
        FakeApi::start_wire(Wire::Anthropic, script).await
    }

    pub async fn start_wire(
        wire: Wire,
        script: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static,
    ) -> FakeApi {
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
                                Ok::<_, hyper::Error>(
                                    handle(wire, req, script, reqs, counter).await,
                                )
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
            wire,
            requests,
            task,
        }
    }

    pub fn requests(&self) -> Vec<Value> {
        self.requests.lock().unwrap().clone()
    }
}

async fn handle(
    wire: Wire,
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
    if wire != Wire::Anthropic {
        return handle_other(wire, is_post, &path, &body, script, reqs, counter).await;
    }
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

fn respond(status: u16, ctype: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", ctype)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// The Responses, Gemini and chat-completions wires.
async fn handle_other(
    wire: Wire,
    is_post: bool,
    path: &str,
    body: &[u8],
    script: Script,
    reqs: Arc<Mutex<Vec<Value>>>,
    counter: Arc<std::sync::atomic::AtomicUsize>,
) -> Response<Full<Bytes>> {
    let expected = match wire {
        Wire::Responses => path.ends_with("/responses"),
        Wire::Chat => path.ends_with("/chat/completions"),
        _ => path.contains("/models/"),
    };
    if !is_post || !expected {
        return respond(
            404,
            "application/json",
            r#"{"error":{"message":"not here","code":404}}"#.into(),
        );
    }
    if wire == Wire::Gemini && path.ends_with(":countTokens") {
        return respond(200, "application/json", r#"{"totalTokens":10}"#.into());
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return respond(
            400,
            "application/json",
            r#"{"error":{"message":"bad json","code":400}}"#.into(),
        );
    };
    let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let main = v["tools"].as_array().is_some_and(|t| !t.is_empty());
    let reply = if main {
        reqs.lock().unwrap().push(v.clone());
        let s = step_of(wire, &v);
        let body = v.clone();
        tokio::task::spawn_blocking(move || script(s, &body))
            .await
            .unwrap_or(Reply::Text("script failed".into()))
    } else {
        Reply::Text("ok".into())
    };
    match wire {
        Wire::Responses => respond(200, "text/event-stream", responses_reply(n, &reply)),
        Wire::Chat if v["stream"] == true => {
            respond(200, "text/event-stream", chat_reply(n, &reply))
        }
        Wire::Chat => {
            let text = if let Reply::Text(t) = &reply {
                t.clone()
            } else {
                String::new()
            };
            let c = json!({"id":format!("chatcmpl-{n}"),"object":"chat.completion","created":0,"model":"m",
                "choices":[{"index":0,"message":{"role":"assistant","content":text},"finish_reason":"stop"}],
                "usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}});
            respond(200, "application/json", c.to_string())
        }
        _ if path.contains(":streamGenerateContent") => respond(
            200,
            "text/event-stream",
            data_events(&[gemini_reply(&reply)]),
        ),
        _ => respond(200, "application/json", gemini_reply(&reply).to_string()),
    }
}
