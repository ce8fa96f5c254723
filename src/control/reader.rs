//! Reading the control stream as `\n`-terminated frames of at most [`MAX_FRAME`] bytes,
//! cancel-safely (the connection polls it in a `select!`). Public, and generic over the
//! stream, for the `control_frame` fuzz target.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::frame::MAX_FRAME;

/// Why [`FrameReader::next`] returned no frame.
#[derive(Debug)]
pub enum ReadError {
    /// A frame longer than [`MAX_FRAME`] was skipped; the stream goes on after it.
    TooLong,
    /// Reading the stream failed.
    Io(std::io::Error),
}

/// Splits the control stream into `\n`-terminated frames. Its state lives here, not in a
/// future, so `next` is cancel-safe: `serve` polls it in a `select!` that drops it whenever
/// a call or a status change comes first, and a frame read half-way is kept, not lost.
pub struct FrameReader<R> {
    reader: BufReader<R>,
    /// The frame so far (without the newline).
    line: Vec<u8>,
    /// `line` holds a whole frame that was returned: start afresh on the next call.
    complete: bool,
    /// The frame being read passed `limit`: skip it up to its newline.
    too_long: bool,
    /// The longest frame, newline included: [`MAX_FRAME`] on a control channel.
    limit: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader of control-channel frames: at most [`MAX_FRAME`] bytes each.
    pub fn new(read: R) -> FrameReader<R> {
        FrameReader::with_limit(read, MAX_FRAME)
    }

    /// A reader of frames of at most `limit` bytes, newline included. (The fuzz target
    /// uses small limits, where every edge of the limit is a few bytes away.)
    pub fn with_limit(read: R, limit: usize) -> FrameReader<R> {
        FrameReader {
            reader: BufReader::new(read),
            line: Vec::new(),
            complete: false,
            too_long: false,
            limit,
        }
    }

    /// The next frame (in `self.line`): `Ok(false)` at end of stream. A frame longer than
    /// the limit is skipped up to its newline and reported, without ever holding more
    /// than the limit.
    pub async fn next(&mut self) -> Result<bool, ReadError> {
        if self.complete {
            self.line.clear();
            self.complete = false;
        }
        loop {
            // The only await; everything after it up to `consume` runs without yielding.
            let buffer = self.reader.fill_buf().await.map_err(ReadError::Io)?;
            if buffer.is_empty() {
                return Ok(false);
            }
            let (chunk, done) = match buffer.iter().position(|&b| b == b'\n') {
                Some(end) => (&buffer[..end], Some(end + 1)),
                None => (buffer, None),
            };
            if !self.too_long && self.line.len() + chunk.len() < self.limit {
                self.line.extend_from_slice(chunk);
            } else {
                self.too_long = true;
                self.line.clear();
            }
            let consumed = done.unwrap_or(chunk.len());
            self.reader.consume(consumed);
            if done.is_some() {
                self.complete = true;
                return if std::mem::take(&mut self.too_long) {
                    Err(ReadError::TooLong)
                } else {
                    Ok(true)
                };
            }
        }
    }

    /// The frame the last `Ok(true)` returned, without its newline.
    pub fn line(&self) -> &[u8] {
        &self.line
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::UnixStream;

    use super::{FrameReader, MAX_FRAME, ReadError};

    #[tokio::test]
    async fn a_frame_read_half_way_survives_a_cancelled_read() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let (read, _write) = ours.into_split();
        let mut frames = FrameReader::new(read);
        theirs.write_all(b"{\"jsonrpc\":\"2.0\",").await.unwrap();
        // serve()'s select! drops the read like this whenever a call comes first.
        let cancelled = tokio::time::timeout(Duration::from_millis(50), frames.next()).await;
        assert!(cancelled.is_err(), "no whole frame yet");
        theirs
            .write_all(b"\"method\":\"m\"}\nnext\n")
            .await
            .unwrap();
        assert!(matches!(frames.next().await, Ok(true)));
        assert_eq!(frames.line, b"{\"jsonrpc\":\"2.0\",\"method\":\"m\"}");
        assert!(matches!(frames.next().await, Ok(true)));
        assert_eq!(frames.line, b"next");
        drop(theirs);
        assert!(matches!(frames.next().await, Ok(false)));
    }

    #[tokio::test]
    async fn an_oversize_frame_is_skipped_and_the_next_one_read() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let (read, _write) = ours.into_split();
        let mut frames = FrameReader::new(read);
        let writer = tokio::spawn(async move {
            theirs.write_all(&vec![b'x'; MAX_FRAME + 10]).await.unwrap();
            theirs.write_all(b"\nok\n").await.unwrap();
            theirs
        });
        assert!(matches!(frames.next().await, Err(ReadError::TooLong)));
        assert!(matches!(frames.next().await, Ok(true)));
        assert_eq!(frames.line, b"ok");
        drop(writer.await.unwrap());
    }
}
