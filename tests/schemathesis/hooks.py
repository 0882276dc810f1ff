"""Schemathesis hooks (loaded by ../../schemathesis.toml): generators for the two string
formats of flashrent's OpenAPI document, so generated requests carry values the format
admits. A format with no generator would leave only its pattern to draw from, and most
texts matching a pattern are not valid values: a TRON address's checksum, or a URL's host,
cannot be written as a regular expression.
"""

import hashlib
import string

import schemathesis
from hypothesis import strategies as st

BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"

# The devnet's funded supplier wallet and activated renter (README): with them generated
# orders and delegations go all the way through the chain, not only to their refusals.
KNOWN_ADDRESSES = ["TPX6HK2NRN4XKRX1JAhbC827bm7gMmy5w1", "TQ5kjKLLm9X4L2D1JgogNis6V1YoAm6sv2"]


def base58check(payload: bytes) -> str:
    data = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = BASE58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


# Format `tron-address`: Base58Check of 0x41 and 20 bytes.
tron_addresses = st.one_of(
    st.sampled_from(KNOWN_ADDRESSES),
    st.binary(min_size=20, max_size=20).map(lambda b: base58check(b"\x41" + b)),
)
schemathesis.openapi.format("tron-address", tron_addresses)

# Format `callback-url`: an absolute http(s) URL of a public host name, in visible ASCII.
label = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=12)
host = st.builds(
    lambda labels, tld: ".".join(labels + [tld]),
    st.lists(label, min_size=1, max_size=3),
    st.sampled_from(["com", "net", "org", "cn", "io", "example"]),
)
safe = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@%"
path = st.lists(st.text(safe.replace("%", ""), max_size=16), max_size=4).map(
    lambda parts: "/" + "/".join(parts)
)
query = st.one_of(st.just(""), st.text(safe.replace("%", "") + "/?", max_size=24).map(lambda q: "?" + q))
callback_urls = st.builds(
    lambda scheme, h, port, p, q: f"{scheme}://{h}{port}{p}{q}",
    st.sampled_from(["http", "https", "HTTPS"]),
    host,
    st.one_of(st.just(""), st.integers(1, 65535).map(lambda n: f":{n}")),
    path,
    query,
)
schemathesis.openapi.format("callback-url", callback_urls)
