//! The `:authority` filter: a pass over the bytes an HTTP/2 client sends, before hyper (and
//! its HTTP/2 library, h2) reads them, that replaces an `:authority` h2 would refuse.
//!
//! etcd's Go clients send `:authority` values that are not a bare `host[:port]`: etcdctl 3.4
//! and 3.5 send the endpoint as written (`http://127.0.0.1:2379`) on per-endpoint commands, and
//! the Go client 3.5.0 to 3.5.9 sends `#initially=[https://a:2379;https://b:2379]` with several
//! endpoints (etcd issues 13192 and 16324). etcd's gRPC server ignores the value; h2 answers
//! such a request with `RST_STREAM(PROTOCOL_ERROR)` (its maintainers keep that strictness), so
//! Keel rewrites the value first: the `host:port` of the URL, or of the first `#initially`
//! entry, or no `:authority` at all when nothing usable is left.
//!
//! # How
//!
//! After the connection preface the filter follows the frames. Every frame but HEADERS and
//! CONTINUATION passes as it came, in place (only a frame header cut by a read is held back
//! until complete). A header block (a HEADERS frame and its CONTINUATION frames) is held until
//! END_HEADERS, then decoded with an HPACK decoder that mirrors the server's dynamic table
//! ([`hpack::Decoder`]). While no block ever needed a change, the held frames are passed on
//! unchanged, so the server's table stays the client's. From the first block that needs a
//! change on, every block is re-encoded with literals that neither use nor add to the
//! server's dynamic table (dropping the client's padding, keeping its priority and
//! END_STREAM), split into frames of the server's maximum frame size: the server's table
//! stays frozen as it was, and nothing refers to it again.
//!
//! Anything the filter cannot follow is left to h2 to refuse, unchanged: a connection that
//! does not start with the HTTP/2 preface (HTTP/1.1, for `/metrics` and friends) passes
//! untouched from its first byte, and a frame sequence h2 refuses (a CONTINUATION out of
//! place, a PUSH_PROMISE from a client, a frame over the maximum size, bad padding, a block
//! over [`HEADER_BLOCK_BYTES_MAX`], an HPACK error) ends the filtering of that connection:
//! what was held is passed as received and the rest passes through. Once blocks were
//! re-encoded, the server's table no longer matches the client's, so instead of the held block
//! the filter sends a block h2 cannot decode (index 0), which makes h2 close the connection
//! with a protocol error as it would have.

use super::hpack::{self, Decoder};

/// The bytes an HTTP/2 client sends first (RFC 9113, section 3.4).
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The length of a frame header (RFC 9113, section 4.1).
const FRAME_HEAD_BYTES: usize = 9;

/// Frame types (RFC 9113, section 6).
const KIND_HEADERS: u8 = 0x1;
const KIND_PUSH_PROMISE: u8 = 0x5;
const KIND_CONTINUATION: u8 = 0x9;

/// HEADERS and CONTINUATION flags (RFC 9113, sections 6.2 and 6.10).
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// The stream dependency and weight a HEADERS frame with the PRIORITY flag carries.
const PRIORITY_BYTES: usize = 5;

/// The smallest maximum frame size HTTP/2 allows (and its initial value).
const FRAME_SIZE_MIN: usize = 16 * 1024;

/// The largest header block (its HPACK bytes) the filter holds. The server decodes at most
/// 16 KiB of header list (hyper's default `max_header_list_size`, which Keel keeps) and
/// refuses a block that decodes to much more, so a block this large is never served anyway;
/// the filter passes it on as received (see the module docs).
pub const HEADER_BLOCK_BYTES_MAX: usize = 256 * 1024;

