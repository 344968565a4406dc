//! Reading a manifest file one document at a time.
//!
//! A `kubectl get -o yaml` dump or a generated file may hold thousands of
//! documents. Parsing the whole text at once held the text, every
//! document's value tree and every object together: 50 MB of YAML took
//! more than 600 MiB. Here the file is cut at its document markers as it
//! is read, and each document is parsed and converted before the next is
//! read, so what is held is one document's text and value at a time.
//!
//! Cutting at the markers needs no parser: YAML forbids a line that starts
//! with `---` or `...` followed by a space or the line's end inside any
//! scalar (the spec's `c-forbidden`), so such a line always ends a document.

use std::io::{BufRead, BufReader, Read as _};
use std::path::Path;

use serde_json::Value;

use super::index::fingerprint;
use super::manifest::{Common, FileError, FileSkipReason, Manifest};

/// The documents of a YAML text, read line by line.
pub(crate) struct Documents<R> {
    reader: R,
    /// The document being read: its bytes, one buffer for every document
    /// of the file (checked as UTF-8 once a document, not once a line).
    text: Vec<u8>,
    /// The marker line that started the next document, if one did.
    carry: Option<Vec<u8>>,
    eof: bool,
}

/// A document's text, and whether it is the text's last.
pub(crate) struct Document<'a> {
    pub text: &'a str,
    pub last: bool,
}

impl<R: BufRead> Documents<R> {
    /// Documents read from `reader`.
    pub fn new(reader: R) -> Self {
        Documents {
            reader,
            // Room for a typical document from the start (a realistic
            // Service or EndpointSlice is 2-4 KiB), not grown by doubling.
            text: Vec::with_capacity(8 << 10),
            carry: None,
            eof: false,
        }
    }

    /// Whether the text is all read: after a document, that it was the last.
    pub fn at_end(&self) -> bool {
        self.eof && self.carry.is_none()
    }

    /// The next document, `None` at the end. Documents with nothing but
    /// comments and blank lines are passed over. A document that is not
    /// UTF-8 is an error, as a line that is not would be.
    pub fn next_document(&mut self) -> std::io::Result<Option<Document<'_>>> {
        loop {
            if self.at_end() {
                return Ok(None);
            }
            self.text.clear();
            if let Some(carry) = self.carry.take() {
                self.text.extend_from_slice(&carry);
            }
            let mut content = is_content(&self.text);
            loop {
                let start = self.text.len();
                if self.reader.read_until(b'\n', &mut self.text)? == 0 {
                    self.eof = true;
                    break;
                }
                let line = &self.text[start..];
                if marker(line, b"---") {
                    self.carry = Some(line.to_vec());
                    self.text.truncate(start);
                    break;
                }
                if marker(line, b"...") {
                    self.text.truncate(start);
                    break;
                }
                content |= is_content(line);
            }
            if content {
                let last = self.at_end();
                let text = std::str::from_utf8(&self.text)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                return Ok(Some(Document { text, last }));
            }
        }
    }
}

/// Whether `line` is the document marker `mark`: the mark, then the line's
/// end or whitespace.
fn marker(line: &[u8], mark: &[u8]) -> bool {
    line.strip_prefix(mark).is_some_and(|rest| {
        rest.is_empty()
            || rest
                .utf8_chunks()
                .next()
                .and_then(|chunk| chunk.valid().chars().next())
                .is_some_and(char::is_whitespace)
    })
}

/// Whether a line (or the rest of a `---` line) says anything: its first
/// character that is not whitespace is there and is not `#`. Bytes that
/// are not UTF-8 are content (the document's read then fails
/// on them).
fn is_content(line: &[u8]) -> bool {
    let line = line.strip_prefix(b"---").unwrap_or(line);
    // Nearly always the first character past ASCII whitespace (as
    // `trim_start` has it, the vertical tab too) is ASCII, and decides
    // without decoding the line: anything but `#` is content whether or
    // not the rest is UTF-8.
    match line
        .iter()
        .find(|&&b| !(b.is_ascii() && char::from(b).is_whitespace()))
    {
        None => false,
        Some(&b) if b.is_ascii() && b != b'#' => true,
        Some(_) => std::str::from_utf8(line).map_or(true, |line| {
            line.trim_start().chars().next().is_some_and(|c| c != '#')
        }),
    }
}

/// One document parsed, with its place in the file.
pub(crate) struct Parsed {
    /// The document's objects.
    pub manifest: Manifest,
    /// What could not be used: a document that is not YAML makes the read
    /// incomplete ([`Parsed::syntax`]); an invalid object is reported alone.
    pub errors: Vec<FileError>,
    /// Whether the text was not YAML or JSON at all.
    pub syntax: bool,
    /// The fingerprint of the document's text ([`fingerprint`]).
    pub print: u64,
}

