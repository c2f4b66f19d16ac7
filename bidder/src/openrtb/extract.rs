//! From JSON to model: one function per OpenRTB object, written once for both readers
//! (see `read.rs`) and walking the body front to back.
//!
//! Rules, the same for every field:
//! - Unknown keys are skipped (and, by the one-pass reader, checked).
//! - A repeated key: the last occurrence wins.
//! - Required fields (`id`, `imp`, `imp[].id`) of the wrong type fail the request;
//!   optional fields of the wrong type, empty strings and out-of-range integers are
//!   treated as absent (see [`Scalar`]). List items of the wrong type are skipped,
//!   except that integer lists also accept decimal strings (`"battr": ["3"]`), because
//!   dropping such a block-list item would let a blocked creative through.
//! - 2.6 locations win over the 2.5 `ext` locations when both are present.
//! - OpenRTB 1.x `imp[].impid` is accepted when `imp[].id` is absent; 1.x sizes on the
//!   impression itself are not read, so such an impression has no media and draws no
//!   bid (fail closed) instead of failing the whole request.
//! - A body that is not JSON is refused as such, whatever else is wrong with it: after
//!   any other refusal the rest of the body is still read through.
//!
//! Walking forward only, what depends on what comes later waits for it, held by
//! [`Extract::deferred`]: the impression list is read where it stands but its refusal
//! is reported after the request `id` is checked; `source.ext.schain` is read where it
//! stands but counts (and can refuse) only when `source.schain` is absent; and of a
//! key given more than once (`imp`, `user.ext`) only the last occurrence counts, so
//! the lists an earlier occurrence cut do not mark the request `truncated`.

use std::mem;

use super::error::ParseError;
use super::model::*;
use super::read::{Kind, Reader, Scalar};
use super::{
    MAX_DEALS_PER_IMP, MAX_EIDS, MAX_FORMATS_PER_BANNER, MAX_IMPS, MAX_LIST_ITEMS, MAX_SCHAIN_NODES,
};
use crate::money::cpm_from_f64;

type Result<T> = std::result::Result<T, ParseError>;

/// Fills `req` (empty, spec defaults set) from the body `reader` walks.
pub(crate) fn request<'a, R: Reader<'a>>(reader: &mut R, req: &mut BidRequest<'a>) -> Result<()> {
    let mut extract = Extract { r: reader, req };
    match extract.root() {
        Ok(()) => Ok(extract.r.finish()?),
        Err(e) if e.is_json() => Err(e),
        Err(e) => {
            extract.r.unwind(0)?;
            extract.r.finish()?;
            Err(e)
        }
    }
}

struct Extract<'r, 'q, 'a, R> {
    r: &'r mut R,
    req: &'q mut BidRequest<'a>,
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

/// A required non-empty string: absent or empty gives `missing`, another JSON type
/// gives `WrongType`.
fn required_str<'a>(
    v: Option<Scalar<'a>>,
    field: &'static str,
    missing: ParseError,
) -> Result<&'a str> {
    match v {
        None | Some(Scalar::Str("")) => Err(missing),
        Some(Scalar::Str(s)) => Ok(s),
        Some(_) => Err(ParseError::WrongType {
            field,
            expected: "string",
        }),
    }
}

/// An integer-list item: a number, or a decimal string holding one.
fn int_item(v: Scalar<'_>) -> Option<u32> {
    match v {
        Scalar::Str(s) => s.parse().ok(),
        _ => v.u32(),
    }
}

/// A floor: a number (an unusable one — negative, NaN, absurd — reads as none, see
/// `money::cpm_from_f64`) or null. Any other type refuses the request: a price limit
/// we cannot read must not turn into no limit (the one exception to the type rule).
fn floor(v: Scalar<'_>, field: &'static str) -> Result<i64> {
    if let Scalar::Null = v {
        return Ok(0);
    }
    let floor = v.f64().ok_or(ParseError::WrongType {
        field,
        expected: "number",
    })?;
    Ok(cpm_from_f64(floor).unwrap_or(0))
}

