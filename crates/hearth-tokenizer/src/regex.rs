//! A small backtracking matcher for the pre-tokenizer patterns that llama.cpp
//! runs through `std::regex` (ECMAScript grammar, leftmost-first alternation,
//! greedy quantifiers, atomic lookahead).
//!
//! llama.cpp matches patterns that use `\p{..}` categories against a
//! "collapsed" text in which every non-ASCII code point is replaced by one
//! byte standing for its category (and `\p{X}` by that byte plus the ASCII
//! members of X); other patterns run on the code points themselves, with
//! non-ASCII whitespace replaced by U+000B. [`Regex`] reproduces both: the
//! caller builds the text with [`collapse`] or [`widen`] as llama.cpp would,
//! and category classes match accordingly.
//!
//! Execution uses an explicit backtracking stack (no recursion, so long inputs
//! cannot overflow the call stack).

use crate::unicode::{flags, Flags};

/// Collapsed stand-in for a non-ASCII code point of each category.
fn collapsed_code(category: u16) -> Option<u32> {
    Some(match category {
        Flags::NUMBER => 0xD1,
        Flags::LETTER => 0xD2,
        Flags::PUNCTUATION => 0xD3,
        Flags::ACCENT_MARK => 0xD4,
        Flags::SYMBOL => 0xD5,
        _ => return None,
    })
}

/// ASCII members of a category, as llama.cpp spells them in `k_ucat_map`.
fn ascii_in_category(category: u16, c: u32) -> bool {
    let Ok(b) = u8::try_from(c) else { return false };
    match category {
        Flags::NUMBER => b.is_ascii_digit(),
        Flags::LETTER => b.is_ascii_alphabetic(),
        Flags::PUNCTUATION => matches!(
            b,
            0x21..=0x23 | 0x25..=0x2A | 0x2C..=0x2F | 0x3A..=0x3B | 0x3F..=0x40 | 0x5B..=0x5D
                | 0x5F | 0x7B | 0x7D
        ),
        Flags::SYMBOL => matches!(b, 0x24 | 0x2B | 0x3C..=0x3E | 0x5E | 0x60 | 0x7C | 0x7E),
        _ => false,
    }
}

/// llama.cpp's collapsed text: ASCII kept, whitespace -> U+000B, other code
/// points -> the byte of their category (0xD0 for categories without one).
pub(crate) fn collapse(cpts: &[u32], out: &mut Vec<u32>) {
    out.clear();
    out.extend(cpts.iter().map(|&c| {
        if c < 128 {
            return c;
        }
        let f = flags(c);
        if f.is_whitespace() {
            0x0B
        } else {
            collapsed_code(f.category()).unwrap_or(0xD0)
        }
    }));
}

/// llama.cpp's wide text: non-ASCII whitespace -> U+000B.
pub(crate) fn widen(cpts: &[u32], out: &mut Vec<u32>) {
    out.clear();
    out.extend(cpts.iter().map(|&c| {
        if c > 0x7F && flags(c).is_whitespace() {
            0x0B
        } else {
            c
        }
    }));
}

/// Whether a pattern names a `\p{..}` category and so runs on collapsed text.
pub(crate) fn uses_categories(pattern: &str) -> bool {
    [
        "\\p{N}", "\\p{L}", "\\p{P}", "\\p{M}", "\\p{S}", "\\p{Lu}", "\\p{Ll}", "\\p{Lt}",
        "\\p{Lm}", "\\p{Lo}",
    ]
    .iter()
    .any(|c| pattern.contains(c))
}

#[inline]
fn is_space(c: u32) -> bool {
    c == 0x20 || (0x09..=0x0D).contains(&c)
}

#[inline]
fn is_word(c: u32) -> bool {
    c < 128 && ((c as u8).is_ascii_alphanumeric() || c == u32::from(b'_'))
}

#[derive(Clone, Debug, PartialEq)]
enum Item {
    Range(u32, u32),
    Space(bool),
    Digit(bool),
    Word(bool),
    Category(u16),
}

