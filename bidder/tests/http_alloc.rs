//! Steady-state parsing, decoding and response writing allocate nothing.
//!
//! A counting `#[global_allocator]` wraps the system allocator; only allocations made
//! by this test's thread while armed are counted, so the harness's own threads cannot
//! disturb the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bidder::http::{
    BidCall, ConnState, HttpConfig, OutBuf, Outcome, ResponseBuf, Server, Service, Step,
};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

fn note_allocation() {
    if ARMED.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// the `GlobalAlloc` contract is upheld by `System`; counting touches no allocator state.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded as is; see the impl comment.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded as is; see the impl comment.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded as is; see the impl comment.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is; see the impl comment.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Writes a bid-sized JSON body, as the real encoder would.
struct Bids;

impl Service for Bids {
    fn handle(&self, call: &BidCall<'_>, out: &mut ResponseBuf) -> Outcome {
        let _ = write!(
            out,
            r#"{{"id":"{}","seatbid":[{{"bid":[{{"id":"1","impid":"1","price":1.25}}]}}]}}"#,
            call.body.len()
        );
        let _ = out.extend(&[b' '; 1500]);
        Outcome::Bid
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn serving_typical_requests_allocates_nothing_in_steady_state() {
    let body = br#"{"id":"abc","imp":[{"id":"1","banner":{"w":300,"h":250}}],"tmax":100}"#;
    let mut input = format!(
        "POST /bid/acme HTTP/1.1\r\nHost: b\r\nContent-Length: {}\r\nx-openrtb-version: 2.6\r\n\r\n",
        body.len()
    )
    .into_bytes();
    input.extend_from_slice(body);
    input.extend_from_slice(
        b"POST /openrtb2/bid HTTP/1.1\r\nTransfer-Encoding: chunked\r\nAccept-Encoding: gzip\r\n\r\n\
          4;x=y\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n",
    );
    let zipped = gzip(body);
    input.extend_from_slice(
        format!(
            "POST /bid/x HTTP/1.1\r\nContent-Encoding: gzip\r\nContent-Length: {}\r\n\r\n",
            zipped.len()
        )
        .as_bytes(),
    );
    input.extend_from_slice(&zipped);

    let mut server = Server::new(Arc::new(Bids), &HttpConfig::default()).unwrap();
    let mut out_mem = vec![0u8; server.min_out_bytes() * 4];
    let mut conn = ConnState::default();
    let mut serve_all = |armed: bool| -> usize {
        ARMED.with(|a| a.set(armed));
        let mut pos = 0;
        let mut answered = 0;
        while pos < input.len() {
            let mut out = OutBuf::new(&mut out_mem);
            match server.serve_one(&mut conn, &input[pos..], Instant::now(), &mut out) {
                Step::Answered { consumed, .. } => {
                    pos += consumed;
                    answered += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        ARMED.with(|a| a.set(false));
        answered
    };
    assert_eq!(serve_all(false), 3, "warm-up");
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..100 {
        assert_eq!(serve_all(true), 3);
    }
    let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(allocated, 0, "allocations while serving");

    // The counter works: an allocation while armed is seen.
    ARMED.with(|a| a.set(true));
    let v = std::hint::black_box(Vec::<u8>::with_capacity(16));
    ARMED.with(|a| a.set(false));
    drop(v);
    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed) - before, 1);
}
