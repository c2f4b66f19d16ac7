// make_strings.mjs: generates the consent-string fixtures in strings.json.
//
// What it makes
//   strings.json (next to this file), with
//   - TCF v2.2 TC strings (policy version 4, service-specific). They are encoded
//     with the IAB reference encoder @iabtcf/core (TCModel, TCString, GVL) and a
//     small vendor list built below (vendors 8, 52, 755, 1000, 1001, 1002; our
//     vendor id is 1001).
//   - GPP strings (tcfeuv2, usnat, usca, uspv1 sections). They are encoded with
//     the IAB reference encoder @iabgpp/cmpapi (GppModel), offline.
//   Each entry records `string` and `encoded`, which holds exactly the values that
//   were put in. Before writing anything, the script decodes every string again
//   with the same libraries and asserts that the decoded fields equal `encoded`.
//   It throws (exit code != 0) on any mismatch.
//
// How to re-run it (needs node >= 18 and the npm registry; versions are pinned in
// package.json / package-lock.json):
//   cd bidder/tests/consent && npm ci && node make_strings.mjs
// All dates are fixed, so re-running gives byte-identical strings.json.
//
// The Rust tests read strings.json and never run node. node_modules/ is
// git-ignored. Only this script, package.json, package-lock.json and
// strings.json are committed.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { GVL, PurposeRestriction, Segment, TCModel, TCString } from '@iabtcf/core';
import { GppModel, RangeEntry } from '@iabgpp/cmpapi';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const OUT = path.join(HERE, 'strings.json');

// ---------------------------------------------------------------- versions --

const PACKAGES = ['@iabtcf/core', '@iabgpp/cmpapi'];
const pinned = JSON.parse(readFileSync(path.join(HERE, 'package.json'), 'utf8')).dependencies;
const generator = {};
for (const name of PACKAGES) {
  const installed = JSON.parse(
    readFileSync(path.join(HERE, 'node_modules', name, 'package.json'), 'utf8'),
  ).version;
  if (installed !== pinned[name]) {
    throw new Error(`${name}: installed ${installed} but package.json pins ${pinned[name]}; run npm ci`);
  }
  generator[name] = installed;
}

// ------------------------------------------------------------------ common --

const OUR_VENDOR_ID = 1001;
const CMP_ID = 10;
const CMP_VERSION = 1;
const CONSENT_SCREEN = 1;
const CONSENT_LANGUAGE = 'EN';
const PUBLISHER_COUNTRY_CODE = 'DE';
const VENDOR_LIST_VERSION = 150;
const TCF_POLICY_VERSION = 4; // TCF 2.2
const CREATED = '2026-11-02T00:00:00.000Z';
const LAST_UPDATED = '2026-11-02T00:00:00.000Z';

const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const sorted = (ids) => [...ids].sort((x, y) => x - y);

// ---------------------------------------------------------------- the GVL --
// A minimal GVL v3 (TCF 2.2) vendor list. Under policy v4, purposes 1 and 3-6
// cannot be declared on legitimate interest, so no vendor does. @iabtcf/core
// clears a vendor's consent (or LI) bit at encode time when the vendor declares
// no purpose on that legal basis. Publisher restrictions are dropped unless they
// fit the vendor's declarations: "not allowed" needs the purpose declared, and
// "require consent" needs it flexible and declared on LI. The vendors below are
// shaped so that none of the cases below loses a bit.

const purpose = (id, name) => ({ id, name, description: name, illustrations: [] });
const feature = (id, name) => ({ id, name, description: name, illustrations: [] });
const vendor = (id, name, decl) => ({
  id,
  name,
  purposes: [],
  legIntPurposes: [],
  flexiblePurposes: [],
  specialPurposes: [],
  features: [],
  specialFeatures: [],
  ...decl,
  cookieMaxAgeSeconds: 31536000,
  usesCookies: true,
  cookieRefresh: false,
  usesNonCookieAccess: false,
  deviceStorageDisclosureUrl: `https://vendor${id}.example/devicestorage.json`,
  dataRetention: { stdRetention: 365, purposes: {}, specialPurposes: {} },
  urls: [{ langId: 'en', privacy: `https://vendor${id}.example/privacy`, legIntClaim: `https://vendor${id}.example/li` }],
  dataDeclaration: [1, 2, 3, 4, 6, 8],
});

