//! A manifest document's YAML, read into a JSON value.
//!
//! Manifests are written in a small part of YAML: block mappings and
//! sequences, one-line scalars and flow collections, literal blocks
//! (kubectl's last-applied annotation), quoted strings folded over lines
//! (PyYAML's long strings), comments. That part is read here by
//! [`block_subset`], line by line and without a general parser's token and
//! event queues; on the directory source's cold sync the general parser
//! was where most of the agent's CPU went (reading the files cost three
//! times the kernel's work of programming them). Whatever falls outside the
//! part (anchors, tags, folded `>` blocks, indentation indicators, escaped
//! line breaks, duplicate keys, plain scalars whose type a YAML schema
//! could read otherwise, tabs, deep nesting) makes it give up, and the
//! document is read by the general parser ([`general`]) instead:
//! [`document`] is always what [`general`] would say. The fuzz target
//! `yaml_subset` and the tests below hold the two readers to the same value
//! wherever the subset reader answers.

use std::borrow::Cow;
use std::cell::RefCell;

use bumpalo::collections::Vec as ArenaVec;
use bumpalo::Bump;
use serde_json::Value;

mod node;

pub use node::Node;

/// One document's value: read by [`block_subset`] when it can, else by
/// [`general`].
pub fn document(text: &str) -> Result<Value, String> {
    match block_subset(text) {
        Some(value) => Ok(value),
        None => general(text),
    }
}

/// One document read by the general YAML parser.
pub fn general(text: &str) -> Result<Value, String> {
    // The files are the operator's own, and may be large: no budget.
    let mut options = serde_saphyr::Options::default();
    options.budget = None;
    // Comments are not read; kept, more than 96 of them in a row made the
    // parser give up while looking ahead.
    options.emit_comments = false;
    serde_saphyr::from_str_with_options(text, options).map_err(|e| e.to_string())
}

/// A document whose top level is a block mapping, read when everything in
/// it is in the subset described above; `None` when anything is not (the
/// document may still be valid YAML).
pub fn block_subset(text: &str) -> Option<Value> {
    with_block_subset_node(text, |node| node.map(Node::into_value))
}

/// How much of its arena a thread keeps for the next document: the arena
/// of a larger one (a long list) is freed with its tree.
const ARENA_KEPT: usize = 1 << 20;

