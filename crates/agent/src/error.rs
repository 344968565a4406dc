//! The one way the agent prints an error: the error and its sources,
//! `: `-separated, at the edge where it is handled and logged once.

use std::error::Error;
use std::fmt;

/// Displays an error followed by each of its sources.
///
/// Used as a log field (`error = %Chain(&e)`) or in text for a person.
/// Layers that pass an error up attach it as a `#[source]` and log nothing;
/// the layer that handles it logs it once, whole, through this.
pub struct Chain<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn every_source_follows_its_error() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(Chain(&e).to_string(), "outer: inner");
    }
}
