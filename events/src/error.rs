//! Printing an error with its causes, as zero2prod's `error_chain_fmt` does: what went wrong
//! at each level, outermost first, so a log line holds the whole story.

use std::error::Error;
use std::fmt;

/// Displays an error and every source under it, joined by `: ` (a source whose text the
/// level above already ends with is not repeated).
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            let text = s.to_string();
            if !last.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            source = s.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("opening the log")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("reading /x: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn the_chain_names_every_cause_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        assert_eq!(
            ErrorChain(&Outer(io())).to_string(),
            "opening the log: no such file"
        );
        assert_eq!(
            ErrorChain(&Repeats(io())).to_string(),
            "reading /x: no such file"
        );
    }
}