const GVL_JSON = {
  gvlSpecificationVersion: 3,
  vendorListVersion: VENDOR_LIST_VERSION,
  tcfPolicyVersion: TCF_POLICY_VERSION,
  lastUpdated: '2026-10-29T16:00:00Z',
  purposes: {
    1: purpose(1, 'Store and/or access information on a device'),
    2: purpose(2, 'Use limited data to select advertising'),
    3: purpose(3, 'Create profiles for personalised advertising'),
    4: purpose(4, 'Use profiles to select personalised advertising'),
    5: purpose(5, 'Create profiles to personalise content'),
    6: purpose(6, 'Use profiles to select personalised content'),
    7: purpose(7, 'Measure advertising performance'),
    8: purpose(8, 'Measure content performance'),
    9: purpose(9, 'Understand audiences through statistics or combinations of data from different sources'),
    10: purpose(10, 'Develop and improve services'),
    11: purpose(11, 'Use limited data to select content'),
  },
  specialPurposes: {
    1: purpose(1, 'Ensure security, prevent and detect fraud, and fix errors'),
    2: purpose(2, 'Deliver and present advertising and content'),
    3: purpose(3, 'Save and communicate privacy choices'),
  },
  features: {
    1: feature(1, 'Match and combine data from other data sources'),
    2: feature(2, 'Link different devices'),
    3: feature(3, 'Identify devices based on information transmitted automatically'),
  },
  specialFeatures: {
    1: feature(1, 'Use precise geolocation data'),
    2: feature(2, 'Actively scan device characteristics for identification'),
  },
  stacks: {},
  dataCategories: {},
  vendors: {
    8: vendor(8, 'Vendor Eight', {
      purposes: [1, 2, 3, 4, 7, 9, 10], specialPurposes: [1, 2], features: [1, 2],
    }),
    52: vendor(52, 'Vendor Fifty-Two', {
      purposes: [1, 3, 4, 5, 6], legIntPurposes: [2, 7, 8, 9, 10, 11], specialPurposes: [1, 2], features: [3],
    }),
    755: vendor(755, 'Vendor Seven-Five-Five', {
      purposes: range(1, 11), specialPurposes: [1, 2], features: [1, 2, 3], specialFeatures: [1, 2],
    }),
    1000: vendor(1000, 'Vendor One Thousand', {
      purposes: [1, 2, 3, 4, 7], legIntPurposes: [8, 9, 10], specialPurposes: [1, 2], features: [3],
    }),
    1001: vendor(OUR_VENDOR_ID, 'Our Bidder', {
      purposes: [1, 3, 4],
      legIntPurposes: [2, 7, 8, 9, 10, 11],
      flexiblePurposes: [2, 7, 8, 9, 10, 11],
      specialPurposes: [1, 2],
      features: [1, 2, 3],
      specialFeatures: [1, 2],
    }),
    1002: vendor(1002, 'Vendor One Thousand Two', {
      purposes: [1, 2, 7], specialPurposes: [1, 2],
    }),
  },
};
const GVL_VENDOR_IDS = sorted(Object.keys(GVL_JSON.vendors).map(Number));

// Header fields shared by every TC string (and every tcfeuv2 GPP section).
const TCF_HEADER = {
  version: 2,
  cmp_id: CMP_ID,
  cmp_version: CMP_VERSION,
  consent_screen: CONSENT_SCREEN,
  consent_language: CONSENT_LANGUAGE,
  vendor_list_version: VENDOR_LIST_VERSION,
  policy_version: TCF_POLICY_VERSION,
  is_service_specific: true,
  use_non_standard_stacks: false,
  purpose_one_treatment: false,
  publisher_country_code: PUBLISHER_COUNTRY_CODE,
  created: CREATED,
  last_updated: LAST_UPDATED,
};

