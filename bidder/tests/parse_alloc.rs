//! A warmed-up parser allocates nothing: the hot-path promise of `openrtb::Parser`
//! (simd-json buffers, tape and request pools are all reused), checked by counting
//! the test thread's heap calls with `testkit`'s counting allocator.

use bidder::openrtb::Parser;
use testkit::fixture;

#[global_allocator]
static ALLOCATOR: testkit::CountingAllocator = testkit::CountingAllocator;

/// Parses every body `rounds` times into a reused scratch buffer and returns how many
/// allocations the parses made.
fn count_parse_allocations(parser: &mut Parser, bodies: &[Vec<u8>], rounds: usize) -> u64 {
    let longest = bodies.iter().map(Vec::len).max().unwrap_or(0);
    let mut scratch = vec![0u8; longest];
    let ((), calls) = testkit::heap_calls(|| {
        for _ in 0..rounds {
            for body in bodies {
                let buf = &mut scratch[..body.len()];
                buf.copy_from_slice(body);
                let req = parser.parse(buf).expect("fixture parses");
                assert!(!req.imps().is_empty());
            }
        }
    });
    calls
}

#[test]
fn warmed_up_parser_allocates_nothing_per_request() {
    let bodies = [
        fixture("iab-openrtb2.x-spec/2.6_sec6_01_request_6-2-1-example-1-simple-banner.json"),
        fixture(
            "iab-openrtb2.x-spec/2.6_sec6_05_request_6-2-5-example-5-pmp-with-direct-deal.json",
        ),
        fixture("iab-openrtb2.x-spec/2.6_sec6_03_request_6-2-3-example-3-mobile.json"),
        fixture("google-openrtb/openrtb-core/src/test/resources/REQUEST__FULL__NOROOT_OBJECT.json"),
    ];
    let mut parser = Parser::new();
    // The counter is live: a cold parser must grow its buffers.
    let cold = count_parse_allocations(&mut parser, &bodies, 1);
    assert!(
        cold > 0,
        "the counting allocator saw nothing; the test is blind"
    );
    let warm = count_parse_allocations(&mut parser, &bodies, 100);
    assert_eq!(
        warm, 0,
        "a warmed-up parser allocated {warm} times in 400 parses"
    );
}

#[test]
fn failed_parses_do_not_allocate_once_warm() {
    let good =
        fixture("iab-openrtb2.x-spec/2.6_sec6_01_request_6-2-1-example-1-simple-banner.json");
    let mut parser = Parser::new();
    count_parse_allocations(&mut parser, std::slice::from_ref(&good), 2);
    let mut missing_imp = br#"{"id":"r","imp":[]}"#.to_vec();
    let mut broken = good[..good.len() / 2].to_vec();
    let ((), calls) = testkit::heap_calls(|| {
        for _ in 0..100 {
            assert!(parser.parse(&mut missing_imp).is_err());
            assert!(parser.parse(&mut broken).is_err());
        }
    });
    assert_eq!(calls, 0);
}
