//! From tape to model: one function per OpenRTB object.
//!
//! Rules, the same for every field:
//! - Unknown keys are skipped in O(1) (the tape records each value's extent).
//! - A repeated key: the last occurrence wins.
//! - Required fields (`id`, `imp`, `imp[].id`) of the wrong type fail the request;
//!   optional fields of the wrong type, empty strings and out-of-range integers are
//!   treated as absent (see [`super::tape`]). List items of the wrong type are skipped,
//!   except that integer lists also accept decimal strings (`"battr": ["3"]`), because
//!   dropping such a block-list item would let a blocked creative through.
//! - 2.6 locations win over the 2.5 `ext` locations when both are present.
//! - OpenRTB 1.x `imp[].impid` is accepted when `imp[].id` is absent; 1.x sizes on the
//!   impression itself are not read, so such an impression has no media and draws no
//!   bid (fail closed) instead of failing the whole request.

use simd_json::Node;

use super::error::ParseError;
use super::model::*;
use super::tape::{array, f64_at, flag_at, i32_at, object, str_at, u32_at};
use super::{
    MAX_DEALS_PER_IMP, MAX_EIDS, MAX_FORMATS_PER_BANNER, MAX_IMPS, MAX_LIST_ITEMS, MAX_SCHAIN_NODES,
};
use crate::money::cpm_from_f64;

type Result<T> = std::result::Result<T, ParseError>;

/// Fills `req` (empty, spec defaults set) from the tape of one request body.
pub(crate) fn request<'a>(nodes: &[Node<'a>], req: &mut BidRequest<'a>) -> Result<()> {
    Extract { nodes, req }.root()
}

struct Extract<'t, 'r, 'a> {
    nodes: &'t [Node<'a>],
    req: &'r mut BidRequest<'a>,
}

/// The span covering pool items `start..end`. Pools never pass `u32::MAX` items (see
/// the assertion beside [`super::MAX_REQUEST_BYTES`]).
fn span<T>(start: usize, end: usize) -> Span<T> {
    debug_assert!(start <= end && end <= u32::MAX as usize);
    Span::new(start as u32, (end - start) as u32)
}

fn check_len(count: usize, max: usize, field: &'static str) -> Result<()> {
    if count > max {
        return Err(ParseError::ListTooLong { field, count, max });
    }
    Ok(())
}

/// A required non-empty string at `v`: absent or empty gives `missing`, another JSON
/// type gives `WrongType`.
fn required_str<'a>(
    nodes: &[Node<'a>],
    v: Option<usize>,
    field: &'static str,
    missing: ParseError,
) -> Result<&'a str> {
    match v.and_then(|v| nodes.get(v)) {
        None => Err(missing),
        Some(Node::String("")) => Err(missing),
        Some(Node::String(s)) => Ok(s),
        Some(_) => Err(ParseError::WrongType {
            field,
            expected: "string",
        }),
    }
}

