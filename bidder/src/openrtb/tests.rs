//! Field extraction, every error, every limit, and parser reuse, on small hand-made
//! bodies. Corpus files are covered by `tests/corpus.rs`.

use super::*;
use proptest::prelude::*;

/// A minimal valid request with `extra` spliced in as more top-level fields.
fn with_root(extra: &str) -> String {
    format!(r#"{{"id":"r1","imp":[{{"id":"1","banner":{{"w":300,"h":250}}}}]{extra}}}"#)
}

/// A minimal valid request whose only impression carries `imp_fields`.
fn with_imp(imp_fields: &str) -> String {
    format!(r#"{{"id":"r1","imp":[{{"id":"1"{imp_fields}}}]}}"#)
}

fn parse_ok(body: &str, check: impl FnOnce(&BidRequest<'_>)) {
    let mut bytes = body.as_bytes().to_vec();
    let mut parser = Parser::new();
    let req = parser
        .parse(&mut bytes)
        .unwrap_or_else(|e| panic!("{body}: {e}"));
    check(&req);
}

fn parse_err(body: &str) -> ParseError {
    let mut bytes = body.as_bytes().to_vec();
    let mut parser = Parser::new();
    let result = parser.parse(&mut bytes).map(|_| ());
    match result {
        Ok(()) => panic!("accepted: {body}"),
        Err(e) => e,
    }
}

fn repeat(item: &str, n: usize) -> String {
    vec![item; n].join(",")
}

#[test]
fn every_refusal_has_its_own_error() {
    type Check = fn(&ParseError) -> bool;
    let cases: &[(&str, &str, Check)] = &[
        (
            "a floor that is not a number",
            r#"{"id":"r","imp":[{"id":"1","bidfloor":"1.5"}]}"#,
            |e| {
                matches!(
                    e,
                    ParseError::WrongType {
                        field: "imp[].bidfloor",
                        ..
                    }
                )
            },
        ),
        (
            "a deal floor that is not a number",
            r#"{"id":"r","imp":[{"id":"1","pmp":{"deals":[{"id":"d","bidfloor":[1]}]}}]}"#,
            |e| {
                matches!(
                    e,
                    ParseError::WrongType {
                        field: "imp[].pmp.deals[].bidfloor",
                        ..
                    }
                )
            },
        ),
        ("empty body", "", |e| {
            matches!(e, ParseError::InvalidJson { .. })
        }),
        ("truncated", r#"{"id":"r","imp":["#, |e| {
            matches!(e, ParseError::InvalidJson { .. })
        }),
        ("trailing garbage", r#"{"id":"r"} x"#, |e| {
            matches!(e, ParseError::InvalidJson { .. })
        }),
        ("array root", "[]", |e| matches!(e, ParseError::NotAnObject)),
        ("number root", "42", |e| {
            matches!(e, ParseError::NotAnObject)
        }),
        ("no id", r#"{"imp":[{"id":"1"}]}"#, |e| {
            matches!(e, ParseError::MissingId)
        }),
        ("empty id", r#"{"id":"","imp":[{"id":"1"}]}"#, |e| {
            matches!(e, ParseError::MissingId)
        }),
        ("numeric id", r#"{"id":5,"imp":[{"id":"1"}]}"#, |e| {
            matches!(e, ParseError::WrongType { field: "id", .. })
        }),
        ("no imp", r#"{"id":"r"}"#, |e| {
            matches!(e, ParseError::MissingImp)
        }),
        ("empty imp", r#"{"id":"r","imp":[]}"#, |e| {
            matches!(e, ParseError::MissingImp)
        }),
        ("imp object", r#"{"id":"r","imp":{"id":"1"}}"#, |e| {
            matches!(e, ParseError::WrongType { field: "imp", .. })
        }),
        ("imp item not object", r#"{"id":"r","imp":[5]}"#, |e| {
            matches!(e, ParseError::WrongType { field: "imp[]", .. })
        }),
        ("imp without id", r#"{"id":"r","imp":[{}]}"#, |e| {
            matches!(e, ParseError::ImpMissingId { index: 0 })
        }),
        (
            "second imp empty id",
            r#"{"id":"r","imp":[{"id":"a"},{"id":""}]}"#,
            |e| matches!(e, ParseError::ImpMissingId { index: 1 }),
        ),
        ("imp numeric id", r#"{"id":"r","imp":[{"id":7}]}"#, |e| {
            matches!(
                e,
                ParseError::WrongType {
                    field: "imp[].id",
                    ..
                }
            )
        }),
    ];
    for (name, body, check) in cases {
        let err = parse_err(body);
        assert!(check(&err), "{name}: unexpected {err:?}");
        assert!(!err.to_string().is_empty(), "{name}");
    }
}

#[test]
fn invalid_utf8_is_invalid_json() {
    let mut body = b"{\"id\":\"r\xff\",\"imp\":[{\"id\":\"1\"}]}".to_vec();
    let err = Parser::new().parse(&mut body).unwrap_err();
    assert!(matches!(err, ParseError::InvalidJson { .. }), "{err:?}");
}

