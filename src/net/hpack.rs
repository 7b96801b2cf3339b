//! A small HPACK (RFC 7541) decoder and literal encoder for the `:authority` filter
//! (`authority.rs`).
//!
//! The decoder mirrors the server's own HPACK decoder (h2's): it keeps the same dynamic table
//! by decoding every header block the client sends, and refuses what h2 refuses at the HPACK
//! level (an index outside the tables, a size update above the advertised table size or after
//! a field, a bad Huffman string, an integer longer than five bytes). Fields are handed to a
//! callback as byte slices that borrow the block, the table or a reused scratch buffer, so a
//! block costs no allocation unless it adds to the table (and even then the buffer of an
//! evicted entry is reused).
//!
//! The encoder writes only "literal header field without indexing" representations, with the
//! name indexed from the static table where it is a pseudo-header and the value never
//! Huffman-coded: a block it writes neither reads nor changes the receiver's dynamic table.

use std::collections::VecDeque;
use std::sync::OnceLock;

/// HTTP/2's initial `SETTINGS_HEADER_TABLE_SIZE` (RFC 9113, section 6.5.2), which the server
/// never changes (`connection_builder` sets no header table size), so it is the largest
/// dynamic table a client may ask for.
pub(crate) const HEADER_TABLE_SIZE_DEFAULT: usize = 4096;

/// The per-entry overhead HPACK counts on top of the name and value lengths (RFC 7541,
/// section 4.1).
const ENTRY_OVERHEAD_BYTES: usize = 32;

/// The most bytes an HPACK integer may take: five, as h2 allows (values up to 2^28 and more).
const INTEGER_BYTES_MAX: usize = 5;

/// Why a header block could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// The block ended inside a representation.
    Truncated,
    /// An integer took more than [`INTEGER_BYTES_MAX`] bytes.
    IntegerOverflow,
    /// Index 0, or an index past the end of the static and dynamic tables.
    InvalidIndex,
    /// A dynamic table size update above the advertised maximum.
    SizeUpdateTooLarge,
    /// A dynamic table size update after a header field of the same block.
    SizeUpdateNotFirst,
    /// A Huffman-coded string with the EOS symbol, or with padding that is longer than seven
    /// bits or not all ones.
    InvalidHuffman,
}

/// One dynamic table entry: the name followed by the value, in one buffer.
#[derive(Debug)]
struct Entry {
    bytes: Vec<u8>,
    name_len: usize,
}

impl Entry {
    /// The size HPACK counts for this entry.
    fn size(&self) -> usize {
        self.bytes.len() + ENTRY_OVERHEAD_BYTES
    }
}

/// An HPACK decoder: the dynamic table, and what a block needs to be decoded.
#[derive(Debug)]
pub(crate) struct Decoder {
    /// The dynamic table, newest entry first.
    entries: VecDeque<Entry>,
    /// The table's size as HPACK counts it.
    size: usize,
    /// The table's current maximum, as the last size update set it.
    max_size: usize,
    /// The largest maximum a size update may set.
    max_size_allowed: usize,
    /// The buffer of an evicted entry, reused for the next one.
    spare: Vec<u8>,
    /// Huffman-decoded names of fields that are not indexed.
    name_scratch: Vec<u8>,
    /// Huffman-decoded values of fields that are not indexed.
    value_scratch: Vec<u8>,
}

