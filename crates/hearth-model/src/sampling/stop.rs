//! Stop strings matched on generated text, with the partial-match hold-back
//! streaming needs (text that may be the start of a stop string is not sent
//! until it is known not to be one).

/// The stop strings of one request.
#[derive(Clone, Debug, Default)]
pub struct StopStrings {
    stops: Vec<String>,
}

/// What the generated text says about stopping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopMatch {
    /// A stop string starts at this byte offset: the output ends there.
    Full(usize),
    /// The text from this byte offset could begin a stop string: hold it back.
    Partial(usize),
    /// Nothing to hold back.
    None,
}

impl StopStrings {
    /// Empty stop strings are ignored.
    pub fn new(stops: impl IntoIterator<Item = String>) -> Self {
        StopStrings {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    /// Checks `text` (all text generated so far). `Full` gives the earliest
    /// match; otherwise `Partial` gives the earliest offset whose suffix is a
    /// proper prefix of some stop string.
    pub fn check(&self, text: &str) -> StopMatch {
        if let Some(pos) = self
            .stops
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min()
        {
            return StopMatch::Full(pos);
        }
        let mut earliest: Option<usize> = None;
        for s in &self.stops {
            let max = (s.len() - 1).min(text.len());
            // Longest suffix of `text` that is a prefix of `s`.
            for len in (1..=max).rev() {
                let start = text.len() - len;
                if text.is_char_boundary(start) && s.starts_with(&text[start..]) {
                    earliest = Some(earliest.map_or(start, |e: usize| e.min(start)));
                    break;
                }
            }
        }
        earliest.map_or(StopMatch::None, StopMatch::Partial)
    }
}
