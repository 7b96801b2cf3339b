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
                    out.diverted = true;
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
        // Until a block needs a change, only its pseudo-header fields are re-encoded as they
        // are decoded (they come first): a bad `:authority` after a regular field makes h2
        // refuse the request anyway (pseudo-header after a regular field), so such a block is
        // left as it is, and every other bad one has all its earlier fields re-encoded.
        let mut encoding = self.rewriting;
        let mut regular_seen = false;
        let decoded = decoder.decode(fragment, |name, value| {
            let pseudo = name.first() == Some(&b':');
            if name == b":authority" {
                if value != &last_authority[..] {
                    last_authority.clear();
                    last_authority.extend_from_slice(value);
                    *last_authority_ok = authority_accepted(value);
                }
                if !*last_authority_ok && (encoding || !regular_seen) {
                    rewrite = true;
                    encoding = true;
                    if let Some(replacement) = sanitized_authority(value) {
                        hpack::encode_literal(encoded, name, replacement);
                    }
                    return;
                }
            }
            regular_seen |= !pseudo;
            if encoding || !regular_seen {
                hpack::encode_literal(encoded, name, value);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One frame.
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_frame_head(&mut out, payload.len(), kind, flags, stream);
        out.extend_from_slice(payload);
        out
    }

    /// The preface and an empty SETTINGS frame.
    fn connection_start() -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        out.extend(frame(0x4, 0, 0, &[]));
        out
    }

    /// A gRPC-like request's header block from `encoder` (which indexes what it can), with
    /// `authority`, and `extra` fields after the usual ones.
    fn request_block(
        encoder: &mut loona_hpack::Encoder<'_>,
        authority: &[u8],
        extra: &[(&[u8], &[u8])],
    ) -> Vec<u8> {
        let mut fields: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/etcdserverpb.KV/Range"),
            (b":authority", authority),
            (b"content-type", b"application/grpc"),
            (b"te", b"trailers"),
        ];
        fields.extend_from_slice(extra);
        encoder.encode(fields)
    }

    /// Runs `input` through a new filter in reads of `chunk` bytes, returning what it passes
    /// on and the filter.
    fn run(input: &[u8], chunk: usize, max_frame_size: usize) -> (Vec<u8>, AuthorityFilter) {
        let mut filter = AuthorityFilter::new(max_frame_size);
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            let kept = filter.process(piece);
            out.extend_from_slice(&piece[..kept]);
            out.extend_from_slice(filter.pending());
            let n = filter.pending().len();
            filter.consume_pending(n);
        }
        (out, filter)
    }

    /// A frame as the server sees it.
    #[derive(Debug, PartialEq)]
    enum Seen {
        /// A header block: its stream, HEADERS flags (END_STREAM and PRIORITY), priority
        /// bytes, and fields.
        Block(u32, u8, Vec<u8>, Vec<(String, String)>),
        /// Any other frame: type, flags, stream, payload.
        Other(u8, u8, u32, Vec<u8>),
    }

    /// Reads `bytes` as the server would (after the preface), decoding blocks with an
    /// independent decoder; also checks that no frame exceeds `max_frame_size`.
    fn server_view(
        bytes: &[u8],
        max_frame_size: usize,
    ) -> (Vec<Seen>, loona_hpack::Decoder<'static>) {
        let mut bytes = bytes.strip_prefix(PREFACE).expect("preface");
        let mut decoder = loona_hpack::Decoder::new();
        let mut seen = Vec::new();
        let mut block: Option<(u32, u8, Vec<u8>, Vec<u8>)> = None;
        while !bytes.is_empty() {
            let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
            assert!(len <= max_frame_size, "frame of {len} bytes");
            let (kind, flags) = (bytes[3], bytes[4]);
            let stream = u32::from_be_bytes(bytes[5..9].try_into().unwrap());
            let payload = &bytes[9..9 + len];
            bytes = &bytes[9 + len..];
            let fragment = match kind {
                KIND_HEADERS => {
                    assert!(block.is_none());
                    let mut priority = [0; PRIORITY_BYTES];
                    let fragment = headers_fragment(payload, flags, &mut priority).unwrap();
                    let priority = if flags & FLAG_PRIORITY != 0 {
                        priority.to_vec()
                    } else {
                        Vec::new()
                    };
                    block = Some((
                        stream,
                        flags & (FLAG_END_STREAM | FLAG_PRIORITY),
                        priority,
                        Vec::new(),
                    ));
                    fragment
                }
                KIND_CONTINUATION => {
                    assert_eq!(block.as_ref().unwrap().0, stream);
                    payload
                }
                _ => {
                    assert!(block.is_none());
                    seen.push(Seen::Other(kind, flags, stream, payload.to_vec()));
                    continue;
                }
            };
            block.as_mut().unwrap().3.extend_from_slice(fragment);
            if flags & FLAG_END_HEADERS != 0 {
                let (stream, flags, priority, hpack) = block.take().unwrap();
                let fields = decoder
                    .decode(&hpack)
                    .unwrap()
                    .into_iter()
                    .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
                    .collect();
                seen.push(Seen::Block(stream, flags, priority, fields));
            }
        }
        assert!(block.is_none(), "a header block was left open");
        (seen, decoder)
    }

    /// The type of each frame in `bytes` (after the preface).
    fn frame_kinds(bytes: &[u8]) -> Vec<u8> {
        let mut bytes = &bytes[PREFACE.len()..];
        let mut kinds = Vec::new();
        while !bytes.is_empty() {
            let len = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
            kinds.push(bytes[3]);
            bytes = &bytes[9 + len..];
        }
        kinds
    }

    fn authority_of(seen: &Seen) -> Option<&str> {
        match seen {
            Seen::Block(_, _, _, fields) => fields
                .iter()
                .find(|(n, _)| n == ":authority")
                .map(|(_, v)| v.as_str()),
            Seen::Other(..) => None,
        }
    }

    #[test]
    fn http1_passes_untouched_in_place() {
        let request = b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\nPRI * HTTP/2.0\r\n".to_vec();
        for chunk in [1, 3, request.len()] {
            let mut filter = AuthorityFilter::with_default_frame_size();
            for piece in request.chunks(chunk) {
                assert_eq!(filter.process(piece), piece.len());
                assert!(filter.pending().is_empty());
            }
        }
    }

    #[test]
    fn good_authorities_pass_byte_for_byte() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut input = connection_start();
        for stream in [1, 3, 5] {
            let block = request_block(&mut encoder, b"127.0.0.1:2379", &[(b"x-n", b"1")]);
            input.extend(frame(KIND_HEADERS, FLAG_END_HEADERS, stream, &block));
            input.extend(frame(0x0, FLAG_END_STREAM, stream, b"\0\0\0\0\x02\x0a\x00"));
            input.extend(frame(0x8, 0, 0, &[0, 0, 0, 7]));
        }
        for chunk in [1, 2, 5, 9, 10, 64, input.len()] {
            let (out, filter) = run(&input, chunk, FRAME_SIZE_MIN);
            assert_eq!(out, input, "chunk {chunk}");
            assert!(!filter.rewrote());
        }
        // Frames other than header blocks stay in the caller's buffer.
        let mut filter = AuthorityFilter::with_default_frame_size();
        let settings = connection_start();
        assert_eq!(filter.process(&settings), settings.len());
    }

    /// A URL authority among good ones: the blocks from the first bad one on are re-encoded,
    /// later blocks that refer to the client's dynamic table (entries added before and after
    /// the rewrite began) still decode right, and the server's table stays as it was.
    #[test]
    fn url_authority_is_rewritten_and_later_blocks_stay_right() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut input = connection_start();
        let requests: [(&[u8], &[u8]); 5] = [
            (b"127.0.0.1:2379", b"a"),
            (b"http://127.0.0.1:2379", b"b"),
            (b"127.0.0.1:2379", b"a"),
            (b"http://127.0.0.1:2379", b"b"),
            (b"#initially=[https://h1:1;https://h2:2]", b"c"),
        ];
        for (i, (authority, marker)) in requests.iter().enumerate() {
            let block = request_block(&mut encoder, authority, &[(b"x-marker", marker)]);
            let stream = 2 * i as u32 + 1;
            input.extend(frame(KIND_HEADERS, FLAG_END_HEADERS, stream, &block));
            input.extend(frame(0x0, FLAG_END_STREAM, stream, b"\0\0\0\0\0"));
        }
        let expected = [
            "127.0.0.1:2379",
            "127.0.0.1:2379",
            "127.0.0.1:2379",
            "127.0.0.1:2379",
            "h1:1",
        ];
        let whole = run(&input, input.len(), FRAME_SIZE_MIN).0;
        for chunk in [1, 4, 9, 17, 100, input.len()] {
            let (out, filter) = run(&input, chunk, FRAME_SIZE_MIN);
            assert_eq!(out, whole, "reads of {chunk} bytes");
            assert!(filter.rewrote());
        }
        let (seen, _) = server_view(&whole, FRAME_SIZE_MIN);
        let blocks: Vec<&Seen> = seen
            .iter()
            .filter(|s| matches!(s, Seen::Block(..)))
            .collect();
        assert_eq!(blocks.len(), 5);
        for ((block, want), (_, marker)) in blocks.iter().zip(expected).zip(requests) {
            assert_eq!(authority_of(block), Some(want));
            let Seen::Block(_, flags, _, fields) = block else {
                unreachable!()
            };
            assert_eq!(*flags, 0);
            assert_eq!(fields[0], (":method".into(), "POST".into()));
            assert_eq!(fields[2], (":path".into(), "/etcdserverpb.KV/Range".into()));
            let marker = String::from_utf8(marker.to_vec()).unwrap();
            assert_eq!(fields.last().unwrap(), &("x-marker".into(), marker));
        }
        // The first block passed as received: its bytes are the client's.
        let first_block = request_block(
            &mut loona_hpack::Encoder::new(),
            b"127.0.0.1:2379",
            &[(b"x-marker", b"a")],
        );
        let mut start = connection_start();
        start.extend(frame(KIND_HEADERS, FLAG_END_HEADERS, 1, &first_block));
        assert!(whole.starts_with(&start));
        // Data frames are unchanged.
        let data = seen
            .iter()
            .filter(|s| matches!(s, Seen::Other(0x0, ..)))
            .count();
        assert_eq!(data, 5);
    }

    #[test]
    fn padding_is_dropped_and_priority_and_end_stream_kept() {
        let mut encoder = loona_hpack::Encoder::new();
        let block = request_block(&mut encoder, b"http://10.0.0.1:2379/path", &[]);
        let mut payload = vec![3];
        payload.extend([0x80, 0, 0, 1, 15]);
        payload.extend(&block);
        payload.extend([0; 3]);
        let flags = FLAG_END_HEADERS | FLAG_END_STREAM | FLAG_PADDED | FLAG_PRIORITY;
        let mut input = connection_start();
        input.extend(frame(KIND_HEADERS, flags, 1, &payload));
        let (out, _) = run(&input, 7, FRAME_SIZE_MIN);
        let (seen, _) = server_view(&out, FRAME_SIZE_MIN);
        let Seen::Block(stream, flags, priority, _) = &seen[1] else {
            panic!("{seen:?}")
        };
        assert_eq!((*stream, *flags), (1, FLAG_END_STREAM | FLAG_PRIORITY));
        assert_eq!(priority, &[0x80, 0, 0, 1, 15]);
        assert_eq!(authority_of(&seen[1]), Some("10.0.0.1:2379"));
        // The re-encoded frame itself carries no padding.
        let headers_at = connection_start().len();
        assert_eq!(out[headers_at + 4] & FLAG_PADDED, 0);
    }

    /// A block split over CONTINUATION frames comes back re-encoded and split at the maximum
    /// frame size, END_HEADERS on the last frame only.
    #[test]
    fn large_blocks_are_split_into_continuation_frames() {
        const MAX: usize = 64;
        let mut encoder = loona_hpack::Encoder::new();
        let mut input = connection_start();
        for (stream, fill) in [(1u32, b'v'), (3, b'w')] {
            let big = vec![fill; 300];
            let block = request_block(&mut encoder, b"http://h:1", &[(b"x-big", &big)]);
            let mut pieces = block.chunks(MAX);
            let first = pieces.next().unwrap();
            let rest: Vec<&[u8]> = pieces.collect();
            assert!(!rest.is_empty());
            input.extend(frame(KIND_HEADERS, 0, stream, first));
            for (i, piece) in rest.iter().enumerate() {
                let flags = if i + 1 == rest.len() {
                    FLAG_END_HEADERS
                } else {
                    0
                };
                input.extend(frame(KIND_CONTINUATION, flags, stream, piece));
            }
        }
        for chunk in [1, 13, input.len()] {
            let (out, _) = run(&input, chunk, MAX);
            let (seen, _) = server_view(&out, MAX);
            assert_eq!(seen.len(), 3, "{seen:?}");
            for block in &seen[1..] {
                assert_eq!(authority_of(block), Some("h:1"));
                let Seen::Block(_, _, _, fields) = block else {
                    unreachable!()
                };
                assert_eq!(fields.last().unwrap().1.len(), 300);
            }
            assert!(frame_kinds(&out).contains(&KIND_CONTINUATION));
        }
    }

    /// A bad `:authority` after a regular field: h2 refuses the request for the order alone,
    /// so the block is left as it is (and nothing after it is re-encoded).
    #[test]
    fn a_misplaced_authority_is_left_to_h2() {
        let mut encoder = loona_hpack::Encoder::new();
        let misplaced = encoder.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/p"),
            (b"content-type", b"application/grpc"),
            (b":authority", b"http://h:1"),
        ]);
        let mut input = connection_start();
        input.extend(frame(KIND_HEADERS, FLAG_END_HEADERS, 1, &misplaced));
        let good = request_block(&mut encoder, b"h:1", &[]);
        input.extend(frame(KIND_HEADERS, FLAG_END_HEADERS, 3, &good));
        let (out, filter) = run(&input, 3, FRAME_SIZE_MIN);
        assert_eq!(out, input);
        assert!(!filter.rewrote());
    }

    #[test]
    fn unusable_authorities_are_dropped() {
        for bad in [&b"http://"[..], b"#initially=[]", b"", b"a b", b"http:///x"] {
            let mut input = connection_start();
            let block = request_block(&mut loona_hpack::Encoder::new(), bad, &[]);
            input.extend(frame(KIND_HEADERS, FLAG_END_HEADERS, 1, &block));
            let (out, _) = run(&input, input.len(), FRAME_SIZE_MIN);
            let (seen, _) = server_view(&out, FRAME_SIZE_MIN);
            assert_eq!(
                authority_of(&seen[1]),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn sanitizing() {
        let cases: &[(&str, Option<&str>)] = &[
            ("http://127.0.0.1:2379", Some("127.0.0.1:2379")),
            ("https://[::1]:2379/", Some("[::1]:2379")),
            ("unix://localhost:2379", Some("localhost:2379")),
            ("#initially=[http://a:1;http://b:2]", Some("a:1")),
            ("#initially=[b:2]", Some("b:2")),
            ("http://x:1?q", Some("x:1")),
            ("http://a b:1", None),
            ("#initially=[", None),
        ];
        for (value, want) in cases {
            let got =
                sanitized_authority(value.as_bytes()).map(|v| std::str::from_utf8(v).unwrap());
            assert_eq!(got, *want, "{value}");
        }
        assert!(authority_accepted(b"127.0.0.1:2379"));
        assert!(!authority_accepted(b"http://127.0.0.1:2379"));
    }

    /// Sequences h2 refuses are left for h2 to refuse: as received while nothing was
    /// re-encoded; once something was, with a block h2 cannot decode.
    #[test]
    fn what_the_filter_does_not_follow_goes_to_h2() {
        let good = request_block(&mut loona_hpack::Encoder::new(), b"h:1", &[]);
        let bad = request_block(&mut loona_hpack::Encoder::new(), b"http://h:1", &[]);
        let broken: Vec<Vec<u8>> = vec![
            // A CONTINUATION with no block open.
            frame(KIND_CONTINUATION, FLAG_END_HEADERS, 1, &good),
            // A block interrupted by another frame.
            [
                frame(KIND_HEADERS, 0, 1, &good),
                frame(0x8, 0, 0, &[0, 0, 0, 1]),
            ]
            .concat(),
            // A HEADERS frame whose padding does not fit.
            frame(
                KIND_HEADERS,
                FLAG_END_HEADERS | FLAG_PADDED,
                1,
                &[200, 0x82],
            ),
            // An HPACK error.
            frame(KIND_HEADERS, FLAG_END_HEADERS, 1, &[0x80]),
            // A frame over the maximum size.
            frame(
                KIND_HEADERS,
                FLAG_END_HEADERS,
                1,
                &vec![0x82; FRAME_SIZE_MIN + 1],
            ),
            // A PUSH_PROMISE.
            frame(KIND_PUSH_PROMISE, FLAG_END_HEADERS, 1, &[0, 0, 0, 2, 0x82]),
        ];
        for tail in &broken {
            // Before any rewrite: everything passes as received, and filtering stops (a bad
            // authority after it is no longer rewritten).
            let mut input = connection_start();
            input.extend(tail);
            let later = frame(KIND_HEADERS, FLAG_END_HEADERS, 9, &bad);
            input.extend(&later);
            for chunk in [1, 5, input.len()] {
                let (out, filter) = run(&input, chunk, FRAME_SIZE_MIN);
                assert_eq!(out, input);
                assert!(!filter.rewrote());
            }
            // After a rewrite: a block with index 0 replaces what was held, on its stream.
            let mut input = connection_start();
            input.extend(frame(KIND_HEADERS, FLAG_END_HEADERS, 1, &bad));
            let rewritten_len = run(&input, input.len(), FRAME_SIZE_MIN).0.len();
            input.extend(tail);
            let (out, _) = run(&input, input.len(), FRAME_SIZE_MIN);
            let after = &out[rewritten_len..];
            let poison = [0, 0, 1, KIND_HEADERS, FLAG_END_HEADERS, 0, 0, 0, 1, 0x80];
            assert_eq!(&after[..10], &poison);
            assert!(!after[10..].windows(10).any(|w| w == poison));
        }
    }
}