// -------------------------------------------------------------- TCF cases --

const ALL_PURPOSES = range(1, 11);
const LI_PURPOSES = [2, 7, 8, 9, 10, 11];

const ALL_GRANTED = {
  purpose_consents: ALL_PURPOSES,
  purpose_legitimate_interests: LI_PURPOSES,
  special_feature_optins: [1, 2],
  vendor_consents: [8, 52, 755, OUR_VENDOR_ID],
  vendor_legitimate_interests: [OUR_VENDOR_ID],
  publisher_restrictions: [],
};
const NOTHING = {
  purpose_consents: [],
  purpose_legitimate_interests: [],
  special_feature_optins: [],
  vendor_consents: [],
  vendor_legitimate_interests: [],
  publisher_restrictions: [],
};

const TCF_CASES = [
  { name: 'all_granted', ...ALL_GRANTED },
  { name: 'refuse_all', ...NOTHING },
  {
    name: 'vendor_missing',
    ...ALL_GRANTED,
    vendor_consents: [1000, 1002],
    vendor_legitimate_interests: [1000],
  },
  {
    name: 'basic_ads_only',
    ...NOTHING,
    purpose_consents: [1, 2, 7],
    vendor_consents: [OUR_VENDOR_ID],
  },
  {
    name: 'legitimate_interest_only',
    ...NOTHING,
    purpose_legitimate_interests: LI_PURPOSES,
    vendor_legitimate_interests: [OUR_VENDOR_ID],
  },
  {
    name: 'restriction_not_allowed',
    ...ALL_GRANTED,
    publisher_restrictions: [{ purpose: 3, type: 0, vendors: [OUR_VENDOR_ID] }],
  },
  {
    name: 'restriction_require_consent',
    ...NOTHING,
    purpose_consents: [1, 3, 4],
    purpose_legitimate_interests: [2, 7],
    vendor_consents: [OUR_VENDOR_ID],
    vendor_legitimate_interests: [OUR_VENDOR_ID],
    publisher_restrictions: [{ purpose: 2, type: 1, vendors: [OUR_VENDOR_ID] }],
  },
  { name: 'no_special_feature', ...ALL_GRANTED, special_feature_optins: [] },
  {
    name: 'with_disclosed_vendors',
    ...ALL_GRANTED,
    segments: [Segment.CORE, Segment.VENDORS_DISCLOSED],
  },
];

// The header and the consent fields of a TCF case, as `encoded` records them.
function tcfFields(c) {
  return {
    ...TCF_HEADER,
    purpose_consents: sorted(c.purpose_consents),
    purpose_legitimate_interests: sorted(c.purpose_legitimate_interests),
    special_feature_optins: sorted(c.special_feature_optins),
    vendor_consents: sorted(c.vendor_consents),
    vendor_legitimate_interests: sorted(c.vendor_legitimate_interests),
  };
}

