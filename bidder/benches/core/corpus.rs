//! The OpenRTB corpus as the benchmark replays it: every request body the manifest
//! names (standalone files, gzip bodies, and the requests inside Prebid Server
//! fixtures), each tagged with the media types its imps offer.

use std::io::Read;
use std::path::Path;

use bidder::openrtb::Parser;
use serde_json::Value;

/// The media classes results are broken down by. A request whose imps offer more than
/// one type (a banner-or-video imp, a banner and a native imp), or none we know, is
/// `Mixed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    Banner,
    Video,
    Native,
    Audio,
    Mixed,
}

impl Media {
    pub const ALL: [Media; 5] = [
        Media::Banner,
        Media::Video,
        Media::Native,
        Media::Audio,
        Media::Mixed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Media::Banner => "banner",
            Media::Video => "video",
            Media::Native => "native",
            Media::Audio => "audio",
            Media::Mixed => "mixed/none",
        }
    }
}

/// One request of the corpus.
pub struct Request {
    /// The body as an exchange would send it (after gunzip).
    pub body: Vec<u8>,
    pub media: Media,
}

/// What loading found.
pub struct Corpus {
    /// Requests the parser accepts, in manifest order.
    pub requests: Vec<Request>,
    /// Bodies the parser refused (kept out of the timings), with the reason.
    pub refused: Vec<String>,
}

/// Loads every request of the corpus under `dir`.
pub fn load(dir: &Path) -> Corpus {
    let manifest_path = dir.join("MANIFEST.json");
    let manifest: Vec<Value> = serde_json::from_slice(&read(&manifest_path))
        .unwrap_or_else(|e| panic!("{}: {e}", manifest_path.display()));
    let mut parser = Parser::new();
    let mut corpus = Corpus {
        requests: Vec::new(),
        refused: Vec::new(),
    };
    for entry in &manifest {
        let (Some(path), Some(kind)) = (entry["path"].as_str(), entry["kind"].as_str()) else {
            panic!("{}: entry without path or kind", manifest_path.display());
        };
        let bodies = match kind {
            "bidrequest" => vec![body_of(dir, path)],
            k if k.starts_with("pbs-fixture") => prebid_bodies(dir, path),
            _ => continue,
        };
        for (i, body) in bodies.into_iter().enumerate() {
            let name = format!("{path}#{i}");
            let mut scratch = body.clone();
            if let Err(e) = parser.parse(&mut scratch) {
                corpus.refused.push(format!("{name}: {e}"));
                continue;
            }
            let media = classify(&body);
            corpus.requests.push(Request { body, media });
        }
    }
    corpus
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A corpus file's body; `.gz` files are gzip-encoded bodies.
fn body_of(dir: &Path, rel: &str) -> Vec<u8> {
    let raw = read(&dir.join(rel));
    if !rel.ends_with(".gz") {
        return raw;
    }
    let mut body = Vec::new();
    flate2::read::GzDecoder::new(raw.as_slice())
        .read_to_end(&mut body)
        .unwrap_or_else(|e| panic!("{rel}: gunzip: {e}"));
    body
}

/// The requests a Prebid Server fixture holds: what PBS sends the bidder in each HTTP
/// call, or when no call carries a body, the request PBS itself received.
fn prebid_bodies(dir: &Path, rel: &str) -> Vec<Vec<u8>> {
    let fixture: Value =
        serde_json::from_slice(&body_of(dir, rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let calls = fixture["httpCalls"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let mut bodies: Vec<Vec<u8>> = calls
        .iter()
        .filter_map(|call| call["expectedRequest"].get("body"))
        .map(|body| serde_json::to_vec(body).expect("re-encode"))
        .collect();
    if bodies.is_empty() {
        if let Some(mock) = fixture.get("mockBidRequest") {
            bodies.push(serde_json::to_vec(mock).expect("re-encode"));
        }
    }
    bodies
}

/// The media class of a request the parser accepted (so it is JSON with imps).
fn classify(body: &[u8]) -> Media {
    let doc: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut seen = [false; 4];
    for imp in doc["imp"].as_array().map_or(&[][..], Vec::as_slice) {
        for (i, key) in ["banner", "video", "native", "audio"].iter().enumerate() {
            seen[i] |= imp.get(*key).is_some_and(|v| !v.is_null());
        }
    }
    match seen {
        [true, false, false, false] => Media::Banner,
        [false, true, false, false] => Media::Video,
        [false, false, true, false] => Media::Native,
        [false, false, false, true] => Media::Audio,
        _ => Media::Mixed,
    }
}