impl Decoder {
    /// A decoder for a receiver that advertised `max_size_allowed` as its header table size.
    pub(crate) fn new(max_size_allowed: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            max_size: max_size_allowed,
            max_size_allowed,
            spare: Vec::new(),
            name_scratch: Vec::new(),
            value_scratch: Vec::new(),
        }
    }

    /// Decodes one complete header block (the fragments of a HEADERS frame and its
    /// CONTINUATION frames, joined), calling `on_field(name, value)` for each field in order
    /// and updating the dynamic table as the block says.
    ///
    /// After an error the table may hold part of the block's additions: the connection's
    /// compression state is then lost, as it is for the receiver.
    pub(crate) fn decode(
        &mut self,
        block: &[u8],
        mut on_field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), DecodeError> {
        let mut pos = 0;
        let mut field_seen = false;
        while let Some(&first) = block.get(pos) {
            if first & 0x80 != 0 {
                // Indexed header field (section 6.1).
                let index = decode_integer(block, &mut pos, 7)?;
                let (name, value) = table_get(&self.entries, index)?;
                on_field(name, value);
                field_seen = true;
            } else if first & 0x40 != 0 {
                // Literal header field with incremental indexing (section 6.2.1): the name and
                // value are gathered in one buffer that becomes the new entry.
                let index = decode_integer(block, &mut pos, 6)?;
                let mut bytes = std::mem::take(&mut self.spare);
                bytes.clear();
                if index == 0 {
                    decode_string_into(block, &mut pos, &mut bytes)?;
                } else {
                    bytes.extend_from_slice(table_get(&self.entries, index)?.0);
                }
                let name_len = bytes.len();
                decode_string_into(block, &mut pos, &mut bytes)?;
                on_field(&bytes[..name_len], &bytes[name_len..]);
                self.insert(Entry { bytes, name_len });
                field_seen = true;
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update (section 6.3): only before the block's first field.
                if field_seen {
                    return Err(DecodeError::SizeUpdateNotFirst);
                }
                let size = decode_integer(block, &mut pos, 5)?;
                if size > self.max_size_allowed {
                    return Err(DecodeError::SizeUpdateTooLarge);
                }
                self.max_size = size;
                self.evict_to(size);
            } else {
                // Literal header field without indexing or never indexed (sections 6.2.2 and
                // 6.2.3): nothing changes in the table.
                let index = decode_integer(block, &mut pos, 4)?;
                let name = if index == 0 {
                    decode_string(block, &mut pos, &mut self.name_scratch)?
                } else {
                    table_get(&self.entries, index)?.0
                };
                let value = decode_string(block, &mut pos, &mut self.value_scratch)?;
                on_field(name, value);
                field_seen = true;
            }
        }
        Ok(())
    }

    /// Adds `entry` to the table, evicting the oldest entries to make room (section 4.4).
    fn insert(&mut self, entry: Entry) {
        let size = entry.size();
        if size > self.max_size {
            // An entry larger than the table empties it and is not added.
            self.evict_to(0);
            self.keep_spare(entry.bytes);
            return;
        }
        self.evict_to(self.max_size - size);
        self.size += size;
        self.entries.push_front(entry);
    }

    /// Evicts the oldest entries until the table's size is at most `size`.
    fn evict_to(&mut self, size: usize) {
        while self.size > size {
            let Some(evicted) = self.entries.pop_back() else {
                debug_assert!(false, "HPACK table size {} with no entries", self.size);
                self.size = 0;
                return;
            };
            self.size -= evicted.size();
            self.keep_spare(evicted.bytes);
        }
    }

    /// Keeps the larger of `bytes` and the current spare buffer for the next entry.
    fn keep_spare(&mut self, bytes: Vec<u8>) {
        if bytes.capacity() > self.spare.capacity() {
            self.spare = bytes;
        }
    }
}

/// The field at `index` of the static table followed by `entries` (section 2.3.3).
fn table_get(entries: &VecDeque<Entry>, index: usize) -> Result<(&[u8], &[u8]), DecodeError> {
    if index == 0 {
        return Err(DecodeError::InvalidIndex);
    }
    if let Some(&(name, value)) = STATIC_TABLE.get(index - 1) {
        return Ok((name, value));
    }
    let entry = entries
        .get(index - 1 - STATIC_TABLE.len())
        .ok_or(DecodeError::InvalidIndex)?;
    Ok((
        &entry.bytes[..entry.name_len],
        &entry.bytes[entry.name_len..],
    ))
}

/// Decodes an integer with a `prefix_bits`-bit prefix at `block[*pos..]` (section 5.1) and
/// moves `pos` past it.
fn decode_integer(block: &[u8], pos: &mut usize, prefix_bits: u8) -> Result<usize, DecodeError> {
    debug_assert!((1..=8).contains(&prefix_bits));
    let mask = (1u16 << prefix_bits) as usize - 1;
    let first = *block.get(*pos).ok_or(DecodeError::Truncated)?;
    *pos += 1;
    let mut value = first as usize & mask;
    if value < mask {
        return Ok(value);
    }
    let mut shift = 0;
    for used in 2..=INTEGER_BYTES_MAX {
        let byte = *block.get(*pos).ok_or(DecodeError::Truncated)?;
        *pos += 1;
        value += ((byte & 0x7f) as usize) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
        if used == INTEGER_BYTES_MAX {
            break;
        }
    }
    Err(DecodeError::IntegerOverflow)
}