/// What [`Extract::deferred`] held: the outcome, and whether a list was cut reading it.
struct Held<T> {
    outcome: Result<T>,
    truncated: bool,
}

impl<'a, R: Reader<'a>> Extract<'_, '_, 'a, R> {
    fn key(&mut self) -> Result<Option<&'a str>> {
        Ok(self.r.key()?)
    }

    fn scalar(&mut self) -> Result<Scalar<'a>> {
        Ok(self.r.scalar()?)
    }

    fn skip(&mut self) -> Result<()> {
        Ok(self.r.skip()?)
    }

    fn item(&mut self) -> Result<bool> {
        Ok(self.r.item()?)
    }

    /// Steps into the value if it is an object; otherwise steps over it.
    fn object(&mut self) -> Result<bool> {
        if self.r.peek()? == Kind::Object {
            self.r.enter_object()?;
            return Ok(true);
        }
        self.skip()?;
        Ok(false)
    }

    /// Steps into the value if it is an array; otherwise steps over it.
    fn array(&mut self) -> Result<bool> {
        if self.r.peek()? == Kind::Array {
            self.r.enter_array()?;
            return Ok(true);
        }
        self.skip()?;
        Ok(false)
    }

    /// Reads the value at the cursor with `read`, holding back a refusal (the reader
    /// steps past the rest of the value) and whether a list was cut, for the caller
    /// to use only if this occurrence turns out to count. A body that is not JSON is
    /// refused at once.
    fn deferred<T>(&mut self, read: impl FnOnce(&mut Self) -> Result<T>) -> Result<Held<T>> {
        let depth = self.r.depth();
        let truncated_before = mem::replace(&mut self.req.truncated, false);
        let outcome = read(self);
        let truncated = mem::replace(&mut self.req.truncated, truncated_before);
        match outcome {
            Err(e) if e.is_json() => Err(e),
            Err(e) => {
                self.r.unwind(depth)?;
                Ok(Held {
                    outcome: Err(e),
                    truncated,
                })
            }
            Ok(v) => Ok(Held {
                outcome: Ok(v),
                truncated,
            }),
        }
    }

    fn root(&mut self) -> Result<()> {
        if !self.object()? {
            return Err(ParseError::NotAnObject);
        }
        let (mut id, mut imps) = (None, None);
        while let Some(key) = self.key()? {
            match key {
                "id" => id = Some(self.scalar()?),
                "imp" => imps = Some(self.deferred(Self::imps)?),
                "site" => self.req.site = self.site()?,
                "app" => self.req.app = self.app()?,
                "dooh" => self.req.dooh = self.dooh()?,
                "device" => self.req.device = self.device()?,
                "user" => self.req.user = self.user()?,
                "regs" => self.req.regs = self.regs()?,
                "source" => self.req.source = self.source()?,
                "bcat" => self.req.bcat = self.str_list("bcat")?,
                "badv" => self.req.badv = self.str_list("badv")?,
                "bapp" => self.req.bapp = self.str_list("bapp")?,
                "cur" => self.req.cur = self.str_list("cur")?,
                "wseat" => self.req.wseat = self.str_list("wseat")?,
                "bseat" => self.req.bseat = self.str_list("bseat")?,
                "cattax" => self.req.cattax = self.scalar()?.u32().unwrap_or(DEFAULT_CATTAX),
                "tmax" => self.req.tmax_ms = self.scalar()?.u32(),
                "at" => self.req.at = self.scalar()?.u32().unwrap_or(DEFAULT_AUCTION_TYPE),
                "test" => self.req.test = self.scalar()?.flag().unwrap_or(false),
                "allimps" => self.req.allimps = self.scalar()?.flag().unwrap_or(false),
                _ => self.skip()?,
            }
        }
        self.req.id = required_str(id, "id", ParseError::MissingId)?;
        let imps = imps.ok_or(ParseError::MissingImp)?;
        self.req.truncated |= imps.truncated;
        imps.outcome
    }

    /// The impression list; a repeated `imp` replaces the earlier one.
    fn imps(&mut self) -> Result<()> {
        self.req.imps.clear();
        if !self.array()? {
            return Err(ParseError::WrongType {
                field: "imp",
                expected: "array",
            });
        }
        let mut count = 0;
        while self.item()? {
            if count < MAX_IMPS {
                let imp = self.imp(count)?;
                self.req.imps.push(imp);
            } else {
                self.skip()?;
            }
            count += 1;
        }
        if count == 0 {
            return Err(ParseError::MissingImp);
        }
        self.req.imps_over_limit = count.saturating_sub(MAX_IMPS);
        Ok(())
    }

    fn imp(&mut self, index: usize) -> Result<Imp<'a>> {
        if !self.object()? {
            return Err(ParseError::WrongType {
                field: "imp[]",
                expected: "object",
            });
        }
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
        while let Some(key) = self.key()? {
            match key {
                "id" => id = Some(self.scalar()?),
                "impid" => legacy_id = Some(self.scalar()?),
                "banner" => imp.banner = self.banner()?,
                "video" => imp.video = self.video()?,
                "audio" => imp.audio = self.audio()?,
                "native" => imp.native = self.native()?,
                "pmp" => imp.pmp = self.pmp()?,
                "bidfloor" => imp.bidfloor_micros = floor(self.scalar()?, "imp[].bidfloor")?,
                "bidfloorcur" => imp.bidfloorcur = self.scalar()?.str().unwrap_or(DEFAULT_CURRENCY),
                "secure" => imp.secure = self.scalar()?.flag(),
                "instl" => imp.instl = self.scalar()?.flag().unwrap_or(false),
                "tagid" => imp.tagid = self.scalar()?.str(),
                "displaymanager" => imp.displaymanager = self.scalar()?.str(),
                _ => self.skip()?,
            }
        }
        let id = id.or(legacy_id);
        imp.id = required_str(id, "imp[].id", ParseError::ImpMissingId { index })?;
        Ok(imp)
    }

    fn banner(&mut self) -> Result<Option<Banner>> {
        if !self.object()? {
            return Ok(None);
        }
        let mut b = Banner::default();
        while let Some(key) = self.key()? {
            match key {
                "w" => b.w = self.scalar()?.u32(),
                "h" => b.h = self.scalar()?.u32(),
                "format" => b.format = self.formats()?,
                "battr" => b.battr = self.int_list("imp[].banner.battr")?,
                "btype" => b.btype = self.int_list("imp[].banner.btype")?,
                "pos" => b.pos = self.scalar()?.u32(),
                "api" => b.api = self.int_list("imp[].banner.api")?,
                _ => self.skip()?,
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
    fn formats(&mut self) -> Result<FormatSpan> {
        if !self.array()? {
            return Ok(FormatSpan::EMPTY);
        }
        let start = self.req.formats.len();
        let mut full = false;
        while self.item()? {
            if !full && self.req.formats.len() - start == MAX_FORMATS_PER_BANNER {
                self.req.truncated = true;
                full = true;
            }
            if full || !self.object()? {
                if full {
                    self.skip()?;
                }
                continue;
            }
            let (mut w, mut h) = (0, 0);
            while let Some(key) = self.key()? {
                match key {
                    "w" => w = self.scalar()?.u32().unwrap_or(0),
                    "h" => h = self.scalar()?.u32().unwrap_or(0),
                    _ => self.skip()?,
                }
            }
            if w > 0 && h > 0 {
                self.req.formats.push(Format { w, h });
            }
        }
        Ok(span(start, self.req.formats.len()))
    }

    fn video(&mut self) -> Result<Option<Video>> {
        if !self.object()? {
            return Ok(None);
        }
        let mut video = Video::default();
        while let Some(key) = self.key()? {
            match key {
                "mimes" => video.mimes = self.str_list("imp[].video.mimes")?,
                "w" => video.w = self.scalar()?.u32(),
                "h" => video.h = self.scalar()?.u32(),
                "minduration" => video.minduration = self.scalar()?.u32(),
                "maxduration" => video.maxduration = self.scalar()?.u32(),
                "protocols" => video.protocols = self.int_list("imp[].video.protocols")?,
                "placement" => video.placement = self.scalar()?.u32(),
                "plcmt" => video.plcmt = self.scalar()?.u32(),
                "linearity" => video.linearity = self.scalar()?.u32(),
                "battr" => video.battr = self.int_list("imp[].video.battr")?,
                _ => self.skip()?,
            }
        }
        Ok(Some(video))
    }

    fn audio(&mut self) -> Result<Option<Audio>> {
        if !self.object()? {
            return Ok(None);
        }
        let mut audio = Audio::default();
        while let Some(key) = self.key()? {
            match key {
                "mimes" => audio.mimes = self.str_list("imp[].audio.mimes")?,
                "minduration" => audio.minduration = self.scalar()?.u32(),
                "maxduration" => audio.maxduration = self.scalar()?.u32(),
                "battr" => audio.battr = self.int_list("imp[].audio.battr")?,
                _ => self.skip()?,
            }
        }
        Ok(Some(audio))
    }

    fn native(&mut self) -> Result<Option<Native<'a>>> {
        if !self.object()? {
            return Ok(None);
        }
        let mut native = Native::default();
        while let Some(key) = self.key()? {
            match key {
                "request" => {
                    native.request = match self.r.peek()? {
                        Kind::Object => {
                            self.skip()?;
                            NativeRequest::Object
                        }
                        _ => match self.scalar()?.str() {
                            Some(s) => NativeRequest::Json(s),
                            None => NativeRequest::Missing,
                        },
                    }
                }
                "ver" => native.ver = self.scalar()?.str(),
                "api" => native.api = self.int_list("imp[].native.api")?,
                "battr" => native.battr = self.int_list("imp[].native.battr")?,
                _ => self.skip()?,
            }
        }
        Ok(Some(native))
    }

    fn pmp(&mut self) -> Result<Option<Pmp>> {
        if !self.object()? {
            return Ok(None);
        }
        let mut pmp = Pmp::default();
        while let Some(key) = self.key()? {
            match key {
                "private_auction" => pmp.private_auction = self.scalar()?.flag().unwrap_or(false),
                "deals" => pmp.deals = self.deals()?,
                _ => self.skip()?,
            }
        }
        Ok(Some(pmp))
    }

    /// Deals with an id; a deal without one cannot be bid on and is skipped.
    fn deals(&mut self) -> Result<DealSpan> {
        if !self.array()? {
            return Ok(DealSpan::EMPTY);
        }
        let start = self.req.deals.len();
        let mut full = false;
        while self.item()? {
            if !full && self.req.deals.len() - start == MAX_DEALS_PER_IMP {
                self.req.truncated = true;
                full = true;
            }
            if full {
                self.skip()?;
            } else if let Some(deal) = self.deal()? {
                self.req.deals.push(deal);
            }
        }
        Ok(span(start, self.req.deals.len()))
    }

    fn deal(&mut self) -> Result<Option<Deal<'a>>> {
        if !self.object()? {
            return Ok(None);
        }
        let mut deal = Deal {
            id: "",
            bidfloor_micros: 0,
            bidfloorcur: DEFAULT_CURRENCY,
            at: None,
            wseat: StrSpan::EMPTY,
            wadomain: StrSpan::EMPTY,
        };
        while let Some(key) = self.key()? {
            match key {
                "id" => deal.id = self.scalar()?.str().unwrap_or(""),
                "bidfloor" => {
                    deal.bidfloor_micros = floor(self.scalar()?, "imp[].pmp.deals[].bidfloor")?
                }
                "bidfloorcur" => {
                    deal.bidfloorcur = self.scalar()?.str().unwrap_or(DEFAULT_CURRENCY)
                }
                "at" => deal.at = self.scalar()?.u32(),
                "wseat" => deal.wseat = self.str_list("imp[].pmp.deals[].wseat")?,
                "wadomain" => deal.wadomain = self.str_list("imp[].pmp.deals[].wadomain")?,
                _ => self.skip()?,
            }
        }
        Ok((!deal.id.is_empty()).then_some(deal))
    }

    fn publisher(&mut self) -> Result<Option<Publisher<'a>>> {
        if !self.object()? {
            return Ok(None);
        }
        let mut publisher = Publisher::default();
        while let Some(key) = self.key()? {
            match key {
                "id" => publisher.id = self.scalar()?.str(),
                "domain" => publisher.domain = self.scalar()?.str(),
                _ => self.skip()?,
            }
        }
        Ok(Some(publisher))
    }

    fn site(&mut self) -> Result<Option<Site<'a>>> {
        if !self.object()? {
            return Ok(None);
        }
        let mut site = Site::default();
        while let Some(key) = self.key()? {
            match key {
                "id" => site.id = self.scalar()?.str(),
                "name" => site.name = self.scalar()?.str(),
                "domain" => site.domain = self.scalar()?.str(),
                "page" => site.page = self.scalar()?.str(),
                "cat" => site.cat = self.str_list("site.cat")?,
                "publisher" => site.publisher = self.publisher()?,
                _ => self.skip()?,
            }
        }
        Ok(Some(site))
    }

    fn app(&mut self) -> Result<Option<App<'a>>> {
        if !self.object()? {
            return Ok(None);
        }
        let mut app = App::default();
        while let Some(key) = self.key()? {
            match key {
                "id" => app.id = self.scalar()?.str(),
                "name" => app.name = self.scalar()?.str(),
                "bundle" => app.bundle = self.scalar()?.str(),
                "domain" => app.domain = self.scalar()?.str(),
                "storeurl" => app.storeurl = self.scalar()?.str(),
                "cat" => app.cat = self.str_list("app.cat")?,
                "publisher" => app.publisher = self.publisher()?,
                _ => self.skip()?,
            }
        }
        Ok(Some(app))
    }

    fn dooh(&mut self) -> Result<Option<Dooh<'a>>> {
        if !self.object()? {
            return Ok(None);
        }
        let mut dooh = Dooh::default();
        while let Some(key) = self.key()? {
            match key {
                "id" => dooh.id = self.scalar()?.str(),
                "name" => dooh.name = self.scalar()?.str(),
                "venuetype" => dooh.venuetype = self.str_list("dooh.venuetype")?,
                "publisher" => dooh.publisher = self.publisher()?,
                _ => self.skip()?,
            }
        }
        Ok(Some(dooh))
    }

    fn device(&mut self) -> Result<Option<Device<'a>>> {
        if !self.object()? {
            return Ok(None);
        }
        let mut device = Device::default();
        while let Some(key) = self.key()? {
            match key {
                "ua" => device.ua = self.scalar()?.str(),
                "ip" => device.ip = self.scalar()?.str(),
                "ipv6" => device.ipv6 = self.scalar()?.str(),
                "devicetype" => device.devicetype = self.scalar()?.u32(),
                "os" => device.os = self.scalar()?.str(),
                "osv" => device.osv = self.scalar()?.str(),
                "make" => device.make = self.scalar()?.str(),
                "model" => device.model = self.scalar()?.str(),
                "ifa" => device.ifa = self.scalar()?.str(),
                "lmt" => device.lmt = self.scalar()?.flag(),
                "dnt" => device.dnt = self.scalar()?.flag(),
                "language" => device.language = self.scalar()?.str(),
                "geo" => device.geo = self.geo()?,
                _ => self.skip()?,
            }
        }
        Ok(Some(device))
    }

    fn geo(&mut self) -> Result<Option<Geo<'a>>> {
        if !self.object()? {
            return Ok(None);
        }
        let mut geo = Geo::default();
        while let Some(key) = self.key()? {
            match key {
                "country" => geo.country = self.scalar()?.str(),
                "region" => geo.region = self.scalar()?.str(),
                "city" => geo.city = self.scalar()?.str(),
                "type" => geo.kind = self.scalar()?.u32(),
                "lat" => geo.lat = self.scalar()?.f64().filter(|d| d.abs() <= 90.0),
                "lon" => geo.lon = self.scalar()?.f64().filter(|d| d.abs() <= 180.0),
                "utcoffset" => geo.utcoffset = self.scalar()?.i32(),
                _ => self.skip()?,
            }
        }
        Ok(Some(geo))
    }

    fn user(&mut self) -> Result<Option<User<'a>>> {
        if !self.object()? {
            return Ok(None);
        }
        let mut user = User::default();
        let (mut eids, mut ext) = (None, None);
        while let Some(key) = self.key()? {
            match key {
                "id" => user.id = self.scalar()?.str(),
                "buyeruid" => user.buyeruid = self.scalar()?.str(),
                "yob" => user.yob = self.scalar()?.u32(),
                "gender" => user.gender = self.scalar()?.str(),
                "consent" => user.consent = self.scalar()?.str(),
                "eids" => eids = self.eids()?,
                "geo" => user.geo = self.geo()?,
                "ext" => ext = Some(self.deferred(Self::user_ext)?),
                _ => self.skip()?,
            }
        }
        let (ext_consent, ext_eids) = match ext {
            Some(held) => {
                self.req.truncated |= held.truncated;
                held.outcome?
            }
            None => (None, None),
        };
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
        Ok(Some(user))
    }

    /// The 2.5 locations in `user.ext`: consent and extended ids.
    fn user_ext(&mut self) -> Result<(Option<&'a str>, Option<EidSpan>)> {
        let (mut consent, mut eids) = (None, None);
        if self.object()? {
            while let Some(key) = self.key()? {
                match key {
                    "consent" => consent = self.scalar()?.str(),
                    "eids" => eids = self.eids()?,
                    _ => self.skip()?,
                }
            }
        }
        Ok((consent, eids))
    }

    /// `None` when the value is not an array, so that a malformed 2.6 field does not
    /// hide a usable `ext` one.
    fn eids(&mut self) -> Result<Option<EidSpan>> {
        if !self.array()? {
            return Ok(None);
        }
        let start = self.req.eids.len();
        let mut full = false;
        while self.item()? {
            if !full && self.req.eids.len() - start == MAX_EIDS {
                self.req.truncated = true;
                full = true;
            }
            if full || !self.object()? {
                if full {
                    self.skip()?;
                }
                continue;
            }
            let mut eid = Eid::default();
            while let Some(key) = self.key()? {
                match key {
                    "source" => eid.source = self.scalar()?.str(),
                    "uids" => (eid.uid_count, eid.first_uid) = self.uids()?,
                    _ => self.skip()?,
                }
            }
            self.req.eids.push(eid);
        }
        Ok(Some(span(start, self.req.eids.len())))
    }

    /// How many ids an extended-id source lists, and the first one's `id`.
    fn uids(&mut self) -> Result<(u32, Option<&'a str>)> {
        let (mut count, mut first) = (0u32, None);
        if !self.array()? {
            return Ok((count, first));
        }
        while self.item()? {
            if count == 0 && self.object()? {
                while let Some(key) = self.key()? {
                    match key {
                        "id" => first = self.scalar()?.str(),
                        _ => self.skip()?,
                    }
                }
            } else if count > 0 {
                self.skip()?;
            }
            count = count.saturating_add(1);
        }
        Ok((count, first))
    }

    fn regs(&mut self) -> Result<Regs<'a>> {
        let mut regs = Regs::default();
        if !self.object()? {
            return Ok(regs);
        }
        let (mut ext_gdpr, mut ext_us_privacy) = (None, None);
        while let Some(key) = self.key()? {
            match key {
                "coppa" => regs.coppa = self.scalar()?.flag().unwrap_or(false),
                "gdpr" => regs.gdpr = self.scalar()?.flag(),
                "us_privacy" => regs.us_privacy = self.scalar()?.str(),
                "gpp" => regs.gpp = self.scalar()?.str(),
                "gpp_sid" => regs.gpp_sid = self.int_list("regs.gpp_sid")?,
                "ext" => {
                    (ext_gdpr, ext_us_privacy) = (None, None);
                    if self.object()? {
                        while let Some(key) = self.key()? {
                            match key {
                                "gdpr" => ext_gdpr = self.scalar()?.flag(),
                                "us_privacy" => ext_us_privacy = self.scalar()?.str(),
                                _ => self.skip()?,
                            }
                        }
                    }
                }
                _ => self.skip()?,
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

    fn source(&mut self) -> Result<Option<Source<'a>>> {
        if !self.object()? {
            return Ok(None);
        }
        let mut source = Source::default();
        // The last `ext.schain`, read where it stands, counts only without `schain`.
        let mut ext_schain = None;
        while let Some(key) = self.key()? {
            match key {
                "tid" => source.tid = self.scalar()?.str(),
                "fd" => source.fd = self.scalar()?.flag(),
                "schain" => source.schain = self.schain()?,
                "ext" => {
                    ext_schain = None;
                    if self.object()? {
                        while let Some(key) = self.key()? {
                            match key {
                                "schain" => ext_schain = Some(self.deferred(Self::schain)?),
                                _ => self.skip()?,
                            }
                        }
                    }
                }
                _ => self.skip()?,
            }
        }
        if let (None, Some(held)) = (source.schain, ext_schain) {
            source.schain = held.outcome?;
            if source.schain.is_some() {
                self.req.origins.set(Origins::SCHAIN_FROM_EXT);
            }
        }
        Ok(Some(source))
    }

    fn schain(&mut self) -> Result<Option<SupplyChain<'a>>> {
        if !self.object()? {
            return Ok(None);
        }
        let mut schain = SupplyChain::default();
        while let Some(key) = self.key()? {
            match key {
                "complete" => schain.complete = self.scalar()?.flag().unwrap_or(false),
                "ver" => schain.ver = self.scalar()?.str(),
                "nodes" => schain.nodes = self.schain_nodes()?,
                _ => self.skip()?,
            }
        }
        Ok(Some(schain))
    }

    fn schain_nodes(&mut self) -> Result<NodeSpan> {
        if !self.array()? {
            return Ok(NodeSpan::EMPTY);
        }
        let start = self.req.nodes.len();
        let mut count = 0;
        while self.item()? {
            count += 1;
            if count > MAX_SCHAIN_NODES {
                self.skip()?;
                continue;
            }
            let mut node = SchainNode::default();
            // A non-object node is kept (all fields absent) so the chain's length and
            // order stay true; the decision core treats it as an unknown seller.
            if self.object()? {
                while let Some(key) = self.key()? {
                    match key {
                        "asi" => node.asi = self.scalar()?.str(),
                        "sid" => node.sid = self.scalar()?.str(),
                        "hp" => node.hp = self.scalar()?.flag(),
                        "rid" => node.rid = self.scalar()?.str(),
                        _ => self.skip()?,
                    }
                }
            }
            self.req.nodes.push(node);
        }
        check_len(count, MAX_SCHAIN_NODES, "source.schain.nodes")?;
        Ok(span(start, self.req.nodes.len()))
    }

    /// Non-empty strings; a list over [`MAX_LIST_ITEMS`] refuses the request.
    fn str_list(&mut self, field: &'static str) -> Result<StrSpan> {
        self.scalar_list(field, |req| &mut req.strs, Scalar::str)
    }

    /// Integers (or decimal strings); a list over [`MAX_LIST_ITEMS`] refuses the request.
    fn int_list(&mut self, field: &'static str) -> Result<IntSpan> {
        self.scalar_list(field, |req| &mut req.ints, int_item)
    }

    /// A list of scalars into `pool`, each read by `item` (those it gives `None` for
    /// are skipped); a list over [`MAX_LIST_ITEMS`] refuses the request.
    fn scalar_list<P, T>(
        &mut self,
        field: &'static str,
        pool: for<'r> fn(&'r mut BidRequest<'a>) -> &'r mut Vec<T>,
        item: fn(Scalar<'a>) -> Option<T>,
    ) -> Result<Span<P>> {
        if !self.array()? {
            return Ok(Span::EMPTY);
        }
        let start = pool(self.req).len();
        let mut count = 0;
        while self.item()? {
            count += 1;
            if count > MAX_LIST_ITEMS {
                self.skip()?;
            } else if let Some(v) = item(self.scalar()?) {
                pool(self.req).push(v);
            }
        }
        check_len(count, MAX_LIST_ITEMS, field)?;
        Ok(span(start, pool(self.req).len()))
    }
}