impl Parsed {
    /// A read that failed: no objects (and nothing to fingerprint), and
    /// the file incomplete.
    fn unread(error: FileError) -> Self {
        Parsed {
            manifest: Manifest::default(),
            errors: vec![error],
            syntax: true,
            print: 0,
        }
    }
}

/// A manifest file being read, document by document.
pub(crate) enum FileReader {
    /// A YAML file.
    Yaml {
        /// Its documents.
        documents: Documents<BufReader<std::fs::File>>,
        /// The next document's index.
        next: usize,
    },
    /// A JSON file: one document, read whole.
    Json(Option<std::fs::File>),
}

impl FileReader {
    /// Opens `path`; `Ok(None)` when it is not there.
    pub fn open(path: &Path) -> Result<Option<Self>, FileError> {
        match std::fs::File::open(path) {
            Ok(file) if path.extension().is_some_and(|e| e == "json") => {
                Ok(Some(FileReader::Json(Some(file))))
            }
            Ok(file) => Ok(Some(FileReader::Yaml {
                documents: Documents::new(BufReader::new(file)),
                next: 0,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(FileError {
                path: path.to_owned(),
                document: None,
                reason: FileSkipReason::Read,
                message: e.to_string(),
            }),
        }
    }

    /// The next document, parsed; `None` at the end of the file.
    pub fn next(&mut self, path: &Path) -> Option<Parsed> {
        let error = |document, reason, message: String| FileError {
            path: path.to_owned(),
            document,
            reason,
            message,
        };
        let print;
        let (value, document) = match self {
            FileReader::Json(file) => {
                let mut text = Vec::new();
                if let Err(e) = file.take()?.read_to_end(&mut text) {
                    return Some(Parsed::unread(error(
                        None,
                        FileSkipReason::Read,
                        e.to_string(),
                    )));
                }
                print = fingerprint(&text);
                let value = serde_json::from_slice::<Value>(&text);
                (value.map(Read::Value).map_err(|e| e.to_string()), None)
            }
            FileReader::Yaml { documents, next } => {
                let document = match documents.next_document() {
                    Ok(Some(document)) => document,
                    Ok(None) => return None,
                    Err(e) => {
                        // The rest of the file cannot be read.
                        *documents = Documents::new(BufReader::new(empty_file()?));
                        return Some(Parsed::unread(error(
                            None,
                            FileSkipReason::Read,
                            e.to_string(),
                        )));
                    }
                };
                print = fingerprint(document.text.as_bytes());
                let index = *next;
                *next += 1;
                let single = index == 0 && document.last;
                (parse_yaml(document.text), (!single).then_some(index))
            }
        };
        let mut parsed = Parsed {
            manifest: Manifest::default(),
            errors: Vec::new(),
            syntax: false,
            print,
        };
        match value {
            Ok(read) => {
                if let Err((reason, message)) = read.add_to(&mut parsed.manifest) {
                    parsed.errors.push(error(document, reason, message));
                }
            }
            Err(message) => {
                parsed.syntax = true;
                parsed
                    .errors
                    .push(error(document, FileSkipReason::Parse, message));
            }
        }
        Some(parsed)
    }
}

/// A whole text read as the file `path` would be (JSON when its name says
/// so, else YAML cut into documents): its objects, and what could not be
/// used. The loader's entry for the fuzzer, which has text, not files.
pub fn parse_text(path: &Path, text: &str) -> (Manifest, Vec<FileError>) {
    let mut manifest = Manifest::default();
    let mut errors = Vec::new();
    let mut add = |value: Result<Read, String>, document| {
        let (reason, message) = match value.map(|read| read.add_to(&mut manifest)) {
            Ok(Ok(())) => return,
            Ok(Err(failed)) => failed,
            Err(message) => (FileSkipReason::Parse, message),
        };
        errors.push(FileError {
            path: path.to_owned(),
            document,
            reason,
            message,
        });
    };
    if path.extension().is_some_and(|e| e == "json") {
        add(
            serde_json::from_str(text)
                .map(Read::Value)
                .map_err(|e| e.to_string()),
            None,
        );
    } else {
        let mut documents = Documents::new(text.as_bytes());
        let mut index = 0;
        while let Ok(Some(document)) = documents.next_document() {
            add(parse_yaml(document.text), Some(index));
            index += 1;
        }
    }
    (manifest, errors)
}

/// A reader with nothing left, to end a file that failed mid-read.
fn empty_file() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// One document read: a common object already typed, or the value of
/// anything else.
enum Read {
    Typed(Manifest),
    Value(Value),
}

impl Read {
    /// Adds its objects to `manifest`; what was wrong with the document.
    fn add_to(self, manifest: &mut Manifest) -> Result<(), (FileSkipReason, String)> {
        match self {
            Read::Typed(typed) => {
                manifest.extend(typed);
                Ok(())
            }
            Read::Value(value) => manifest.add(value),
        }
    }
}

/// A YAML document: a Service, EndpointSlice or Node in the subset read
/// straight into its type, anything else into its value, the text read
/// once unless a common kind fails typed (the long way then reports it).
fn parse_yaml(text: &str) -> Result<Read, String> {
    let read =
        super::yaml::with_block_subset_node(text, |node| match node.map(Manifest::read_common) {
            Some(Common::Read(typed)) => Some(Read::Typed(typed)),
            Some(Common::Other(node)) => Some(Read::Value(node.into_value())),
            Some(Common::LongWay) | None => None,
        });
    match read {
        Some(read) => Ok(read),
        None => super::yaml::document(text).map(Read::Value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn documents_of(text: impl Read) -> Documents<BufReader<impl Read>> {
        Documents::new(BufReader::new(text))
    }

    fn split(text: &str) -> Vec<String> {
        let mut docs = documents_of(text.as_bytes());
        std::iter::from_fn(|| docs.next_document().unwrap().map(|d| d.text.to_owned())).collect()
    }

    #[test]
    fn cuts_at_document_markers_only() {
        assert_eq!(
            split("a: 1\n---\nb: |\n  --- not a marker\n  x\n--- # c\nc: 3\n...\n# only a comment\n---\n\n"),
            ["a: 1\n", "---\nb: |\n  --- not a marker\n  x\n", "--- # c\nc: 3\n"]
        );
        assert_eq!(split("---\na: 1"), ["---\na: 1"]);
        assert_eq!(split("--- {a: 1}\n---x: 2\n"), ["--- {a: 1}\n---x: 2\n"]);
        assert!(split("").is_empty());
        assert!(split("# nothing\n---\n").is_empty());
    }

    #[test]
    fn reads_as_a_line_by_line_string_reader_did() {
        // A marker followed by any whitespace; a line of other whitespace
        // (a vertical tab is one) is blank.
        assert_eq!(
            split("a: 1\n---\u{a0}\nb: 2\n\u{3000}\n---\n\u{2003}\n---\n\x0b\n"),
            ["a: 1\n", "---\u{a0}\nb: 2\n\u{3000}\n"]
        );
        // Bytes that are not UTF-8: the document is an error, as its line
        // was.
        let mut docs = documents_of(&b"a: 1\n---\nb: \xff\n"[..]);
        assert_eq!(docs.next_document().unwrap().unwrap().text, "a: 1\n");
        let e = docs.next_document().err().expect("not UTF-8");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn knows_a_single_document() {
        let mut docs = documents_of("a: 1\n".as_bytes());
        docs.next_document().unwrap();
        assert!(docs.at_end());
        let mut docs = documents_of("a: 1\n---\nb: 2\n".as_bytes());
        docs.next_document().unwrap();
        assert!(!docs.at_end());
    }

    /// The fingerprints of a file's documents, read with [`FileReader`].
    fn prints(path: &Path) -> Vec<u64> {
        let mut reader = FileReader::open(path).unwrap().unwrap();
        std::iter::from_fn(|| reader.next(path).map(|p| p.print)).collect()
    }

    #[test]
    fn a_document_is_fingerprinted_by_its_text() {
        let dir = tempfile::tempdir().unwrap();
        let yaml = dir.path().join("a.yaml");
        let (one, two, three) = ("a: 1\n", "---\nb: 2\n", "---\nc: 3\n");
        std::fs::write(&yaml, [one, two, three].concat()).unwrap();
        let before = prints(&yaml);
        assert_eq!(before.len(), 3);
        assert_eq!(before[0], fingerprint(one.as_bytes()));
        // The middle document edited: the others keep their prints.
        std::fs::write(&yaml, [one, "---\nb: 20\n", three].concat()).unwrap();
        let after = prints(&yaml);
        assert_eq!((after[0], after[2]), (before[0], before[2]));
        assert_ne!(after[1], before[1]);
        // A JSON file is one document: its whole text.
        let json = dir.path().join("b.json");
        let text = r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}}"#;
        std::fs::write(&json, text).unwrap();
        assert_eq!(prints(&json), [fingerprint(text.as_bytes())]);
    }
}
