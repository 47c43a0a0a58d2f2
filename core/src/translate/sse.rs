//! Lines out of a body that arrives in pieces cut anywhere: what a stream translator reads.

/// The part of a line that has not ended yet, kept between pieces.
#[derive(Debug, Default)]
pub struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    /// Calls `line` with each line `piece` completes (without its `\n` or `\r\n`).
    pub fn feed(&mut self, mut piece: &[u8], mut line: impl FnMut(&[u8])) {
        while let Some(end) = memchr::memchr(b'\n', piece) {
            if self.pending.is_empty() {
                line(trim_cr(&piece[..end]));
            } else {
                self.pending.extend_from_slice(&piece[..end]);
                line(trim_cr(&self.pending));
                self.pending.clear();
            }
            piece = &piece[end + 1..];
        }
        self.pending.extend_from_slice(piece);
    }

    /// The last line, if the body ended without a line break after it.
    pub fn finish(&mut self, line: impl FnOnce(&[u8])) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            line(trim_cr(&rest));
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The data of a server-sent event's `data:` line (one space after the colon is not part of it).
pub fn event_data(line: &[u8]) -> Option<&[u8]> {
    let data = line.strip_prefix(b"data:")?;
    Some(data.strip_prefix(b" ").unwrap_or(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_the_same_however_the_body_is_cut() {
        let body = b"data: a\r\n\ndata: bc\nlast";
        for cut in 0..body.len() {
            let mut lines = Lines::default();
            let mut seen = Vec::new();
            lines.feed(&body[..cut], |l| seen.push(l.to_vec()));
            lines.feed(&body[cut..], |l| seen.push(l.to_vec()));
            lines.finish(|l| seen.push(l.to_vec()));
            let expected: Vec<&[u8]> = vec![b"data: a", b"", b"data: bc", b"last"];
            assert_eq!(seen, expected, "cut at {cut}");
        }
        assert_eq!(event_data(b"data: [DONE]"), Some(&b"[DONE]"[..]));
        assert_eq!(event_data(b"data:{}"), Some(&b"{}"[..]));
        assert_eq!(event_data(b": comment"), None);
    }
}