/// Decodes the string at `block[*pos..]` (section 5.2) and moves `pos` past it: a raw string
/// is borrowed from `block`, a Huffman-coded one decoded into `scratch`.
fn decode_string<'a>(
    block: &'a [u8],
    pos: &mut usize,
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], DecodeError> {
    let huffman = block.get(*pos).ok_or(DecodeError::Truncated)? & 0x80 != 0;
    let len = decode_integer(block, pos, 7)?;
    let end = pos.checked_add(len).ok_or(DecodeError::Truncated)?;
    let raw = block.get(*pos..end).ok_or(DecodeError::Truncated)?;
    *pos = end;
    if huffman {
        scratch.clear();
        huffman_decode(raw, scratch)?;
        let decoded: &'a Vec<u8> = scratch;
        Ok(decoded)
    } else {
        Ok(raw)
    }
}

/// Like [`decode_string`], appending the string to `out`.
fn decode_string_into(block: &[u8], pos: &mut usize, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let huffman = block.get(*pos).ok_or(DecodeError::Truncated)? & 0x80 != 0;
    let len = decode_integer(block, pos, 7)?;
    let end = pos.checked_add(len).ok_or(DecodeError::Truncated)?;
    let raw = block.get(*pos..end).ok_or(DecodeError::Truncated)?;
    *pos = end;
    if huffman {
        huffman_decode(raw, out)
    } else {
        out.extend_from_slice(raw);
        Ok(())
    }
}

/// Appends the field `name: value` to `out` as a literal header field without indexing
/// (section 6.2.2): the name indexed from the static table when it is a pseudo-header there,
/// else literal; the value literal, not Huffman-coded.
pub(crate) fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    let name_index = match name {
        b":authority" => 1,
        b":method" => 2,
        b":path" => 4,
        b":scheme" => 6,
        b":status" => 8,
        _ => 0,
    };
    encode_integer(out, 0x00, 4, name_index);
    if name_index == 0 {
        encode_integer(out, 0x00, 7, name.len());
        out.extend_from_slice(name);
    }
    encode_integer(out, 0x00, 7, value.len());
    out.extend_from_slice(value);
}

/// Appends `value` as an integer with a `prefix_bits`-bit prefix, the first byte's other bits
/// being `flags` (section 5.1).
fn encode_integer(out: &mut Vec<u8>, flags: u8, prefix_bits: u8, mut value: usize) {
    let mask = (1u16 << prefix_bits) as usize - 1;
    if value < mask {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | mask as u8);
    value -= mask;
    while value >= 0x80 {
        out.push(0x80 | (value & 0x7f) as u8);
        value >>= 7;
    }
    out.push(value as u8);
}

/// One step of the Huffman decoder: what reading four more bits from a state does.
#[derive(Clone, Copy, Default)]
struct HuffmanStep {
    /// The state after the four bits: an internal node of the code tree (0 is the root).
    next: u8,
    /// The symbol completed within the four bits, if `flags` has [`HUFFMAN_EMIT`].
    symbol: u8,
    flags: u8,
}

/// [`HuffmanStep::flags`]: a symbol was completed.
const HUFFMAN_EMIT: u8 = 1;
/// [`HuffmanStep::flags`]: the bits reached the EOS symbol, which is an error.
const HUFFMAN_FAIL: u8 = 2;
/// [`HuffmanStep::flags`]: the string may end in the next state (the bits since the last
/// symbol are a prefix of EOS, all ones, and at most seven).
const HUFFMAN_ACCEPT: u8 = 4;