impl Item {
    #[inline]
    fn matches(&self, c: u32) -> bool {
        match *self {
            Item::Range(a, b) => a <= c && c <= b,
            Item::Space(neg) => is_space(c) != neg,
            Item::Digit(neg) => (c < 128 && (c as u8).is_ascii_digit()) != neg,
            Item::Word(neg) => is_word(c) != neg,
            Item::Category(cat) => collapsed_code(cat) == Some(c) || ascii_in_category(cat, c),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
struct Class {
    negate: bool,
    items: Vec<Item>,
}

/// A class prepared for matching: a bitmap for ASCII, sorted ranges and the
/// remaining items for everything else.
#[derive(Clone, Debug)]
struct FastClass {
    negate: bool,
    ascii: [u64; 2],
    ranges: Vec<(u32, u32)>,
    others: Vec<Item>,
}

impl FastClass {
    fn new(c: &Class) -> FastClass {
        let mut ascii = [0u64; 2];
        for b in 0..128u32 {
            if c.items.iter().any(|i| i.matches(b)) {
                ascii[(b / 64) as usize] |= 1 << (b % 64);
            }
        }
        let mut ranges: Vec<(u32, u32)> = c
            .items
            .iter()
            .filter_map(|i| match *i {
                Item::Range(a, b) if b >= 128 => Some((a.max(128), b)),
                _ => None,
            })
            .collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (a, b) in ranges {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        let others = c
            .items
            .iter()
            .filter(|i| !matches!(i, Item::Range(..)))
            .cloned()
            .collect();
        FastClass {
            negate: c.negate,
            ascii,
            ranges: merged,
            others,
        }
    }

    #[inline]
    fn matches(&self, c: u32) -> bool {
        let hit = if c < 128 {
            self.ascii[(c / 64) as usize] & (1 << (c % 64)) != 0
        } else {
            let i = self.ranges.partition_point(|&(a, _)| a <= c);
            (i > 0 && c <= self.ranges[i - 1].1) || self.others.iter().any(|it| it.matches(c))
        };
        hit != self.negate
    }
}

#[derive(Clone, Debug)]
enum Node {
    Empty,
    Class(Class),
    Any,
    Concat(Vec<Node>),
    Alt(Vec<Node>),
    Repeat {
        node: Box<Node>,
        min: u32,
        max: Option<u32>,
        greedy: bool,
    },
    Look {
        node: Box<Node>,
        negate: bool,
    },
    Start,
    End,
    WordBoundary(bool),
}

impl Node {
    fn nullable(&self) -> bool {
        match self {
            Node::Empty | Node::Look { .. } | Node::Start | Node::End | Node::WordBoundary(_) => {
                true
            }
            Node::Class(_) | Node::Any => false,
            Node::Concat(v) => v.iter().all(Node::nullable),
            Node::Alt(v) => v.iter().any(Node::nullable),
            Node::Repeat { node, min, .. } => *min == 0 || node.nullable(),
        }
    }
}

/// Why a pattern could not be compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RegexError {
    pub(crate) pattern: String,
    pub(crate) message: String,
}

struct Parser<'a> {
    pattern: &'a str,
    chars: Vec<char>,
    pos: usize,
}

impl Parser<'_> {
    fn err<T>(&self, message: &str) -> Result<T, RegexError> {
        Err(RegexError {
            pattern: self.pattern.to_string(),
            message: format!("{message} at {}", self.pos),
        })
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn alternation(&mut self) -> Result<Node, RegexError> {
        let mut alts = vec![self.concat()?];
        while self.eat('|') {
            alts.push(self.concat()?);
        }
        Ok(if alts.len() == 1 {
            alts.pop().unwrap_or(Node::Empty)
        } else {
            Node::Alt(alts)
        })
    }

    fn concat(&mut self) -> Result<Node, RegexError> {
        let mut items = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            items.push(self.quantified(atom)?);
        }
        Ok(match items.len() {
            0 => Node::Empty,
            1 => items.pop().unwrap_or(Node::Empty),
            _ => Node::Concat(items),
        })
    }

    fn number(&mut self) -> Option<u32> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        if self.pos == start {
            return None;
        }
        self.chars[start..self.pos]
            .iter()
            .collect::<String>()
            .parse()
            .ok()
    }