function encodeTcf(c) {
  const gvl = new GVL(structuredClone(GVL_JSON));
  const m = new TCModel(gvl);
  m.cmpId = CMP_ID;
  m.cmpVersion = CMP_VERSION;
  m.consentScreen = CONSENT_SCREEN;
  m.consentLanguage = CONSENT_LANGUAGE;
  m.publisherCountryCode = PUBLISHER_COUNTRY_CODE;
  m.isServiceSpecific = true;
  m.useNonStandardStacks = false;
  m.purposeOneTreatment = false;
  m.purposeConsents.set(c.purpose_consents);
  m.purposeLegitimateInterests.set(c.purpose_legitimate_interests);
  m.specialFeatureOptins.set(c.special_feature_optins);
  m.vendorConsents.set(c.vendor_consents);
  m.vendorLegitimateInterests.set(c.vendor_legitimate_interests);
  for (const r of c.publisher_restrictions) {
    for (const v of r.vendors) {
      m.publisherRestrictions.add(v, new PurposeRestriction(r.purpose, r.type));
    }
  }
  m.created = new Date(CREATED);
  m.lastUpdated = new Date(LAST_UPDATED);

  // Without `segments`, a service-specific string gets core + publisherTC. We
  // name the segments explicitly so that each fixture says what it contains.
  const segments = c.segments ?? [Segment.CORE];
  const string = TCString.encode(m, { segments });

  const encoded = {
    ...tcfFields(c),
    publisher_restrictions: c.publisher_restrictions.map((r) => ({ ...r, vendors: sorted(r.vendors) })),
    segments,
  };
  if (segments.includes(Segment.VENDORS_DISCLOSED)) {
    // The encoder always discloses every vendor in the GVL it was given.
    encoded.vendors_disclosed = GVL_VENDOR_IDS;
  }
  return { name: c.name, string, encoded };
}

const vectorIds = (v) => {
  const ids = [];
  v.forEach((value, id) => { if (value) ids.push(id); });
  return sorted(ids);
};

function checkTcf(entry) {
  const { name, string, encoded } = entry;
  assert.match(string, /^[CQ]/, `${name}: TC string must start with C or Q`);
  assert.equal(string.split('.').length, encoded.segments.length, `${name}: segment count`);
  const m = TCString.decode(string);
  const decodedRestrictions = [];
  for (const pr of m.publisherRestrictions.getRestrictions()) {
    decodedRestrictions.push({
      purpose: pr.purposeId,
      type: pr.restrictionType,
      vendors: sorted(m.publisherRestrictions.getVendors(pr)),
    });
  }
  const decoded = {
    version: m.version,
    cmp_id: m.cmpId,
    cmp_version: m.cmpVersion,
    consent_screen: m.consentScreen,
    consent_language: m.consentLanguage,
    vendor_list_version: m.vendorListVersion,
    policy_version: m.policyVersion,
    is_service_specific: m.isServiceSpecific,
    use_non_standard_stacks: m.useNonStandardStacks,
    purpose_one_treatment: m.purposeOneTreatment,
    publisher_country_code: m.publisherCountryCode,
    created: m.created.toISOString(),
    last_updated: m.lastUpdated.toISOString(),
    purpose_consents: vectorIds(m.purposeConsents),
    purpose_legitimate_interests: vectorIds(m.purposeLegitimateInterests),
    special_feature_optins: vectorIds(m.specialFeatureOptins),
    vendor_consents: vectorIds(m.vendorConsents),
    vendor_legitimate_interests: vectorIds(m.vendorLegitimateInterests),
    publisher_restrictions: decodedRestrictions,
    segments: encoded.segments,
  };
  if (encoded.vendors_disclosed) decoded.vendors_disclosed = vectorIds(m.vendorsDisclosed);
  assert.deepStrictEqual(decoded, encoded, `${name}: decoded TC string differs from what was encoded`);
}

// -------------------------------------------------------------- GPP cases --

const bools = (ids, size) => Array.from({ length: size }, (_, i) => ids.includes(i + 1));
const idsOf = (bits) => bits.flatMap((b, i) => (b ? [i + 1] : []));

// tcfeuv2 in GPP: @iabgpp/cmpapi encodes core + vendorsDisclosed + publisherTC
// for service-specific strings (it refuses isServiceSpecific=false), so the
// disclosed vendors are set to the whole GVL, as a CMP would.
function tcfeuv2Section(c) {
  return {
    ...tcfFields(c),
    publisher_restrictions: c.publisher_restrictions,
    vendors_disclosed: GVL_VENDOR_IDS,
    segments: [Segment.CORE, Segment.VENDORS_DISCLOSED, Segment.PUBLISHER_TC],
  };
}