/// The Huffman decoder's state table: for each of the code tree's 256 internal nodes and
/// each four-bit input, one step. Built once from [`HUFFMAN_CODES`].
fn huffman_steps() -> &'static [[HuffmanStep; 16]; 256] {
    static STEPS: OnceLock<Box<[[HuffmanStep; 16]; 256]>> = OnceLock::new();
    STEPS.get_or_init(|| {
        // The code tree: each node's two children, an internal node's index (> 0) or a
        // symbol as -(symbol + 1).
        let mut nodes: Vec<[i32; 2]> = vec![[0, 0]];
        for (symbol, &(code, len)) in HUFFMAN_CODES.iter().enumerate() {
            let mut node = 0;
            for bit_index in (0..len).rev() {
                let bit = ((code >> bit_index) & 1) as usize;
                if bit_index == 0 {
                    nodes[node][bit] = -(symbol as i32 + 1);
                } else {
                    if nodes[node][bit] == 0 {
                        nodes.push([0, 0]);
                        nodes[node][bit] = (nodes.len() - 1) as i32;
                    }
                    node = nodes[node][bit] as usize;
                }
            }
        }
        assert_eq!(nodes.len(), 256, "the HPACK code has 256 internal nodes");
        // The nodes where a string may end: the root, and the all-ones path up to depth 7.
        let mut accepting = [false; 256];
        accepting[0] = true;
        let mut node = 0;
        for _ in 0..7 {
            node = nodes[node][1] as usize;
            accepting[node] = true;
        }
        let mut steps = Box::new([[HuffmanStep::default(); 16]; 256]);
        for (state, row) in steps.iter_mut().enumerate() {
            for (nibble, step) in row.iter_mut().enumerate() {
                let mut node = state;
                let mut flags = 0;
                let mut symbol = 0;
                for bit_index in (0..4).rev() {
                    let child = nodes[node][(nibble >> bit_index) & 1];
                    if child < 0 {
                        let decoded = -child - 1;
                        if decoded == 256 {
                            flags |= HUFFMAN_FAIL;
                            break;
                        }
                        // Codes are at least five bits long, so four bits complete at most
                        // one symbol.
                        symbol = decoded as u8;
                        flags |= HUFFMAN_EMIT;
                        node = 0;
                    } else {
                        node = child as usize;
                    }
                }
                if accepting[node] {
                    flags |= HUFFMAN_ACCEPT;
                }
                *step = HuffmanStep {
                    next: node as u8,
                    symbol,
                    flags,
                };
            }
        }
        steps
    })
}

/// Decodes the Huffman-coded `raw` (section 5.2, Appendix B), appending it to `out`.
fn huffman_decode(raw: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    let steps = huffman_steps();
    let mut state = 0usize;
    let mut accept = true;
    out.reserve(raw.len() * 8 / 5);
    for &byte in raw {
        for nibble in [byte >> 4, byte & 0x0f] {
            let step = steps[state][nibble as usize];
            if step.flags & HUFFMAN_FAIL != 0 {
                return Err(DecodeError::InvalidHuffman);
            }
            if step.flags & HUFFMAN_EMIT != 0 {
                out.push(step.symbol);
            }
            state = step.next as usize;
            accept = step.flags & HUFFMAN_ACCEPT != 0;
        }
    }
    if accept {
        Ok(())
    } else {
        Err(DecodeError::InvalidHuffman)
    }
}

