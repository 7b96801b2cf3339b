//! What the `:authority` filter (src/net/authority.rs) costs per request: a criterion-free
//! micro benchmark over the bytes a gRPC client sends on one connection.
//!
//! The client stream is a preface, then per request a HEADERS frame (a gRPC unary call's
//! fields, HPACK-coded by an independent encoder that indexes everything, as grpc-go's does,
//! with a `grpc-timeout` that changes on every request so the dynamic table keeps churning)
//! and a DATA frame with a small Range request, plus a WINDOW_UPDATE now and then. It is cut
//! into reads of 16 KiB and each read is copied into a buffer, as the socket read into hyper's
//! buffer would; that loop alone is the baseline ("without the filter"). Two runs add the
//! filter: with a good `:authority` (every block passes as received) and with a URL
//! `:authority` (every block is re-encoded). Each figure is the median of 5 rounds of
//! 200 000 requests.
//!
//! Run: `cargo bench --profile ci -p keel --bench authority_filter` (the `ci` profile is
//! optimized, with debug assertions on).

use std::hint::black_box;
use std::time::Instant;

use keel::net::AuthorityFilter;

const REQUESTS: usize = 200_000;
const ROUNDS: usize = 5;
const READ_BYTES: usize = 16 * 1024;

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// `requests` unary calls with `authority` on one connection.
fn client_stream(authority: &str, requests: usize) -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, 0x4, 0, 0, &[]);
    let mut encoder = loona_hpack::Encoder::new();
    let message = b"\0\0\0\0\x07\x0a\x05key42";
    for i in 0..requests {
        let stream = 2 * i as u32 + 1;
        let timeout = format!("{}m", 4990 + i % 20);
        let fields: [(&[u8], &[u8]); 8] = [
            (b":method", b"POST"),
            (b":scheme", b"http"),
            (b":path", b"/etcdserverpb.KV/Range"),
            (b":authority", authority.as_bytes()),
            (b"content-type", b"application/grpc"),
            (b"user-agent", b"grpc-go/1.26.0"),
            (b"te", b"trailers"),
            (b"grpc-timeout", timeout.as_bytes()),
        ];
        let block = encoder.encode(fields);
        frame(&mut out, 0x1, 0x4, stream, &block);
        frame(&mut out, 0x0, 0x1, stream, message);
        if i % 16 == 0 {
            frame(&mut out, 0x8, 0, 0, &[0, 0, 0x40, 0]);
        }
    }
    out
}

/// Reads `stream` as hyper would get it, through `filter` if given; the nanoseconds taken.
fn round(stream: &[u8], filter: Option<AuthorityFilter>) -> u128 {
    let mut buffer = vec![0u8; READ_BYTES];
    let mut handed = 0usize;
    let mut filter = filter;
    let start = Instant::now();
    for read in stream.chunks(READ_BYTES) {
        buffer[..read.len()].copy_from_slice(read);
        let input = black_box(&buffer[..read.len()]);
        match &mut filter {
            None => handed += input.len(),
            Some(filter) => {
                handed += filter.process(input);
                let pending = filter.pending();
                // hyper's buffer gets the pending bytes by copy too.
                buffer[..pending.len().min(READ_BYTES)]
                    .copy_from_slice(&pending[..pending.len().min(READ_BYTES)]);
                handed += pending.len();
                let n = pending.len();
                filter.consume_pending(n);
            }
        }
    }
    let elapsed = start.elapsed().as_nanos();
    black_box(handed);
    elapsed
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let good = client_stream("127.0.0.1:2379", REQUESTS);
    let bad = client_stream("http://127.0.0.1:2379", REQUESTS);
    let cases: [(&str, &[u8], bool); 3] = [
        ("without the filter (read copy only)", &good, false),
        ("filter, good :authority (pass-through)", &good, true),
        ("filter, URL :authority (re-encoding)", &bad, true),
    ];
    println!("{REQUESTS} requests per round, median of {ROUNDS} rounds");
    for (name, stream, filtered) in cases {
        let per_request: Vec<f64> = (0..ROUNDS)
            .map(|_| {
                let filter = filtered.then(AuthorityFilter::with_default_frame_size);
                round(stream, filter) as f64 / REQUESTS as f64
            })
            .collect();
        let rounds: Vec<String> = per_request.iter().map(|ns| format!("{ns:.1}")).collect();
        println!(
            "{name}: {:.1} ns/request (rounds: {})",
            median(per_request.clone()),
            rounds.join(", ")
        );
    }
    let bytes = good.len() as f64 / REQUESTS as f64;
    println!("client bytes per request: {bytes:.1}");
}
