"""Reads FlatBuffers bid responses with code `flatc --python` generated from
bidder/schema/bid_response.fbs, as a partner that does not share our Rust types would,
and prints each as the OpenRTB JSON object it stands for (absent fields left out).

Usage: decode.py FILE...  (PYTHONPATH must hold the generated `bidder` package)
"""

import json
import sys

from bidder.fb.BidResponse import BidResponse


def text(value):
    return None if value is None else value.decode("utf-8")


def strings(table, name):
    count = getattr(table, name + "Length")()
    return [text(getattr(table, name)(i)) for i in range(count)]


def bid(b):
    out = {
        "id": text(b.Id()),
        "impid": text(b.Impid()),
        "price": b.Price(),
        "adm": text(b.Adm()),
        "adomain": strings(b, "Adomain"),
        "crid": text(b.Crid()),
        "cid": text(b.Cid()),
        "cat": strings(b, "Cat"),
        "attr": [b.Attr(i) for i in range(b.AttrLength())],
        "w": b.W(),
        "h": b.H(),
        "dealid": text(b.Dealid()),
        "mtype": b.Mtype(),
        "nurl": text(b.Nurl()),
        "burl": text(b.Burl()),
        "lurl": text(b.Lurl()),
    }
    return {k: v for k, v in out.items() if v not in (None, [], 0)}


def response(buf):
    if not BidResponse.BidResponseBufferHasIdentifier(buf, 0):
        raise SystemExit("not a BRSP buffer")
    r = BidResponse.GetRootAs(buf, 0)
    seatbid = []
    for i in range(r.SeatbidLength()):
        s = r.Seatbid(i)
        seatbid.append(
            {"seat": text(s.Seat()), "bid": [bid(s.Bid(j)) for j in range(s.BidLength())]}
        )
    out = {
        "id": text(r.Id()),
        "seatbid": seatbid,
        "bidid": text(r.Bidid()),
        "cur": text(r.Cur()),
        "nbr": r.Nbr(),
    }
    return {k: v for k, v in out.items() if v not in (None, [], 0)}


for path in sys.argv[1:]:
    with open(path, "rb") as f:
        print(json.dumps(response(bytearray(f.read())), sort_keys=True))