    fn quantified(&mut self, atom: Node) -> Result<Node, RegexError> {
        let (min, max) = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{') => {
                let save = self.pos;
                self.pos += 1;
                let Some(min) = self.number() else {
                    self.pos = save;
                    return Ok(atom);
                };
                let max = if self.eat(',') {
                    self.number()
                } else {
                    Some(min)
                };
                if !self.eat('}') {
                    return self.err("bad {m,n} quantifier");
                }
                self.pos -= 1; // re-consumed below
                (min, max)
            }
            _ => return Ok(atom),
        };
        self.pos += 1;
        if max.is_some_and(|m| m < min) {
            return self.err("quantifier max below min");
        }
        let greedy = !self.eat('?');
        if matches!(atom, Node::Start | Node::End | Node::WordBoundary(_)) {
            return self.err("quantified assertion");
        }
        Ok(Node::Repeat {
            node: Box::new(atom),
            min,
            max,
            greedy,
        })
    }

    fn atom(&mut self) -> Result<Node, RegexError> {
        let Some(c) = self.peek() else {
            return self.err("unexpected end");
        };
        self.pos += 1;
        Ok(match c {
            '(' => {
                let look = if self.eat('?') {
                    if self.eat(':') {
                        None
                    } else if self.eat('=') {
                        Some(false)
                    } else if self.eat('!') {
                        Some(true)
                    } else {
                        return self.err("unsupported group");
                    }
                } else {
                    None
                };
                let inner = self.alternation()?;
                if !self.eat(')') {
                    return self.err("missing )");
                }
                match look {
                    Some(negate) => Node::Look {
                        node: Box::new(inner),
                        negate,
                    },
                    None => inner,
                }
            }
            '[' => Node::Class(self.class()?),
            '.' => Node::Any,
            '^' => Node::Start,
            '$' => Node::End,
            '\\' => match self.peek() {
                Some('b') => {
                    self.pos += 1;
                    Node::WordBoundary(false)
                }
                Some('B') => {
                    self.pos += 1;
                    Node::WordBoundary(true)
                }
                _ => Node::Class(Class {
                    negate: false,
                    items: vec![self.escape(false)?],
                }),
            },
            '*' | '+' | '?' | ')' => return self.err("misplaced metacharacter"),
            c => Node::Class(Class {
                negate: false,
                items: vec![Item::Range(c as u32, c as u32)],
            }),
        })
    }

    fn hex(&mut self, n: usize) -> Result<u32, RegexError> {
        let mut v = 0;
        for _ in 0..n {
            let Some(d) = self.peek().and_then(|c| c.to_digit(16)) else {
                return self.err("bad hex escape");
            };
            v = v * 16 + d;
            self.pos += 1;
        }
        Ok(v)
    }

    /// An escape after `\`, as a class item.
    fn escape(&mut self, in_class: bool) -> Result<Item, RegexError> {
        let Some(c) = self.peek() else {
            return self.err("trailing backslash");
        };
        self.pos += 1;
        let lit = |v: u32| Item::Range(v, v);
        Ok(match c {
            'd' => Item::Digit(false),
            'D' => Item::Digit(true),
            's' => Item::Space(false),
            'S' => Item::Space(true),
            'w' => Item::Word(false),
            'W' => Item::Word(true),
            't' => lit(0x09),
            'n' => lit(0x0A),
            'v' => lit(0x0B),
            'f' => lit(0x0C),
            'r' => lit(0x0D),
            '0' => lit(0),
            'b' if in_class => lit(0x08),
            'x' => lit(self.hex(2)?),
            'u' => lit(self.hex(4)?),
            'p' => {
                if !self.eat('{') {
                    return self.err("bad \\p");
                }
                let start = self.pos;
                while self.peek().is_some_and(|c| c != '}') {
                    self.pos += 1;
                }
                let name: String = self.chars[start..self.pos].iter().collect();
                if !self.eat('}') {
                    return self.err("unterminated \\p{");
                }
                let cat = match name.as_str() {
                    "N" => Flags::NUMBER,
                    "L" | "Lu" | "Ll" | "Lt" | "Lm" | "Lo" => Flags::LETTER,
                    "P" => Flags::PUNCTUATION,
                    "M" => Flags::ACCENT_MARK,
                    "S" => Flags::SYMBOL,
                    _ => return self.err("unknown category"),
                };
                Item::Category(cat)
            }
            c if c.is_ascii_alphanumeric() => return self.err("unknown escape"),
            c => lit(c as u32),
        })
    }

    fn class(&mut self) -> Result<Class, RegexError> {
        let negate = self.eat('^');
        let mut items = Vec::new();
        let mut first = true;
        loop {
            let Some(c) = self.peek() else {
                return self.err("unterminated class");
            };
            if c == ']' && !first {
                self.pos += 1;
                break;
            }
            first = false;
            self.pos += 1;
            let item = if c == '\\' {
                self.escape(true)?
            } else {
                Item::Range(c as u32, c as u32)
            };
            // A range `a-b` (a `-` before `]` is literal).
            if let Item::Range(lo, lo2) = item {
                if lo == lo2
                    && self.peek() == Some('-')
                    && self.chars.get(self.pos + 1) != Some(&']')
                {
                    if let Some(&next) = self.chars.get(self.pos + 1) {
                        self.pos += 2;
                        let hi = if next == '\\' {
                            match self.escape(true)? {
                                Item::Range(h, h2) if h == h2 => h,
                                _ => return self.err("class escape as range end"),
                            }
                        } else {
                            next as u32
                        };
                        if hi < lo {
                            return self.err("reversed range");
                        }
                        items.push(Item::Range(lo, hi));
                        continue;
                    }
                }
            }
            items.push(item);
        }
        Ok(Class { negate, items })
    }
}

