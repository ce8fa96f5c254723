//! `control_frame`: the control channel's [`FrameReader`] over an arbitrary byte stream,
//! delivered in arbitrary pieces with reads cancelled in between, and `frame::parse` of
//! every frame it yields (and of the whole input as one line).
//!
//! The input is the stream, byte for byte, except after an escape byte `0xFF`:
//! - `0xFF 0x00` ends the current read (the next bytes come in another `read`),
//! - `0xFF 0x01` makes the next read pending, so the reader's future is dropped the way
//!   `serve`'s `select!` drops it when a call comes first,
//! - `0xFF 0x02 n` inserts `limit - 3 + n % 6` bytes of `x` (just under to just over the
//!   limit) when a small limit is set (below); at the real limit a run would cost a
//!   megabyte per input, and the edges there are the unit tests of `FrameReader`,
//!   `new` being `with_limit(MAX_FRAME)`,
//! - `0xFF 0x03` fails the next read with an I/O error (the stream ends there),
//! - `0xFF 0x04 n` sets the frame limit for the whole stream to `n + 1` bytes instead of
//!   the control channel's `MAX_FRAME`, so the fuzzer meets every edge of the limit in a
//!   few bytes,
//! - `0xFF` followed by anything else is a literal `0xFF`, and the byte after it is read
//!   on its own.
//!
//! What must hold: the reader yields exactly the stream's `\n`-terminated lines, each one
//! no longer than the limit as a frame and each longer one as `TooLong`, then the end (or
//! the error), whatever the pieces and cancellations; and `parse` either refuses a line or
//! returns what the same JSON-RPC message, written afresh, parses to again.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker};

use corral::control::frame::{self, Incoming, MAX_FRAME};
use corral::control::reader::{FrameReader, ReadError};
use serde_json::json;
use tokio::io::{AsyncRead, ReadBuf};

/// Bytes of runs per input, so that an input of runs costs little more than another.
const MAX_RUN_BYTES: usize = 1 << 16;

pub fn check(data: &[u8]) {
    check_parse(data);
    let script = Script::decode(data);
    let expected = expected_frames(&script);
    let got = read_frames(script.pieces, script.limit);
    assert_eq!(got.len(), expected.len(), "frame count: got {got:?}");
    for (got, expected) in got.iter().zip(&expected) {
        assert_eq!(got, expected);
    }
    for frame in &got {
        if let Frame::Line(line) = frame {
            check_parse(line);
        }
    }
}

/// One step of the stream as the reader sees it.
#[derive(Debug)]
enum Piece {
    Bytes(Vec<u8>),
    Pending,
    Error,
}

struct Script {
    pieces: VecDeque<Piece>,
    /// Everything the reader is given before the end (or the error), concatenated.
    stream: Vec<u8>,
    failed: bool,
    /// The longest frame, newline included.
    limit: usize,
}

/// The input, its escapes read.
enum Op {
    Byte(u8),
    EndRead,
    Pending,
    Run(u8),
    Fail,
    Limit(u8),
}

fn ops(data: &[u8]) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut bytes = data.iter().copied();
    while let Some(byte) = bytes.next() {
        if byte != 0xFF {
            ops.push(Op::Byte(byte));
            continue;
        }
        let mut rest = bytes.clone();
        let op = match rest.next() {
            Some(0x00) => Op::EndRead,
            Some(0x01) => Op::Pending,
            Some(0x02) => Op::Run(rest.next().unwrap_or(0)),
            Some(0x03) => Op::Fail,
            Some(0x04) => Op::Limit(rest.next().unwrap_or(0)),
            // A literal 0xFF; the byte after it is read on its own.
            _ => {
                ops.push(Op::Byte(0xFF));
                continue;
            }
        };
        ops.push(op);
        bytes = rest;
    }
    ops
}

impl Script {
    fn decode(data: &[u8]) -> Script {
        let ops = ops(data);
        // The limit applies to the whole stream: the last one set wins.
        let limit = ops
            .iter()
            .rev()
            .find_map(|op| match op {
                Op::Limit(n) => Some(usize::from(*n) + 1),
                _ => None,
            })
            .unwrap_or(MAX_FRAME);
        let mut script = Script {
            pieces: VecDeque::new(),
            stream: Vec::new(),
            failed: false,
            limit,
        };
        let mut current = Vec::new();
        let mut run_bytes = 0;
        for op in ops {
            match op {
                Op::Byte(byte) => current.push(byte),
                Op::EndRead => script.push(Piece::Bytes(std::mem::take(&mut current))),
                Op::Pending => {
                    script.push(Piece::Bytes(std::mem::take(&mut current)));
                    script.push(Piece::Pending);
                }
                Op::Run(n) if limit < MAX_FRAME => {
                    let run = (limit + usize::from(n % 6)).saturating_sub(3);
                    if run_bytes + run <= MAX_RUN_BYTES {
                        run_bytes += run;
                        current.resize(current.len() + run, b'x');
                    }
                }
                Op::Fail => {
                    script.push(Piece::Bytes(std::mem::take(&mut current)));
                    script.push(Piece::Error);
                    script.failed = true;
                    return script;
                }
                Op::Run(_) | Op::Limit(_) => {}
            }
        }
        script.push(Piece::Bytes(current));
        script
    }

