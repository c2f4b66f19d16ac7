//! The control port's endpoints, one function each.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};

use super::desk::{Applied, Resume};
use super::door::Listener;
use super::state::Control;
use super::ReloadFn;
use crate::config::read_admin_token;
use crate::metrics::PromText;
use crate::money::notice::{percent_decoded, same_bytes, NoticeKind};

/// Where notice URLs point under the notice base URL's host: `/notice/win` etc.
pub const NOTICE_PATH_PREFIX: &str = "/notice";

/// The Prometheus text format's media type.
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(super) type Reply = Response<Full<Bytes>>;

/// Answers one request that came in on `listener`. Never fails: every problem is a
/// status.
pub(super) async fn route(control: &Control, listener: Listener, req: Request<Incoming>) -> Reply {
    match listener {
        Listener::Notice => route_notice(control, &req).await,
        Listener::Admin => route_admin(control, req).await,
    }
}

/// The notice listener serves notices and nothing else.
async fn route_notice(control: &Control, req: &Request<Incoming>) -> Reply {
    let Some(kind) = notice_kind(req.uri().path()) else {
        return text(
            StatusCode::NOT_FOUND,
            "not found: this listener serves /notice/{win,bill,loss}",
        );
    };
    if req.method() != Method::GET {
        return not_allowed("GET");
    }
    notice(control, kind, req.uri().query().unwrap_or("")).await
}

async fn route_admin(control: &Control, req: Request<Incoming>) -> Reply {
    let path = req.uri().path();
    if notice_kind(path).is_some() {
        return text(
            StatusCode::NOT_FOUND,
            "notices are served on the notice listener ([notice] listen), not the admin listener",
        );
    }
    if let Some(campaign) = resume_target(path) {
        if req.method() != Method::POST {
            return not_allowed("POST");
        }
        if let Some(refused) = unauthorized(control, &req) {
            return refused;
        }
        return resume(control, campaign);
    }
    let allowed = match path {
        "/metrics" | "/health" | "/ready" | "/supply" => "GET",
        "/reload" => "POST",
        _ => return text(StatusCode::NOT_FOUND, "not found"),
    };
    if req.method().as_str() != allowed {
        return not_allowed(allowed);
    }
    match path {
        "/metrics" => metrics(control),
        "/supply" => supply(control),
        "/health" => text(StatusCode::OK, "ok"),
        "/ready" if control.readiness.is_ready() => text(StatusCode::OK, "ready"),
        "/ready" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready"),
        _ => match unauthorized(control, &req) {
            None => reload(control, req).await,
            Some(refused) => refused,
        },
    }
}

/// The refusal of a call without `Authorization: Bearer TOKEN` matching
/// `admin_token_file` (read now: a rotated token applies at once); `None` lets it
/// through. Without a token file the calls that change state are refused: fail
/// closed.
fn unauthorized(control: &Control, req: &Request<Incoming>) -> Option<Reply> {
    let Some(path) = &control.config.admin_token_file else {
        return Some(text(
            StatusCode::FORBIDDEN,
            "admin calls need a credential: set [server] admin_token_file and send `Authorization: Bearer TOKEN` (SIGHUP still reloads)",
        ));
    };
    let expected = match read_admin_token(path) {
        Ok(token) => token,
        Err(problem) => {
            tracing::error!("{problem}");
            return Some(text(StatusCode::INTERNAL_SERVER_ERROR, &problem));
        }
    };
    let sent = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if sent.is_some_and(|sent| same_bytes(sent.as_bytes(), expected.as_bytes())) {
        return None;
    }
    control.unauthorized.set(control.unauthorized.get() + 1);
    let mut reply = text(
        StatusCode::UNAUTHORIZED,
        "missing or wrong admin token: send `Authorization: Bearer TOKEN` with the token of [server] admin_token_file",
    );
    reply
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Some(reply)
}