#[derive(Clone, Copy, Debug)]
enum Inst {
    Class(u32),
    Any,
    Split(u32, u32),
    Jmp(u32),
    Look { prog: u32, negate: bool },
    Start,
    End,
    WordBoundary(bool),
    Match,
}

/// A compiled pattern.
#[derive(Clone, Debug)]
pub(crate) struct Regex {
    classes: Vec<Class>,
    fast: Vec<FastClass>,
    /// Program 0 is the pattern; the others are lookahead bodies.
    progs: Vec<Vec<Inst>>,
}

/// Where a match may look: the whole segment `lo..hi` of the text.
#[derive(Clone, Copy)]
struct Bounds {
    lo: usize,
    hi: usize,
}

impl Regex {
    pub(crate) fn new(pattern: &str) -> Result<Regex, RegexError> {
        let mut p = Parser {
            pattern,
            chars: pattern.chars().collect(),
            pos: 0,
        };
        let node = p.alternation()?;
        if p.pos != p.chars.len() {
            return p.err("unbalanced )");
        }
        let mut re = Regex {
            classes: Vec::new(),
            fast: Vec::new(),
            progs: vec![Vec::new()],
        };
        let mut main = Vec::new();
        re.compile(&node, &mut main);
        main.push(Inst::Match);
        re.progs[0] = main;
        re.fast = re.classes.iter().map(FastClass::new).collect();
        Ok(re)
    }