/// `read` of [`block_subset_node`] of `text`, in an arena the thread keeps
/// from one document to the next (reset, so its memory is reused, and
/// allocated once while documents stay under [`ARENA_KEPT`]).
pub fn with_block_subset_node<R>(text: &str, read: impl FnOnce(Option<Node<'_>>) -> R) -> R {
    thread_local! {
        static ARENA: RefCell<Bump> = RefCell::new(Bump::new());
    }
    ARENA.with(|arena| match arena.try_borrow_mut() {
        Ok(mut bump) => {
            let out = read(block_subset_node(text, &bump));
            if bump.allocated_bytes() > ARENA_KEPT {
                *bump = Bump::new();
            } else {
                bump.reset();
            }
            out
        }
        // Called again from within `read`: an arena of its own.
        Err(_) => read(block_subset_node(text, &Bump::new())),
    })
}

/// [`block_subset`], as a [`Node`] that borrows from `text` and lives in
/// `arena`.
pub fn block_subset_node<'a>(text: &'a str, arena: &'a Bump) -> Option<Node<'a>> {
    // Tabs, other line breaks and characters YAML does not allow.
    let odd = |c: char| {
        (c.is_control() && c != '\n')
            || matches!(
                c,
                '\u{feff}' | '\u{fffe}' | '\u{ffff}' | '\u{2028}' | '\u{2029}'
            )
    };
    // Printable ASCII and line feeds, nearly always: checked before the
    // characters are decoded, in blocks of bytes the compiler checks
    // several at a time (a byte at a time, this was a tenth of the
    // reader's work), the lines counted in the same pass.
    let (mut plain_ascii, mut breaks) = (true, 0);
    for block in text.as_bytes().chunks(32) {
        plain_ascii &= block.iter().fold(true, |ok, &b| {
            ok & (matches!(b, b' '..=b'~') | (b == b'\n'))
        });
        breaks += block.iter().filter(|&&b| b == b'\n').count();
    }
    // Past this check no scalar has a control character: [`plain`] relies
    // on it.
    if !plain_ascii && text.contains(odd) {
        return None;
    }
    // Sized once: grown line by line, the two vectors were reallocated
    // about eight times each per document.
    let rows = breaks + 1;
    let mut lines = ArenaVec::with_capacity_in(rows, arena);
    // One `---` marker may start the document, before any content.
    let mut marker_allowed = true;
    let mut raw: ArenaVec<&str> = ArenaVec::with_capacity_in(rows, arena);
    // Split as `str::lines` splits (no carriage returns get this far),
    // with the line breaks found by one scan of the text, not one search
    // a line.
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', text.as_bytes()) {
        raw.push(&text[start..end]);
        start = end + 1;
    }
    if start < text.len() {
        raw.push(&text[start..]);
    }
    for (row, &line) in raw.iter().enumerate() {
        let content = line.trim_start_matches(' ');
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("---") {
            if rest.is_empty() || rest.starts_with(' ') {
                if !std::mem::take(&mut marker_allowed) {
                    return None;
                }
                // The marker, alone or with a comment.
                match rest.trim_start_matches(' ') {
                    r if r.is_empty() || r.starts_with('#') => continue,
                    _ => return None,
                }
            }
        }
        marker_allowed = false;
        lines.push(Line {
            indent: line.len() - content.len(),
            content,
            row,
        });
    }
    let first = lines.first()?;
    if is_item(first.content) {
        return None;
    }
    let mut reader = Reader {
        raw,
        final_break: text.ends_with('\n'),
        lines,
        at: 0,
        depth: 0,
        // A mapping's entries, a sequence's items: no more than the lines
        // open at once, in block collections.
        tree: Tree {
            arena,
            entries: ArenaVec::with_capacity_in(rows, arena),
            items: ArenaVec::with_capacity_in(rows, arena),
        },
    };
    let indent = reader.lines[0].indent;
    let value = reader.mapping(indent)?;
    (reader.at == reader.lines.len()).then_some(value)
}

/// A line with content: its indentation, the rest, and its number.
struct Line<'a> {
    indent: usize,
    content: &'a str,
    row: usize,
}

struct Reader<'a> {
    /// Every line of the text, for scalars that run over several.
    raw: ArenaVec<'a, &'a str>,
    /// Whether the text's last line ends with a line break.
    final_break: bool,
    lines: ArenaVec<'a, Line<'a>>,
    /// The next line to read.
    at: usize,
    /// The collections open around the next line.
    depth: usize,
    tree: Tree<'a>,
}

/// Where the tree is built: the arena its nodes go to, and the entries and
/// items of the collections still open, on two stacks (a collection's are
/// moved into the arena in one slice when it closes).
struct Tree<'a> {
    arena: &'a Bump,
    entries: ArenaVec<'a, (&'a str, Node<'a>)>,
    items: ArenaVec<'a, Node<'a>>,
}

impl<'a> Tree<'a> {
    /// A string of the text, or one made from it, kept as long as the tree.
    fn keep(&self, s: Cow<'a, str>) -> &'a str {
        match s {
            Cow::Borrowed(s) => s,
            Cow::Owned(s) => self.arena.alloc_str(&s),
        }
    }

    /// Adds an entry to the mapping whose entries start at `start`; `false`
    /// when its key is there already.
    fn insert_new(&mut self, start: usize, key: &'a str, value: Node<'a>) -> bool {
        if self.entries[start..].iter().any(|(k, _)| *k == key) {
            return false;
        }
        self.entries.push((key, value));
        true
    }

    /// The mapping of the entries from `start` on.
    fn map(&mut self, start: usize) -> Node<'a> {
        Node::Map(
            self.arena
                .alloc_slice_fill_iter(self.entries.drain(start..)),
        )
    }