function setTcfEuV2(model, t) {
  const set = (f, v) => model.setFieldValue('tcfeuv2', f, v);
  set('CmpId', t.cmp_id);
  set('CmpVersion', t.cmp_version);
  set('ConsentScreen', t.consent_screen);
  set('ConsentLanguage', t.consent_language);
  set('VendorListVersion', t.vendor_list_version);
  set('PolicyVersion', t.policy_version);
  set('IsServiceSpecific', t.is_service_specific);
  set('UseNonStandardStacks', t.use_non_standard_stacks);
  set('PurposeOneTreatment', t.purpose_one_treatment);
  set('PublisherCountryCode', t.publisher_country_code);
  set('SpecialFeatureOptins', bools(t.special_feature_optins, 12));
  set('PurposeConsents', bools(t.purpose_consents, 24));
  set('PurposeLegitimateInterests', bools(t.purpose_legitimate_interests, 24));
  set('VendorConsents', [...t.vendor_consents]);
  set('VendorLegitimateInterests', [...t.vendor_legitimate_interests]);
  set('PublisherRestrictions', t.publisher_restrictions.map((r) => new RangeEntry(r.purpose, r.type, [...r.vendors])));
  set('VendorsDisclosed', [...t.vendors_disclosed]);
  // Setting any other tcfeuv2 field stamps Created/LastUpdated with today's
  // date, so the fixed dates have to be set last.
  set('Created', new Date(t.created));
  set('LastUpdated', new Date(t.last_updated));
}

function readTcfEuV2(model) {
  const get = (f) => model.getFieldValue('tcfeuv2', f);
  return {
    version: get('Version'),
    cmp_id: get('CmpId'),
    cmp_version: get('CmpVersion'),
    consent_screen: get('ConsentScreen'),
    consent_language: get('ConsentLanguage'),
    vendor_list_version: get('VendorListVersion'),
    policy_version: get('PolicyVersion'),
    is_service_specific: get('IsServiceSpecific'),
    use_non_standard_stacks: get('UseNonStandardStacks'),
    purpose_one_treatment: get('PurposeOneTreatment'),
    publisher_country_code: get('PublisherCountryCode'),
    created: get('Created').toISOString(),
    last_updated: get('LastUpdated').toISOString(),
    purpose_consents: idsOf(get('PurposeConsents')),
    purpose_legitimate_interests: idsOf(get('PurposeLegitimateInterests')),
    special_feature_optins: idsOf(get('SpecialFeatureOptins')),
    vendor_consents: sorted(get('VendorConsents')),
    vendor_legitimate_interests: sorted(get('VendorLegitimateInterests')),
    publisher_restrictions: get('PublisherRestrictions').map((e) => ({
      purpose: e.getKey(), type: e.getType(), vendors: sorted(e.getIds()),
    })),
    vendors_disclosed: sorted(get('VendorsDisclosed')),
  };
}

// usnat: 0 = not applicable, 1 = yes (notice given / opted out), 2 = no.
// usnat Version 2 (the library's default) has 16 sensitive-data entries and 3
// known-child entries; usca Version 1 has 9 and 2. Every field is listed in
// `encoded`, including the defaults.
const USNAT_BASE = {
  Version: 2,
  SharingNotice: 1,
  SaleOptOutNotice: 1,
  SharingOptOutNotice: 1,
  TargetedAdvertisingOptOutNotice: 1,
  SensitiveDataProcessingOptOutNotice: 1,
  SensitiveDataLimitUseNotice: 1,
  SaleOptOut: 2,
  SharingOptOut: 2,
  TargetedAdvertisingOptOut: 2,
  SensitiveDataProcessing: Array(16).fill(0),
  KnownChildSensitiveDataConsents: [0, 0, 0],
  PersonalDataConsents: 0,
  MspaCoveredTransaction: 1,
  MspaOptOutOptionMode: 1,
  MspaServiceProviderMode: 2,
  GpcSegmentIncluded: false,
  Gpc: false,
};
const USCA_BASE = {
  Version: 1,
  SaleOptOutNotice: 1,
  SharingOptOutNotice: 1,
  SensitiveDataLimitUseNotice: 1,
  SaleOptOut: 2,
  SharingOptOut: 2,
  SensitiveDataProcessing: Array(9).fill(0),
  KnownChildSensitiveDataConsents: [0, 0],
  PersonalDataConsents: 0,
  MspaCoveredTransaction: 1,
  MspaOptOutOptionMode: 1,
  MspaServiceProviderMode: 2,
  GpcSegmentIncluded: false,
  Gpc: false,
};
const USPV1 = { Version: 1, Notice: 'Y', OptOutSale: 'Y', LspaCovered: 'N' };