    fn compile(&mut self, node: &Node, out: &mut Vec<Inst>) {
        match node {
            Node::Empty => {}
            Node::Class(c) => {
                let idx = match self.classes.iter().position(|x| x == c) {
                    Some(i) => i,
                    None => {
                        self.classes.push(c.clone());
                        self.classes.len() - 1
                    }
                };
                out.push(Inst::Class(idx as u32));
            }
            Node::Any => out.push(Inst::Any),
            Node::Start => out.push(Inst::Start),
            Node::End => out.push(Inst::End),
            Node::WordBoundary(neg) => out.push(Inst::WordBoundary(*neg)),
            Node::Concat(v) => v.iter().for_each(|n| self.compile(n, out)),
            Node::Alt(v) => {
                // Split(a, next) a Jmp(end) Split(b, next) b Jmp(end) ... last
                let mut jumps = Vec::new();
                for (i, n) in v.iter().enumerate() {
                    if i + 1 < v.len() {
                        let split = out.len();
                        out.push(Inst::Split(0, 0));
                        self.compile(n, out);
                        jumps.push(out.len());
                        out.push(Inst::Jmp(0));
                        out[split] = Inst::Split(split as u32 + 1, out.len() as u32);
                    } else {
                        self.compile(n, out);
                    }
                }
                let end = out.len() as u32;
                for j in jumps {
                    out[j] = Inst::Jmp(end);
                }
            }
            Node::Repeat {
                node,
                min,
                max,
                greedy,
            } => {
                for _ in 0..*min {
                    self.compile(node, out);
                }
                let split = |greedy: bool, body: u32, exit: u32| {
                    if greedy {
                        Inst::Split(body, exit)
                    } else {
                        Inst::Split(exit, body)
                    }
                };
                match max {
                    // A loop whose body can match empty would spin: allow one pass.
                    None if !node.nullable() => {
                        let top = out.len();
                        out.push(Inst::Split(0, 0));
                        self.compile(node, out);
                        out.push(Inst::Jmp(top as u32));
                        out[top] = split(*greedy, top as u32 + 1, out.len() as u32);
                    }
                    _ => {
                        let extra = match max {
                            Some(m) => m - min,
                            None => 1,
                        };
                        let mut splits = Vec::new();
                        for _ in 0..extra {
                            splits.push(out.len());
                            out.push(Inst::Split(0, 0));
                            self.compile(node, out);
                        }
                        let exit = out.len() as u32;
                        for s in splits {
                            out[s] = split(*greedy, s as u32 + 1, exit);
                        }
                    }
                }
            }
            Node::Look { node, negate } => {
                let idx = self.progs.len();
                self.progs.push(Vec::new());
                let mut body = Vec::new();
                self.compile(node, &mut body);
                body.push(Inst::Match);
                self.progs[idx] = body;
                out.push(Inst::Look {
                    prog: idx as u32,
                    negate: *negate,
                });
            }
        }
    }

    /// Runs program `prog` anchored at `start`; returns the end of the first
    /// match in priority order (skipping empty ones if `not_null`).
    fn exec(
        &self,
        prog: usize,
        text: &[u32],
        b: Bounds,
        start: usize,
        not_null: bool,
        stack: &mut Vec<(u32, usize)>,
    ) -> Option<usize> {
        let insts = &self.progs[prog];
        stack.clear();
        stack.push((0, start));
        while let Some((mut pc, mut p)) = stack.pop() {
            loop {
                match insts[pc as usize] {
                    Inst::Class(i) => {
                        if p < b.hi && self.fast[i as usize].matches(text[p]) {
                            pc += 1;
                            p += 1;
                        } else {
                            break;
                        }
                    }
                    Inst::Any => {
                        if p < b.hi && !matches!(text[p], 0x0A | 0x0D | 0x2028 | 0x2029) {
                            pc += 1;
                            p += 1;
                        } else {
                            break;
                        }
                    }
                    Inst::Split(x, y) => {
                        stack.push((y, p));
                        pc = x;
                    }
                    Inst::Jmp(x) => pc = x,
                    Inst::Look { prog, negate } => {
                        let found = self
                            .exec(prog as usize, text, b, p, false, &mut Vec::new())
                            .is_some();
                        if found != negate {
                            pc += 1;
                        } else {
                            break;
                        }
                    }
                    Inst::Start => {
                        if p == b.lo {
                            pc += 1;
                        } else {
                            break;
                        }
                    }
                    Inst::End => {
                        if p == b.hi {
                            pc += 1;
                        } else {
                            break;
                        }
                    }
                    Inst::WordBoundary(neg) => {
                        let before = p > b.lo && is_word(text[p - 1]);
                        let after = p < b.hi && is_word(text[p]);
                        if (before != after) != neg {
                            pc += 1;
                        } else {
                            break;
                        }
                    }
                    Inst::Match => {
                        if not_null && p == start {
                            break;
                        }
                        return Some(p);
                    }
                }
            }
        }
        None
    }