    /// The sequence of the items from `start` on.
    fn seq(&mut self, start: usize) -> Node<'a> {
        Node::Seq(self.arena.alloc_slice_fill_iter(self.items.drain(start..)))
    }
}

/// How deeply collections may nest here (Kubernetes objects go about ten
/// deep); deeper documents are left to the general parser, which has its
/// own limit. The reader recurses, so this also bounds its stack.
const MAX_DEPTH: usize = 32;

/// Whether a line's content is a block sequence's item.
fn is_item(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

/// Whether what is left of a line says nothing: empty, or a comment.
fn is_blank(rest: &str) -> bool {
    let rest = rest.trim_start_matches(' ');
    rest.is_empty() || rest.starts_with('#')
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<&Line<'a>> {
        self.lines.get(self.at)
    }

    /// The block node whose first line is the next, at `indent`.
    fn node(&mut self, indent: usize) -> Option<Node<'a>> {
        if is_item(self.peek()?.content) {
            self.sequence(indent)
        } else {
            self.mapping(indent)
        }
    }

    /// The value of a key or item whose line ended after its indicator: a
    /// block node on the next lines, indented deeper than `indent` (or a
    /// sequence at `indent` itself, when `same_indent_sequence`), else null.
    fn nested(&mut self, indent: usize, same_indent_sequence: bool) -> Option<Node<'a>> {
        match self.peek() {
            Some(next) if next.indent > indent => {
                let indent = next.indent;
                self.node(indent)
            }
            Some(next)
                if same_indent_sequence && next.indent == indent && is_item(next.content) =>
            {
                self.sequence(indent)
            }
            _ => Some(Node::Null),
        }
    }

    /// `read` one level deeper, when the depth allows it.
    fn deeper(&mut self, read: impl FnOnce(&mut Self) -> Option<Node<'a>>) -> Option<Node<'a>> {
        self.depth += 1;
        let value = if self.depth > MAX_DEPTH {
            None
        } else {
            read(self)
        };
        self.depth -= 1;
        value
    }

    fn mapping(&mut self, indent: usize) -> Option<Node<'a>> {
        self.deeper(|reader| reader.entries(indent))
    }

    fn entries(&mut self, indent: usize) -> Option<Node<'a>> {
        let start = self.tree.entries.len();
        while let Some(line) = self.peek() {
            if line.indent < indent {
                break;
            }
            if line.indent > indent || is_item(line.content) {
                return None;
            }
            let (content, row) = (line.content, line.row);
            let (key, rest) = split_key(content)?;
            let key = self.tree.keep(key);
            self.at += 1;
            let value = if is_blank(rest) {
                self.nested(indent, true)?
            } else {
                let value = self.value(rest, row, indent)?;
                // A deeper line after a scalar would continue it.
                if self.peek().is_some_and(|next| next.indent > indent) {
                    return None;
                }
                value
            };
            if !self.tree.insert_new(start, key, value) {
                return None;
            }
        }
        Some(self.tree.map(start))
    }

    fn sequence(&mut self, indent: usize) -> Option<Node<'a>> {
        self.deeper(|reader| reader.items(indent))
    }

    fn items(&mut self, indent: usize) -> Option<Node<'a>> {
        let start = self.tree.items.len();
        while let Some(line) = self.peek() {
            if line.indent < indent || (line.indent == indent && !is_item(line.content)) {
                break;
            }
            if line.indent > indent {
                return None;
            }
            let (rest, row) = (&line.content[1..], line.row);
            if is_blank(rest) {
                self.at += 1;
                let item = self.nested(indent, false)?;
                self.tree.items.push(item);
                continue;
            }
            let inner = rest.trim_start_matches(' ');
            let column = indent + 1 + (rest.len() - inner.len());
            if is_item(inner) || split_key(inner).is_some() {
                // A compact nested node: read it as if it began on a line
                // of its own at its column.
                self.lines[self.at] = Line {
                    indent: column,
                    content: inner,
                    row: self.lines[self.at].row,
                };
                let item = self.node(column)?;
                self.tree.items.push(item);
            } else {
                self.at += 1;
                let item = self.value(inner, row, indent)?;
                self.tree.items.push(item);
                if self.peek().is_some_and(|next| next.indent > indent) {
                    return None;
                }
            }
        }
        Some(self.tree.seq(start))
    }

    /// The value after `key: ` or `- ` on line `row`, in a block at
    /// `indent`: one line, or a quoted or literal scalar that runs on; the
    /// lines it takes are passed over.
    fn value(&mut self, text: &'a str, row: usize, indent: usize) -> Option<Node<'a>> {
        let text = text.trim_start_matches(' ');
        let (value, last) = match text.as_bytes().first()? {
            b'|' => self.literal(&text[1..], row, indent)?,
            &q @ (b'"' | b'\'') if quoted(text).is_none() => {
                self.quoted_lines(&text[1..], char::from(q), row, indent)?
            }
            _ => return inline(&mut self.tree, text, self.depth),
        };
        while self.lines.get(self.at).is_some_and(|l| l.row <= last) {
            self.at += 1;
        }
        Some(value)
    }

    /// A quoted scalar that does not close on its first line (`first`, after
    /// the quote): its lines folded as YAML folds them (a line break is a
    /// space, each empty line a line break, the spaces around breaks go),
    /// and the last line it takes.
    fn quoted_lines(
        &self,
        first: &str,
        quote: char,
        row: usize,
        indent: usize,
    ) -> Option<(Node<'a>, usize)> {
        let mut out = String::new();
        let (mut piece, mut row, mut breaks) = (first, row, None::<usize>);
        loop {
            let (text, rest) = scan_quoted(piece, quote)?;
            match breaks {
                None => {}
                Some(0) => out.push(' '),
                Some(n) => out.extend(std::iter::repeat_n('\n', n)),
            }
            if let Some(rest) = rest {
                out.push_str(&text);
                let done = rest.is_empty() || (rest.starts_with(' ') && is_blank(rest));
                return done.then_some((Node::Str(self.tree.arena.alloc_str(&out)), row));
            }
            if quote == '"' && text.ends_with('\\') {
                return None;
            }
            out.push_str(text.trim_end_matches(' '));
            breaks = Some(0);
            loop {
                row += 1;
                let line = self.raw.get(row)?;
                let content = line.trim_start_matches(' ');
                if content.is_empty() {
                    breaks = breaks.map(|n| n + 1);
                    continue;
                }
                // Continuation lines are indented deeper than the block.
                if line.len() - content.len() <= indent {
                    return None;
                }
                piece = content;
                break;
            }
        }
    }

    /// A literal block scalar (`|`, `|-`, `|+`; `header` is what follows
    /// the `|`): its lines as they are, less their common indentation, and
    /// the last line it takes.
    fn literal(&self, header: &str, row: usize, indent: usize) -> Option<(Node<'a>, usize)> {
        let (keep, strip, rest) = match header.as_bytes().first() {
            Some(b'+') => (true, false, &header[1..]),
            Some(b'-') => (false, true, &header[1..]),
            _ => (false, false, header),
        };
        // Indentation indicators and folded scalars are left to the
        // general parser.
        if !(rest.is_empty() || (rest.starts_with(' ') && is_blank(rest))) {
            return None;
        }
        let mut body: Vec<&str> = Vec::new();
        let (mut column, mut leading) = (None, 0);
        let mut last = row;
        while let Some(line) = self.raw.get(last + 1) {
            let content = line.trim_start_matches(' ');
            let spaces = line.len() - content.len();
            if content.is_empty() {
                match column {
                    // Spaces past the text's indentation would be text.
                    Some(column) if spaces > column => return None,
                    Some(_) => {}
                    None => leading = leading.max(spaces),
                }
                body.push("");
                last += 1;
                continue;
            }
            let column = match column {
                Some(column) if spaces < column => break,
                Some(column) => column,
                None if spaces <= indent => break,
                None => *column.insert(spaces),
            };
            body.push(&line[column..]);
            last += 1;
        }
        // An empty scalar, leading blank lines longer than the text's
        // indentation, or a scalar that ends the text without a line break.
        let column = column?;
        if leading > column || (last + 1 == self.raw.len() && !self.final_break) {
            return None;
        }
        let text_lines = body.iter().rposition(|l| !l.is_empty())? + 1;
        let mut out = body[..text_lines].join("\n");
        if !strip {
            out.push('\n');
        }
        if keep {
            out.extend(std::iter::repeat_n('\n', body.len() - text_lines));
        }
        Some((Node::Str(self.tree.arena.alloc_str(&out)), last))
    }
}