const GPP_CASES = [
  {
    name: 'gpp_tcf_all_granted',
    gpp_sid: [2],
    sections: { tcfeuv2: tcfeuv2Section(ALL_GRANTED) },
  },
  {
    name: 'gpp_tcf_refuse_all',
    gpp_sid: [2],
    sections: { tcfeuv2: tcfeuv2Section(NOTHING) },
  },
  {
    name: 'gpp_usnat_sale_opt_out',
    gpp_sid: [7],
    sections: { usnat: { ...USNAT_BASE, SaleOptOut: 1 } },
  },
  {
    // The GPC segment is present but Gpc is false, which is not an opt-out.
    name: 'gpp_usnat_no_opt_out',
    gpp_sid: [7],
    sections: { usnat: { ...USNAT_BASE, GpcSegmentIncluded: true, Gpc: false } },
  },
  {
    name: 'gpp_usnat_targeted_opt_out',
    gpp_sid: [7],
    sections: { usnat: { ...USNAT_BASE, TargetedAdvertisingOptOut: 1 } },
  },
  {
    name: 'gpp_usca_sharing_opt_out',
    gpp_sid: [8],
    sections: { usca: { ...USCA_BASE, SharingOptOut: 1, SaleOptOut: 2 } },
  },
  {
    name: 'gpp_usnat_gpc',
    gpp_sid: [7],
    sections: { usnat: { ...USNAT_BASE, GpcSegmentIncluded: true, Gpc: true } },
  },
  {
    name: 'gpp_tcf_and_usnat',
    gpp_sid: [2, 7],
    sections: { tcfeuv2: tcfeuv2Section(ALL_GRANTED), usnat: { ...USNAT_BASE, SaleOptOut: 1 } },
  },
  {
    name: 'gpp_uspv1_opt_out',
    gpp_sid: [6],
    sections: { uspv1: { ...USPV1 } },
  },
];

const SECTION_IDS = { tcfeuv2: 2, uspv1: 6, usnat: 7, usca: 8 };

function encodeGpp(c) {
  const model = new GppModel();
  for (const [section, fields] of Object.entries(c.sections)) {
    if (section === 'tcfeuv2') {
      setTcfEuV2(model, fields);
    } else {
      for (const [field, value] of Object.entries(fields)) {
        model.setFieldValue(section, field, Array.isArray(value) ? [...value] : value);
      }
    }
  }
  const string = model.encode();
  const section_ids = sorted(Object.keys(c.sections).map((s) => SECTION_IDS[s]));
  return {
    name: c.name,
    string,
    encoded: { gpp_sid: c.gpp_sid, section_ids, sections: structuredClone(c.sections) },
  };
}