#[test]
fn invalid_json_error_names_the_byte_offset() {
    let err = parse_err(r#"{"id":"r",,"imp":[]}"#);
    let ParseError::InvalidJson { offset, .. } = err else {
        panic!("{err:?}");
    };
    assert!(offset <= 10, "offset {offset}");
    assert!(err.to_string().contains("near byte"));
}

#[test]
fn body_size_limit_is_inclusive() {
    let base = with_root("");
    let mut at_limit = base.clone().into_bytes();
    at_limit.resize(MAX_REQUEST_BYTES, b' ');
    let mut parser = Parser::new();
    assert!(parser.parse(&mut at_limit).is_ok());
    let mut over = base.into_bytes();
    over.resize(MAX_REQUEST_BYTES + 1, b' ');
    let err = parser.parse(&mut over).unwrap_err();
    assert!(
        matches!(err, ParseError::TooLarge { bytes, max: MAX_REQUEST_BYTES } if bytes == MAX_REQUEST_BYTES + 1)
    );
}

#[test]
fn nesting_limit_counts_the_top_level_object() {
    // The top-level object is level 1, so `MAX_DEPTH - 1` nested arrays reach the limit.
    let nested = |levels: usize| {
        with_root(&format!(
            ",\"ext\":{}{}",
            "[".repeat(levels),
            "]".repeat(levels)
        ))
    };
    parse_ok(&nested(MAX_DEPTH - 1), |_| {});
    let err = parse_err(&nested(MAX_DEPTH));
    assert!(
        matches!(err, ParseError::TooDeep { max: MAX_DEPTH }),
        "{err:?}"
    );
}

#[test]
fn imps_past_the_limit_are_counted_not_read_and_the_request_stands() {
    let body = format!(
        r#"{{"id":"r","imp":[{}]}}"#,
        repeat(r#"{"id":"i"}"#, MAX_IMPS)
    );
    parse_ok(&body, |req| {
        assert_eq!((req.imps().len(), req.imps_over_limit), (MAX_IMPS, 0))
    });
    // 300 imps, the last one malformed: it is never read, so it cannot refuse the
    // request; the first MAX_IMPS are the ones evaluated.
    let body = format!(
        r#"{{"id":"r","imp":[{},{{"id":""}}]}}"#,
        (0..299)
            .map(|i| format!(r#"{{"id":"i{i}"}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    parse_ok(&body, |req| {
        assert_eq!(
            (req.imps().len(), req.imps_over_limit),
            (MAX_IMPS, 300 - MAX_IMPS)
        );
        assert_eq!(req.imps()[MAX_IMPS - 1].id, format!("i{}", MAX_IMPS - 1));
    });
}

#[test]
fn block_and_seat_lists_over_the_limit_refuse_the_request() {
    for field in ["bcat", "badv", "bapp", "wseat", "bseat"] {
        let at = with_root(&format!(
            r#","{field}":[{}]"#,
            repeat(r#""x""#, MAX_LIST_ITEMS)
        ));
        parse_ok(&at, |req| assert!(!req.truncated));
        let over = with_root(&format!(
            r#","{field}":[{}]"#,
            repeat(r#""x""#, MAX_LIST_ITEMS + 1)
        ));
        let err = parse_err(&over);
        assert!(
            matches!(err, ParseError::ListTooLong { field: f, max: MAX_LIST_ITEMS, .. } if f == field),
            "{field}: {err:?}"
        );
    }
    let battr = with_imp(&format!(
        r#","banner":{{"battr":[{}]}}"#,
        repeat("1", MAX_LIST_ITEMS + 1)
    ));
    let err = parse_err(&battr);
    assert!(
        matches!(
            err,
            ParseError::ListTooLong {
                field: "imp[].banner.battr",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn schain_over_the_limit_refuses_the_request() {
    let chain = |n: usize| {
        with_root(&format!(
            r#","source":{{"schain":{{"complete":1,"nodes":[{}]}}}}"#,
            repeat(r#"{"asi":"a.com","sid":"1","hp":1}"#, n)
        ))
    };
    parse_ok(&chain(MAX_SCHAIN_NODES), |req| {
        assert_eq!(
            req.schain_nodes(req.schain().unwrap().nodes).len(),
            MAX_SCHAIN_NODES
        );
    });
    let err = parse_err(&chain(MAX_SCHAIN_NODES + 1));
    assert!(
        matches!(
            err,
            ParseError::ListTooLong {
                field: "source.schain.nodes",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn deals_formats_and_eids_over_the_limit_are_truncated_and_flagged() {
    let deals = with_imp(&format!(
        r#","pmp":{{"deals":[{}]}}"#,
        repeat(r#"{"id":"d","bidfloor":1}"#, MAX_DEALS_PER_IMP + 5)
    ));
    parse_ok(&deals, |req| {
        assert_eq!(
            req.deals(req.imps()[0].pmp.unwrap().deals).len(),
            MAX_DEALS_PER_IMP
        );
        assert!(req.truncated);
    });
    let formats = with_imp(&format!(
        r#","banner":{{"format":[{}]}}"#,
        repeat(r#"{"w":1,"h":2}"#, MAX_FORMATS_PER_BANNER + 1)
    ));
    parse_ok(&formats, |req| {
        assert_eq!(
            req.formats(req.imps()[0].banner.unwrap().format).len(),
            MAX_FORMATS_PER_BANNER
        );
        assert!(req.truncated);
    });
    let eids = with_root(&format!(
        r#","user":{{"eids":[{}]}}"#,
        repeat(r#"{"source":"s","uids":[{"id":"u"}]}"#, MAX_EIDS + 1)
    ));
    parse_ok(&eids, |req| {
        assert_eq!(req.eids(req.user.unwrap().eids).len(), MAX_EIDS);
        assert!(req.truncated);
    });
    let exact = with_imp(&format!(
        r#","pmp":{{"deals":[{}]}}"#,
        repeat(r#"{"id":"d"}"#, MAX_DEALS_PER_IMP)
    ));
    parse_ok(&exact, |req| assert!(!req.truncated));
}

#[test]
fn request_level_fields_and_defaults() {
    type Check = fn(&BidRequest<'_>);
    let cases: &[(&str, Check)] = &[
        ("", |r| {
            assert_eq!((r.id, r.at, r.cattax, r.tmax_ms), ("r1", 2, 1, None));
            assert!(!r.test && !r.allimps && r.site.is_none() && r.cur().is_empty());
            assert_eq!(r.regs.gdpr, None);
        }),
        (
            r#","at":1,"tmax":120,"cattax":2,"test":1,"allimps":true"#,
            |r| {
                assert_eq!(
                    (r.at, r.tmax_ms, r.cattax, r.test, r.allimps),
                    (1, Some(120), 2, true, true)
                );
            },
        ),
        (
            r#","cur":["USD","EUR"],"bcat":["IAB25",""],"badv":["a.com"],"bapp":["com.x"],"wseat":["s1"],"bseat":["s2"]"#,
            |r| {
                assert_eq!(r.cur(), ["USD", "EUR"]);
                assert_eq!(r.bcat(), ["IAB25"], "empty strings are absent");
                assert_eq!((r.badv(), r.bapp()), (&["a.com"][..], &["com.x"][..]));
                assert_eq!((r.wseat(), r.bseat()), (&["s1"][..], &["s2"][..]));
            },
        ),
        (
            r#","tmax":"120","at":"1","bcat":"IAB25","site":[],"device":"d","user":7,"regs":null,"source":1"#,
            |r| {
                // Wrong types on optional fields: treated as absent, defaults kept.
                assert_eq!((r.tmax_ms, r.at), (None, 2));
                assert!(r.bcat().is_empty() && r.site.is_none() && r.device.is_none());
                assert!(r.user.is_none() && r.source.is_none() && r.regs.gdpr.is_none());
            },
        ),
        (r#","tmax":-5,"cattax":4294967296"#, |r| {
            assert_eq!(
                (r.tmax_ms, r.cattax),
                (None, 1),
                "out of range integers are absent"
            );
        }),
        (
            r#","id":"r2","unknown":{"deep":[1,{"x":[]}]},"id":"r3""#,
            |r| {
                assert_eq!(r.id, "r3", "last duplicate wins, unknown keys skipped");
            },
        ),
        (
            r#","site":{"id":"s","name":"n","domain":"d.com","page":"https://d.com/p","cat":["IAB1"],"publisher":{"id":"p","domain":"pd.com"}}"#,
            |r| {
                let s = r.site.unwrap();
                assert_eq!(
                    (s.id, s.name, s.domain, s.page),
                    (Some("s"), Some("n"), Some("d.com"), Some("https://d.com/p"))
                );
                assert_eq!(r.strs(s.cat), ["IAB1"]);
                let p = s.publisher.unwrap();
                assert_eq!((p.id, p.domain), (Some("p"), Some("pd.com")));
            },
        ),
        (
            r#","app":{"id":"a","name":"n","bundle":"com.x","domain":"x.com","storeurl":"https://s","cat":["IAB9"],"publisher":{"id":"p"}}"#,
            |r| {
                let a = r.app.unwrap();
                assert_eq!(
                    (a.id, a.name, a.bundle, a.domain, a.storeurl),
                    (
                        Some("a"),
                        Some("n"),
                        Some("com.x"),
                        Some("x.com"),
                        Some("https://s")
                    )
                );
                assert_eq!(r.strs(a.cat), ["IAB9"]);
                assert_eq!(a.publisher.unwrap().id, Some("p"));
            },
        ),
        (
            r#","dooh":{"id":"d","name":"screen","venuetype":["airport"],"publisher":{"domain":"p.com"}}"#,
            |r| {
                let d = r.dooh.unwrap();
                assert_eq!((d.id, d.name), (Some("d"), Some("screen")));
                assert_eq!(r.strs(d.venuetype), ["airport"]);
                assert_eq!(d.publisher.unwrap().domain, Some("p.com"));
            },
        ),
        (
            r#","device":{"ua":"UA","ip":"1.2.3.4","ipv6":"::1","devicetype":999,"os":"iOS","osv":"17","make":"Apple","model":"iPhone","ifa":"AAAA","lmt":1,"dnt":0,"language":"en","geo":{"country":"USA","region":"CA","city":"SF","type":2,"lat":37.7,"lon":-122.4,"utcoffset":-480}}"#,
            |r| {
                let d = r.device.unwrap();
                assert_eq!(
                    (d.ua, d.ip, d.ipv6, d.devicetype),
                    (Some("UA"), Some("1.2.3.4"), Some("::1"), Some(999))
                );
                assert_eq!(
                    (d.os, d.osv, d.make, d.model),
                    (Some("iOS"), Some("17"), Some("Apple"), Some("iPhone"))
                );
                assert_eq!(
                    (d.ifa, d.lmt, d.dnt, d.language),
                    (Some("AAAA"), Some(true), Some(false), Some("en"))
                );
                let g = d.geo.unwrap();
                assert_eq!(
                    (g.country, g.region, g.city, g.kind),
                    (Some("USA"), Some("CA"), Some("SF"), Some(2))
                );
                assert_eq!(
                    (g.lat, g.lon, g.utcoffset),
                    (Some(37.7), Some(-122.4), Some(-480))
                );
            },
        ),
        (r#","device":{"geo":{"lat":91,"lon":-181}}"#, |r| {
            let g = r.device.unwrap().geo.unwrap();
            assert_eq!(
                (g.lat, g.lon),
                (None, None),
                "impossible coordinates are absent"
            );
        }),
        (
            r#","user":{"id":"u","buyeruid":"b","yob":1980,"gender":"F","consent":"C","geo":{"country":"FRA"},"eids":[{"source":"x.com","uids":[{"id":"1"},{"id":"2"}]},{"source":"y.com","uids":[]},"junk"]}"#,
            |r| {
                let u = r.user.unwrap();
                assert_eq!(
                    (u.id, u.buyeruid, u.yob, u.gender, u.consent),
                    (Some("u"), Some("b"), Some(1980), Some("F"), Some("C"))
                );
                assert_eq!(u.geo.unwrap().country, Some("FRA"));
                let eids: Vec<_> = r
                    .eids(u.eids)
                    .iter()
                    .map(|e| (e.source, e.uid_count, e.first_uid))
                    .collect();
                assert_eq!(
                    eids,
                    [(Some("x.com"), 2, Some("1")), (Some("y.com"), 0, None)]
                );
                assert_eq!(r.origins.bits(), 0);
            },
        ),
        (
            r#","regs":{"coppa":1,"gdpr":2,"us_privacy":"1YNN","gpp":"G","gpp_sid":[2,"7",-1]}"#,
            |r| {
                assert!(r.regs.coppa);
                assert_eq!(
                    r.regs.gdpr,
                    Some(true),
                    "any non-zero flag is set (fail closed)"
                );
                assert_eq!((r.regs.us_privacy, r.regs.gpp), (Some("1YNN"), Some("G")));
                assert_eq!(r.ints(r.regs.gpp_sid), [2, 7]);
            },
        ),
        (
            r#","source":{"tid":"t","fd":0,"schain":{"complete":1,"ver":"1.0","nodes":[{"asi":"a.com","sid":"1","hp":1,"rid":"x"},7]}}"#,
            |r| {
                let s = r.source.unwrap();
                assert_eq!((s.tid, s.fd), (Some("t"), Some(false)));
                let chain = s.schain.unwrap();
                assert!(chain.complete);
                let nodes = r.schain_nodes(chain.nodes);
                assert_eq!(
                    nodes.len(),
                    2,
                    "a malformed node keeps its place in the chain"
                );
                assert_eq!(
                    (nodes[0].asi, nodes[0].sid, nodes[0].hp, nodes[0].rid),
                    (Some("a.com"), Some("1"), Some(true), Some("x"))
                );
                assert_eq!((nodes[1].asi, nodes[1].hp), (None, None));
            },
        ),
    ];
    for (extra, check) in cases {
        parse_ok(&with_root(extra), check);
    }
}

#[test]
fn ortb26_locations_win_over_ext_in_either_key_order() {
    type Check = fn(&BidRequest<'_>);
    let cases: &[(&str, Check)] = &[
        (
            r#","regs":{"gdpr":0,"us_privacy":"1NNN","ext":{"gdpr":1,"us_privacy":"1YYY"}}"#,
            |r| {
                assert_eq!(
                    (r.regs.gdpr, r.regs.us_privacy),
                    (Some(false), Some("1NNN"))
                );
                assert_eq!(r.origins.bits(), 0);
            },
        ),
        (
            r#","regs":{"ext":{"gdpr":1,"us_privacy":"1YYY"},"gdpr":0,"us_privacy":"1NNN"}"#,
            |r| {
                assert_eq!(
                    (r.regs.gdpr, r.regs.us_privacy),
                    (Some(false), Some("1NNN"))
                );
            },
        ),
        (r#","regs":{"ext":{"gdpr":1,"us_privacy":"1YYY"}}"#, |r| {
            assert_eq!((r.regs.gdpr, r.regs.us_privacy), (Some(true), Some("1YYY")));
            assert!(r
                .origins
                .contains(Origins::GDPR_FROM_EXT | Origins::US_PRIVACY_FROM_EXT));
        }),
        (
            r#","user":{"ext":{"consent":"EXT","eids":[{"source":"e.com"}]},"consent":"TOP","eids":[{"source":"t.com"}]}"#,
            |r| {
                let u = r.user.unwrap();
                assert_eq!(u.consent, Some("TOP"));
                assert_eq!(r.eids(u.eids)[0].source, Some("t.com"));
                assert_eq!(r.origins.bits(), 0);
            },
        ),
        (
            r#","user":{"consent":"","eids":"bad","ext":{"consent":"EXT","eids":[{"source":"e.com"}]}}"#,
            |r| {
                let u = r.user.unwrap();
                assert_eq!(u.consent, Some("EXT"), "an empty 2.6 string is absent");
                assert_eq!(r.eids(u.eids)[0].source, Some("e.com"));
                assert!(r
                    .origins
                    .contains(Origins::CONSENT_FROM_EXT | Origins::EIDS_FROM_EXT));
            },
        ),
        (
            r#","source":{"ext":{"schain":{"nodes":[{"asi":"ext.com"}]}},"schain":{"nodes":[{"asi":"top.com"}]}}"#,
            |r| {
                assert_eq!(
                    r.schain_nodes(r.schain().unwrap().nodes)[0].asi,
                    Some("top.com")
                );
                assert!(!r.origins.contains(Origins::SCHAIN_FROM_EXT));
            },
        ),
        (
            r#","source":{"ext":{"schain":{"complete":1,"nodes":[{"asi":"ext.com"}]}}}"#,
            |r| {
                let chain = r.schain().unwrap();
                assert!(chain.complete);
                assert_eq!(r.schain_nodes(chain.nodes)[0].asi, Some("ext.com"));
                assert!(r.origins.contains(Origins::SCHAIN_FROM_EXT));
            },
        ),
    ];
    for (extra, check) in cases {
        parse_ok(&with_root(extra), check);
    }
}

#[test]
fn impression_fields_and_defaults() {
    type Check = fn(&BidRequest<'_>);
    let cases: &[(&str, Check)] = &[
        ("", |r| {
            let i = &r.imps()[0];
            assert_eq!(
                (i.bidfloor_micros, i.bidfloorcur, i.secure, i.instl),
                (0, "USD", None, false)
            );
            assert!(
                i.banner.is_none() && i.video.is_none() && i.native.is_none() && i.pmp.is_none()
            );
        }),
        (
            r#","bidfloor":1.5,"bidfloorcur":"EUR","secure":1,"instl":1,"tagid":"slot","displaymanager":"sdk""#,
            |r| {
                let i = &r.imps()[0];
                assert_eq!(
                    (i.bidfloor_micros, i.bidfloorcur, i.secure, i.instl),
                    (1_500_000, "EUR", Some(true), true)
                );
                assert_eq!((i.tagid, i.displaymanager), (Some("slot"), Some("sdk")));
            },
        ),
        (r#","bidfloor":2"#, |r| {
            assert_eq!(r.imps()[0].bidfloor_micros, 2_000_000)
        }),
        (r#","bidfloor":-1"#, |r| {
            assert_eq!(r.imps()[0].bidfloor_micros, 0)
        }),
        (r#","bidfloor":1.5,"bidfloorcur":5"#, |r| {
            assert_eq!(
                (r.imps()[0].bidfloor_micros, r.imps()[0].bidfloorcur),
                (1_500_000, "USD")
            );
        }),
        (r#","bidfloor":null"#, |r| {
            assert_eq!(r.imps()[0].bidfloor_micros, 0)
        }),
        (r#","bidfloor":1e300"#, |r| {
            assert_eq!(r.imps()[0].bidfloor_micros, 0)
        }),
        (
            r#","banner":{"w":320,"h":50,"pos":77,"battr":[1,"2","x",-1,3.0,4.5],"btype":[4],"api":[5,7]}"#,
            |r| {
                let b = r.imps()[0].banner.unwrap();
                assert_eq!(
                    r.formats(b.format),
                    [Format { w: 320, h: 50 }],
                    "w/h stand in for format"
                );
                assert_eq!((b.w, b.h, b.pos), (Some(320), Some(50), Some(77)));
                assert_eq!(
                    r.ints(b.battr),
                    [1, 2, 3],
                    "numeric strings kept, junk skipped"
                );
                assert_eq!((r.ints(b.btype), r.ints(b.api)), (&[4][..], &[5, 7][..]));
            },
        ),
        (
            r#","banner":{"w":320,"h":50,"format":[{"w":300,"h":250},{"wmin":100,"wratio":1,"hratio":1},{"w":0,"h":5},{"w":728,"h":90}]}"#,
            |r| {
                let b = r.imps()[0].banner.unwrap();
                assert_eq!(
                    r.formats(b.format),
                    [Format { w: 300, h: 250 }, Format { w: 728, h: 90 }]
                );
            },
        ),
        (r#","banner":{"format":[]}"#, |r| {
            assert!(r.imps()[0].banner.unwrap().format.is_empty());
        }),
        (r#","banner":{"w":0,"h":250}"#, |r| {
            assert!(r.imps()[0].banner.unwrap().format.is_empty());
        }),
        (
            r#","video":{"mimes":["video/mp4"],"w":640,"h":480,"minduration":5,"maxduration":30,"protocols":[2,3,7],"placement":1,"plcmt":2,"linearity":1,"battr":[13]}"#,
            |r| {
                let v = r.imps()[0].video.unwrap();
                assert_eq!(r.strs(v.mimes), ["video/mp4"]);
                assert_eq!(
                    (v.w, v.h, v.minduration, v.maxduration),
                    (Some(640), Some(480), Some(5), Some(30))
                );
                assert_eq!(r.ints(v.protocols), [2, 3, 7]);
                assert_eq!(
                    (v.placement, v.plcmt, v.linearity),
                    (Some(1), Some(2), Some(1))
                );
                assert_eq!(r.ints(v.battr), [13]);
            },
        ),
        (
            r#","audio":{"mimes":["audio/mp4"],"minduration":10,"maxduration":60,"battr":[1]}"#,
            |r| {
                let a = r.imps()[0].audio.unwrap();
                assert_eq!(r.strs(a.mimes), ["audio/mp4"]);
                assert_eq!((a.minduration, a.maxduration), (Some(10), Some(60)));
                assert_eq!(r.ints(a.battr), [1]);
            },
        ),
        (
            r#","native":{"request":"{\"ver\":\"1.2\",\"assets\":[]}","ver":"1.2","api":[3],"battr":[1]}"#,
            |r| {
                let n = r.imps()[0].native.unwrap();
                assert_eq!(
                    n.request,
                    NativeRequest::Json(r#"{"ver":"1.2","assets":[]}"#),
                    "unescaped in place"
                );
                assert_eq!(n.ver, Some("1.2"));
                assert_eq!((r.ints(n.api), r.ints(n.battr)), (&[3][..], &[1][..]));
            },
        ),
        (r#","native":{"request":{"ver":"1.2","assets":[]}}"#, |r| {
            assert_eq!(r.imps()[0].native.unwrap().request, NativeRequest::Object);
        }),
        (r#","native":{"request":5}"#, |r| {
            assert_eq!(r.imps()[0].native.unwrap().request, NativeRequest::Missing);
        }),
        (
            r#","pmp":{"private_auction":1,"deals":[{"id":"d1","bidfloor":2.5,"bidfloorcur":"EUR","at":1,"wseat":["s"],"wadomain":["a.com"]},{"bidfloor":9},{"id":"d2"}]}"#,
            |r| {
                let p = r.imps()[0].pmp.unwrap();
                assert!(p.private_auction);
                let deals = r.deals(p.deals);
                assert_eq!(deals.len(), 2, "a deal without id is skipped");
                assert_eq!(
                    (
                        deals[0].id,
                        deals[0].bidfloor_micros,
                        deals[0].bidfloorcur,
                        deals[0].at
                    ),
                    ("d1", 2_500_000, "EUR", Some(1))
                );
                assert_eq!(
                    (r.strs(deals[0].wseat), r.strs(deals[0].wadomain)),
                    (&["s"][..], &["a.com"][..])
                );
                assert_eq!(
                    (
                        deals[1].id,
                        deals[1].bidfloor_micros,
                        deals[1].bidfloorcur,
                        deals[1].at
                    ),
                    ("d2", 0, "USD", None)
                );
            },
        ),
        (
            r#","banner":"no","video":[],"pmp":1,"native":null,"secure":"yes""#,
            |r| {
                let i = &r.imps()[0];
                assert!(
                    i.banner.is_none()
                        && i.video.is_none()
                        && i.pmp.is_none()
                        && i.native.is_none()
                );
                assert_eq!(i.secure, None);
            },
        ),
    ];
    for (fields, check) in cases {
        parse_ok(&with_imp(fields), check);
    }
}

#[test]
fn escaped_strings_are_unescaped_in_place() {
    parse_ok(r#"{"id":"a\"b\u00e9\/c","imp":[{"id":"\u0031"}]}"#, |r| {
        assert_eq!(r.id, "a\"bé/c");
        assert_eq!(r.imps()[0].id, "1");
    });
}

#[test]
fn openrtb1_impid_is_accepted_but_id_wins() {
    parse_ok(r#"{"id":"r","imp":[{"impid":"old"}]}"#, |r| {
        assert_eq!(r.imps()[0].id, "old")
    });
    parse_ok(r#"{"id":"r","imp":[{"impid":"old","id":"new"}]}"#, |r| {
        assert_eq!(r.imps()[0].id, "new");
    });
}

#[test]
fn reused_parser_carries_nothing_over_between_requests() {
    let rich = with_root(
        r#","site":{"cat":["IAB1"]},"bcat":["IAB25"],"regs":{"ext":{"gdpr":1}},"test":1,"at":1,"source":{"schain":{"nodes":[{"asi":"a"}]}}"#,
    );
    let plain = with_root("");
    let mut parser = Parser::new();
    for _ in 0..3 {
        let mut body = rich.clone().into_bytes();
        let req = parser.parse(&mut body).unwrap();
        assert_eq!(req.bcat(), ["IAB25"]);
        assert!(req.origins.contains(Origins::GDPR_FROM_EXT));
        drop(req);
        let mut body = plain.clone().into_bytes();
        let req = parser.parse(&mut body).unwrap();
        assert!(req.site.is_none() && req.bcat().is_empty() && req.source.is_none());
        assert_eq!(
            (req.regs.gdpr, req.origins.bits(), req.test, req.at),
            (None, 0, false, 2)
        );
        assert_eq!(
            req.formats(req.imps()[0].banner.unwrap().format),
            [Format { w: 300, h: 250 }]
        );
        drop(req);
        // A failed parse leaves the parser usable too.
        assert!(parser.parse(&mut b"{\"id\":1}".to_vec()).is_err());
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut parser = Parser::new();
        let mut body = body;
        let _ = parser.parse(&mut body);
    }

    #[test]
    fn json_shaped_noise_never_panics(body in "[{}\\[\\]\",:0-9a-z \\\\.eE+-]{0,256}") {
        let mut parser = Parser::new();
        let mut wrapped = format!(r#"{{"id":"r","imp":[{{"id":"1","banner":{body}}}]}}"#).into_bytes();
        let _ = parser.parse(&mut wrapped);
        let mut raw = body.into_bytes();
        let _ = parser.parse(&mut raw);
    }
}

/// What a body must come to, on both readers.
#[derive(Debug)]
enum Expect {
    Accept,
    /// Refused with the `ParseError` variant of this name.
    Refuse(&'static str),
}

fn variant(e: &ParseError) -> &'static str {
    match e {
        ParseError::TooLarge { .. } => "TooLarge",
        ParseError::InvalidJson { .. } => "InvalidJson",
        ParseError::TooDeep { .. } => "TooDeep",
        ParseError::NotAnObject => "NotAnObject",
        ParseError::MissingId => "MissingId",
        ParseError::MissingImp => "MissingImp",
        ParseError::ImpMissingId { .. } => "ImpMissingId",
        ParseError::WrongType { .. } => "WrongType",
        ParseError::ListTooLong { .. } => "ListTooLong",
    }
}

#[test]
fn both_readers_agree_on_edge_cases_and_reach_the_expected_outcome() {
    use Expect::{Accept, Refuse};
    let nested = |levels: usize| {
        with_root(&format!(
            ",\"ext\":{}{}",
            "[".repeat(levels),
            "]".repeat(levels)
        ))
    };
    let many = |n: usize| repeat("\"x\"", n);
    let cases: Vec<(&str, String, Expect)> = vec![
        ("unknown fields of every type", with_root(r#","x":{"a":[1,2.5e3,-0,true,null,"s"]},"y":[]"#), Accept),
        ("whitespace everywhere", " {\r\n\t\"id\" : \"r\" , \"imp\" : [ { \"id\" : \"1\" } ] } \n".into(), Accept),
        ("escapes in values", with_root(r#","site":{"domain":"a\"b\\c\/d\n\u00e9\ud83d\ude00"}"#), Accept),
        ("escaped keys", r#"{"\u0069d":"r","imp":[{"i\u0064":"1"}]}"#.into(), Accept),
        ("raw unicode", with_root(r#","site":{"name":"Zürich 東京 🙂"}"#), Accept),
        ("escape at the end of a long string", with_root(r#","site":{"page":"abcdefghijklmnopqrstuvwxyz\\"}"#), Accept),
        ("lone high surrogate", with_root(r#","x":"\ud83d""#), Refuse("InvalidJson")),
        ("lone low surrogate", with_root(r#","x":"\ude00""#), Refuse("InvalidJson")),
        ("bad escape", with_root(r#","x":"\q""#), Refuse("InvalidJson")),
        ("short unicode escape", with_root(r#","x":"\u12""#), Refuse("InvalidJson")),
        ("2.5 ext locations", with_root(r#","user":{"ext":{"consent":"CO","eids":[{"source":"s","uids":[{"id":"u"}]}]}},"regs":{"ext":{"gdpr":1,"us_privacy":"1YNN"}},"source":{"ext":{"schain":{"complete":1,"nodes":[{"asi":"a","sid":"1","hp":1}]}}}"#), Accept),
        ("2.6 beats ext", with_root(r#","regs":{"gdpr":0,"ext":{"gdpr":1}},"source":{"schain":{"complete":0},"ext":{"schain":{"complete":1}}}"#), Accept),
        ("ext schain over its limit is not used when schain is there", with_root(&format!(r#","source":{{"ext":{{"schain":{{"nodes":[{}]}}}},"schain":{{"complete":1}}}}"#, repeat("{}", MAX_SCHAIN_NODES + 1))), Accept),
        ("ext schain over its limit refuses when it is used", with_root(&format!(r#","source":{{"ext":{{"schain":{{"nodes":[{}]}}}}}}"#, repeat("{}", MAX_SCHAIN_NODES + 1))), Refuse("ListTooLong")),
        ("native request as a string", with_imp(r#","native":{"request":"{\"ver\":\"1.2\",\"assets\":[]}"}"#), Accept),
        ("native request as an object", with_imp(r#","native":{"request":{"ver":"1.2"}}"#), Accept),
        ("duplicate keys, last wins", r#"{"id":"a","id":"b","imp":[{"id":"x"}],"imp":[{"id":"1","bidfloor":1},{"id":"2"}],"tmax":100,"tmax":"no"}"#.into(), Accept),
        ("an earlier bad imp list is replaced", r#"{"id":"r","imp":[{}],"imp":[{"id":"1"}]}"#.into(), Accept),
        ("a later bad imp list counts", r#"{"id":"r","imp":[{"id":"1"}],"imp":[{}]}"#.into(), Refuse("ImpMissingId")),
        ("missing id is reported before a bad imp", r#"{"imp":[{}]}"#.into(), Refuse("MissingId")),
        ("a bad imp waits for later fields' refusals", format!(r#"{{"id":"r","imp":[{{}}],"bcat":[{}]}}"#, many(MAX_LIST_ITEMS + 1)), Refuse("ListTooLong")),
        ("imps past the limit are not read", format!(r#"{{"id":"r","imp":[{},{{}}]}}"#, repeat(r#"{"id":"1"}"#, MAX_IMPS)), Accept),
        ("lists at and past their limit", with_root(&format!(r#","bcat":[{}]"#, many(MAX_LIST_ITEMS))), Accept),
        ("list past its limit", with_root(&format!(r#","badv":[{}]"#, many(MAX_LIST_ITEMS + 1))), Refuse("ListTooLong")),
        ("nesting at the limit", nested(MAX_DEPTH - 1), Accept),
        ("nesting past the limit", nested(MAX_DEPTH), Refuse("TooDeep")),
        // Found by the fuzzer: too deep and malformed, simd-json names the syntax first.
        ("too deep and malformed", format!("{}{{\"mp\":[{{\"id\":\"1\"\":{{32", "[".repeat(32)), Refuse("TooDeep")),
        ("numbers: integral floats, exponents, negative zero", with_root(r#","tmax":1.2e2,"at":1.0,"device":{"geo":{"lat":0e-1,"lon":-0.0,"utcoffset":-60}}"#), Accept),
        ("largest integers", with_root(r#","x":[18446744073709551615,-9223372036854775808]"#), Accept),
        ("integer past u64", with_root(r#","x":18446744073709551616"#), Refuse("InvalidJson")),
        ("integer past i64", with_root(r#","x":-9223372036854775809"#), Refuse("InvalidJson")),
        ("float past f64", with_root(r#","x":1e400"#), Refuse("InvalidJson")),
        ("float under f64", with_root(r#","x":1e-400"#), Accept),
        ("leading zero", with_root(r#","x":01"#), Refuse("InvalidJson")),
        ("bare minus", with_root(r#","x":-"#), Refuse("InvalidJson")),
        ("dot without digits", with_root(r#","x":1."#), Refuse("InvalidJson")),
        ("control byte in a string", with_root(",\"x\":\"a\tb\""), Refuse("InvalidJson")),
        ("trailing comma in an object", r#"{"id":"r","imp":[{"id":"1"}],}"#.into(), Refuse("InvalidJson")),
        ("trailing comma in an array", r#"{"id":"r","imp":[{"id":"1"},]}"#.into(), Refuse("InvalidJson")),
        ("trailing bytes", format!("{} x", with_root("")), Refuse("InvalidJson")),
        ("two documents", format!("{}{{}}", with_root("")), Refuse("InvalidJson")),
        ("bad literal", with_root(r#","test":tru"#), Refuse("InvalidJson")),
        ("not an object", r#"[{"id":"r"}]"#.into(), Refuse("NotAnObject")),
        ("a string", r#""id""#.into(), Refuse("NotAnObject")),
        ("empty", String::new(), Refuse("InvalidJson")),
        ("invalid JSON after a refusal", r#"{"imp":[],"x":}"#.into(), Refuse("InvalidJson")),
        ("byte order mark", format!("\u{feff}{}", with_root("")), Refuse("InvalidJson")),
        ("floor of the wrong type", with_imp(r#","bidfloor":{"v":1}"#), Refuse("WrongType")),
        ("floor null", with_imp(r#","bidfloor":null"#), Accept),
    ];
    for (name, body, expect) in cases {
        let agreement = compare_readers(body.as_bytes()).unwrap_or_else(|d| panic!("{name}: {d}"));
        let mut bytes = body.into_bytes();
        let outcome = Parser::new()
            .parse(&mut bytes)
            .map(|_| ())
            .map_err(|e| variant(&e));
        match (&expect, outcome) {
            (Expect::Accept, Ok(())) => assert_eq!(agreement, Agreement::Accepted, "{name}"),
            (Expect::Refuse(want), Err(got)) if *want == got => {}
            (_, got) => panic!("{name}: expected {expect:?}, got {got:?}"),
        }
    }
}

#[test]
fn invalid_utf8_is_refused_by_both_readers() {
    let body = b"{\"id\":\"r\",\"imp\":[{\"id\":\"1\"}],\"x\":\"\xc3\"}";
    let agreement = compare_readers(body).expect("readers agree");
    assert!(
        matches!(agreement, Agreement::Refused(ref e) if e.contains("not valid JSON")),
        "{agreement:?}"
    );
}

#[test]
fn the_one_pass_reader_unescapes_what_it_reads_in_place() {
    parse_ok(
        &with_root(r#","site":{"domain":"a\"b\u00e9\ud83d\ude00","page":"x\/y"}"#),
        |req| {
            let site = req.site.expect("site");
            assert_eq!(site.domain, Some("a\"bé😀"));
            assert_eq!(site.page, Some("x/y"));
        },
    );
}