/// The longest implicit key YAML allows is 1,024 characters; longer ones
/// are left to the general parser (which refuses them), with some margin.
const MAX_KEY: usize = 1000;

/// Where a comment starts in `text` (its ` #`). A loop over the bytes:
/// keys and scalars are short, and a substring or character searcher's
/// set-up cost more than the search in the VM's profile.
fn comment_at(text: &str) -> Option<usize> {
    text.as_bytes().windows(2).position(|w| w == b" #")
}

/// A block mapping entry's key, and the rest of its line after the `:`.
fn split_key(content: &str) -> Option<(Cow<'_, str>, &str)> {
    let (key, rest) = if content.starts_with(['"', '\'']) {
        let (key, rest) = quoted(content)?;
        (key, rest.strip_prefix(':')?)
    } else {
        let bytes = content.as_bytes();
        let end = (0..bytes.len())
            .find(|&i| bytes[i] == b':' && matches!(bytes.get(i + 1), None | Some(b' ')))?;
        let key = content[..end].trim_end_matches(' ');
        if comment_at(key).is_some() || key == "<<" {
            return None;
        }
        let Node::Str(key) = plain(key)? else {
            return None;
        };
        (Cow::Borrowed(key), &content[end + 1..])
    };
    if !(rest.is_empty() || rest.starts_with(' ')) || content.len() - rest.len() > MAX_KEY {
        return None;
    }
    Some((key, rest))
}