function checkGpp(entry) {
  const { name, string, encoded } = entry;
  assert.match(string, /^DB/, `${name}: GPP string must start with DB`);
  const parts = string.split('~');
  assert.equal(parts.length, 1 + encoded.section_ids.length, `${name}: section count`);
  const model = new GppModel(string);
  assert.deepStrictEqual(model.getSectionIds(), encoded.section_ids, `${name}: header section ids`);
  for (const sid of encoded.gpp_sid) {
    assert.ok(encoded.section_ids.includes(sid), `${name}: gpp_sid ${sid} has no section in the string`);
  }
  for (const [section, fields] of Object.entries(encoded.sections)) {
    assert.ok(model.hasSection(section), `${name}: missing section ${section}`);
    if (section === 'tcfeuv2') {
      const { segments, ...expected } = fields;
      assert.deepStrictEqual(readTcfEuV2(model), expected, `${name}: tcfeuv2 fields`);
      const sectionString = parts[1 + encoded.section_ids.indexOf(2)];
      assert.match(sectionString, /^[CQ]/, `${name}: tcfeuv2 core segment must start with C or Q`);
      assert.equal(sectionString.split('.').length, segments.length, `${name}: tcfeuv2 segment count`);
      // The tcfeuv2 section must decode with @iabtcf/core too.
      const m = TCString.decode(sectionString);
      assert.deepStrictEqual(vectorIds(m.vendorConsents), expected.vendor_consents, `${name}: tcfeuv2 via @iabtcf`);
      assert.deepStrictEqual(vectorIds(m.purposeConsents), expected.purpose_consents, `${name}: tcfeuv2 via @iabtcf`);
      assert.deepStrictEqual(vectorIds(m.vendorsDisclosed), expected.vendors_disclosed, `${name}: tcfeuv2 via @iabtcf`);
    } else {
      for (const [field, value] of Object.entries(fields)) {
        assert.deepStrictEqual(model.getFieldValue(section, field), value, `${name}: ${section}.${field}`);
      }
    }
  }
}

// -------------------------------------------------------------------- run --

const tcf = TCF_CASES.map(encodeTcf);
tcf.forEach(checkTcf);
const gpp = GPP_CASES.map(encodeGpp);
gpp.forEach(checkGpp);

// The two encoders should agree on the TCF core segment for the same inputs.
const core = (s) => s.split('.')[0];
const tcfCore = (name) => core(tcf.find((e) => e.name === name).string);
const gppTcfCore = (name) => core(gpp.find((e) => e.name === name).string.split('~')[1]);
assert.equal(gppTcfCore('gpp_tcf_all_granted'), tcfCore('all_granted'), 'core segments differ: all_granted');
assert.equal(gppTcfCore('gpp_tcf_refuse_all'), tcfCore('refuse_all'), 'core segments differ: refuse_all');

for (const list of [tcf, gpp]) {
  const names = list.map((e) => e.name);
  assert.equal(new Set(names).size, names.length, 'duplicate case names');
}

const out = {
  generator,
  our_vendor_id: OUR_VENDOR_ID,
  // The vendor list the TC strings were encoded against (declarations only).
  gvl: {
    vendor_list_version: GVL_JSON.vendorListVersion,
    tcf_policy_version: GVL_JSON.tcfPolicyVersion,
    vendors: Object.fromEntries(
      Object.values(GVL_JSON.vendors).map((v) => [v.id, {
        purposes: v.purposes,
        leg_int_purposes: v.legIntPurposes,
        flexible_purposes: v.flexiblePurposes,
        special_purposes: v.specialPurposes,
        features: v.features,
        special_features: v.specialFeatures,
      }]),
    ),
  },
  tcf,
  gpp,
};
// Two-space JSON, with arrays of plain values kept on one line.
const json = JSON.stringify(out, null, 2).replace(
  /\[\n\s*([^\[\]{}]*?)\n\s*\]/g,
  (_, inner) => `[${inner.split(/,\n\s*/).join(', ')}]`,
);
assert.deepStrictEqual(JSON.parse(json), out, 'compact JSON formatting changed the data');
writeFileSync(OUT, json + '\n');
console.log(`wrote ${path.relative(process.cwd(), OUT) || OUT}: ${tcf.length} TCF, ${gpp.length} GPP strings, all decoded back and checked`);