/// `/campaign/{id}/resume` (the id percent-encoded if it must be).
fn resume_target(path: &str) -> Option<&str> {
    path.strip_prefix("/campaign/")?
        .strip_suffix("/resume")
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// Clears the spend-rate breaker of a campaign (what `bidderctl campaign resume`
/// asks for through the agent).
fn resume(control: &Control, encoded: &str) -> Reply {
    let Some(campaign) = percent_decoded(encoded) else {
        return text(
            StatusCode::BAD_REQUEST,
            "campaign id: malformed percent-encoding",
        );
    };
    match control.desk.borrow_mut().resume(&campaign) {
        Resume::Resumed => text(
            StatusCode::OK,
            &format!("{campaign}: resumed: the spend-rate breaker is reset"),
        ),
        Resume::NotTripped => text(
            StatusCode::OK,
            &format!("{campaign}: the spend-rate breaker had not paused it"),
        ),
        Resume::Unknown => text(
            StatusCode::NOT_FOUND,
            &format!("{campaign}: no such campaign"),
        ),
    }
}

fn notice_kind(path: &str) -> Option<NoticeKind> {
    let rest = path.strip_prefix(NOTICE_PATH_PREFIX)?;
    [NoticeKind::Win, NoticeKind::Bill, NoticeKind::Loss]
        .into_iter()
        .find(|k| k.path() == rest)
}

/// 204 for any verified notice (duplicates and unknown bids included: the exchange
/// did its part), once what it changed is durable; 503 when the spend journal cannot
/// make it durable (the exchange retries); 400 with the reason for forged, edited or
/// malformed ones.
async fn notice(control: &Control, kind: NoticeKind, query: &str) -> Reply {
    // The borrow ends with this statement: other connections use the desk while this
    // one waits for its commit.
    let applied = control.desk.borrow_mut().apply(kind, query);
    let durable = match applied {
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.to_string()),
        Ok(Applied::Now) => true,
        Ok(Applied::Durable(ack)) => ack.await.unwrap_or(false),
        Ok(Applied::Unavailable) => false,
    };
    if durable {
        empty(StatusCode::NO_CONTENT)
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "spend ledger unavailable; retry the notice later",
        )
    }
}

fn metrics(control: &Control) -> Reply {
    let mut out = PromText::new();
    control.registry.collect(&mut out);
    control.collect(&mut out);
    control.desk.borrow().collect(&mut out);
    let mut reply = Response::new(Full::new(Bytes::from(out.render())));
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
    reply
}

/// Every tracked supply file as JSON (`{"files":[…]}`), as the fetcher last saw them.
fn supply(control: &Control) -> Reply {
    let files = control
        .supply
        .as_ref()
        .map(|s| s.status())
        .unwrap_or_default();
    let body = serde_json::json!({ "files": &*files }).to_string();
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    reply
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    reply
}

/// Reads the bounded body within the body timeout, then runs the reload callback on a
/// blocking thread (loading a large config takes a while; the ledger tick and notices
/// go on meanwhile). Reloads run one at a time.
async fn reload(control: &Control, req: Request<Incoming>) -> Reply {
    let body = Limited::new(req.into_body(), control.config.max_reload_body_bytes);
    let collected = tokio::time::timeout(control.body_timeout(), body.collect()).await;
    let body = match collected {
        Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "request body too slow"),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return text(StatusCode::PAYLOAD_TOO_LARGE, "reload body too large")
        }
        Ok(Err(_)) => return text(StatusCode::BAD_REQUEST, "unreadable request body"),
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    let callback = Arc::clone(&control.reload);
    let ran = tokio::task::spawn_blocking(move || call_reload(&callback, &body)).await;
    let (status, line) = match ran {
        Ok(Ok(summary)) => (StatusCode::OK, summary),
        Ok(Err(error)) => (StatusCode::BAD_REQUEST, error),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "reload failed unexpectedly (panicked); see the log".to_owned(),
        ),
    };
    control.count_reload(status == StatusCode::OK);
    text(status, &line)
}

fn call_reload(callback: &Mutex<ReloadFn>, body: &[u8]) -> Result<String, String> {
    let mut f = callback
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    f(body)
}

pub(super) fn empty(status: StatusCode) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::new()));
    *reply.status_mut() = status;
    reply
}

/// A plain-text answer: `line` and a newline.
pub(super) fn text(status: StatusCode, line: &str) -> Reply {
    let mut body = String::with_capacity(line.len() + 1);
    body.push_str(line);
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    reply
}

fn not_allowed(allow: &'static str) -> Reply {
    let mut reply = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    reply
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    reply
}
