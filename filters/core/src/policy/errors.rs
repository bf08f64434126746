use std::fmt;

/// One problem in a policy, with the JSON path of the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub path: String,
    pub message: String,
}

impl PolicyError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a policy; never just the first.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(PolicyError::new(path, message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &PolicyError> {
        self.0.iter()
    }

    /// `true` when some error's path is `path` and its message contains `needle`.
    pub fn has(&self, path: &str, needle: &str) -> bool {
        self.0.iter().any(|e| e.path == path && e.message.contains(needle))
    }
}

impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error(s) in policy: ", self.0.len())?;
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyErrors {}

/// Joins a JSON path and a field name: `routes[2]` + `match` = `routes[2].match`.
pub fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// `routes` + 2 = `routes[2]`.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// `value`, or `default` when absent, checked against `range`: a number
/// outside it is an error naming the range, never clamped.
pub fn bounded(
    value: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    path: &str,
    errors: &mut PolicyErrors,
) -> u64 {
    let v = value.unwrap_or(default);
    if !range.contains(&v) {
        errors.push(path, format!("must be {} to {}, not {v}", range.start(), range.end()));
    }
    v
}

/// `bounded` for sizes; every range used fits a 32-bit `usize`.
pub fn bounded_size(
    value: Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
    path: &str,
    errors: &mut PolicyErrors,
) -> usize {
    usize::try_from(bounded(value, default, range, path, errors)).unwrap_or(usize::MAX)
}

/// HTTP methods, upper-cased: for route matches and claim rules alike.
pub fn compile_methods(given: &[String], path: &str, errors: &mut PolicyErrors) -> Vec<String> {
    let mut methods: Vec<String> = Vec::with_capacity(given.len());
    let mut seen = std::collections::HashSet::with_capacity(given.len());
    for (i, m) in given.iter().enumerate() {
        let upper = m.to_ascii_uppercase();
        if m.is_empty() || m.len() > 32 || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
            errors.push(index(path, i), format!("'{m}' is not an HTTP method"));
        } else if !seen.insert(upper.clone()) {
            errors.push(index(path, i), format!("'{m}' is listed twice"));
        }
        methods.push(upper);
    }
    methods
}