/// HPACK's static table (RFC 7541, Appendix A); index 1 is the first entry.
static STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// HPACK's Huffman code (RFC 7541, Appendix B): each symbol's code, right-aligned, and its
/// length in bits; symbol 256 is EOS.
static HUFFMAN_CODES: [(u32, u8); 257] = [
    (0x1ff8, 13),
    (0x7fffd8, 23),
    (0xfffffe2, 28),
    (0xfffffe3, 28),
    (0xfffffe4, 28),
    (0xfffffe5, 28),
    (0xfffffe6, 28),
    (0xfffffe7, 28),
    (0xfffffe8, 28),
    (0xffffea, 24),
    (0x3ffffffc, 30),
    (0xfffffe9, 28),
    (0xfffffea, 28),
    (0x3ffffffd, 30),
    (0xfffffeb, 28),
    (0xfffffec, 28),
    (0xfffffed, 28),
    (0xfffffee, 28),
    (0xfffffef, 28),
    (0xffffff0, 28),
    (0xffffff1, 28),
    (0xffffff2, 28),
    (0x3ffffffe, 30),
    (0xffffff3, 28),
    (0xffffff4, 28),
    (0xffffff5, 28),
    (0xffffff6, 28),
    (0xffffff7, 28),
    (0xffffff8, 28),
    (0xffffff9, 28),
    (0xffffffa, 28),
    (0xffffffb, 28),
    (0x14, 6),
    (0x3f8, 10),
    (0x3f9, 10),
    (0xffa, 12),
    (0x1ff9, 13),
    (0x15, 6),
    (0xf8, 8),
    (0x7fa, 11),
    (0x3fa, 10),
    (0x3fb, 10),
    (0xf9, 8),
    (0x7fb, 11),
    (0xfa, 8),
    (0x16, 6),
    (0x17, 6),
    (0x18, 6),
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6),
    (0x1e, 6),
    (0x1f, 6),
    (0x5c, 7),
    (0xfb, 8),
    (0x7ffc, 15),
    (0x20, 6),
    (0xffb, 12),
    (0x3fc, 10),
    (0x1ffa, 13),
    (0x21, 6),
    (0x5d, 7),
    (0x5e, 7),
    (0x5f, 7),
    (0x60, 7),
    (0x61, 7),
    (0x62, 7),
    (0x63, 7),
    (0x64, 7),
    (0x65, 7),
    (0x66, 7),
    (0x67, 7),
    (0x68, 7),
    (0x69, 7),
    (0x6a, 7),
    (0x6b, 7),
    (0x6c, 7),
    (0x6d, 7),
    (0x6e, 7),
    (0x6f, 7),
    (0x70, 7),
    (0x71, 7),
    (0x72, 7),
    (0xfc, 8),
    (0x73, 7),
    (0xfd, 8),
    (0x1ffb, 13),
    (0x7fff0, 19),
    (0x1ffc, 13),
    (0x3ffc, 14),
    (0x22, 6),
    (0x7ffd, 15),
    (0x3, 5),
    (0x23, 6),
    (0x4, 5),
    (0x24, 6),
    (0x5, 5),
    (0x25, 6),
    (0x26, 6),
    (0x27, 6),
    (0x6, 5),
    (0x74, 7),
    (0x75, 7),
    (0x28, 6),
    (0x29, 6),
    (0x2a, 6),
    (0x7, 5),
    (0x2b, 6),
    (0x76, 7),
    (0x2c, 6),
    (0x8, 5),
    (0x9, 5),
    (0x2d, 6),
    (0x77, 7),
    (0x78, 7),
    (0x79, 7),
    (0x7a, 7),
    (0x7b, 7),
    (0x7ffe, 15),
    (0x7fc, 11),
    (0x3ffd, 14),
    (0x1ffd, 13),
    (0xffffffc, 28),
    (0xfffe6, 20),
    (0x3fffd2, 22),
    (0xfffe7, 20),
    (0xfffe8, 20),
    (0x3fffd3, 22),
    (0x3fffd4, 22),
    (0x3fffd5, 22),
    (0x7fffd9, 23),
    (0x3fffd6, 22),
    (0x7fffda, 23),
    (0x7fffdb, 23),
    (0x7fffdc, 23),
    (0x7fffdd, 23),
    (0x7fffde, 23),
    (0xffffeb, 24),
    (0x7fffdf, 23),
    (0xffffec, 24),
    (0xffffed, 24),
    (0x3fffd7, 22),
    (0x7fffe0, 23),
    (0xffffee, 24),
    (0x7fffe1, 23),
    (0x7fffe2, 23),
    (0x7fffe3, 23),
    (0x7fffe4, 23),
    (0x1fffdc, 21),
    (0x3fffd8, 22),
    (0x7fffe5, 23),
    (0x3fffd9, 22),
    (0x7fffe6, 23),
    (0x7fffe7, 23),
    (0xffffef, 24),
    (0x3fffda, 22),
    (0x1fffdd, 21),
    (0xfffe9, 20),
    (0x3fffdb, 22),
    (0x3fffdc, 22),
    (0x7fffe8, 23),
    (0x7fffe9, 23),
    (0x1fffde, 21),
    (0x7fffea, 23),
    (0x3fffdd, 22),
    (0x3fffde, 22),
    (0xfffff0, 24),
    (0x1fffdf, 21),
    (0x3fffdf, 22),
    (0x7fffeb, 23),
    (0x7fffec, 23),
    (0x1fffe0, 21),
    (0x1fffe1, 21),
    (0x3fffe0, 22),
    (0x1fffe2, 21),
    (0x7fffed, 23),
    (0x3fffe1, 22),
    (0x7fffee, 23),
    (0x7fffef, 23),
    (0xfffea, 20),
    (0x3fffe2, 22),
    (0x3fffe3, 22),
    (0x3fffe4, 22),
    (0x7ffff0, 23),
    (0x3fffe5, 22),
    (0x3fffe6, 22),
    (0x7ffff1, 23),
    (0x3ffffe0, 26),
    (0x3ffffe1, 26),
    (0xfffeb, 20),
    (0x7fff1, 19),
    (0x3fffe7, 22),
    (0x7ffff2, 23),
    (0x3fffe8, 22),
    (0x1ffffec, 25),
    (0x3ffffe2, 26),
    (0x3ffffe3, 26),
    (0x3ffffe4, 26),
    (0x7ffffde, 27),
    (0x7ffffdf, 27),
    (0x3ffffe5, 26),
    (0xfffff1, 24),
    (0x1ffffed, 25),
    (0x7fff2, 19),
    (0x1fffe3, 21),
    (0x3ffffe6, 26),
    (0x7ffffe0, 27),
    (0x7ffffe1, 27),
    (0x3ffffe7, 26),
    (0x7ffffe2, 27),
    (0xfffff2, 24),
    (0x1fffe4, 21),
    (0x1fffe5, 21),
    (0x3ffffe8, 26),
    (0x3ffffe9, 26),
    (0xffffffd, 28),
    (0x7ffffe3, 27),
    (0x7ffffe4, 27),
    (0x7ffffe5, 27),
    (0xfffec, 20),
    (0xfffff3, 24),
    (0xfffed, 20),
    (0x1fffe6, 21),
    (0x3fffe9, 22),
    (0x1fffe7, 21),
    (0x1fffe8, 21),
    (0x7ffff3, 23),
    (0x3fffea, 22),
    (0x3fffeb, 22),
    (0x1ffffee, 25),
    (0x1ffffef, 25),
    (0xfffff4, 24),
    (0xfffff5, 24),
    (0x3ffffea, 26),
    (0x7ffff4, 23),
    (0x3ffffeb, 26),
    (0x7ffffe6, 27),
    (0x3ffffec, 26),
    (0x3ffffed, 26),
    (0x7ffffe7, 27),
    (0x7ffffe8, 27),
    (0x7ffffe9, 27),
    (0x7ffffea, 27),
    (0x7ffffeb, 27),
    (0xffffffe, 28),
    (0x7ffffec, 27),
    (0x7ffffed, 27),
    (0x7ffffee, 27),
    (0x7ffffef, 27),
    (0x7fffff0, 27),
    (0x3ffffee, 26),
    (0x3fffffff, 30),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `block`, returning its fields as strings.
    fn decode(decoder: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, DecodeError> {
        let mut fields = Vec::new();
        decoder.decode(block, |name, value| {
            fields.push((
                String::from_utf8_lossy(name).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ))
        })?;
        Ok(fields)
    }

    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// The dynamic table's entries, newest first.
    fn table(decoder: &Decoder) -> Vec<(String, String)> {
        decoder
            .entries
            .iter()
            .map(|e| {
                (
                    String::from_utf8_lossy(&e.bytes[..e.name_len]).into_owned(),
                    String::from_utf8_lossy(&e.bytes[e.name_len..]).into_owned(),
                )
            })
            .collect()
    }

    /// Huffman-codes `bytes` (for tests: the filter never writes Huffman).
    fn huffman_encode(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let (mut bits, mut count) = (0u64, 0u32);
        for &b in bytes {
            let (code, len) = HUFFMAN_CODES[b as usize];
            bits = (bits << len) | code as u64;
            count += len as u32;
            while count >= 8 {
                count -= 8;
                out.push((bits >> count) as u8);
            }
        }
        if count > 0 {
            // Padding: the most significant bits of EOS, all ones.
            out.push(((bits << (8 - count)) | ((1 << (8 - count)) - 1)) as u8);
        }
        out
    }

    /// RFC 7541, C.3: requests without Huffman coding, on one connection.
    #[test]
    fn rfc_requests_without_huffman() {
        let mut decoder = Decoder::new(4096);
        let first = hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d");
        assert_eq!(
            decode(&mut decoder, &first).unwrap(),
            fields(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ])
        );
        let second = hex("8286 84be 5808 6e6f 2d63 6163 6865");
        assert_eq!(
            decode(&mut decoder, &second).unwrap(),
            fields(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache"),
            ])
        );
        let third = hex("8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65");
        assert_eq!(
            decode(&mut decoder, &third).unwrap(),
            fields(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ])
        );
        assert_eq!(
            table(&decoder),
            fields(&[
                ("custom-key", "custom-value"),
                ("cache-control", "no-cache"),
                (":authority", "www.example.com"),
            ])
        );
        assert_eq!(decoder.size, 164);
    }

    /// RFC 7541, C.4: the same requests, Huffman-coded.
    #[test]
    fn rfc_requests_with_huffman() {
        let mut decoder = Decoder::new(4096);
        let blocks = [
            hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"),
            hex("8286 84be 5886 a8eb 1064 9cbf"),
            hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"),
        ];
        for block in &blocks {
            decode(&mut decoder, block).unwrap();
        }
        assert_eq!(
            table(&decoder),
            fields(&[
                ("custom-key", "custom-value"),
                ("cache-control", "no-cache"),
                (":authority", "www.example.com"),
            ])
        );
    }

    /// RFC 7541, C.5: responses in a 256-byte table, so that entries are evicted.
    #[test]
    fn rfc_responses_with_eviction() {
        let mut decoder = Decoder::new(256);
        let first = hex(
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 \
             2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 \
             6c65 2e63 6f6d",
        );
        decode(&mut decoder, &first).unwrap();
        let second = hex("4803 3330 37c1 c0bf");
        assert_eq!(
            decode(&mut decoder, &second).unwrap(),
            fields(&[
                (":status", "307"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("location", "https://www.example.com"),
            ])
        );
        assert_eq!(
            table(&decoder),
            fields(&[
                (":status", "307"),
                ("location", "https://www.example.com"),
                ("date", "Mon, 21 Oct 2013 20:13:21 GMT"),
                ("cache-control", "private"),
            ])
        );
        assert_eq!(decoder.size, 222);
    }

    #[test]
    fn size_updates_follow_h2s_rules() {
        let mut decoder = Decoder::new(4096);
        // A literal with indexing, then a size update to 0 (first in its block) empties the
        // table: the next reference to index 62 fails.
        decode(&mut decoder, &hex("4001 6101 62")).unwrap();
        assert_eq!(table(&decoder), fields(&[("a", "b")]));
        assert_eq!(
            decode(&mut decoder, &hex("20 82")).unwrap(),
            fields(&[(":method", "GET")])
        );
        assert!(table(&decoder).is_empty());
        assert_eq!(
            decode(&mut decoder, &hex("be")),
            Err(DecodeError::InvalidIndex)
        );
        // After a field, a size update is refused, as h2 refuses it.
        assert_eq!(
            decode(&mut decoder, &hex("82 20")),
            Err(DecodeError::SizeUpdateNotFirst)
        );
        // Above the advertised size: 4097 = 31 + 4066.
        let mut too_large = vec![0x3f];
        too_large.extend([0xe2, 0x1f]);
        assert_eq!(
            decode(&mut decoder, &too_large),
            Err(DecodeError::SizeUpdateTooLarge)
        );
        // Two updates in a row are allowed; the table keeps the last maximum.
        decode(&mut decoder, &hex("20 3f e1 1f 82")).unwrap();
        assert_eq!(decoder.max_size, 4096);
    }

    #[test]
    fn malformed_blocks_are_errors() {
        let cases: &[(&str, DecodeError)] = &[
            ("80", DecodeError::InvalidIndex),
            ("bf", DecodeError::InvalidIndex),
            ("ff", DecodeError::Truncated),
            ("ff ff ff ff ff 01", DecodeError::IntegerOverflow),
            ("40 05 61", DecodeError::Truncated),
            ("00 01 61", DecodeError::Truncated),
            ("4f", DecodeError::Truncated),
            // A Huffman string of EOS's 30 ones (and two more padding ones).
            ("00 01 61 84 ff ff ff ff", DecodeError::InvalidHuffman),
            // 'a' is 00011 (5 bits); padding 000 is not EOS's ones.
            ("00 01 61 81 18", DecodeError::InvalidHuffman),
            // A whole byte of padding after 'a' 00011 111: then 8 more ones.
            ("00 01 61 82 1f ff", DecodeError::InvalidHuffman),
        ];
        for (block, error) in cases {
            let mut decoder = Decoder::new(4096);
            assert_eq!(decode(&mut decoder, &hex(block)), Err(*error), "{block}");
        }
        let mut decoder = Decoder::new(4096);
        assert_eq!(
            decode(&mut decoder, &hex("00 01 61 81 1f")).unwrap(),
            fields(&[("a", "a")])
        );
    }

    #[test]
    fn huffman_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let mut out = Vec::new();
        huffman_decode(&huffman_encode(&all), &mut out).unwrap();
        assert_eq!(out, all);
        out.clear();
        huffman_decode(&[], &mut out).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn an_entry_larger_than_the_table_empties_it() {
        let mut decoder = Decoder::new(64);
        decode(&mut decoder, &hex("4001 6101 62")).unwrap();
        assert_eq!(decoder.size, 34);
        // 32 + 1 + 40 > 64.
        let mut block = hex("4001 63 28");
        block.extend([b'x'; 40]);
        decode(&mut decoder, &block).unwrap();
        assert!(table(&decoder).is_empty());
        assert_eq!(decoder.size, 0);
    }

    #[test]
    fn literals_are_encoded_without_indexing() {
        let mut block = Vec::new();
        encode_literal(&mut block, b":authority", b"127.0.0.1:2379");
        encode_literal(&mut block, b"x-long", &[b'v'; 300]);
        encode_literal(&mut block, b":path", b"");
        let mut decoder = Decoder::new(4096);
        let decoded = decode(&mut decoder, &block).unwrap();
        assert_eq!(
            decoded,
            fields(&[
                (":authority", "127.0.0.1:2379"),
                ("x-long", "v".repeat(300).as_str()),
                (":path", ""),
            ])
        );
        assert!(table(&decoder).is_empty(), "nothing was added to the table");
        assert_eq!(block[0], 0x01, "the name is the static table's :authority");
    }

    proptest::proptest! {
        /// Blocks from an independent encoder (loona-hpack's: literals with indexing and
        /// references into its dynamic table, with Huffman-coded values mixed in by hand)
        /// decode to what was encoded, block after block on one table.
        #[test]
        fn decodes_what_an_independent_encoder_wrote(
            blocks in proptest::collection::vec(
                proptest::collection::vec(
                    ("[a-e]{1,3}", "[ -~]{0,40}", proptest::bool::ANY),
                    1..8,
                ),
                1..12,
            )
        ) {
            let mut encoder = loona_hpack::Encoder::new();
            let mut decoder = Decoder::new(4096);
            for block in &blocks {
                let mut bytes = Vec::new();
                for (name, value, huffman) in block {
                    if *huffman {
                        // Without indexing, new name, Huffman-coded value.
                        bytes.push(0x00);
                        encode_integer(&mut bytes, 0x00, 7, name.len());
                        bytes.extend_from_slice(name.as_bytes());
                        let coded = huffman_encode(value.as_bytes());
                        encode_integer(&mut bytes, 0x80, 7, coded.len());
                        bytes.extend_from_slice(&coded);
                    } else {
                        encoder
                            .encode_header_into((name.as_bytes(), value.as_bytes()), &mut bytes)
                            .unwrap();
                    }
                }
                let decoded = decode(&mut decoder, &bytes).unwrap();
                let expected: Vec<(String, String)> =
                    block.iter().map(|(n, v, _)| (n.clone(), v.clone())).collect();
                proptest::prop_assert_eq!(decoded, expected);
            }
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn arbitrary_blocks_do_not_panic(
            blocks in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..64), 1..6)
        ) {
            let mut decoder = Decoder::new(4096);
            for block in &blocks {
                let _ = decoder.decode(block, |_, _| {});
            }
        }
    }
}
