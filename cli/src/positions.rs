//! Where each node of a YAML (or JSON, which is YAML) policy is written,
//! found by the paths core's errors carry (`routes[2].jwt.providers[0]`),
//! so `tollgate validate` can give every error a line and column.
//!
//! The document is read once with saphyr-parser into a small tree of
//! positions (no recursion: an explicit stack), and a path is resolved by
//! walking it. Keys are matched as written, so a key holding a `.` still
//! resolves. A path that goes further than the document (a missing field)
//! stops at the deepest node that exists: the field's parent.

use saphyr_parser::{Event, Parser, Span};

/// A place in the file, 1-based as editors show it (columns in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub line: usize,
    pub col: usize,
}

impl Position {
    fn of(span: &Span) -> Position {
        Position {
            line: span.start.line(),
            col: span.start.col() + 1,
        }
    }
}

/// Every node's position, by path.
#[derive(Debug, Default)]
pub struct Positions {
    root: Option<Node>,
}

#[derive(Debug)]
struct Node {
    at: Position,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Leaf,
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// A mapping entry; `at` is where its key is written, which is where an
/// error about the field is shown.
#[derive(Debug)]
struct Entry {
    key: String,
    at: Position,
    value: Node,
}

/// A collection being read.
enum Frame {
    Seq(Position, Vec<Node>),
    Map {
        at: Position,
        entries: Vec<Entry>,
        key: Option<(String, Position)>,
    },
}

/// Which entry a path names when a key is given twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicate {
    /// The first, which is the one read (for every error but the duplicate).
    First,
    /// The last, for the "duplicate key" error itself.
    Last,
}

impl Positions {
    /// Reads the first document of `text`; `Err` for text that is not YAML.
    pub fn read(text: &str) -> Result<Positions, String> {
        let mut stack: Vec<Frame> = Vec::new();
        let mut root = None;
        for next in Parser::new_from_str(text) {
            let (event, span) = next.map_err(|e| e.to_string())?;
            let at = Position::of(&span);
            let done = match event {
                Event::Scalar(text, ..) => Some((Node { at, kind: Kind::Leaf }, text.into_owned())),
                Event::Alias(_) => Some((Node { at, kind: Kind::Leaf }, String::new())),
                Event::SequenceStart(..) => {
                    stack.push(Frame::Seq(at, Vec::new()));
                    None
                }
                Event::MappingStart(..) => {
                    stack.push(Frame::Map {
                        at,
                        entries: Vec::new(),
                        key: None,
                    });
                    None
                }
                Event::SequenceEnd | Event::MappingEnd => stack.pop().map(|frame| (close(frame), String::new())),
                Event::DocumentEnd if stack.is_empty() && root.is_some() => break,
                _ => None,
            };
            if let Some((node, text)) = done {
                match stack.last_mut() {
                    Some(parent) => attach(parent, node, text),
                    None => root = root.or(Some(node)),
                }
            }
        }
        Ok(Positions { root })
    }

    /// Where `path` is written: the key of a field, the start of a list
    /// item; or, past what the document holds, its deepest existing node.
    pub fn find(&self, path: &str, duplicate: Duplicate) -> Position {
        let Some(root) = &self.root else {
            return Position { line: 1, col: 1 };
        };
        let (mut node, mut at, mut rest) = (root, root.at, path);
        loop {
            if rest.is_empty() {
                return at;
            }
            let step = match &node.kind {
                Kind::Leaf => None,
                Kind::Seq(items) => item(items, rest),
                Kind::Map(entries) => {
                    // Top-level fields have no leading '.'.
                    let after_dot = if std::ptr::eq(node, root) {
                        Some(rest)
                    } else {
                        rest.strip_prefix('.')
                    };
                    after_dot.and_then(|r| entry(entries, r, duplicate))
                }
            };
            match step {
                Some((next, next_at, next_rest)) => (node, at, rest) = (next, next_at, next_rest),
                None => return at,
            }
        }
    }
}

/// `[N]...` in `items`: the item, its position and the rest of the path.
fn item<'n, 'p>(items: &'n [Node], rest: &'p str) -> Option<(&'n Node, Position, &'p str)> {
    let (index, after) = rest.strip_prefix('[')?.split_once(']')?;
    let found = items.get(index.parse::<usize>().ok()?)?;
    Some((found, found.at, after))
}

