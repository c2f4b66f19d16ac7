//! Which bid endpoint a request path names.
//!
//! Exchanges are given either the shared default path (the partner is then recognised by
//! other means, e.g. the XDP source lookup) or `/bid/{partner}`, which names the partner
//! in the URL. Anything else is a 404.

use thiserror::Error;

pub use crate::limits::MAX_PARTNER_NAME_BYTES;

const PARTNER_PREFIX: &str = "/bid/";

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// A bid endpoint; `partner` is set for `/bid/{partner}`.
    Bid {
        /// The partner name from the path, borrowed from the request.
        partner: Option<&'a str>,
    },
    /// Not a bid endpoint: 404.
    NotFound,
}

/// A default bid path that cannot be routed.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("default bid path `{0}` must start with `/`, hold no `?` and not be under `/bid/`")]
pub struct RouteConfigError(pub String);

/// Maps request paths to [`Route`]s. Built once from configuration.
#[derive(Debug, Clone)]
pub struct Router {
    default_path: Box<str>,
}

impl Router {
    /// `default_path` is matched exactly (query string ignored), e.g. `/openrtb2/bid`.
    pub fn new(default_path: &str) -> Result<Self, RouteConfigError> {
        let ok = default_path.starts_with('/')
            && !default_path.contains('?')
            && !default_path.starts_with(PARTNER_PREFIX);
        if !ok {
            return Err(RouteConfigError(default_path.to_owned()));
        }
        Ok(Router {
            default_path: default_path.into(),
        })
    }

    /// Routes `target` (a request target as sent, query string allowed). Never allocates.
    pub fn route<'a>(&self, target: &'a str) -> Route<'a> {
        let path = target.split_once('?').map_or(target, |(p, _)| p);
        if path == &*self.default_path {
            return Route::Bid { partner: None };
        }
        match path.strip_prefix(PARTNER_PREFIX) {
            Some(name) if is_partner_name(name) => Route::Bid {
                partner: Some(name),
            },
            _ => Route::NotFound,
        }
    }
}

impl Default for Router {
    fn default() -> Self {
        Router {
            default_path: "/openrtb2/bid".into(),
        }
    }
}

fn is_partner_name(name: &str) -> bool {
    (1..=MAX_PARTNER_NAME_BYTES).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_the_default_path_and_partner_paths() {
        let router = Router::default();
        let long = format!("/bid/{}", "p".repeat(MAX_PARTNER_NAME_BYTES));
        let too_long = format!("/bid/{}", "p".repeat(MAX_PARTNER_NAME_BYTES + 1));
        let cases: [(&str, Route<'_>); 11] = [
            ("/openrtb2/bid", Route::Bid { partner: None }),
            ("/openrtb2/bid?debug=1", Route::Bid { partner: None }),
            (
                "/bid/acme",
                Route::Bid {
                    partner: Some("acme"),
                },
            ),
            (
                "/bid/ex-1_b.c?x",
                Route::Bid {
                    partner: Some("ex-1_b.c"),
                },
            ),
            (
                &long,
                Route::Bid {
                    partner: Some(&long[5..]),
                },
            ),
            (&too_long, Route::NotFound),
            ("/bid/", Route::NotFound),
            ("/bid/a/b", Route::NotFound),
            ("/bid/a%20b", Route::NotFound),
            ("/openrtb2/bid/", Route::NotFound),
            ("*", Route::NotFound),
        ];
        for (path, expected) in cases {
            assert_eq!(router.route(path), expected, "{path}");
        }
    }

    #[test]
    fn unroutable_default_paths_are_refused() {
        for bad in ["bid", "/x?y", "/bid/x"] {
            assert!(Router::new(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Router::new("/rtb").unwrap().route("/rtb"),
            Route::Bid { partner: None }
        );
    }
}