/// A value that starts and ends on its line (after `key: ` or `- `): a
/// quoted or plain scalar or a flow collection, and perhaps a comment.
fn inline<'a>(tree: &mut Tree<'a>, text: &'a str, depth: usize) -> Option<Node<'a>> {
    let text = text.trim_start_matches(' ');
    let (value, rest) = match text.as_bytes().first()? {
        b'"' | b'\'' => {
            let (s, rest) = quoted(text)?;
            (Node::Str(tree.keep(s)), rest)
        }
        b'[' | b'{' => flow(tree, text, depth + 1)?,
        _ => {
            let end = comment_at(text).unwrap_or(text.len());
            let scalar = text[..end].trim_end_matches(' ');
            if scalar.ends_with(':') || scalar.as_bytes().windows(2).any(|w| w == b": ") {
                return None;
            }
            (plain(scalar)?, &text[end..])
        }
    };
    is_blank(rest)
        .then_some(value)
        .filter(|_| rest.is_empty() || rest.starts_with(' '))
}

/// A plain scalar, when its type is certain: `null`, `~`, `true`, `false`,
/// canonical integers, and strings that no YAML schema reads as anything
/// else. `None` for the rest (floats, `yes`, octal, dates...).
///
/// `s` is part of a line of a document [`block_subset_node`] has checked
/// for control characters: it has none.
fn plain(s: &str) -> Option<Node<'_>> {
    let first = s.chars().next()?;
    match s {
        "~" | "null" => return Some(Node::Null),
        "true" => return Some(Node::Bool(true)),
        "false" => return Some(Node::Bool(false)),
        _ => {}
    }
    const OTHER_SCHEMAS: [&str; 11] = [
        "null", "true", "false", "yes", "no", "on", "off", "y", "n", "nan", "inf",
    ];
    if s.len() <= 5 && OTHER_SCHEMAS.iter().any(|w| w.eq_ignore_ascii_case(s)) {
        return None;
    }
    if first.is_ascii_digit() || first == '-' {
        let digits = s.strip_prefix('-').unwrap_or(s);
        let canonical = !digits.is_empty()
            && digits.len() <= 18
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'))
            && s != "-0";
        if canonical {
            return s.parse::<i64>().ok().map(Node::Int);
        }
        return digits_string(s).then_some(Node::Str(s));
    }
    if first == '.' {
        // `.`, `.a`, `./x` are strings; `.5`, `.inf`, `.nan` are not.
        let second = s[1..].chars().next();
        let word = second.is_none_or(|c| c.is_alphabetic() || c == '/' || c == '_' || c == '-');
        let special = [".inf", ".nan"].iter().any(|w| w.eq_ignore_ascii_case(s));
        return (word && !special).then_some(Node::Str(s));
    }
    let starts_plain = first.is_alphabetic() || first == '_' || first == '/';
    (starts_plain && s != "=").then_some(Node::Str(s))
}