    /// The leftmost match starting at or after `from`.
    fn search(
        &self,
        text: &[u32],
        b: Bounds,
        from: usize,
        stack: &mut Vec<(u32, usize)>,
    ) -> Option<(usize, usize)> {
        // Cheap first-instruction filter: most start positions fail at once.
        let first_class = match self.progs[0].first() {
            Some(Inst::Class(i)) => Some(&self.fast[*i as usize]),
            _ => None,
        };
        for s in from..=b.hi {
            if let Some(c) = first_class {
                if s >= b.hi || !c.matches(text[s]) {
                    continue;
                }
            }
            if let Some(e) = self.exec(0, text, b, s, false, stack) {
                return Some((s, e));
            }
        }
        None
    }

    /// Splits each segment of `text` (lengths in `offsets`, in code points)
    /// the way llama.cpp's `unicode_regex_split_stl` does: every match and
    /// every gap between matches becomes a segment (`std::regex_iterator`
    /// semantics for empty matches).
    pub(crate) fn split(&self, text: &[u32], offsets: &[usize], out: &mut Vec<usize>) {
        let mut seg_start = 0;
        let mut stack = Vec::new();
        for &len in offsets {
            let b = Bounds {
                lo: seg_start,
                hi: seg_start + len,
            };
            let mut last = b.lo;
            let mut cur = self.search(text, b, b.lo, &mut stack);
            while let Some((s, e)) = cur {
                if s > last {
                    out.push(s - last);
                }
                out.push(e - s);
                last = e;
                cur = if e == s {
                    if e == b.hi {
                        None
                    } else if let Some(e2) = self.exec(0, text, b, e, true, &mut stack) {
                        Some((e, e2))
                    } else {
                        self.search(text, b, e + 1, &mut stack)
                    }
                } else {
                    self.search(text, b, e, &mut stack)
                };
            }
            if last < b.hi {
                out.push(b.hi - last);
            }
            seg_start = b.hi;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpts(s: &str) -> Vec<u32> {
        s.chars().map(|c| c as u32).collect()
    }

    fn pieces(pattern: &str, s: &str) -> Vec<String> {
        let re = Regex::new(pattern).unwrap();
        let text = cpts(s);
        let mut out = Vec::new();
        re.split(&text, &[text.len()], &mut out);
        let mut res = Vec::new();
        let mut p = 0;
        for n in out {
            res.push(s.chars().skip(p).take(n).collect());
            p += n;
        }
        res
    }

    #[test]
    fn splits_matches_and_gaps() {
        assert_eq!(pieces("[0-9]+", "ab12cd345"), ["ab", "12", "cd", "345"]);
        assert_eq!(pieces("\\s?[a-z]+", "x yz  w"), ["x", " yz", " ", " w"]);
    }

    #[test]
    fn leftmost_first_alternation_and_lookahead() {
        assert_eq!(pieces("a|ab", "ab"), ["a", "b"]);
        assert_eq!(pieces("\\s+(?!\\S)|\\s+", "a   b"), ["a", "  ", " ", "b"]);
        assert_eq!(pieces("[0-9]{1,3}", "12345"), ["123", "45"]);
    }

    #[test]
    fn empty_matches_follow_regex_iterator() {
        // (?=(\d{3})+(?!\d)) matches empty before each group of three digits.
        assert_eq!(
            pieces("(?=(\\d{3})+(?!\\d))", "1234567"),
            ["1", "", "234", "", "567"]
        );
    }

    #[test]
    fn collapsed_categories() {
        let text = cpts("ab é1٣");
        let mut c = Vec::new();
        collapse(&text, &mut c);
        assert_eq!(c, vec![0x61, 0x62, 0x20, 0xD2, 0x31, 0xD1]);
        let re = Regex::new("\\p{N}").unwrap();
        let mut out = Vec::new();
        re.split(&c, &[c.len()], &mut out);
        assert_eq!(out, vec![4, 1, 1]);
    }

    #[test]
    fn rejects_garbage() {
        assert!(Regex::new("(").is_err());
        assert!(Regex::new("[a-").is_err());
        assert!(Regex::new("\\p{Xyz}").is_err());
    }
}