    fn push(&mut self, piece: Piece) {
        match piece {
            Piece::Bytes(bytes) if bytes.is_empty() => {}
            Piece::Bytes(bytes) => {
                self.stream.extend_from_slice(&bytes);
                self.pieces.push_back(Piece::Bytes(bytes));
            }
            other => self.pieces.push_back(other),
        }
    }
}

/// What the reader reports, in order.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    Line(Vec<u8>),
    TooLong,
    End,
    Failed,
}

/// The frames of `script` by definition: its complete lines, then the end or the error.
fn expected_frames(script: &Script) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut lines = script.stream.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        // The last piece has no newline after it: it is not a frame.
        if lines.peek().is_none() {
            break;
        }
        // A frame is at most `limit` bytes, its newline included.
        frames.push(match line.len() < script.limit {
            true => Frame::Line(line.to_vec()),
            false => Frame::TooLong,
        });
    }
    frames.push(if script.failed {
        Frame::Failed
    } else {
        Frame::End
    });
    frames
}

/// Runs a `FrameReader` over `pieces`, dropping its future at every pending read.
fn read_frames(pieces: VecDeque<Piece>, limit: usize) -> Vec<Frame> {
    let mut reader = match limit {
        MAX_FRAME => FrameReader::new(Pieces(pieces)),
        limit => FrameReader::with_limit(Pieces(pieces), limit),
    };
    let mut context = Context::from_waker(Waker::noop());
    let mut frames = Vec::new();
    loop {
        let frame = {
            let mut next = pin!(reader.next());
            match next.as_mut().poll(&mut context) {
                // Cancelled: the future is dropped here, and a new one made.
                Poll::Pending => continue,
                Poll::Ready(result) => result,
            }
        };
        let frame = match frame {
            Ok(true) => Frame::Line(reader.line().to_vec()),
            Ok(false) => Frame::End,
            Err(ReadError::TooLong) => Frame::TooLong,
            Err(ReadError::Io(_)) => Frame::Failed,
        };
        let last = matches!(frame, Frame::End | Frame::Failed);
        frames.push(frame);
        if last {
            return frames;
        }
    }
}

/// An `AsyncRead` that plays back the pieces of a script.
struct Pieces(VecDeque<Piece>);

impl AsyncRead for Pieces {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.0.pop_front() {
            None => Poll::Ready(Ok(())),
            Some(Piece::Pending) => {
                context.waker().wake_by_ref();
                Poll::Pending
            }
            Some(Piece::Error) => Poll::Ready(Err(io::Error::other("injected read error"))),
            Some(Piece::Bytes(mut bytes)) => {
                let taken = bytes.len().min(buf.remaining());
                buf.put_slice(&bytes[..taken]);
                if taken < bytes.len() {
                    self.0.push_front(Piece::Bytes(bytes.split_off(taken)));
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

/// `frame::parse` of one line: a refusal says why; a message, written afresh with the same
/// content, parses to the same message.
fn check_parse(line: &[u8]) {
    let incoming = match frame::parse(line) {
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return;
        }
        Ok(incoming) => incoming,
    };
    let rewritten = match &incoming {
        Incoming::Response {
            id,
            outcome: Ok(result),
        } => {
            let _ = frame::result_text(result);
            json!({"jsonrpc": "2.0", "id": id, "result": result})
        }
        Incoming::Response {
            id,
            outcome: Err(message),
        } => json!({"jsonrpc": "2.0", "id": id, "error": {"message": message}}),
        Incoming::Notification { method, params } => {
            json!({"jsonrpc": "2.0", "method": method, "params": params})
        }
    };
    let text = rewritten.to_string();
    assert_eq!(
        frame::parse(text.as_bytes()),
        Ok(incoming),
        "{text} does not parse back to what it was written from"
    );
    assert!(
        !text.contains('\n'),
        "a frame written as more than one line"
    );
}
