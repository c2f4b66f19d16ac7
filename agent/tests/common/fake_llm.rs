#![allow(dead_code)] // each test crate uses a part

//! A protocol-faithful local fake of the two LLM APIs the strategist speaks:
//! Anthropic's Messages (`POST /v1/messages`) and OpenAI chat completions
//! (`POST /v1/chat/completions`). Each test scripts the replies in order and reads
//! back every request it received (path, headers, JSON body). HTTP/1.1 with
//! keep-alive, one thread per connection; a `Hang` reply holds the request unanswered.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Reply {
    Json(u16, Value),
    /// Never answer (until the fake is dropped).
    Hang,
}

/// A request as received.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    /// Lower-cased header names.
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The last message of the conversation sent (where tool results travel).
    pub fn last_message(&self) -> &Value {
        self.body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .unwrap_or(&Value::Null)
    }
}

#[derive(Default)]
struct State {
    replies: VecDeque<Reply>,
    seen: Vec<Seen>,
    stopped: bool,
}

pub struct FakeLlm {
    pub base_url: String,
    state: Arc<Mutex<State>>,
}

impl FakeLlm {
    pub fn start() -> FakeLlm {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                if shared.lock().unwrap().stopped {
                    return;
                }
                let state = Arc::clone(&shared);
                std::thread::spawn(move || serve(conn, &state));
            }
        });
        FakeLlm {
            base_url: format!("http://{addr}"),
            state,
        }
    }

    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().replies.extend(replies);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    pub fn unused(&self) -> usize {
        self.state.lock().unwrap().replies.len()
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.state.lock().unwrap().stopped = true;
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.base_url.trim_start_matches("http://"));
    }
}

fn serve(conn: TcpStream, state: &Mutex<State>) {
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let reply = {
            let mut s = state.lock().unwrap();
            s.seen.push(Seen {
                path,
                headers,
                body,
            });
            s.replies.pop_front()
        };
        let (status, body) = match reply {
            Some(Reply::Json(status, body)) => (status, body),
            Some(Reply::Hang) => loop {
                std::thread::sleep(Duration::from_millis(50));
                if state.lock().unwrap().stopped {
                    return;
                }
            },
            None => (
                500,
                json!({"type": "error", "error": {"type": "api_error", "message": "fake: nothing scripted"}}),
            ),
        };
        let text = body.to_string();
        let answer = format!(
            "HTTP/1.1 {status} Fake\r\ncontent-type: application/json\r\ncontent-length: {}\r\nrequest-id: req_fake\r\n\r\n{text}",
            text.len()
        );
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Anthropic: the model calls `name` with `input`.
pub fn anthropic_tool(id: &str, name: &str, input: Value) -> Reply {
    Reply::Json(
        200,
        json!({
            "id": format!("msg_{id}"), "type": "message", "role": "assistant", "model": "claude-fake",
            "content": [{"type": "tool_use", "id": id, "name": name, "input": input}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 100, "output_tokens": 20}
        }),
    )
}

/// Anthropic: the model's final answer.
pub fn anthropic_text(text: &str) -> Reply {
    Reply::Json(
        200,
        json!({
            "id": "msg_end", "type": "message", "role": "assistant", "model": "claude-fake",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 150, "output_tokens": 10}
        }),
    )
}

/// Anthropic's "overloaded" error.
pub fn anthropic_overloaded() -> Reply {
    Reply::Json(
        529,
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    )
}

/// OpenAI: the model calls `name` with `args` (sent as a JSON string, as OpenAI does).
/// No `created` stamp: rig reads it as optional and the agent never does, so the fake
/// leaves it out rather than invent an instant beside the test's clock.
pub fn openai_tool(id: &str, name: &str, args: Value) -> Reply {
    Reply::Json(
        200,
        json!({
            "id": format!("chatcmpl-{id}"), "object": "chat.completion",
            "model": "gpt-fake",
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": null, "tool_calls": [{
                    "id": id, "type": "function",
                    "function": {"name": name, "arguments": args.to_string()}
                }]},
                "finish_reason": "tool_calls"
            }],
            "usage": {"prompt_tokens": 90, "completion_tokens": 30, "total_tokens": 120}
        }),
    )
}

/// OpenAI: the model's final answer.
pub fn openai_text(text: &str) -> Reply {
    Reply::Json(
        200,
        json!({
            "id": "chatcmpl-end", "object": "chat.completion",
            "model": "gpt-fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 140, "completion_tokens": 9, "total_tokens": 149}
        }),
    )
}