/// The entry whose key starts `rest` and ends where a path segment ends;
/// the longest such key, so that `a.b` is preferred to `a` for `a.b.c`.
fn entry<'n, 'p>(entries: &'n [Entry], rest: &'p str, duplicate: Duplicate) -> Option<(&'n Node, Position, &'p str)> {
    let matches = |e: &&Entry| {
        rest.strip_prefix(e.key.as_str())
            .is_some_and(|after| after.is_empty() || after.starts_with(['.', '[']))
    };
    let best_len = entries.iter().filter(matches).map(|e| e.key.len()).max()?;
    let mut same = entries.iter().filter(matches).filter(|e| e.key.len() == best_len);
    let found = match duplicate {
        // Only the path's own end names the duplicate; above it, the first is read.
        Duplicate::Last if rest.len() == best_len => same.next_back(),
        _ => same.next(),
    }?;
    Some((&found.value, found.at, rest.get(best_len..)?))
}

fn close(frame: Frame) -> Node {
    match frame {
        Frame::Seq(at, items) => Node {
            at,
            kind: Kind::Seq(items),
        },
        Frame::Map { at, entries, .. } => Node {
            at,
            kind: Kind::Map(entries),
        },
    }
}

/// Adds a finished node to the collection being read: an item, a key, or
/// the value of the pending key. A key that is not a scalar (`? [a]`)
/// gets no text, so no path names it.
fn attach(parent: &mut Frame, node: Node, text: String) {
    match parent {
        Frame::Seq(_, items) => items.push(node),
        Frame::Map { entries, key, .. } => match key.take() {
            Some((key, at)) => entries.push(Entry { key, at, value: node }),
            None => *key = Some((text, node.at)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::{Duplicate, Position, Positions};

    fn at(text: &str, path: &str) -> (usize, usize) {
        let p = Positions::read(text).unwrap().find(path, Duplicate::First);
        (p.line, p.col)
    }

    #[test]
    fn block_yaml_fields_and_items() {
        let text = "version: 1\nroutes:\n  - name: a\n    match:\n      prefix: /x\n  - name: b\n    match: {exact: /y, methods: [GET, PUT]}\n";
        assert_eq!(at(text, "version"), (1, 1));
        assert_eq!(at(text, "routes"), (2, 1));
        assert_eq!(at(text, "routes[0]"), (3, 5));
        assert_eq!(at(text, "routes[0].match.prefix"), (5, 7));
        assert_eq!(at(text, "routes[1].name"), (6, 5));
        assert_eq!(at(text, "routes[1].match.exact"), (7, 13));
        assert_eq!(at(text, "routes[1].match.methods[1]"), (7, 39));
        // Past the document: the deepest node that exists.
        assert_eq!(at(text, "routes[0].match.template"), (4, 5));
        assert_eq!(at(text, "routes[7].name"), (2, 1));
        assert_eq!(at(text, "routes[1].match.methods[1].x"), (7, 39));
        assert_eq!(at(text, "tenants[0]"), (1, 1));
        assert_eq!(at(text, ""), (1, 1));
    }

    #[test]
    fn json_is_read_too() {
        let text =
            "{\n  \"version\": 1,\n  \"routes\": [\n    {\"name\": \"a\", \"match\": {\"prefix\": \"/x\"}}\n  ]\n}\n";
        assert_eq!(at(text, "version"), (2, 3));
        assert_eq!(at(text, "routes[0]"), (4, 5));
        assert_eq!(at(text, "routes[0].match.prefix"), (4, 29));
    }

    #[test]
    fn keys_with_dots_and_duplicates() {
        let text = "a.b:\n  c: 1\na:\n  b: 2\nd: 1\nd: 2\n";
        assert_eq!(at(text, "a.b.c"), (2, 3));
        assert_eq!(at(text, "a.b"), (1, 1));
        assert_eq!(at(text, "d"), (5, 1));
        let last = Positions::read(text).unwrap().find("d", Duplicate::Last);
        assert_eq!(last, Position { line: 6, col: 1 });
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let text = "realm: \"é\"\nx: [\"ü\", 1]\n";
        assert_eq!(at(text, "x[1]"), (2, 10));
    }

    #[test]
    fn not_yaml_is_an_error_and_empty_text_points_at_the_start() {
        assert!(Positions::read("a: [1\n").is_err());
        assert_eq!(at("", "routes"), (1, 1));
    }
}
