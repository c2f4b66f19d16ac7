//! The encoders allocate nothing in steady state: once the output buffers have grown to
//! a response's size, encoding the next response (JSON, FlatBuffers or no-bid) makes no
//! heap call. Counted per thread by `testkit`'s counting allocator, so the test
//! harness's own threads cannot disturb the count.

use bidder::money::bid_id::BidIdGen;
use bidder::money::notice::NoticeSigner;
use bidder::respond::{encode_nobid_json, BidOut, CreativeOut, Encoder, ResponseOut, Template};

#[global_allocator]
static ALLOCATOR: testkit::CountingAllocator = testkit::CountingAllocator;

/// Heap calls `f` makes on this thread.
fn heap_calls(f: impl FnOnce()) -> u64 {
    testkit::heap_calls(f).1
}

/// Responses encoded after warm-up; each must allocate nothing.
const STEADY_STATE_RESPONSES: usize = 1_000;

#[test]
fn encoders_do_not_allocate_in_steady_state() {
    let signer = NoticeSigner::new(&[7u8; 32], "https://notice.example.com/n").expect("signer");
    let mut encoder = Encoder::new(signer);
    let mut ids = BidIdGen::new(3, 4);
    let adomain = vec!["advertiser.example".to_owned()];
    let cat = vec!["IAB1".to_owned()];
    let creative = CreativeOut {
        campaign_id: "camp-1",
        creative_id: "cr-1",
        adm: "<div class=\"ad\">\n<img src=\"https://ad.example/${AUCTION_PRICE}\"></div>",
        adomain: &adomain,
        cat: &cat,
        attr: &[3],
        w: 728,
        h: 90,
        mtype: 1,
    };
    // As the bid path encodes: the creative's part written once, before the loop.
    let template = Template::new(&creative);
    let bid = |ids: &mut BidIdGen, imp_id| BidOut {
        bid_id: ids.next_id(1_000),
        imp_id,
        price_micros: 1_234_567,
        creative,
        deal_id: None,
        template: Some(&template),
    };
    let mut out = Vec::with_capacity(16 * 1024);

    let mut encode_both = |ids: &mut BidIdGen, out: &mut Vec<u8>| {
        let bids = [bid(ids, "1"), bid(ids, "2")];
        let resp = ResponseOut {
            request_id: "req-\"1\"",
            seat: "seat",
            cur: "USD",
            bids: &bids,
        };
        out.clear();
        encoder.encode_json(&resp, out).expect("json");
        assert!(out.len() > 1_000, "a real response was written");
        let fb = encoder.encode_flatbuffers(&resp).expect("flatbuffers");
        assert!(fb.len() > 1_000, "a real buffer was built");
        out.clear();
        encode_nobid_json("req-2", 2, out);
    };

    // Warm-up: buffers grow to size.
    encode_both(&mut ids, &mut out);
    let calls = heap_calls(|| {
        for _ in 0..STEADY_STATE_RESPONSES {
            encode_both(&mut ids, &mut out);
        }
    });
    assert_eq!(
        calls, 0,
        "heap calls in {STEADY_STATE_RESPONSES} steady-state encodes"
    );

    // The counter works: a growing Vec is seen.
    assert!(heap_calls(|| drop(Vec::<u8>::with_capacity(64))) > 0);
}