/// An integer-list item: a number, or a decimal string holding one.
fn int_item(nodes: &[Node<'_>], i: usize) -> Option<u32> {
    match nodes.get(i)? {
        Node::String(s) => s.parse().ok(),
        _ => u32_at(nodes, i),
    }
}

impl<'a> Extract<'_, '_, 'a> {
    fn root(&mut self) -> Result<()> {
        let nodes = self.nodes;
        let fields = object(nodes, 0).ok_or(ParseError::NotAnObject)?;
        let (mut id, mut imp) = (None, None);
        for (key, v) in fields {
            match key {
                "id" => id = Some(v),
                "imp" => imp = Some(v),
                "site" => self.req.site = self.site(v)?,
                "app" => self.req.app = self.app(v)?,
                "dooh" => self.req.dooh = self.dooh(v)?,
                "device" => self.req.device = self.device(v),
                "user" => self.req.user = self.user(v),
                "regs" => self.req.regs = self.regs(v)?,
                "source" => self.req.source = self.source(v)?,
                "bcat" => self.req.bcat = self.str_list(v, "bcat")?,
                "badv" => self.req.badv = self.str_list(v, "badv")?,
                "bapp" => self.req.bapp = self.str_list(v, "bapp")?,
                "cur" => self.req.cur = self.str_list(v, "cur")?,
                "wseat" => self.req.wseat = self.str_list(v, "wseat")?,
                "bseat" => self.req.bseat = self.str_list(v, "bseat")?,
                "cattax" => self.req.cattax = u32_at(nodes, v).unwrap_or(DEFAULT_CATTAX),
                "tmax" => self.req.tmax_ms = u32_at(nodes, v),
                "at" => self.req.at = u32_at(nodes, v).unwrap_or(DEFAULT_AUCTION_TYPE),
                "test" => self.req.test = flag_at(nodes, v).unwrap_or(false),
                "allimps" => self.req.allimps = flag_at(nodes, v).unwrap_or(false),
                _ => {}
            }
        }
        self.req.id = required_str(nodes, id, "id", ParseError::MissingId)?;
        self.imps(imp)
    }

    fn imps(&mut self, v: Option<usize>) -> Result<()> {
        let v = v.ok_or(ParseError::MissingImp)?;
        let list = array(self.nodes, v).ok_or(ParseError::WrongType {
            field: "imp",
            expected: "array",
        })?;
        let count = list.wire_len();
        if count == 0 {
            return Err(ParseError::MissingImp);
        }
        self.req.imps_over_limit = count.saturating_sub(MAX_IMPS);
        for (index, item) in list.take(MAX_IMPS).enumerate() {
            let imp = self.imp(item, index)?;
            self.req.imps.push(imp);
        }
        Ok(())
    }

    fn imp(&mut self, i: usize, index: usize) -> Result<Imp<'a>> {
        let nodes = self.nodes;
        let fields = object(nodes, i).ok_or(ParseError::WrongType {
            field: "imp[]",
            expected: "object",
        })?;
        let mut imp = Imp {
            id: "",
            banner: None,
            video: None,
            audio: None,
            native: None,
            pmp: None,
            bidfloor_micros: 0,
            bidfloorcur: DEFAULT_CURRENCY,
            secure: None,
            instl: false,
            tagid: None,
            displaymanager: None,
        };
        let (mut id, mut legacy_id) = (None, None);
        for (key, v) in fields {
            match key {
                "id" => id = Some(v),
                "impid" => legacy_id = Some(v),
                "banner" => imp.banner = self.banner(v)?,
                "video" => imp.video = self.video(v)?,
                "audio" => imp.audio = self.audio(v)?,
                "native" => imp.native = self.native(v)?,
                "pmp" => imp.pmp = self.pmp(v)?,
                "bidfloor" => imp.bidfloor_micros = floor_at(nodes, v, "imp[].bidfloor")?,
                "bidfloorcur" => imp.bidfloorcur = str_at(nodes, v).unwrap_or(DEFAULT_CURRENCY),
                "secure" => imp.secure = flag_at(nodes, v),
                "instl" => imp.instl = flag_at(nodes, v).unwrap_or(false),
                "tagid" => imp.tagid = str_at(nodes, v),
                "displaymanager" => imp.displaymanager = str_at(nodes, v),
                _ => {}
            }
        }
        let id = id.or(legacy_id);
        imp.id = required_str(nodes, id, "imp[].id", ParseError::ImpMissingId { index })?;
        Ok(imp)
    }

    fn banner(&mut self, i: usize) -> Result<Option<Banner>> {
        let nodes = self.nodes;
        let Some(fields) = object(nodes, i) else {
            return Ok(None);
        };
        let mut b = Banner::default();
        for (key, v) in fields {
            match key {
                "w" => b.w = u32_at(nodes, v),
                "h" => b.h = u32_at(nodes, v),
                "format" => b.format = self.formats(v),
                "battr" => b.battr = self.int_list(v, "imp[].banner.battr")?,
                "btype" => b.btype = self.int_list(v, "imp[].banner.btype")?,
                "pos" => b.pos = u32_at(nodes, v),
                "api" => b.api = self.int_list(v, "imp[].banner.api")?,
                _ => {}
            }
        }
        if let (true, Some(w), Some(h)) = (b.format.is_empty(), b.w, b.h) {
            if w > 0 && h > 0 {
                let start = self.req.formats.len();
                self.req.formats.push(Format { w, h });
                b.format = span(start, start + 1);
            }
        }
        Ok(Some(b))
    }

    /// Sizes with both `w` and `h` positive; flexible sizes (`wmin`, ratios) are
    /// skipped, as we only buy fixed sizes.
    fn formats(&mut self, i: usize) -> FormatSpan {
        let nodes = self.nodes;
        let Some(list) = array(nodes, i) else {
            return FormatSpan::EMPTY;
        };
        let start = self.req.formats.len();
        for item in list {
            if self.req.formats.len() - start == MAX_FORMATS_PER_BANNER {
                self.req.truncated = true;
                break;
            }
            let (mut w, mut h) = (0, 0);
            for (key, v) in object(nodes, item).into_iter().flatten() {
                match key {
                    "w" => w = u32_at(nodes, v).unwrap_or(0),
                    "h" => h = u32_at(nodes, v).unwrap_or(0),
                    _ => {}
                }
            }
            if w > 0 && h > 0 {
                self.req.formats.push(Format { w, h });
            }
        }
        span(start, self.req.formats.len())
    }

    fn video(&mut self, i: usize) -> Result<Option<Video>> {
        let nodes = self.nodes;
        let Some(fields) = object(nodes, i) else {
            return Ok(None);
        };
        let mut video = Video::default();
        for (key, v) in fields {
            match key {
                "mimes" => video.mimes = self.str_list(v, "imp[].video.mimes")?,
                "w" => video.w = u32_at(nodes, v),
                "h" => video.h = u32_at(nodes, v),
                "minduration" => video.minduration = u32_at(nodes, v),
                "maxduration" => video.maxduration = u32_at(nodes, v),
                "protocols" => video.protocols = self.int_list(v, "imp[].video.protocols")?,
                "placement" => video.placement = u32_at(nodes, v),
                "plcmt" => video.plcmt = u32_at(nodes, v),
                "linearity" => video.linearity = u32_at(nodes, v),
                "battr" => video.battr = self.int_list(v, "imp[].video.battr")?,
                _ => {}
            }
        }
        Ok(Some(video))
    }

    fn audio(&mut self, i: usize) -> Result<Option<Audio>> {
        let nodes = self.nodes;
        let Some(fields) = object(nodes, i) else {
            return Ok(None);
        };
        let mut audio = Audio::default();
        for (key, v) in fields {
            match key {
                "mimes" => audio.mimes = self.str_list(v, "imp[].audio.mimes")?,
                "minduration" => audio.minduration = u32_at(nodes, v),
                "maxduration" => audio.maxduration = u32_at(nodes, v),
                "battr" => audio.battr = self.int_list(v, "imp[].audio.battr")?,
                _ => {}
            }
        }
        Ok(Some(audio))
    }

    fn native(&mut self, i: usize) -> Result<Option<Native<'a>>> {
        let nodes = self.nodes;
        let Some(fields) = object(nodes, i) else {
            return Ok(None);
        };
        let mut native = Native::default();
        for (key, v) in fields {
            match key {
                "request" => {
                    native.request = match nodes.get(v) {
                        Some(Node::String(s)) if !s.is_empty() => NativeRequest::Json(s),
                        Some(Node::Object { .. }) => NativeRequest::Object,
                        _ => NativeRequest::Missing,
                    }
                }
                "ver" => native.ver = str_at(nodes, v),
                "api" => native.api = self.int_list(v, "imp[].native.api")?,
                "battr" => native.battr = self.int_list(v, "imp[].native.battr")?,
                _ => {}
            }
        }
        Ok(Some(native))
    }

    fn pmp(&mut self, i: usize) -> Result<Option<Pmp>> {
        let nodes = self.nodes;
        let Some(fields) = object(nodes, i) else {
            return Ok(None);
        };
        let mut pmp = Pmp::default();
        for (key, v) in fields {
            match key {
                "private_auction" => pmp.private_auction = flag_at(nodes, v).unwrap_or(false),
                "deals" => pmp.deals = self.deals(v)?,
                _ => {}
            }
        }
        Ok(Some(pmp))
    }

    /// Deals with an id; a deal without one cannot be bid on and is skipped.
    fn deals(&mut self, i: usize) -> Result<DealSpan> {
        let Some(list) = array(self.nodes, i) else {
            return Ok(DealSpan::EMPTY);
        };
        let start = self.req.deals.len();
        for item in list {
            if self.req.deals.len() - start == MAX_DEALS_PER_IMP {
                self.req.truncated = true;
                break;
            }
            if let Some(deal) = self.deal(item)? {
                self.req.deals.push(deal);
            }
        }
        Ok(span(start, self.req.deals.len()))
    }

    fn deal(&mut self, i: usize) -> Result<Option<Deal<'a>>> {
        let nodes = self.nodes;
        let Some(fields) = object(nodes, i) else {
            return Ok(None);
        };
        let mut deal = Deal {
            id: "",
            bidfloor_micros: 0,
            bidfloorcur: DEFAULT_CURRENCY,
            at: None,
            wseat: StrSpan::EMPTY,
            wadomain: StrSpan::EMPTY,
        };
        for (key, v) in fields {
            match key {
                "id" => deal.id = str_at(nodes, v).unwrap_or(""),
                "bidfloor" => {
                    deal.bidfloor_micros = floor_at(nodes, v, "imp[].pmp.deals[].bidfloor")?
                }
                "bidfloorcur" => deal.bidfloorcur = str_at(nodes, v).unwrap_or(DEFAULT_CURRENCY),
                "at" => deal.at = u32_at(nodes, v),
                "wseat" => deal.wseat = self.str_list(v, "imp[].pmp.deals[].wseat")?,
                "wadomain" => deal.wadomain = self.str_list(v, "imp[].pmp.deals[].wadomain")?,
                _ => {}
            }
        }
        Ok((!deal.id.is_empty()).then_some(deal))
    }

    fn publisher(&self, i: usize) -> Option<Publisher<'a>> {
        let nodes = self.nodes;
        let mut publisher = Publisher::default();
        for (key, v) in object(nodes, i)? {
            match key {
                "id" => publisher.id = str_at(nodes, v),
                "domain" => publisher.domain = str_at(nodes, v),
                _ => {}
            }
        }
        Some(publisher)
    }

    fn site(&mut self, i: usize) -> Result<Option<Site<'a>>> {
        let nodes = self.nodes;
        let Some(fields) = object(nodes, i) else {
            return Ok(None);
        };
        let mut site = Site::default();
        for (key, v) in fields {
            match key {
                "id" => site.id = str_at(nodes, v),
                "name" => site.name = str_at(nodes, v),
                "domain" => site.domain = str_at(nodes, v),
                "page" => site.page = str_at(nodes, v),
                "cat" => site.cat = self.str_list(v, "site.cat")?,
                "publisher" => site.publisher = self.publisher(v),
                _ => {}
            }
        }
        Ok(Some(site))
    }

    fn app(&mut self, i: usize) -> Result<Option<App<'a>>> {
        let nodes = self.nodes;
        let Some(fields) = object(nodes, i) else {
            return Ok(None);
        };
        let mut app = App::default();
        for (key, v) in fields {
            match key {
                "id" => app.id = str_at(nodes, v),
                "name" => app.name = str_at(nodes, v),
                "bundle" => app.bundle = str_at(nodes, v),
                "domain" => app.domain = str_at(nodes, v),
                "storeurl" => app.storeurl = str_at(nodes, v),
                "cat" => app.cat = self.str_list(v, "app.cat")?,
                "publisher" => app.publisher = self.publisher(v),
                _ => {}
            }
        }
        Ok(Some(app))
    }

    fn dooh(&mut self, i: usize) -> Result<Option<Dooh<'a>>> {
        let nodes = self.nodes;
        let Some(fields) = object(nodes, i) else {
            return Ok(None);
        };
        let mut dooh = Dooh::default();
        for (key, v) in fields {
            match key {
                "id" => dooh.id = str_at(nodes, v),
                "name" => dooh.name = str_at(nodes, v),
                "venuetype" => dooh.venuetype = self.str_list(v, "dooh.venuetype")?,
                "publisher" => dooh.publisher = self.publisher(v),
                _ => {}
            }
        }
        Ok(Some(dooh))
    }

    fn device(&self, i: usize) -> Option<Device<'a>> {
        let nodes = self.nodes;
        let mut device = Device::default();
        for (key, v) in object(nodes, i)? {
            match key {
                "ua" => device.ua = str_at(nodes, v),
                "ip" => device.ip = str_at(nodes, v),
                "ipv6" => device.ipv6 = str_at(nodes, v),
                "devicetype" => device.devicetype = u32_at(nodes, v),
                "os" => device.os = str_at(nodes, v),
                "osv" => device.osv = str_at(nodes, v),
                "make" => device.make = str_at(nodes, v),
                "model" => device.model = str_at(nodes, v),
                "ifa" => device.ifa = str_at(nodes, v),
                "lmt" => device.lmt = flag_at(nodes, v),
                "dnt" => device.dnt = flag_at(nodes, v),
                "language" => device.language = str_at(nodes, v),
                "geo" => device.geo = self.geo(v),
                _ => {}
            }
        }
        Some(device)
    }

    fn geo(&self, i: usize) -> Option<Geo<'a>> {
        let nodes = self.nodes;
        let mut geo = Geo::default();
        for (key, v) in object(nodes, i)? {
            match key {
                "country" => geo.country = str_at(nodes, v),
                "region" => geo.region = str_at(nodes, v),
                "city" => geo.city = str_at(nodes, v),
                "type" => geo.kind = u32_at(nodes, v),
                "lat" => geo.lat = f64_at(nodes, v).filter(|d| d.abs() <= 90.0),
                "lon" => geo.lon = f64_at(nodes, v).filter(|d| d.abs() <= 180.0),
                "utcoffset" => geo.utcoffset = i32_at(nodes, v),
                _ => {}
            }
        }
        Some(geo)
    }

    fn user(&mut self, i: usize) -> Option<User<'a>> {
        let nodes = self.nodes;
        let mut user = User::default();
        let (mut eids, mut ext) = (None, None);
        for (key, v) in object(nodes, i)? {
            match key {
                "id" => user.id = str_at(nodes, v),
                "buyeruid" => user.buyeruid = str_at(nodes, v),
                "yob" => user.yob = u32_at(nodes, v),
                "gender" => user.gender = str_at(nodes, v),
                "consent" => user.consent = str_at(nodes, v),
                "eids" => eids = self.eids(v),
                "geo" => user.geo = self.geo(v),
                "ext" => ext = Some(v),
                _ => {}
            }
        }
        let (mut ext_consent, mut ext_eids) = (None, None);
        for (key, v) in ext.and_then(|v| object(nodes, v)).into_iter().flatten() {
            match key {
                "consent" => ext_consent = str_at(nodes, v),
                "eids" => ext_eids = self.eids(v),
                _ => {}
            }
        }
        if user.consent.is_none() && ext_consent.is_some() {
            user.consent = ext_consent;
            self.req.origins.set(Origins::CONSENT_FROM_EXT);
        }
        user.eids = match (eids, ext_eids) {
            (Some(eids), _) => eids,
            (None, Some(eids)) => {
                self.req.origins.set(Origins::EIDS_FROM_EXT);
                eids
            }
            (None, None) => EidSpan::EMPTY,
        };
        Some(user)
    }

    /// `None` when `i` is not an array, so that a malformed 2.6 field does not hide a
    /// usable `ext` one.
    fn eids(&mut self, i: usize) -> Option<EidSpan> {
        let nodes = self.nodes;
        let list = array(nodes, i)?;
        let start = self.req.eids.len();
        for item in list {
            if self.req.eids.len() - start == MAX_EIDS {
                self.req.truncated = true;
                break;
            }
            let Some(fields) = object(nodes, item) else {
                continue;
            };
            let mut eid = Eid::default();
            for (key, v) in fields {
                match key {
                    "source" => eid.source = str_at(nodes, v),
                    "uids" => {
                        let uids = array(nodes, v);
                        let count = uids.as_ref().map_or(0, |u| u.wire_len());
                        eid.uid_count = u32::try_from(count).unwrap_or(u32::MAX);
                        eid.first_uid = uids
                            .and_then(|mut u| u.next())
                            .and_then(|uid| object(nodes, uid))
                            .and_then(|f| f.filter(|(k, _)| *k == "id").last())
                            .and_then(|(_, v)| str_at(nodes, v));
                    }
                    _ => {}
                }
            }
            self.req.eids.push(eid);
        }
        Some(span(start, self.req.eids.len()))
    }

    fn regs(&mut self, i: usize) -> Result<Regs<'a>> {
        let nodes = self.nodes;
        let mut regs = Regs::default();
        let Some(fields) = object(nodes, i) else {
            return Ok(regs);
        };
        let mut ext = None;
        for (key, v) in fields {
            match key {
                "coppa" => regs.coppa = flag_at(nodes, v).unwrap_or(false),
                "gdpr" => regs.gdpr = flag_at(nodes, v),
                "us_privacy" => regs.us_privacy = str_at(nodes, v),
                "gpp" => regs.gpp = str_at(nodes, v),
                "gpp_sid" => regs.gpp_sid = self.int_list(v, "regs.gpp_sid")?,
                "ext" => ext = Some(v),
                _ => {}
            }
        }
        let (mut ext_gdpr, mut ext_us_privacy) = (None, None);
        for (key, v) in ext.and_then(|v| object(nodes, v)).into_iter().flatten() {
            match key {
                "gdpr" => ext_gdpr = flag_at(nodes, v),
                "us_privacy" => ext_us_privacy = str_at(nodes, v),
                _ => {}
            }
        }
        if regs.gdpr.is_none() && ext_gdpr.is_some() {
            regs.gdpr = ext_gdpr;
            self.req.origins.set(Origins::GDPR_FROM_EXT);
        }
        if regs.us_privacy.is_none() && ext_us_privacy.is_some() {
            regs.us_privacy = ext_us_privacy;
            self.req.origins.set(Origins::US_PRIVACY_FROM_EXT);
        }
        Ok(regs)
    }

    fn source(&mut self, i: usize) -> Result<Option<Source<'a>>> {
        let nodes = self.nodes;
        let Some(fields) = object(nodes, i) else {
            return Ok(None);
        };
        let mut source = Source::default();
        let mut ext = None;
        for (key, v) in fields {
            match key {
                "tid" => source.tid = str_at(nodes, v),
                "fd" => source.fd = flag_at(nodes, v),
                "schain" => source.schain = self.schain(v)?,
                "ext" => ext = Some(v),
                _ => {}
            }
        }
        if source.schain.is_none() {
            let schain = ext
                .and_then(|v| object(nodes, v))
                .and_then(|f| f.filter(|(k, _)| *k == "schain").last());
            if let Some((_, v)) = schain {
                source.schain = self.schain(v)?;
                if source.schain.is_some() {
                    self.req.origins.set(Origins::SCHAIN_FROM_EXT);
                }
            }
        }
        Ok(Some(source))
    }

    fn schain(&mut self, i: usize) -> Result<Option<SupplyChain<'a>>> {
        let nodes = self.nodes;
        let Some(fields) = object(nodes, i) else {
            return Ok(None);
        };
        let mut schain = SupplyChain::default();
        for (key, v) in fields {
            match key {
                "complete" => schain.complete = flag_at(nodes, v).unwrap_or(false),
                "ver" => schain.ver = str_at(nodes, v),
                "nodes" => schain.nodes = self.schain_nodes(v)?,
                _ => {}
            }
        }
        Ok(Some(schain))
    }

    fn schain_nodes(&mut self, i: usize) -> Result<NodeSpan> {
        let nodes = self.nodes;
        let Some(list) = array(nodes, i) else {
            return Ok(NodeSpan::EMPTY);
        };
        check_len(list.wire_len(), MAX_SCHAIN_NODES, "source.schain.nodes")?;
        let start = self.req.nodes.len();
        for item in list {
            let mut node = SchainNode::default();
            for (key, v) in object(nodes, item).into_iter().flatten() {
                match key {
                    "asi" => node.asi = str_at(nodes, v),
                    "sid" => node.sid = str_at(nodes, v),
                    "hp" => node.hp = flag_at(nodes, v),
                    "rid" => node.rid = str_at(nodes, v),
                    _ => {}
                }
            }
            // A non-object node is kept (all fields absent) so the chain's length and
            // order stay true; the decision core treats it as an unknown seller.
            self.req.nodes.push(node);
        }
        Ok(span(start, self.req.nodes.len()))
    }

    fn str_list(&mut self, i: usize, field: &'static str) -> Result<StrSpan> {
        let nodes = self.nodes;
        let Some(list) = array(nodes, i) else {
            return Ok(StrSpan::EMPTY);
        };
        check_len(list.wire_len(), MAX_LIST_ITEMS, field)?;
        let start = self.req.strs.len();
        self.req
            .strs
            .extend(list.filter_map(|item| str_at(nodes, item)));
        Ok(span(start, self.req.strs.len()))
    }

    fn int_list(&mut self, i: usize, field: &'static str) -> Result<IntSpan> {
        let nodes = self.nodes;
        let Some(list) = array(nodes, i) else {
            return Ok(IntSpan::EMPTY);
        };
        check_len(list.wire_len(), MAX_LIST_ITEMS, field)?;
        let start = self.req.ints.len();
        self.req
            .ints
            .extend(list.filter_map(|item| int_item(nodes, item)));
        Ok(span(start, self.req.ints.len()))
    }
}

/// A floor in micros; 0 (no floor) when absent, of the wrong type, negative or absurd.
/// A floor: a number (an unusable one — negative, NaN, absurd — reads as none, see
/// `money::cpm_from_f64`) or null. Any other type refuses the request: a price limit
/// we cannot read must not turn into no limit (the one exception to the type rule).
fn floor_at(nodes: &[Node<'_>], i: usize, field: &'static str) -> Result<i64> {
    if let Some(Node::Static(simd_json::StaticNode::Null)) = nodes.get(i) {
        return Ok(0);
    }
    let floor = f64_at(nodes, i).ok_or(ParseError::WrongType {
        field,
        expected: "number",
    })?;
    Ok(cpm_from_f64(floor).unwrap_or(0))
}