/// Where the filter is in the client's byte stream.
#[derive(Clone, Copy, Debug)]
enum Stage {
    /// Matching the connection preface; `matched` bytes so far.
    Preface { matched: usize },
    /// Reading a frame header; `filled` bytes of it are in `head`.
    FrameHead {
        head: [u8; FRAME_HEAD_BYTES],
        filled: usize,
    },
    /// Passing on the payload of a frame that is not part of a header block.
    Payload { remaining: usize },
    /// Holding the payload of a HEADERS or CONTINUATION frame.
    Block { remaining: usize },
    /// Passing everything on: not HTTP/2, or a sequence the filter does not follow.
    Off,
}

/// Where the output of one [`AuthorityFilter::process`] call goes: bytes left in place at the
/// front of the input while nothing was held back, then the filter's pending buffer.
struct Output {
    /// The input bytes `[0, direct)` are passed on in place.
    direct: usize,
    /// Whether an input byte was held back or replaced: every later output byte is then
    /// appended to the pending buffer, to keep the order.
    diverted: bool,
}

/// The `:authority` filter of one server connection: feed it every byte read from the client
/// ([`process`](Self::process)), and hand hyper what it passes on. See the module docs.
#[derive(Debug)]
pub struct AuthorityFilter {
    stage: Stage,
    /// The largest frame payload the server accepts: the size the re-encoded blocks are split
    /// at, and the largest frame of a header block the filter holds.
    max_frame_size: usize,
    /// Output not yet handed on, from `pending_start`.
    pending: Vec<u8>,
    pending_start: usize,
    /// The frames (headers included) of the header block being held, as received.
    block_frames: Vec<u8>,
    /// Where the frame being collected starts in `block_frames`.
    frame_start: usize,
    /// Whether a HEADERS frame came without END_HEADERS: CONTINUATION frames must follow.
    block_open: bool,
    /// The held block's stream and the flags of its HEADERS frame.
    block_stream: u32,
    block_flags: u8,
    /// The held HEADERS frame's priority fields, when its PRIORITY flag is set.
    block_priority: [u8; PRIORITY_BYTES],
    /// The held block's HPACK bytes, joined.
    fragment: Vec<u8>,
    /// The held block re-encoded (see [`hpack::encode_literal`]).
    encoded: Vec<u8>,
    /// A mirror of the server's HPACK decoder.
    decoder: Decoder,
    /// Whether a block was ever re-encoded: every later block is too.
    rewriting: bool,
    /// The last `:authority` value checked, and whether h2 accepts it: a client sends the same
    /// one on every request.
    last_authority: Vec<u8>,
    last_authority_ok: bool,
}

impl AuthorityFilter {
    /// A filter for a new connection to a server that accepts frames of up to
    /// `max_frame_size` bytes (at least 16 KiB in HTTP/2; smaller values are for tests).
    pub fn new(max_frame_size: usize) -> Self {
        debug_assert!(max_frame_size > PRIORITY_BYTES);
        Self {
            stage: Stage::Preface { matched: 0 },
            max_frame_size,
            pending: Vec::new(),
            pending_start: 0,
            block_frames: Vec::new(),
            frame_start: 0,
            block_open: false,
            block_stream: 0,
            block_flags: 0,
            block_priority: [0; PRIORITY_BYTES],
            fragment: Vec::new(),
            encoded: Vec::new(),
            decoder: Decoder::new(hpack::HEADER_TABLE_SIZE_DEFAULT),
            rewriting: false,
            last_authority: Vec::new(),
            last_authority_ok: false,
        }
    }

    /// A filter for a server that keeps HTTP/2's initial maximum frame size.
    pub fn with_default_frame_size() -> Self {
        Self::new(FRAME_SIZE_MIN)
    }