/// Whether a plain scalar that starts with a digit or `-` is a string in
/// every YAML schema: dotted numbers (addresses, versions), anything with a
/// `/` (CIDRs), digits joined by `-` that do not start like a date (UIDs,
/// port ranges), and quantities with a letter no number or date uses
/// (`10m`, `1Gi`). Floats, hex, octal, binary, dates and sexagesimal
/// numbers are not.
fn digits_string(s: &str) -> bool {
    let b = s.as_bytes();
    let radix = b.len() > 1 && b[0] == b'0' && b"xXoObB".contains(&b[1]);
    if !b.first().is_some_and(u8::is_ascii_digit) || radix {
        return false;
    }
    // One pass over the bytes (addresses come this way, a hundred thousand
    // of them in a large cluster's slices).
    let (mut only_digits_and_dots, mut dots, mut double_dot) = (true, 0, false);
    let (mut slash, mut digit_dash, mut lettered) = (false, false, false);
    let mut previous = 0;
    for &c in b {
        match c {
            b' ' | b':' | b'_' | b'+' => return false,
            b'0'..=b'9' => {}
            b'.' => {
                dots += 1;
                double_dot |= previous == b'.';
            }
            _ => {
                only_digits_and_dots = false;
                slash |= c == b'/';
                digit_dash |= c == b'-' && previous.is_ascii_digit();
                lettered |= c.is_ascii_alphabetic() && !b"eExXoObBtTzZ".contains(&c);
            }
        }
        previous = c;
    }
    let dotted = only_digits_and_dots && dots >= 2 && previous != b'.' && !double_dot;
    let dated = b.len() > 4 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-';
    dotted || slash || (digit_dash && !dated) || lettered
}

/// A quoted scalar at the start of `text`, and what follows its closing
/// quote. Escapes beyond the common ones, and scalars that do not close on
/// their line, are left to the general parser.
fn quoted(text: &str) -> Option<(Cow<'_, str>, &str)> {
    let quote = text.chars().next()?;
    let (s, rest) = scan_quoted(&text[1..], quote)?;
    Some((s, rest?))
}

