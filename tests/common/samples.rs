//! Sample values shared by the codec oracles (tests/codec_oracle.rs for 3.1.1,
//! tests/codec_oracle_v5.rs for 5.0).

use std::fmt;

use bytes::Bytes;

/// Binary data, shown by its length and first bytes: some are hundreds of KB long.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Payload(pub Bytes);

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = &self.0[..self.0.len().min(8)];
        write!(f, "{} bytes {head:02x?}", self.0.len())
    }
}

/// `len` bytes that are not all alike, so a shifted or truncated copy is noticed.
pub fn pattern(len: usize) -> Payload {
    Payload((0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into())
}

pub const PKIDS: [u16; 8] = [1, 2, 0x7f, 0x80, 0xff, 0x100, 0xfffe, 0xffff];

/// Topic names: unicode, empty levels, `$` prefixes, spaces, a byte order mark.
pub const TOPICS: [&str; 14] = [
    "a",
    "/",
    "//",
    "a/b/c",
    "/leading",
    "trailing/",
    "sport/tennis/player1",
    "$SYS/broker/load",
    "$",
    "ü/€/𝄞",
    "日本語/トピック",
    "\u{feff}bom",
    " spaced / out ",
    "a-very/deep/topic/with/many/levels/0/1/2/3/4/5/6/7/8/9",
];

/// The longest string a field holds, 65535 bytes, of two-byte characters.
pub fn longest_string() -> String {
    "é".repeat(32_767) + "x"
}

/// Topic filters, wildcards and shared subscriptions included, and the empty one, which
/// the codecs pass on (the broker judges filters).
pub const FILTERS: [&str; 10] = [
    "a/b",
    "#",
    "+",
    "+/+/#",
    "sport/+/player1",
    "$SYS/#",
    "$share/group/a/+",
    "ü/+/𝄞",
    "",
    "/",
];