    /// Takes in `input`, bytes just read from the client, and returns how many of its first
    /// bytes go on as they are; whatever else goes on is then in [`pending`](Self::pending)
    /// (to be handed on after those first bytes), and the rest is held.
    pub fn process(&mut self, input: &[u8]) -> usize {
        let mut out = Output {
            direct: 0,
            diverted: false,
        };
        let mut i = 0;
        while i < input.len() {
            match &mut self.stage {
                Stage::Off => {
                    self.pass(&mut out, &input[i..], i);
                    i = input.len();
                }
                Stage::Preface { matched } => {
                    let expected = &PREFACE[*matched..];
                    let n = expected.len().min(input.len() - i);
                    if input[i..i + n] != expected[..n] {
                        // Not HTTP/2 (the bytes matched so far went on already).
                        self.stage = Stage::Off;
                        continue;
                    }
                    *matched += n;
                    if *matched == PREFACE.len() {
                        self.stage = frame_head_stage();
                    }
                    self.pass(&mut out, &input[i..i + n], i);
                    i += n;
                }
                Stage::Payload { remaining } => {
                    let n = (*remaining).min(input.len() - i);
                    *remaining -= n;
                    if *remaining == 0 {
                        self.stage = frame_head_stage();
                    }
                    self.pass(&mut out, &input[i..i + n], i);
                    i += n;
                }
                Stage::FrameHead { head, filled } => {
                    if *filled == 0 && input.len() - i >= FRAME_HEAD_BYTES {
                        let mut head = [0; FRAME_HEAD_BYTES];
                        head.copy_from_slice(&input[i..i + FRAME_HEAD_BYTES]);
                        self.frame_head(&mut out, &head, Some(i));
                        i += FRAME_HEAD_BYTES;
                    } else {
                        // A frame header cut by the read: held until complete.
                        out.diverted = true;
                        let n = (FRAME_HEAD_BYTES - *filled).min(input.len() - i);
                        head[*filled..*filled + n].copy_from_slice(&input[i..i + n]);
                        *filled += n;
                        i += n;
                        if *filled == FRAME_HEAD_BYTES {
                            let head = *head;
                            self.frame_head(&mut out, &head, None);
                        }
                    }
                }
                Stage::Block { remaining } => {
                    let n = (*remaining).min(input.len() - i);
                    *remaining -= n;
                    let done = *remaining == 0;
                    self.block_frames.extend_from_slice(&input[i..i + n]);
                    i += n;
                    if done {
                        self.frame_collected();
                    }
                }
            }
        }
        out.direct
    }

    /// The output waiting to be handed on, after what [`process`](Self::process) left in
    /// place.
    pub fn pending(&self) -> &[u8] {
        &self.pending[self.pending_start..]
    }

    /// Marks the first `n` bytes of [`pending`](Self::pending) as handed on.
    pub fn consume_pending(&mut self, n: usize) {
        self.pending_start += n;
        debug_assert!(self.pending_start <= self.pending.len());
        if self.pending_start >= self.pending.len() {
            self.pending.clear();
            self.pending_start = 0;
        }
    }

    /// Whether a header block was re-encoded on this connection.
    pub fn rewrote(&self) -> bool {
        self.rewriting
    }

    /// Passes on `bytes`, which start at `offset` in the input: in place while nothing was
    /// held back, else through the pending buffer.
    fn pass(&mut self, out: &mut Output, bytes: &[u8], offset: usize) {
        if out.diverted {
            self.pending.extend_from_slice(bytes);
        } else {
            debug_assert_eq!(offset, out.direct, "in-place output must be contiguous");
            out.direct = offset + bytes.len();
        }
    }