/// The text of a quoted scalar from just after its opening quote (or from
/// the start of a continuation line) to its closing quote or the end of
/// the line, and what follows the closing quote, if it is on the line.
///
/// Without an escape (or a doubled `'`) the text is borrowed.
fn scan_quoted(text: &str, quote: char) -> Option<(Cow<'_, str>, Option<&str>)> {
    // Up to the first escape, nothing needs copying.
    let plain_end = text
        .find(|c| c == quote || (quote == '"' && c == '\\'))
        .unwrap_or(text.len());
    let rest = &text[plain_end..];
    if rest.is_empty() {
        return Some((Cow::Borrowed(text), None));
    }
    let closes = rest.starts_with(quote) && !(quote == '\'' && rest[1..].starts_with('\''));
    if closes {
        return Some((Cow::Borrowed(&text[..plain_end]), Some(&rest[1..])));
    }
    let mut chars = text.char_indices();
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match (quote, c) {
            ('"', '"') => return Some((Cow::Owned(out), Some(&text[i + 1..]))),
            ('\'', '\'') => {
                if text[i + 1..].starts_with('\'') {
                    chars.next();
                    out.push('\'');
                } else {
                    return Some((Cow::Owned(out), Some(&text[i + 1..])));
                }
            }
            ('"', '\\') => {
                // An escaped line break (a backslash ending the line) too.
                let (_, e) = chars.next()?;
                out.push(match e {
                    '\\' => '\\',
                    '"' => '"',
                    '/' => '/',
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    _ => return None,
                });
            }
            _ => out.push(c),
        }
    }
    Some((Cow::Owned(out), None))
}

/// A one-line flow collection at the start of `text`, and what follows it.
fn flow<'a>(tree: &mut Tree<'a>, text: &'a str, depth: usize) -> Option<(Node<'a>, &'a str)> {
    if depth > MAX_DEPTH {
        return None;
    }
    let close = match text.as_bytes().first()? {
        b'[' => ']',
        b'{' => '}',
        _ => return None,
    };
    let mut rest = text[1..].trim_start_matches(' ');
    let (entries, items) = (tree.entries.len(), tree.items.len());
    if let Some(after) = rest.strip_prefix(close) {
        rest = after;
    } else {
        loop {
            let (value, after) = flow_node(tree, rest, depth)?;
            let mut after = after.trim_start_matches(' ');
            if close == '}' {
                if rest.len() - after.len() > MAX_KEY {
                    return None;
                }
                let Node::Str(key) = value else {
                    return None;
                };
                after = after.strip_prefix(": ")?.trim_start_matches(' ');
                let (value, next) = flow_node(tree, after, depth)?;
                if !tree.insert_new(entries, key, value) {
                    return None;
                }
                after = next.trim_start_matches(' ');
            } else {
                tree.items.push(value);
            }
            if let Some(next) = after.strip_prefix(',') {
                rest = next.trim_start_matches(' ');
                if rest.starts_with([',', ']', '}']) {
                    return None;
                }
            } else {
                rest = after.strip_prefix(close)?;
                break;
            }
        }
    }
    let value = if close == ']' {
        tree.seq(items)
    } else {
        tree.map(entries)
    };
    Some((value, rest))
}

/// One node inside a flow collection, and what follows it.
fn flow_node<'a>(tree: &mut Tree<'a>, text: &'a str, depth: usize) -> Option<(Node<'a>, &'a str)> {
    match text.as_bytes().first()? {
        b'"' | b'\'' => {
            let (s, rest) = quoted(text)?;
            Some((Node::Str(tree.keep(s)), rest))
        }
        b'[' | b'{' => flow(tree, text, depth + 1),
        _ => {
            // A byte at a time: a set of characters to find set up a
            // searcher that cost more than the search.
            let end = text
                .bytes()
                .position(|b| matches!(b, b',' | b'[' | b']' | b'{' | b'}' | b':' | b'#'))?;
            let scalar = text[..end].trim_end_matches(' ');
            if text[end..].starts_with(['[', '{', '#']) {
                return None;
            }
            if text[end..].starts_with(':') && !text[end..].starts_with(": ") {
                return None;
            }
            Some((plain(scalar)?, &text[end..]))
        }
    }
}

#[cfg(test)]
mod tests;
