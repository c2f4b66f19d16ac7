//! Loads the bid requests the generator replays from a corpus directory.
//!
//! The default corpus is the project's public OpenRTB fixture set, whose MANIFEST.json
//! says what each file is. Two kinds carry requests: plain `bidrequest` files, and
//! prebid-server adapter fixtures, where the request a DSP actually receives is
//! `httpCalls[].expectedRequest.body` (the request PBS sends the bidder), falling back
//! to `mockBidRequest` (the request into PBS) when no call carries a JSON body.
//! A directory without a manifest is read as every `*.json` file in it, each either a
//! bare request or such a fixture, so operators can replay their own captures.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

/// Most request bodies taken from one corpus; more would only cost start-up time.
pub const MAX_CORPUS_REQUESTS: usize = 10_000;
/// Largest corpus file read; OpenRTB requests are a few KiB.
const MAX_CORPUS_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Why a corpus could not be loaded; each names the file at fault.
#[derive(Debug, Error)]
pub enum CorpusError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path}: larger than {MAX_CORPUS_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{dir}: no bid requests found (expected MANIFEST.json entries of kind bidrequest or pbs-fixture, or *.json requests)")]
    Empty { dir: PathBuf },
    #[error("{dir}: more than {MAX_CORPUS_REQUESTS} requests")]
    TooMany { dir: PathBuf },
}

/// Bid request bodies (JSON objects) with the file each came from.
#[derive(Debug)]
pub struct Corpus {
    pub requests: Vec<(PathBuf, Value)>,
}

#[derive(Deserialize)]
struct ManifestEntry {
    path: String,
    kind: String,
}

const KIND_BIDREQUEST: &str = "bidrequest";
const KIND_PBS_FIXTURE: &str = "pbs-fixture(request+response)";

impl Corpus {
    /// Loads every request of `dir` (see the module comment for which files count).
    pub fn load(dir: &Path) -> Result<Corpus, CorpusError> {
        let manifest = dir.join("MANIFEST.json");
        let files = if manifest.exists() {
            let entries: Vec<ManifestEntry> = read_json(&manifest).and_then(|v| {
                serde_json::from_value(v).map_err(|source| CorpusError::Json {
                    path: manifest.clone(),
                    source,
                })
            })?;
            entries
                .into_iter()
                .filter(|e| {
                    (e.kind == KIND_BIDREQUEST && !e.path.ends_with(".gz"))
                        || e.kind == KIND_PBS_FIXTURE
                })
                .map(|e| dir.join(e.path))
                .collect()
        } else {
            json_files(dir)?
        };
        let mut requests = Vec::new();
        for path in files {
            let value = read_json(&path)?;
            for body in request_bodies(value) {
                if requests.len() == MAX_CORPUS_REQUESTS {
                    return Err(CorpusError::TooMany { dir: dir.into() });
                }
                requests.push((path.clone(), body));
            }
        }
        if requests.is_empty() {
            return Err(CorpusError::Empty { dir: dir.into() });
        }
        Ok(Corpus { requests })
    }
}

/// The requests a file holds: itself if it is a bid request (has `imp`), else the
/// bodies of a prebid-server fixture.
fn request_bodies(value: Value) -> Vec<Value> {
    if value.get("imp").is_some() {
        return vec![value];
    }
    let calls: Vec<Value> = value
        .get("httpCalls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|call| call.pointer("/expectedRequest/body"))
        .filter(|body| body.get("imp").is_some())
        .cloned()
        .collect();
    if !calls.is_empty() {
        return calls;
    }
    value
        .get("mockBidRequest")
        .filter(|r| r.get("imp").is_some())
        .cloned()
        .into_iter()
        .collect()
}

fn read_json(path: &Path) -> Result<Value, CorpusError> {
    let io = |source| CorpusError::Io {
        path: path.into(),
        source,
    };
    if std::fs::metadata(path).map_err(io)?.len() > MAX_CORPUS_FILE_BYTES {
        return Err(CorpusError::TooLarge { path: path.into() });
    }
    let text = std::fs::read(path).map_err(io)?;
    serde_json::from_slice(&text).map_err(|source| CorpusError::Json {
        path: path.into(),
        source,
    })
}

/// `*.json` files directly in `dir`, sorted so runs are reproducible.
fn json_files(dir: &Path) -> Result<Vec<PathBuf>, CorpusError> {
    let io = |source| CorpusError::Io {
        path: dir.into(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "json") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The public OpenRTB corpus beside the repository (`../shared/fixtures/openrtb` from
/// the repository root), located from where this crate was built.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/openrtb")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_corpus_yields_its_requests_and_fixture_bodies() {
        let corpus = Corpus::load(&default_dir()).unwrap();
        // 100 bid requests less one gzip file, plus one or more bodies per PBS
        // fixture (55); exact counts move with the corpus, the floor does not.
        assert!(corpus.requests.len() >= 140, "{}", corpus.requests.len());
        assert!(corpus.requests.iter().all(|(_, r)| r.get("imp").is_some()));
        assert!(corpus
            .requests
            .iter()
            .any(|(p, _)| p.to_string_lossy().contains("prebid-server")));
    }

    #[test]
    fn a_fixture_uses_the_bidder_side_body_and_falls_back_to_the_mock_request() {
        let with_calls = serde_json::json!({
            "mockBidRequest": {"id": "in", "imp": []},
            "httpCalls": [{"expectedRequest": {"body": {"id": "out", "imp": []}}},
                          {"expectedRequest": {"body": null}}]
        });
        let bodies = request_bodies(with_calls);
        assert_eq!(bodies.len(), 1);
        assert_eq!(bodies[0]["id"], "out");

        let mock_only = serde_json::json!({
            "mockBidRequest": {"id": "in", "imp": []},
            "httpCalls": [{"expectedRequest": {"body": null}}]
        });
        assert_eq!(request_bodies(mock_only)[0]["id"], "in");
        assert!(request_bodies(serde_json::json!({"seatbid": []})).is_empty());
    }

    #[test]
    fn a_directory_without_manifest_replays_its_json_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.json"),
            r#"{"id":"a","imp":[{"id":"1"}]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a request").unwrap();
        let corpus = Corpus::load(dir.path()).unwrap();
        assert_eq!(corpus.requests.len(), 1);

        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            Corpus::load(empty.path()),
            Err(CorpusError::Empty { .. })
        ));
    }

    #[test]
    fn a_broken_file_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.json"), "{").unwrap();
        let err = Corpus::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("bad.json"), "{err}");
    }
}