    /// Handles a complete frame header; `offset` is where it starts in the input, if it came
    /// whole in this read.
    fn frame_head(
        &mut self,
        out: &mut Output,
        head: &[u8; FRAME_HEAD_BYTES],
        offset: Option<usize>,
    ) {
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let kind = head[3];
        let flags = head[4];
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let holds = if self.block_open {
            kind == KIND_CONTINUATION && stream == self.block_stream
        } else {
            kind == KIND_HEADERS && stream != 0
        };
        if holds && len <= self.max_frame_size {
            if kind == KIND_HEADERS {
                self.block_frames.clear();
                self.fragment.clear();
                self.block_stream = stream;
                self.block_flags = flags;
            }
            out.diverted = true;
            self.frame_start = self.block_frames.len();
            self.block_frames.extend_from_slice(head);
            self.stage = Stage::Block { remaining: len };
            if len == 0 {
                self.frame_collected();
            }
            return;
        }
        if self.block_open || matches!(kind, KIND_HEADERS | KIND_CONTINUATION | KIND_PUSH_PROMISE) {
            // A sequence h2 refuses: leave it to h2.
            self.give_up(out);
            self.stage = Stage::Off;
        } else {
            self.stage = if len == 0 {
                frame_head_stage()
            } else {
                Stage::Payload { remaining: len }
            };
        }
        match offset {
            Some(offset) => self.pass(out, head, offset),
            None => self.pending.extend_from_slice(head),
        }
    }

    /// Handles a HEADERS or CONTINUATION frame now held whole at `frame_start`.
    fn frame_collected(&mut self) {
        let frame = &self.block_frames[self.frame_start..];
        let (head, payload) = frame.split_at(FRAME_HEAD_BYTES);
        let (kind, flags) = (head[3], head[4]);
        let fragment = if kind == KIND_HEADERS {
            headers_fragment(payload, flags, &mut self.block_priority)
        } else {
            Some(payload)
        };
        let Some(fragment) = fragment else {
            self.give_up_held();
            return;
        };
        self.fragment.extend_from_slice(fragment);
        // Empty CONTINUATION frames add only their headers: bounded too.
        if self.fragment.len() > HEADER_BLOCK_BYTES_MAX
            || self.block_frames.len() > 2 * HEADER_BLOCK_BYTES_MAX
        {
            self.give_up_held();
            return;
        }
        self.stage = frame_head_stage();
        if flags & FLAG_END_HEADERS == 0 {
            self.block_open = true;
            return;
        }
        self.block_open = false;
        self.block_complete();
    }

    /// Decodes the complete held block and passes it on, as received or re-encoded.
    fn block_complete(&mut self) {
        let Self {
            decoder,
            fragment,
            encoded,
            last_authority,
            last_authority_ok,
            ..
        } = self;
        encoded.clear();
        let mut rewrite = false;
        let decoded = decoder.decode(fragment, |name, value| {
            if name == b":authority" {
                if value != &last_authority[..] {
                    last_authority.clear();
                    last_authority.extend_from_slice(value);
                    *last_authority_ok = authority_accepted(value);
                }
                if !*last_authority_ok {
                    rewrite = true;
                    if let Some(replacement) = sanitized_authority(value) {
                        hpack::encode_literal(encoded, name, replacement);
                    }
                    return;
                }
            }
            hpack::encode_literal(encoded, name, value);
        });
        if let Err(error) = decoded {
            tracing::debug!(?error, "client header block failed HPACK decoding");
            self.give_up_held();
            return;
        }
        if !rewrite && !self.rewriting {
            self.pending.extend_from_slice(&self.block_frames);
        } else {
            if !self.rewriting {
                tracing::debug!(
                    "client sent an :authority h2 refuses; re-encoding its header blocks"
                );
                self.rewriting = true;
            }
            self.write_encoded();
        }
        self.block_frames.clear();
        self.fragment.clear();
    }

