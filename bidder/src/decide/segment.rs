//! The market segment of an imp (`bidder_common::table::segment`): its channel, its
//! size and the device's country. Notices are counted per segment for the agent's
//! controller, which may give each segment its own shading in the strategy table.

use bidder_common::table::segment::{Channel, SegmentKey};

use crate::openrtb::{BidRequest, Imp};

/// The segment of `imp` in `req`. Its size is the banner's `w`×`h`, else its first
/// format, else the video player's; 0×0 without any (native, audio).
pub fn segment_of(req: &BidRequest<'_>, imp: &Imp<'_>) -> SegmentKey {
    let channel = if req.site.is_some() {
        Channel::Site
    } else if req.app.is_some() {
        Channel::App
    } else if req.dooh.is_some() {
        Channel::Dooh
    } else {
        Channel::Unknown
    };
    let banner = imp.banner.as_ref().and_then(|b| match (b.w, b.h) {
        (Some(w), Some(h)) => Some((w, h)),
        _ => req.formats(b.format).first().map(|f| (f.w, f.h)),
    });
    let video = imp.video.as_ref().and_then(|v| Some((v.w?, v.h?)));
    let (w, h) = banner.or(video).unwrap_or((0, 0));
    let country = req
        .device
        .as_ref()
        .and_then(|d| d.geo.as_ref())
        .and_then(|g| g.country);
    SegmentKey::new(channel, w, h, country)
}