    /// Appends the re-encoded block as a HEADERS frame and as many CONTINUATION frames as the
    /// maximum frame size needs.
    fn write_encoded(&mut self) {
        let priority: &[u8] = if self.block_flags & FLAG_PRIORITY != 0 {
            &self.block_priority
        } else {
            &[]
        };
        let first_len = self.encoded.len().min(self.max_frame_size - priority.len());
        let (first, rest) = self.encoded.split_at(first_len);
        let mut flags = self.block_flags & (FLAG_END_STREAM | FLAG_PRIORITY);
        if rest.is_empty() {
            flags |= FLAG_END_HEADERS;
        }
        push_frame_head(
            &mut self.pending,
            priority.len() + first.len(),
            KIND_HEADERS,
            flags,
            self.block_stream,
        );
        self.pending.extend_from_slice(priority);
        self.pending.extend_from_slice(first);
        let mut chunks = rest.chunks(self.max_frame_size).peekable();
        while let Some(chunk) = chunks.next() {
            let flags = if chunks.peek().is_none() {
                FLAG_END_HEADERS
            } else {
                0
            };
            push_frame_head(
                &mut self.pending,
                chunk.len(),
                KIND_CONTINUATION,
                flags,
                self.block_stream,
            );
            self.pending.extend_from_slice(chunk);
        }
    }

    /// Stops filtering because of the held block (see the module docs): passes it on as
    /// received, or, once blocks were re-encoded, a block that makes h2 close the connection.
    fn give_up_held(&mut self) {
        let mut out = Output {
            direct: 0,
            diverted: true,
        };
        self.give_up(&mut out);
        self.stage = Stage::Off;
    }

    /// Passes on (or replaces, see [`give_up_held`](Self::give_up_held)) whatever is held, and
    /// stops filtering; the caller sets the stage.
    fn give_up(&mut self, out: &mut Output) {
        out.diverted = true;
        tracing::debug!(
            rewriting = self.rewriting,
            "client frames the :authority filter does not follow; passing them to h2"
        );
        if self.rewriting {
            // A HEADERS frame whose block is the indexed field 0, which HPACK forbids.
            let stream = self.block_stream.max(1);
            push_frame_head(&mut self.pending, 1, KIND_HEADERS, FLAG_END_HEADERS, stream);
            self.pending.push(0x80);
        } else {
            self.pending.extend_from_slice(&self.block_frames);
        }
        self.block_frames.clear();
        self.fragment.clear();
        self.block_open = false;
    }
}

/// The stage at the start of a frame.
fn frame_head_stage() -> Stage {
    Stage::FrameHead {
        head: [0; FRAME_HEAD_BYTES],
        filled: 0,
    }
}

/// The HPACK bytes of a HEADERS frame's `payload` (without padding and priority, which go to
/// `priority`); `None` when the padding or priority fields do not fit, as h2 refuses.
fn headers_fragment<'a>(
    payload: &'a [u8],
    flags: u8,
    priority: &mut [u8; PRIORITY_BYTES],
) -> Option<&'a [u8]> {
    let mut start = 0;
    let mut padding = 0;
    if flags & FLAG_PADDED != 0 {
        padding = *payload.first()? as usize;
        start = 1;
    }
    if flags & FLAG_PRIORITY != 0 {
        priority.copy_from_slice(payload.get(start..start + PRIORITY_BYTES)?);
        start += PRIORITY_BYTES;
    }
    let end = payload.len().checked_sub(padding)?;
    payload.get(start..end)
}

/// Appends a frame header.
fn push_frame_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(len < 1 << 24);
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// Whether h2 accepts `value` as a request's `:authority`: it parses it as an
/// [`http::uri::Authority`] and refuses the request when that fails.
fn authority_accepted(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// What an `:authority` h2 refuses becomes: the `host[:port]` of a URL, or of the first URL of
/// a Go client's `#initially=[url;url...]`, when h2 accepts that; `None` drops the field.
fn sanitized_authority(value: &[u8]) -> Option<&[u8]> {
    let mut rest = value;
    if let Some(list) = rest.strip_prefix(b"#initially=[") {
        let end = list
            .iter()
            .position(|&b| b == b';' || b == b']')
            .unwrap_or(list.len());
        rest = &list[..end];
    }
    if let Some(at) = rest.windows(3).position(|w| w == b"://") {
        rest = &rest[at + 3..];
    }
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let candidate = &rest[..end];
    (!candidate.is_empty() && authority_accepted(candidate)).then_some(candidate)
}
